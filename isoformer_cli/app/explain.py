"""``isoformer explain`` as a plain function: which bases, exons and residues drive an isoform's prediction.

For each selected transcript (at most ``max_transcripts``) the target (one tissue's prediction, or the mean over
tissues) is attributed to every position the model reads (:mod:`isoformer_cli.inference.explain`): each base of
the DNA window, each RNA token, each protein residue. RNA tokens are spread over their bases: a 6-mer token's
attribution is divided equally among its six bases (a single-base or N token keeps its own), so the bases of a
token sum to the token's attribution and the per-base RNA track sums to the RNA total. DNA positions are bases
already (Enformer; with a Nucleotide Transformer DNA encoder its 6-mers are spread the same way).

With cross-attention fusion the DNA->RNA and DNA->protein attention weights of every block and head are written
too: per key position, the weight averaged over the DNA query bins (so a head's weights sum to 1 over its keys),
then summed per transcript region (``attention.tsv``).

``--method ism --region`` scores every SNV of the region (three per reference base; N bases have none) through
``isoformer variants`` itself (:func:`isoformer_cli.app.variants.run_variants` on a VCF of those SNVs), so its
``ism.tsv`` is the variants table of the same SNVs; the track holds, per base, the largest absolute change of
the target over the three alleles.

Outputs go to a partial folder inside DIR and are moved in when the run completes
(:class:`~isoformer_cli.formats.explain.ExplainFolder`).
"""

import csv
import logging
import os
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from isoformer_cli.app.outputs import locked
from isoformer_cli.errors import InputError, OutputError, check_choice
from isoformer_cli.formats.collisions import refuse_shared_files
from isoformer_cli.formats.explain import (
    ATTENTION_FIELDS,
    MISSING,
    REGION_FIELDS,
    SUMMARY_FIELDS,
    AttributionArrays,
    ExplainFolder,
    track_name,
    write_table,
    write_track,
)
from isoformer_cli.formats.provenance import build_provenance, units_label
from isoformer_cli.genomics.genome import Genome
from isoformer_cli.genomics.selection import parse_region
from isoformer_cli.inference.explain import DEFAULT_STEPS, MEAN_TARGET, METHODS, Explainer
from isoformer_cli.inference.prepare import model_tokens
from isoformer_cli.inference.runner import ModelRunner
from isoformer_cli.models.distribution.locate import locate_checkpoint
from isoformer_cli.runtime.memory import memory_budget
from isoformer_cli.runtime.options import RuntimeOptions
from isoformer_cli.runtime.setup import model_run
from isoformer_cli.triples.dna_window import fetch_window
from isoformer_cli.triples.positions import (
    exons_in_transcript_order,
    rna_genome_positions,
    rna_regions,
    window_genome_positions,
    window_regions,
)
from isoformer_cli.triples.source import TripleSource, iter_triples

log = logging.getLogger(__name__)

ISM = "ism"
ALL_METHODS = METHODS + (ISM,)
DEFAULT_MAX_TRANSCRIPTS = 20
DEFAULT_MAX_POSITIONS = 2000
PROTEIN_WINDOW = 50
ISM_SUFFIX = "ism"


@dataclass(frozen=True)
class ExplainConfig:
    """``isoformer explain``, validated once when built (InputError for a bad value).

    Attributes:
        source: the transcripts (an annotation: regions need the exon structure).
        output: the folder DIR.
        target: a tissue of the checkpoint, or ``mean`` (checked against the checkpoint when it is loaded).
        method: ``integrated-gradients``, ``saliency`` or ``ism``; steps: integration steps.
        region: ``CHR:START-END`` (1-based, inclusive) of ``ism``.
        max_transcripts, max_positions: caps on the transcripts explained and the ISM bases.
        plot: write ``plots/TRANSCRIPT.png`` per transcript (needs matplotlib).
    """

    source: TripleSource
    output: str = ""
    checkpoint: Optional[str] = None
    model_dir: Optional[str] = None
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    rna_truncation: str = "keep_start"
    protein_truncation: str = "keep_start"
    target: str = MEAN_TARGET
    method: str = "integrated-gradients"
    steps: int = DEFAULT_STEPS
    region: Optional[str] = None
    max_transcripts: int = DEFAULT_MAX_TRANSCRIPTS
    max_positions: int = DEFAULT_MAX_POSITIONS
    plot: bool = False
    command_args: Tuple[str, ...] = field(default_factory=lambda: tuple(sys.argv[1:]))

    def __post_init__(self):
        if not self.output:
            raise InputError("isoformer explain needs -o/--output DIR")
        if self.source.annotation is None:
            raise InputError("isoformer explain needs --annotation (regions and tracks need the exon structure)")
        check_choice("--method", self.method, ALL_METHODS)
        if self.steps < 1:
            raise InputError(f"--steps must be at least 1, not {self.steps}")
        for option, value in (("--max-transcripts", self.max_transcripts), ("--max-positions", self.max_positions)):
            if value < 1:
                raise InputError(f"{option} must be at least 1, not {value}")
        if self.method == ISM and not self.region:
            raise InputError("--method ism needs --region CHR:START-END (the bases to mutate)")
        if self.method != ISM and self.region:
            raise InputError("--region is the region of --method ism; the gradient methods explain whole inputs")
        if self.region:
            parse_region(self.region)
        if self.plot:
            from isoformer_cli.formats.explain_plot import check_matplotlib

            check_matplotlib()


