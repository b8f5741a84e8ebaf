"""``isoformer variants`` as a plain function: score VCF alleles on every transcript they affect.

The outputs are checked first (none may be an input, each must be writable), then locked for the whole
run; the VCF is read once here for its header (standard input is first copied to a temporary file, since
DataLoader workers and torchrun ranks each read the VCF again); the runner's chunk loop then prepares
chunks of records in workers (:class:`~isoformer_cli.inference.variants.VariantChunkDataset`), scores them
(:class:`~isoformer_cli.inference.variants.VariantScorer`) and hands them to the writers in record order.

With ``--shard K/N`` the workers score only the transcripts of shard K's genes, and every output still
holds every VCF record. Before the run, the main process sweeps the VCF over every selected gene to find the
shard's transcripts that share a record with another shard's genes, and each output's provenance records
their ranks and its units (:mod:`isoformer_cli.formats.variant_shards`), so ``isoformer merge`` rebuilds
the single run's files.
"""

import collections
import dataclasses
import logging
from dataclasses import dataclass

from isoformer_cli.app.outputs import check_outputs, locked, writing
from isoformer_cli.app.predict import ModelRunConfig
from isoformer_cli.app.standard_input import spooled_standard_input
from isoformer_cli.errors import InputError, OutputError
from isoformer_cli.formats.atomic import STDOUT
from isoformer_cli.formats.collisions import refuse_shared_files
from isoformer_cli.formats.provenance import build_provenance, units_label
from isoformer_cli.formats.targets import classify_output
from isoformer_cli.formats.variant_shards import encode_transcripts, variant_provenance
from isoformer_cli.formats.variants import (
    AltTriplesWriter,
    VariantTableWriter,
    VcfWriter,
    annotate_record,
    info_entry,
    info_header_lines,
    output_header,
    status_entry,
    summarise,
    table_kind,
    vcf_kind,
)
from isoformer_cli.genomics.contigs import ContigAliases
from isoformer_cli.genomics.genome import Genome
from isoformer_cli.genomics.vcf import NOT_VISIBLE, STATUS_DESCRIPTIONS, STDIN, VcfReader, check_vcf
from isoformer_cli.inference.runner import ModelRunner
from isoformer_cli.inference.variants import (
    VariantChunkDataset,
    VariantOptions,
    VariantScorer,
    check_header_contigs,
    check_max_indel,
)
from isoformer_cli.models.checkpoint.check import CheckedCheckpoint
from isoformer_cli.models.distribution.locate import locate_checkpoint
from isoformer_cli.runtime.setup import model_run
from isoformer_cli.triples.affected import TranscriptIndex, shared_transcripts

log = logging.getLogger(__name__)

DEFAULT_MAX_INDEL = 50
DEFAULT_VARIANT_CHUNK_SIZE = 64


@dataclass(frozen=True)
class VariantsConfig(ModelRunConfig):
    """``isoformer variants``: ``vcf`` in (``-`` for standard input), ``output`` VCF, an optional ``table``
    (.tsv, .tsv.gz, .h5, .h5ad) and ``alt_triples`` (.tsv, .tsv.gz); ``max_indel``: the longest allele
    scored (minimal form). ``chunk_size`` counts VCF records here."""

    vcf: str = STDIN
    output: str = STDOUT
    table: str | None = None
    alt_triples: str | None = None
    max_indel: int = DEFAULT_MAX_INDEL
    chunk_size: int = DEFAULT_VARIANT_CHUNK_SIZE

    def __post_init__(self):
        super().__post_init__()
        check_max_indel(self.max_indel)
        if self.source.annotation is None:
            raise InputError("isoformer variants needs --annotation (a triples table has no exon structure)")


def run_variants(config: VariantsConfig, checked: CheckedCheckpoint | None = None) -> int:
    """Score every allele of ``config.vcf``; returns the number of VCF records written.

    ``checked``: the checkpoint of ``config`` already located and checked by a caller (``explain --method
    ism``), so that it is not checked again; None locates it here.

    Raises the typed errors of the inputs, checkpoint and outputs; after an error no output exists at
    the target paths (after Ctrl-C or SIGTERM the temporary files are kept for ``--resume``).
    """
    outputs = {"-O/--output": config.output, "--table": config.table, "--alt-triples": config.alt_triples}
    if checked is None:
        checked = locate_checkpoint(config.checkpoint, config.model_dir)
    _check_outputs_of(config, outputs, checked)
    vcf_kind(config.output)
    if config.table:
        table_kind(config.table)
    if config.alt_triples and not config.alt_triples.endswith((".tsv", ".tsv.gz")) \
            and not classify_output(config.alt_triples).is_direct:
        raise OutputError(f"{config.alt_triples}: --alt-triples writes TSV; name it .tsv or .tsv.gz")
    with locked(config.output, config.table, config.alt_triples), \
            spooled_standard_input(config.vcf, "-I/--input", ".vcf") as vcf:
        return _variants(dataclasses.replace(config, vcf=vcf.path), config.vcf, checked)


