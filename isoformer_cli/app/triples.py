"""``isoformer triples`` as one plain function: genome + annotation -> triples table (+ FASTA).

The pass is streaming: the annotation reader yields one contig's transcripts at a time, each
transcript is built and written at once, and nothing grows with the annotation except counters.
Order of checks, so that a bad run fails early and never leaves a partial file:

1. option values (``--dna-length``, ``--on-invalid``, ``--orf``, selection syntax);
2. no output is an input or another output; output folders writable; outputs locked for the run;
3. genome FASTA opens (and is indexed) and the annotation opens and is recognised;
4. the pass: every error raised while reading, building or writing discards all outputs;
5. contigs: annotation contigs missing from the FASTA are logged with their transcript counts,
   and the run fails (outputs discarded) when none matched.

Selection, building and ``--on-invalid`` are shared with ``isoformer predict`` through
:func:`isoformer_cli.triples.source.iter_triples`.
"""

import itertools
import logging
import sys
import tempfile
from dataclasses import dataclass, field

from isoformer_cli.errors import InputError
from isoformer_cli.formats.atomic import STDOUT
from isoformer_cli.formats.collisions import refuse_shared_files
from isoformer_cli.formats.locks import lock_outputs
from isoformer_cli.formats.provenance import build_provenance
from isoformer_cli.formats.sharding import with_shard
from isoformer_cli.formats.triples_table import TriplesWriter, format_row
from isoformer_cli.genomics.genome import Genome
from isoformer_cli.runtime.progress import progress
from isoformer_cli.triples.parallel import parallel_workers, write_in_parallel
from isoformer_cli.triples.source import SourceSummary, TripleSource, iter_triples

SPOOL_BLOCK = 1 << 20  # characters copied at a time from a shard's spooled rows into its table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TriplesConfig:
    """Everything ``isoformer triples`` needs, as plain values (the CLI fills it from options).

    Attributes:
        source: the genome, the annotation (a triples table is not accepted here) and the selection and
            record options; its ``dna_length`` is the window length and ``with_dna`` adds the window sequence.
        output: table path (``.tsv``/``.tsv.gz``) or ``-`` for stdout.
        fasta_prefix: write ``P.rna.fa`` and ``P.protein.fa`` (and ``P.dna.fa`` with
            ``with_dna``) when set.
        command_args: the command-line arguments the table records in its provenance.
    """

    source: TripleSource
    output: str = STDOUT
    fasta_prefix: str | None = None
    command_args: tuple[str, ...] = field(default_factory=lambda: tuple(sys.argv[1:]))

    def __post_init__(self):
        if self.source.annotation is None:
            raise InputError("isoformer triples builds triples from an annotation; give --annotation")
        if self.source.shard is not None and self.fasta_prefix is not None:
            raise InputError("--fasta-prefix cannot be combined with --shard (isoformer merge joins tables, not "
                             "FASTA files); write the FASTA files from the merged table's run without --shard")


def run_triples(config: TriplesConfig):
    """Build the triples of every selected transcript and write the outputs; returns a summary.

    Raises:
        InputError (and subclasses): bad option values, unreadable or malformed inputs, no
            contig in common, or an invalid record with ``on_invalid="fail"``. No output file
            exists after an error.
        OutputError: an output is an input or another output, an output folder is missing or
            not writable, or another run is writing an output.
    """
    source = config.source
    writer = TriplesWriter(config.output, config.fasta_prefix, source.with_dna)
    refuse_shared_files(source.input_files(),
                        [("-o/--output", config.output)] + [("--fasta-prefix", path)
                                                            for path in writer.fasta_targets.values()])
    writer.check_targets()
    summary = SourceSummary()
    with lock_outputs(*writer.targets()), Genome(source.genome) as genome:
        if source.shard is not None:
            summary = _write_shard(config, genome, writer)
            _log_summary(summary, config)
            return summary
        # The table's first line says what made it, like every other output (a shard's, written by
        # _write_shard, also records which input transcripts it holds, for isoformer merge).
        writer.provenance = build_provenance(list(config.command_args), None,
                                             {"genome": source.genome, "annotation": source.annotation},
                                             units=None)
        workers = parallel_workers(source)
        with writer:
            if workers:
                with progress(desc="triples", unit=" transcripts") as bar:
                    in_parallel = write_in_parallel(source, genome, writer, summary, workers, bar.update)
            if not (workers and in_parallel):
                # The sequential pass; after parts written in parallel it goes on from the first row not
                # written (the rows before it are the same), and reports what stopped the parts.
                written = writer.rows
                summary = SourceSummary()
                triples = progress(iter_triples(source, genome, summary), desc="triples", unit=" transcripts")
                for triple in itertools.islice(triples, written, None):
                    writer.write(triple)
    _log_summary(summary, config)
    return summary


def _write_shard(config, genome, writer):
    """A shard's table in one pass over the annotation. Its first line records which input transcripts it
    holds (for isoformer merge), known only at the end: the rows wait in a temporary file until then."""
    source = config.source
    summary = SourceSummary()
    ordinals = []
    with tempfile.TemporaryFile("w+", encoding="utf-8", newline="", prefix="isoformer-shard-") as spool:
        for triple in progress(iter_triples(source, genome, summary, ordinals), desc="triples",
                               unit=" transcripts"):
            spool.write(format_row(triple, source.with_dna))
        provenance = build_provenance(list(config.command_args), None,
                                      {"genome": source.genome, "annotation": source.annotation}, units=None)
        writer.provenance = with_shard(provenance, source.own_shard(), ordinals)
        spool.seek(0)
        with writer:
            writer.write_text("", {}, len(ordinals))
            for block in iter(lambda: spool.read(SPOOL_BLOCK), ""):
                writer.write_text(block, {}, 0)
    return summary


def _log_summary(summary, config):
    log.info(
        "transcripts: %d read, %d selected, %d written, %d skipped as invalid, %d on contigs missing "
        "from the genome%s", summary.transcripts_read, summary.selected, summary.yielded,
        summary.skipped_invalid, summary.skipped_missing_contig,
        f", {summary.other_shards} in other shards" if config.source.shard is not None else "",
    )
    if summary.flag_counts:
        log.info("flags: %s", ", ".join(f"{flag} {count}" for flag, count in summary.flag_counts.items()))
    if summary.missing_contigs:
        log.info("contigs missing from the genome: %s",
                 ", ".join(f"{contig} ({count})" for contig, count in summary.missing_contigs.items()))
    if config.output != STDOUT:
        log.info("wrote %s", config.output)