def run_explain(config):
    """Explain every selected transcript; returns the number of transcripts explained.

    Raises the typed errors of the inputs, checkpoint and outputs; after an error no output of the run is in
    DIR.
    """
    checked = locate_checkpoint(config.checkpoint, config.model_dir)
    inputs = config.source.input_files() + checked.files()
    refuse_shared_files(inputs, {}, {"-o/--output": config.output})
    _make_folder(config.output)
    summary_path = os.path.join(config.output, "summary.tsv")
    with locked(summary_path):
        source = config.source.with_dna_length(checked.config.dna_length)
        with Genome(source.genome) as genome:
            triples = _selected(source, genome, config.max_transcripts)
        if config.method == ISM:
            return _ism(config, checked, source, triples)
        return _gradients(config, checked, triples)


def _make_folder(folder):
    """Create the output folder (and its parents) if needed; OutputError when it cannot be one."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise OutputError(f"{folder}: -o/--output names a folder, but this is a file; choose another path")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the output folder: {exc.strerror}") from exc


def _selected(source, genome, cap):
    triples = []
    for triple in iter_triples(source, genome):
        triples.append(triple)
        if len(triples) > cap:
            raise InputError(f"more than --max-transcripts {cap} transcripts selected; select fewer with "
                             "--transcripts or --genes, or raise --max-transcripts")
    if not triples:
        raise InputError("no transcript selected: check --transcripts / --genes against the annotation")
    return triples


def tissue_index(target, tissues):
    """The column of ``target`` among ``tissues``, None for the mean; InputError naming the choices."""
    if target == MEAN_TARGET:
        return None
    if target not in tissues:
        raise InputError(f"--target {target!r} is not a tissue of this checkpoint; choose mean or one of: "
                         + ", ".join(tissues))
    return list(tissues).index(target)


def spread(values, spans, length):
    """Per-base values ``(length,)`` from per-position ``values`` (L,) and their base ``spans`` (L, 2): each
    position's value divided equally among its bases; NaN on bases no position reads."""
    bases = np.full(length, np.nan)
    for value, (start, end) in zip(values, spans):
        if start < 0 or end <= start:
            continue
        segment = bases[start:end]
        bases[start:end] = np.where(np.isnan(segment), 0.0, segment) + value / (end - start)
    return bases


def _provenance(config, runner_or_checked_dir, demo, demo_derived, units):
    inputs = {"genome": config.source.genome, "annotation": config.source.annotation}
    return build_provenance(list(config.command_args), runner_or_checked_dir, inputs, units=units, demo=demo,
                            demo_derived=demo_derived)