def _check_outputs_of(config, outputs, checked):
    """As ``predict`` checks its outputs, with the VCF (and its index) among the inputs."""
    check_outputs(config, outputs, checked)
    if config.vcf != STDIN:
        vcf_files = [("-I/--input", config.vcf), ("-I/--input (index)", f"{config.vcf}.tbi"),
                     ("-I/--input (index)", f"{config.vcf}.csi")]
        refuse_shared_files(vcf_files, outputs)


def _variants(config, vcf_label, checked):
    with model_run(config.runtime) as context:
        # The VCF is checked against the genome's contigs before the model loads; the runner opens the genome
        # it reads sequence from.
        with Genome(config.source.genome) as genome:
            aliases = ContigAliases(genome.contigs, alias_file=config.source.contig_alias)
        with VcfReader(config.vcf) as reader:  # fails fast on a missing or malformed file
            header_lines = reader.header_lines
            check_header_contigs(reader, aliases)
        # One streaming pass first: a truncated, unsorted or foreign VCF fails before the model loads. Every
        # torchrun rank makes it, so all stop with the same error rather than wait for rank 0 in the loop.
        records = check_vcf(config.vcf, aliases)
        log.debug("%s: %d records", vcf_label, records)
        # The memory plan (the same as predict's: up-front refusal, batches from --max-memory) sizes the model
        # calls in isoform rows; --chunk-size here counts VCF records, so the plan gets its default.
        runner = ModelRunner(context, checked, config.source, config.rna_truncation, config.protein_truncation,
                             config.max_tokens, None, num_workers=config.runtime.num_workers, dedupe=config.dedupe,
                             records_per_chunk=config.chunk_size)
        model_config = runner.model.config
        tissues = list(model_config.tissues)
        units = units_label(model_config.target_units)
        inputs = {"genome": config.source.genome, "annotation": config.source.annotation}
        if vcf_label != STDIN:
            inputs["vcf"] = config.vcf
        provenance = build_provenance(list(config.command_args), runner.checkpoint_dir, inputs, units=units,
                                      demo=runner.demo, demo_derived=runner.demo_derived)
        vcf_provenance = row_provenance = provenance
        shard = config.source.own_shard()
        if shard is not None and context.group.is_main:
            shared = encode_transcripts(_shared_transcripts(runner, aliases, config.vcf, shard))
            vcf_provenance = variant_provenance(provenance, shard, range(records), shared)
            # The table's and the triples' units are known at the end: their writers complete the entry.
            row_provenance = variant_provenance(provenance, shard, (), shared)
        options = VariantOptions(vcf=config.vcf, max_indel=config.max_indel, records_per_chunk=config.chunk_size,
                                 keep_sequences=bool(config.alt_triples))
        scorer = VariantScorer(runner.predictor, len(tissues), log1p_units=model_config.target_units == "log1p_tpm")
        writers = _open_writers(config, header_lines, tissues, vcf_provenance, row_provenance) \
            if context.group.is_main else None
        counts = collections.Counter()

        def write(out, chunk, result):
            _write_chunk(out, chunk, result, tissues, counts)

        def dataset(run, start_row):
            return VariantChunkDataset(run, start_row, options)

        with writing(writers):
            rows = runner.run(writers, scorer, write, "variants", dataset_class=dataset, unit=" records")
        if context.group.is_main:
            _report(config, rows, counts, scorer, runner, provenance)
        return rows


class _Writers:
    """The command's writers as one: completed rows = the fewest any holds (the others are cut back to it);
    finish / abort / close apply to all."""

    def __init__(self, vcf, table, triples):
        self.vcf, self.table, self.triples = vcf, table, triples
        self.all = [writer for writer in (vcf, table, triples) if writer is not None]
        rows = min(writer.completed_rows for writer in self.all)
        for writer in self.all:
            if writer.completed_rows != rows:
                (writer.keep_rows if writer is vcf else writer.truncate_rows)(rows)
        self.completed_rows = rows

    def finish(self):
        for writer in self.all:
            writer.finish()

    def abort(self):
        for writer in self.all:
            writer.abort()

    def close(self):
        for writer in self.all:
            writer.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is None:
            self.finish()
        elif issubclass(exc_type, KeyboardInterrupt):
            self.close()
            # A warning, so that -q keeps the one thing to do next.
            log.warning("interrupted: partial outputs kept; rerun the same command with --resume to continue")
        else:
            self.abort()
        return False


def _shared_transcripts(runner, aliases, vcf, shard):
    """``{CHROM: {(rank, transcript_id)}}`` of the shard's transcripts that share a VCF record with another
    shard's genes (:func:`~isoformer_cli.triples.affected.shared_transcripts`); none for a split into one."""
    index = TranscriptIndex(runner.source, runner.genome, aliases, all_shards=True)
    genes = [gene for contig_genes in index.genes.values() for gene in contig_genes]
    held = sum(shard.holds(gene.key[1]) for gene in genes)
    shared = shared_transcripts(index, vcf, shard) if shard.count > 1 else {}
    log.info("shard %s: the transcripts of %d of %d genes; %d of its transcripts share a VCF record with other "
             "shards' genes", shard, held, len(genes), sum(len(pairs) for pairs in shared.values()))
    return shared


