"""Where a run's triples come from: an annotation built on the fly, or a triples table.

Both paths yield :class:`~isoformer_cli.genomics.records.Triple` objects in input order, with the
DNA window spanning the *model's* window length around the TSS (``dna_length``), so that
``isoformer predict --annotation`` and ``isoformer predict --triples`` give the same table. DNA
sequence is never held here: windows are coordinates, fetched lazily by the caller.

A source is described by a picklable :class:`TripleSource`, so DataLoader workers and
``torchrun`` ranks can each open their own genome and annotation handles.
"""

import collections
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from isoformer_cli.errors import InputError
from isoformer_cli.genomics.annotation import read_annotation
from isoformer_cli.genomics.contigs import ContigAliases, ContigMatcher
from isoformer_cli.formats.triples_table import read_triples_table
from isoformer_cli.triples.builder import BuildOptions, TripleBuilder
from isoformer_cli.triples.dna_window import DEFAULT_DNA_LENGTH, is_padded, window_span
from isoformer_cli.genomics.flags import ON_INVALID_CHOICES, WINDOW_PADDED, format_flags, invalid_flags
from isoformer_cli.triples.orf import DEFAULT_MIN_ORF_LENGTH
from isoformer_cli.genomics.records import Transcript, Triple
from isoformer_cli.genomics.selection import TranscriptSelection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TripleSource:
    """The inputs and options that define a stream of triples (plain values, picklable).

    Exactly one of ``annotation`` and ``triples`` is set. Selection options follow
    ``isoformer triples``; with ``triples`` (a table from ``isoformer triples``), ``region``
    selects by TSS because the table keeps no exon structure. ``with_dna`` fetches each window's
    sequence into ``Triple.dna`` (annotation only; for writing windows out, never for the model).
    Invalid option values raise InputError.
    """

    genome: str
    annotation: Optional[str] = None
    triples: Optional[str] = None
    dna_length: int = DEFAULT_DNA_LENGTH
    with_dna: bool = False
    on_invalid: str = "flag"
    orf: str = "none"
    min_orf_length: int = DEFAULT_MIN_ORF_LENGTH
    transcripts: Optional[str] = None
    genes: Optional[str] = None
    region: Optional[str] = None
    biotypes: Tuple[str, ...] = ()
    coding_only: bool = False
    contig_alias: Optional[str] = None

    def __post_init__(self):
        if (self.annotation is None) == (self.triples is None):
            raise InputError("give exactly one of --annotation and --triples")
        if self.on_invalid not in ON_INVALID_CHOICES:
            raise InputError(f"--on-invalid must be one of {', '.join(ON_INVALID_CHOICES)}, not {self.on_invalid!r}")
        self.build_options()  # BuildOptions checks dna_length, orf and min_orf_length
        self.selection()  # the selection's syntax (and any @FILE of ids)

    def build_options(self):
        """The builder's :class:`BuildOptions` (InputError for a bad value)."""
        return BuildOptions(dna_length=self.dna_length, with_dna=self.with_dna, orf=self.orf,
                            min_orf_length=self.min_orf_length)

    def with_dna_length(self, dna_length):
        """This source with another window length (a model's), validated again."""
        return dataclasses.replace(self, dna_length=dna_length)

    @property
    def label(self):
        """The input file the triples come from, for messages."""
        return self.annotation or self.triples

    def input_files(self):
        """``(option, path)`` of every file this source reads, for the same-file check of outputs.

        The genome's index files count too: the tool writes them on first use and reads them after.
        """
        files = [("--genome", self.genome), ("--genome (index)", f"{self.genome}.fai"),
                 ("--genome (index)", f"{self.genome}.gzi"), ("--annotation", self.annotation),
                 ("--triples", self.triples), ("--contig-alias", self.contig_alias)]
        for option, value in (("--transcripts", self.transcripts), ("--genes", self.genes)):
            if value and value.startswith("@"):
                files.append((option, value[1:]))
        return files

    def selection(self):
        """A fresh :class:`TranscriptSelection` for one pass (InputError on bad syntax)."""
        return TranscriptSelection.from_options(
            transcripts=self.transcripts, genes=self.genes, region=self.region,
            biotypes=list(self.biotypes) or None, coding_only=self.coding_only,
        )