def _gradients(config, checked, triples):
    with model_run(config.runtime) as context:
        runner = ModelRunner(context, checked, config.source, config.rna_truncation, config.protein_truncation)
        model_config = runner.model.config
        index = tissue_index(config.target, model_config.tissues)
        explainer = Explainer(runner.model, context.device, context.precision,
                              memory_budget(context.device, context.max_memory))
        provenance = _provenance(config, runner.checkpoint_dir, runner.demo, runner.demo_derived,
                                 units_label(model_config.target_units))
        summaries, regions, attention = [], [], []
        with ExplainFolder(config.output) as folder:
            arrays = AttributionArrays(folder.path("attributions.h5"), provenance)
            try:
                for number, triple in enumerate(triples, 1):
                    log.info("explaining %s (%d of %d)", triple.transcript.transcript_id, number, len(triples))
                    result = _explain_one(config, runner, explainer, triple, index, folder, arrays)
                    summaries.append(result["summary"])
                    regions.extend(result["regions"])
                    attention.extend(result["attention"])
            finally:
                arrays.close()
            target_note = f"target: {config.target}; method: {config.method}"
            write_table(folder.path("summary.tsv"), SUMMARY_FIELDS, summaries, provenance,
                        "isoformer explain summary", [target_note, _units_note(provenance)])
            write_table(folder.path("regions.tsv"), REGION_FIELDS, regions, provenance,
                        "isoformer explain regions", [target_note, "attribution summed over the region's positions"])
            if attention:
                write_table(folder.path("attention.tsv"), ATTENTION_FIELDS, attention, provenance,
                            "isoformer explain cross-attention",
                            ["weight: attention of the DNA query bins averaged over bins, summed over the region's "
                             "keys; RNA start/end in transcript bases, protein in residues (0-based, half-open)"])
        log.info("%d transcripts explained into %s", len(triples), config.output)
        return len(triples)


def _units_note(provenance):
    return f"units: {provenance.get('units', 'unknown')}; attributions in the same units"


def isoform_inputs(triple, genome, settings, model_config):
    """``(inputs, sequences)`` of one triple as the model reads it: ``{modality: (L,) int64 token ids}`` (the
    tokenizers' own output) and ``{modality: the sequence they encode}`` (the DNA window in the transcript's
    orientation, the RNA, the protein), for each modality the model has and the isoform has (a non-coding
    transcript has no protein)."""
    name = triple.transcript.transcript_id
    inputs, sequences = {}, {}
    if model_config.has_dna:
        window = fetch_window(genome, triple.genome_chrom, triple.window_start, triple.window_end,
                              triple.transcript.strand)
        inputs["dna"], _ = settings.dna.encode(window, name)
        sequences["dna"] = window
    for modality, sequence, tokenizer in (("rna", triple.rna, settings.rna), ("protein", triple.protein,
                                                                              settings.protein)):
        ids, _ = model_tokens(sequence, tokenizer, name)
        if ids is not None:
            inputs[modality], sequences[modality] = ids, sequence
    return inputs, sequences


def _explain_one(config, runner, explainer, triple, index, folder, arrays):
    model_config = runner.model.config
    transcript = triple.transcript
    name = transcript.transcript_id
    genome = runner.genome
    inputs, sequences = isoform_inputs(triple, genome, runner.settings, model_config)
    explanation = explainer.explain(inputs, index, "saliency" if config.method == "saliency" else
                                    "integrated-gradients", config.steps)
    truncation = {"dna": "keep_start", "rna": config.rna_truncation, "protein": config.protein_truncation}
    spans = {modality: model_config.encoder(modality).input_spans(model_config, sequences[modality],
                                                                  truncation[modality]) for modality in inputs}
    per_base = {modality: spread(explanation.positions[modality], spans[modality], len(sequences[modality]))
                for modality in inputs}
    contig_length = genome.length(triple.genome_chrom)
    h5 = {f"{modality}_positions": explanation.positions[modality] for modality in inputs}
    regions = []
    tracks_name = track_name(name)
    if "dna" in per_base:
        positions = window_genome_positions(triple, contig_length)
        h5.update(dna=per_base["dna"], dna_genome_position=positions)
        regions += _region_rows(name, "dna", per_base["dna"], window_regions(triple, positions))
        write_track(folder, f"{tracks_name}.dna", triple.genome_chrom, positions, np.nan_to_num(per_base["dna"]),
                    f"{name} DNA attribution ({config.method}, {config.target})", genome.lengths)
    if "rna" in per_base:
        positions = rna_genome_positions(transcript)
        h5.update(rna=per_base["rna"], rna_genome_position=positions, rna_token_spans=spans["rna"])
        regions += _region_rows(name, "rna", per_base["rna"], rna_regions(triple))
        read = ~np.isnan(per_base["rna"])
        write_track(folder, f"{tracks_name}.rna", triple.genome_chrom, positions[read], per_base["rna"][read],
                    f"{name} RNA attribution ({config.method}, {config.target})", genome.lengths)
    if "protein" in per_base:
        h5.update(protein=per_base["protein"])
        regions += _region_rows(name, "protein", per_base["protein"],
                                np.full(len(per_base["protein"]), "protein", dtype=object))
    totals = {modality: float(np.nansum(per_base[modality])) if modality in per_base else None
              for modality in ("dna", "rna", "protein")}
    summary = {
        "transcript_id": name, "gene_id": transcript.gene_id or MISSING, "gene_name": transcript.gene_name or MISSING,
        "chrom": triple.genome_chrom, "strand": transcript.strand, "target": config.target, "method": config.method,
        "steps": explanation.steps, "prediction": explanation.prediction, "baseline": explanation.baseline,
        "dna_attribution": totals["dna"], "rna_attribution": totals["rna"],
        "protein_attribution": totals["protein"], "completeness_error": explanation.completeness_error,
    }
    arrays.add(name, h5, {"prediction": explanation.prediction, "baseline": explanation.baseline,
                          "completeness_error": explanation.completeness_error, "target": config.target,
                          "method": config.method, "steps": explanation.steps,
                          "window_start": triple.window_start, "window_end": triple.window_end,
                          "chrom": triple.genome_chrom, "strand": transcript.strand})
    attention = _attention_rows(name, explainer.cross_attention_weights(inputs), spans, triple)
    plot = None
    if config.plot:
        from isoformer_cli.formats.explain_plot import plot_explanation

        plot = folder.path(f"plots/{tracks_name}.png")
        plot_explanation(plot, triple, per_base, window_genome_positions(triple, contig_length)
                         if "dna" in per_base else None, rna_genome_positions(transcript),
                         f"{name} ({config.method}, target {config.target})")
    return {"summary": summary, "regions": regions, "attention": attention, "plot": plot}


