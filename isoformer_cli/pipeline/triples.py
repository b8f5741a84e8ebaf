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
"""

import collections
import logging
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from isoformer_cli.errors import InputError
from isoformer_cli.io.annotation import read_annotation
from isoformer_cli.io.contigs import ContigAliases, ContigMatcher
from isoformer_cli.io.genome import Genome
from isoformer_cli.outputs.atomic import STDOUT
from isoformer_cli.outputs.triples_table import TriplesWriter
from isoformer_cli.progress import progress
from isoformer_cli.triples.builder import BuildOptions, TripleBuilder
from isoformer_cli.triples.dna_window import DEFAULT_DNA_LENGTH, check_dna_length
from isoformer_cli.triples.flags import ON_INVALID_CHOICES, format_flags, invalid_flags
from isoformer_cli.triples.orf import DEFAULT_MIN_ORF_LENGTH, ORF_CHOICES
from isoformer_cli.triples.selection import TranscriptSelection

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


@dataclass
class TriplesSummary:
    """Counts of one run (logged at the end, returned for tests)."""

    transcripts_read: int = 0
    selected: int = 0
    written: int = 0
    skipped_invalid: int = 0
    skipped_missing_contig: int = 0
    flag_counts: Dict[str, int] = field(default_factory=dict)
    missing_contigs: Dict[str, int] = field(default_factory=dict)


def build_options(config):
    """Check the option values of ``config``; the :class:`BuildOptions` they describe.

    Raises InputError for a value the command line should reject as a usage error.
    """
    check_dna_length(config.dna_length)
    if config.on_invalid not in ON_INVALID_CHOICES:
        raise InputError(f"--on-invalid must be one of {', '.join(ON_INVALID_CHOICES)}, not {config.on_invalid!r}")
    if config.orf not in ORF_CHOICES:
        raise InputError(f"--orf must be one of {', '.join(ORF_CHOICES)}, not {config.orf!r}")
    if config.min_orf_length < 1:
        raise InputError(f"--min-orf-length must be at least 1 amino acid, not {config.min_orf_length}")
    return BuildOptions(dna_length=config.dna_length, with_dna=config.with_dna, orf=config.orf,
                        min_orf_length=config.min_orf_length)


def build_selection(config):
    """The :class:`TranscriptSelection` of ``config`` (InputError on bad syntax)."""
    return TranscriptSelection.from_options(
        transcripts=config.transcripts, genes=config.genes, region=config.region,
        biotypes=list(config.biotypes) or None, coding_only=config.coding_only,
    )


def run_triples(config):
    """Build the triples of every selected transcript and write the outputs; returns a summary.

    Raises:
        InputError (and subclasses): bad option values, unreadable or malformed inputs, no
            contig in common, or an invalid record with ``on_invalid="fail"``. No output file
            exists after an error.
        OutputError: an output folder is missing or not writable.
    """
    options = build_options(config)
    selection = build_selection(config)
    writer = TriplesWriter(config.output, config.fasta_prefix, config.with_dna)
    writer.check_targets()
    summary = TriplesSummary()
    flag_counts = collections.Counter()

    with Genome(config.genome) as genome:
        aliases = ContigAliases(genome.contigs, alias_file=config.contig_alias)
        selection.check_region(aliases)
        reader = read_annotation(config.annotation)
        matcher = ContigMatcher(aliases, annotation_label=config.annotation)
        builder = TripleBuilder(genome, options)
        with writer:
            selected = selection.filter(reader, aliases=aliases)
            for transcript in progress(selected, desc="triples", unit=" transcripts"):
                summary.selected += 1
                genome_chrom = matcher.resolve(transcript.chrom)
                if genome_chrom is None:
                    summary.skipped_missing_contig += 1
                    continue
                triple = builder.build(transcript, genome_chrom)
                flag_counts.update(triple.flags)
                bad = invalid_flags(triple.flags)
                if bad:
                    if config.on_invalid == "fail":
                        raise InputError(
                            f"{transcript.source or config.annotation}: transcript {transcript.transcript_id} "
                            f"is invalid ({format_flags(bad)}); use --on-invalid flag to keep it flagged "
                            "or --on-invalid skip to leave it out"
                        )
                    if config.on_invalid == "skip":
                        summary.skipped_invalid += 1
                        continue
                writer.write(triple)
            mapping = matcher.finish()
        summary.written = writer.rows

    summary.transcripts_read = reader.summary.transcripts
    summary.flag_counts = dict(sorted(flag_counts.items()))
    summary.missing_contigs = {contig: matcher.counts[contig] for contig, target in mapping.items() if target is None}
    selection.warn_unmatched(annotation_label=config.annotation)
    _log_summary(summary, config)
    return summary


def _log_summary(summary, config):
    # The contigs missing from the genome were already listed, with counts, by ContigMatcher.finish.
    log.info(
        "transcripts: %d read, %d selected, %d written, %d skipped as invalid, %d on contigs missing "
        "from the genome", summary.transcripts_read, summary.selected, summary.written,
        summary.skipped_invalid, summary.skipped_missing_contig,
    )
    if summary.flag_counts:
        log.info("flags: %s", ", ".join(f"{flag} {count}" for flag, count in summary.flag_counts.items()))
    if config.output != STDOUT:
        log.info("wrote %s", config.output)