@dataclass
class SourceSummary:
    """Counts of one pass over a source (filled in while iterating)."""

    transcripts_read: int = 0
    selected: int = 0
    yielded: int = 0
    skipped_invalid: int = 0
    skipped_missing_contig: int = 0
    flag_counts: Dict[str, int] = field(default_factory=dict)


def iter_triples(source, genome, summary=None):
    """Yield the triples of ``source`` in input order, applying selection and ``on_invalid``.

    Args:
        source: a :class:`TripleSource`.
        genome: an open :class:`~isoformer_cli.genomics.genome.Genome` of ``source.genome``.
        summary: optional :class:`SourceSummary` updated as records go by.

    Raises:
        InputError (and subclasses): malformed inputs, no contig in common, or an invalid
            record with ``on_invalid="fail"``.
    """
    summary = summary if summary is not None else SourceSummary()
    flag_counts = collections.Counter()
    selection = source.selection()
    aliases = ContigAliases(genome.contigs, alias_file=source.contig_alias)
    selection.check_region(aliases)
    matcher = ContigMatcher(aliases, annotation_label=source.label)
    if source.annotation is not None:
        triples = _built_triples(source, genome, selection, aliases, matcher, summary)
    else:
        triples = _table_triples(source, genome, selection, aliases, matcher, summary)
    for triple in triples:
        flag_counts.update(triple.flags)
        bad = invalid_flags(triple.flags)
        if bad:
            if source.on_invalid == "fail":
                raise InputError(
                    f"{triple.transcript.source or source.label}: transcript {triple.transcript.transcript_id} "
                    f"is invalid ({format_flags(bad)}); use --on-invalid flag to keep it flagged "
                    "or --on-invalid skip to leave it out"
                )
            if source.on_invalid == "skip":
                summary.skipped_invalid += 1
                continue
        summary.yielded += 1
        yield triple
    summary.flag_counts = dict(sorted(flag_counts.items()))
    mapping = matcher.finish()  # logs contigs missing from the genome; raises ContigError when none matched
    summary.missing_contigs = {contig: matcher.counts[contig] for contig, target in mapping.items() if target is None}
    selection.warn_unmatched(annotation_label=source.label)


def _built_triples(source, genome, selection, aliases, matcher, summary):
    builder = TripleBuilder(genome, source.build_options())
    reader = read_annotation(source.annotation)
    for transcript in selection.filter(reader, aliases=aliases):
        summary.selected += 1
        genome_chrom = matcher.resolve(transcript.chrom)
        if genome_chrom is None:
            summary.skipped_missing_contig += 1
            continue
        yield builder.build(transcript, genome_chrom)
    summary.transcripts_read = reader.summary.transcripts


def _table_triples(source, genome, selection, aliases, matcher, summary):
    for row in read_triples_table(source.triples):
        summary.transcripts_read += 1
        # The table keeps no exon structure: the transcript is represented by its TSS, so
        # --region selects by TSS, and coding status comes from the CDS columns.
        transcript = Transcript(
            transcript_id=row.transcript_id, gene_id=row.gene_id, gene_name=row.gene_name,
            biotype=row.biotype, chrom=row.chrom, strand=row.strand, exons=[(row.tss, row.tss + 1)],
            cds=[(row.tss, row.tss + 1)] if row.cds_start is not None else [],
            source=f"{source.triples}:{row.line}",
        )
        if not selection.matches(transcript, aliases):
            continue
        summary.selected += 1
        genome_chrom = matcher.resolve(row.chrom)
        if genome_chrom is None:
            summary.skipped_missing_contig += 1
            continue
        # The window follows the model's length, whatever length the table was built with.
        window_start, window_end = window_span(row.tss, row.strand, source.dna_length)
        flags = set(row.flags) - {WINDOW_PADDED}
        if is_padded(window_start, window_end, genome.length(genome_chrom)):
            flags.add(WINDOW_PADDED)
        yield Triple(
            transcript=transcript, genome_chrom=genome_chrom, tss=row.tss,
            window_start=window_start, window_end=window_end, cds_start=row.cds_start, cds_end=row.cds_end,
            rna=row.rna, protein=row.protein, flags=tuple(sorted(flags)),
        )