def _region_rows(name, modality, values, labels):
    rows = []
    for region in dict.fromkeys(labels.tolist()):
        chosen = values[(labels == region) & ~np.isnan(values)]
        if not len(chosen):
            continue
        total = float(chosen.sum())
        rows.append({"transcript_id": name, "modality": modality, "region": region, "positions": len(chosen),
                     "attribution": total, "mean_attribution": total / len(chosen)})
    return rows


def rna_attention_regions(triple):
    """``[(label, start, end)]`` of the RNA in transcript coordinates: the 5'UTR, CDS, 3'UTR spans, then each
    exon (``exon_1`` at the 5' end)."""
    labels = rna_regions(triple)
    spans = []
    for region in dict.fromkeys(labels.tolist()):
        where = np.flatnonzero(labels == region)
        spans.append((region, int(where[0]), int(where[-1]) + 1))
    offset = 0
    for number, (start, end) in enumerate(exons_in_transcript_order(triple.transcript), 1):
        spans.append((f"exon_{number}", offset, offset + end - start))
        offset += end - start
    return spans


def _attention_rows(name, weights, spans, triple):
    rows = []
    for modality, values in weights.items():
        # (heads, query bins, keys) -> per head and key, averaged over the query bins.
        per_key = values.mean(axis=1)
        length = len(triple.rna) if modality == "rna" else len(triple.protein)
        if modality == "rna":
            parts = rna_attention_regions(triple)
        else:
            parts = [(f"residues_{start + 1}-{min(start + PROTEIN_WINDOW, length)}", start,
                      min(start + PROTEIN_WINDOW, length)) for start in range(0, length, PROTEIN_WINDOW)]
        special = np.array([start < 0 for start, _ in spans[modality]])
        for head, head_weights in enumerate(per_key):
            bases = spread(head_weights[: len(spans[modality])], spans[modality], length)
            for region, start, end in parts:
                chosen = bases[start:end]
                if np.all(np.isnan(chosen)):
                    continue
                rows.append({"transcript_id": name, "block": modality, "head": head, "region": region,
                             "start": start, "end": end, "weight": float(np.nansum(chosen))})
            rows.append({"transcript_id": name, "block": modality, "head": head, "region": "special_tokens",
                         "start": MISSING, "end": MISSING,
                         "weight": float(head_weights[: len(special)][special].sum())})
    return rows


# ------------------------------------------------------------------------------------------------- ISM