def _open_writers(config, header_lines, tissues, vcf_provenance, row_provenance):
    """The VCF writer (its header records ``vcf_provenance``) and the table's and triples' (``row_provenance``:
    the same but for a shard entry their writers complete)."""
    opened = []
    try:
        header = output_header(header_lines, info_header_lines(tissues, vcf_provenance, STATUS_DESCRIPTIONS))
        opened.append(VcfWriter(config.output, header, config.chunk_size, config.resume))
        table = VariantTableWriter(config.table, tissues, row_provenance, config.resume) if config.table else None
        opened.append(table)
        triples = AltTriplesWriter(config.alt_triples, row_provenance, config.resume) if config.alt_triples else None
        opened.append(triples)
        return _Writers(*opened)
    except BaseException:
        for writer in opened:
            if writer is not None:
                writer.abort()
        raise


def _write_chunk(out, chunk, result, tissues, counts):
    summaries = summarise(result.ref, result.alt, result.dna, result.dna_rna, result.share_delta, tissues)
    entries = [[] for _ in chunk.records]
    table_rows, triple_rows, alleles = [], [], []
    # Allele ordinal of each record's first ALT (ALT alleles counted from 0 in file order), for shard entries.
    first_alleles, ordinal = [], chunk.first_allele
    for record in chunk.records:
        first_alleles.append(ordinal)
        ordinal += len(record.alts)
    for pair, summary in zip(chunk.pairs, summaries):
        record = chunk.records[pair.record]
        alleles.append(first_alleles[pair.record] + pair.allele - 1)
        row = {
            "record": record.number, "chrom": record.chrom, "pos": record.pos, "id": record.fields[2],
            "ref": record.ref, "alt": pair.alt, "gene_id": pair.gene_id, "gene_name": pair.gene_name,
            "transcript_id": pair.transcript_id, "strand": pair.strand, "consequence": pair.consequence,
            "amino_acids": pair.amino_acids, "inputs": "&".join(pair.inputs) or "none",
            "flags": "&".join(pair.flags), "status": pair.status or "scored", **summary,
        }
        table_rows.append(row)
        entries[pair.record].append(info_entry(row, summary))
        if out.triples is not None:
            triple_rows.append({
                "record": record.number, "chrom": record.chrom, "pos": record.pos, "id": record.fields[2],
                "ref": record.ref, "alt": pair.alt, "transcript_id": pair.transcript_id, "gene_id": pair.gene_id,
                "consequence": pair.consequence, "amino_acids": pair.amino_acids,
                "inputs": row["inputs"], "window_start": pair.window_start, "window_end": pair.window_end,
                "rna": pair.rna, "protein": pair.protein,
            })
        counts["pairs"] += 1
        if pair.status:
            counts["pairs not visible"] += 1
        elif pair.unseen:
            counts["pairs partly visible"] += 1
    lines = []
    scored_records = {pair.record for pair in chunk.pairs if not pair.status}
    for position, record in enumerate(chunk.records):
        statuses = []
        for number, transcript, status in chunk.statuses[position]:
            alt = record.alts[number - 1] if number else None
            statuses.append(status_entry(alt, transcript, status))
            counts[status] += 1
        if position in scored_records:
            counts["records scored"] += 1
        elif not entries[position] and not chunk.statuses[position]:
            counts["records affecting no transcript"] += 1
        lines.append(annotate_record(record.fields, entries[position], statuses))
    out.vcf.write_chunk(lines)
    if out.table is not None:
        out.table.write_chunk(len(chunk.records), table_rows,
                              {"ref": result.ref, "alt": result.alt, "dna": result.dna, "dna_rna": result.dna_rna,
                               "share_delta": result.share_delta}, alleles)
    if out.triples is not None:
        out.triples.write_chunk(len(chunk.records), triple_rows, alleles)


def _report(config, rows, counts, scorer, runner, provenance):
    skipped = {status: counts[status] for status in STATUS_DESCRIPTIONS if counts[status] and status != NOT_VISIBLE}
    log.info("%d records written to %s: %d scored (%d allele x transcript pairs), %d affecting no transcript",
             rows, "standard output" if config.output == STDOUT else config.output, counts["records scored"],
             counts["pairs"], counts["records affecting no transcript"])
    if counts["pairs not visible"] or counts["pairs partly visible"]:
        log.warning("%d allele x transcript pairs change only what the model does not read (status not_visible, "
                    "no scores: '.' in the VCF, NaN in the table); %d change a part it reads and a part it does not "
                    "(scored; FLAGS rna_truncated / protein_truncated name the unseen input); see --rna-truncation "
                    "and --protein-truncation", counts["pairs not visible"], counts["pairs partly visible"])
    if skipped:
        log.warning("alleles not scored (kept unannotated, see ISOFORMER_STATUS): %s",
                    ", ".join(f"{status} {count}" for status, count in skipped.items()))
    log.info("%d reference isoform predictions, %d distinct inputs encoded", scorer.reference_predictions,
             runner.predictor.encoded_inputs)


