"""``isoformer triples`` as one plain function: genome + annotation -> triples table (+ FASTA).

The pass is streaming: the annotation reader yields one contig's transcripts at a time, each
transcript is built and written at once, and nothing grows with the annotation except counters.
Order of checks, so that a bad run fails early and never leaves a partial file:

1. option values (``--dna-length``, ``--on-invalid``, ``--orf``, selection syntax);
2. output folders writable;
3. genome FASTA opens (and is indexed) and the annotation opens and is recognised;
4. the pass: every error raised while reading, building or writing discards all outputs;
5. contigs: annotation contigs missing from the FASTA are logged with their transcript counts,
   and the run fails (outputs discarded) when none matched.

Selection, building and ``--on-invalid`` are shared with ``isoformer predict`` through
:func:`isoformer_cli.pipeline.sources.iter_triples`.
"""

import logging
from dataclasses import dataclass
from typing import Optional, Tuple

from isoformer_cli.io.genome import Genome
from isoformer_cli.outputs.atomic import STDOUT
from isoformer_cli.outputs.triples_table import TriplesWriter
from isoformer_cli.pipeline.sources import SourceSummary, TripleSource, iter_triples
from isoformer_cli.progress import progress
from isoformer_cli.triples.dna_window import DEFAULT_DNA_LENGTH
from isoformer_cli.triples.orf import DEFAULT_MIN_ORF_LENGTH

log = logging.getLogger(__name__)


@dataclass
class TriplesConfig:
    """Everything ``isoformer triples`` needs, as plain values (the CLI fills it from options).

    Attributes:
        genome: genome FASTA (plain or BGZF).
        annotation: GTF/GFF3 (plain or gzip).
        output: table path (``.tsv``/``.tsv.gz``) or ``-`` for stdout.
        dna_length: DNA window length (positive, even).
        with_dna: write the window sequence (``dna`` column, ``P.dna.fa``).
        fasta_prefix: write ``P.rna.fa`` and ``P.protein.fa`` (and ``P.dna.fa``) when set.
        on_invalid: ``flag``, ``skip`` or ``fail`` for records with an invalid flag.
        orf: ``none`` or ``longest``.
        min_orf_length: minimum predicted ORF length, amino acids.
        transcripts, genes: comma-separated ids or ``@file`` (see triples.selection).
        region: ``chr:start-end``, 1-based inclusive.
        biotypes: keep only these biotypes (empty: all).
        coding_only: keep only transcripts with an annotated CDS.
        contig_alias: contig alias file (see io.contigs).
    """

    genome: str
    annotation: str
    output: str = STDOUT
    dna_length: int = DEFAULT_DNA_LENGTH
    with_dna: bool = False
    fasta_prefix: Optional[str] = None
    on_invalid: str = "flag"
    orf: str = "none"
    min_orf_length: int = DEFAULT_MIN_ORF_LENGTH
    transcripts: Optional[str] = None
    genes: Optional[str] = None
    region: Optional[str] = None
    biotypes: Tuple[str, ...] = ()
    coding_only: bool = False
    contig_alias: Optional[str] = None

    def source(self):
        """The :class:`TripleSource` these options describe (InputError on a bad value)."""
        source = TripleSource(
            genome=self.genome, annotation=self.annotation, dna_length=self.dna_length, with_dna=self.with_dna,
            on_invalid=self.on_invalid, orf=self.orf, min_orf_length=self.min_orf_length,
            transcripts=self.transcripts, genes=self.genes, region=self.region, biotypes=tuple(self.biotypes),
            coding_only=self.coding_only, contig_alias=self.contig_alias,
        )
        source.selection()  # selection syntax errors surface here, before any input is read
        return source


def run_triples(config):
    """Build the triples of every selected transcript and write the outputs; returns a summary.

    Raises:
        InputError (and subclasses): bad option values, unreadable or malformed inputs, no
            contig in common, or an invalid record with ``on_invalid="fail"``. No output file
            exists after an error.
        OutputError: an output folder is missing or not writable.
    """
    source = config.source()
    writer = TriplesWriter(config.output, config.fasta_prefix, config.with_dna)
    writer.check_targets()
    summary = SourceSummary()
    with Genome(config.genome) as genome, writer:
        for triple in progress(iter_triples(source, genome, summary), desc="triples", unit=" transcripts"):
            writer.write(triple)
    _log_summary(summary, config)
    return summary


def _log_summary(summary, config):
    log.info(
        "transcripts: %d read, %d selected, %d written, %d skipped as invalid, %d on contigs missing "
        "from the genome", summary.transcripts_read, summary.selected, summary.yielded,
        summary.skipped_invalid, summary.skipped_missing_contig,
    )
    if summary.flag_counts:
        log.info("flags: %s", ", ".join(f"{flag} {count}" for flag, count in summary.flag_counts.items()))
    if summary.missing_contigs:
        log.info("contigs missing from the genome: %s",
                 ", ".join(f"{contig} ({count})" for contig, count in summary.missing_contigs.items()))
    if config.output != STDOUT:
        log.info("wrote %s", config.output)