def ism_records(triples, genome, region, cap):
    """``(contig, [(pos 1-based, ref, alt)])``: every SNV of ``region`` on the bases inside at least one selected
    transcript's window (the only ones the model reads), N bases excluded.

    Raises InputError when the region misses every window or holds more than ``cap`` bases."""
    parsed = parse_region(region)
    contig = next((triple.genome_chrom for triple in triples
                   if parsed.contig in (triple.genome_chrom, triple.transcript.chrom)), None)
    covered = set()
    for triple in triples:
        if contig is None or triple.genome_chrom != contig:
            continue
        start = max(parsed.start, triple.window_start, 0)
        end = min(parsed.end, triple.window_end, genome.length(contig))
        covered.update(range(start, end))
    if not covered:
        raise InputError(f"--region {region}: outside the DNA window of every selected transcript; choose bases "
                         "within the windows (the window is centred on each TSS)")
    if len(covered) > cap:
        raise InputError(f"--region {region}: {len(covered):,} bases inside the windows, more than --max-positions "
                         f"{cap:,}; choose a smaller region or raise --max-positions")
    records = []
    for position in sorted(covered):
        ref = genome.fetch(contig, position, position + 1).upper()
        if ref not in "ACGT" or not ref:
            continue
        records.extend((position + 1, ref, alt) for alt in "ACGT" if alt != ref)
    return contig, records


def write_ism_vcf(path, contig, records, lengths):
    """A VCF of ``records`` on ``contig`` (sorted by position, one record per ALT)."""
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write("##fileformat=VCFv4.2\n")
        for name, length in lengths.items():
            out.write(f"##contig=<ID={name},length={length}>\n")
        out.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for pos, ref, alt in records:
            out.write(f"{contig}\t{pos}\t.\t{ref}\t{alt}\t.\t.\t.\n")


def read_variant_table(path):
    """``(columns, rows as dicts)`` of a variants TSV table (``#`` lines skipped)."""
    with open(path, encoding="utf-8") as handle:
        lines = (line for line in handle if not line.startswith("#"))
        reader = csv.DictReader(lines, delimiter="\t")
        return reader.fieldnames, list(reader)


def ism_track_values(rows, tissues, target):
    """``{transcript_id: {pos 1-based: largest |change of the target|}}`` over the alleles of each base."""
    largest = defaultdict(dict)
    for row in rows:
        if target == MEAN_TARGET:
            values = [float(row[f"delta:{tissue}"]) for tissue in tissues]
            change = abs(float(np.mean(values)))
        else:
            change = abs(float(row[f"delta:{target}"]))
        if not np.isfinite(change):
            continue
        by_position = largest[row["transcript_id"]]
        pos = int(row["pos"])
        by_position[pos] = max(change, by_position.get(pos, 0.0))
    return largest


def _ism(config, checked, source, triples):
    from isoformer_cli.app.variants import VariantsConfig, run_variants

    tissue_index(config.target, checked.config.tissues)
    with Genome(source.genome) as genome:
        contig, records = ism_records(triples, genome, config.region, config.max_positions)
        lengths = genome.lengths
    with ExplainFolder(config.output) as folder, tempfile.TemporaryDirectory(dir=folder.partial) as scratch:
        vcf = os.path.join(scratch, "ism.vcf")
        write_ism_vcf(vcf, contig, records, lengths)
        table = folder.path("ism.tsv")
        log.info("in-silico mutagenesis: %d SNVs of %s through isoformer variants", len(records), config.region)
        variants = VariantsConfig(source=source, checkpoint=config.checkpoint, model_dir=config.model_dir,
                                  runtime=config.runtime, rna_truncation=config.rna_truncation,
                                  protein_truncation=config.protein_truncation, vcf=vcf,
                                  output=os.path.join(scratch, "ism.out.vcf"), table=table,
                                  command_args=config.command_args)
        run_variants(variants, checked)  # the checkpoint checked above; run_variants loads it once
        _, rows = read_variant_table(table)
        tissues = list(checked.config.tissues)
        largest = ism_track_values(rows, tissues, config.target)
        for triple in triples:
            values = largest.get(triple.transcript.transcript_id)
            if not values:
                continue
            positions = np.array(sorted(values), dtype=np.int64)
            write_track(folder, f"{track_name(triple.transcript.transcript_id)}.{ISM_SUFFIX}", triple.genome_chrom,
                        positions - 1, np.array([values[pos] for pos in positions.tolist()]),
                        f"{triple.transcript.transcript_id} largest |delta| of {config.target} per base (ISM)",
                        lengths)
    log.info("%d SNVs scored on %d transcripts into %s", len(records), len(triples), config.output)
    return len(triples)
