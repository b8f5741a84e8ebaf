"""Where a run's triples come from: an annotation built on the fly, or a triples table.

Both paths yield :class:`~isoformer_cli.genomics.records.Triple` objects in input order, with the
DNA window spanning the *model's* window length around the TSS (``dna_length``), so that
``isoformer predict --annotation`` and ``isoformer predict --triples`` give the same table. DNA
sequence is never held here: windows are coordinates, fetched lazily by the caller.

A source is described by a picklable :class:`TripleSource`, so DataLoader workers and
``torchrun`` ranks can each open their own genome and annotation handles.

Sharding (``--shard K/N``, :mod:`isoformer_cli.genomics.shards`) is the last selection step: a transcript
that passes the other filters is kept when its gene falls in the shard. Each transcript has an *ordinal*,
its position among the input's transcripts (annotation) or rows (triples table) counted from 0 before any
selection; :func:`shard_ordinals` lists the ordinals a run yields, which a shard's outputs record so that
``isoformer merge`` can interleave shards back into input order. A triples table written by a shard run
carries its shard and ordinals along: reading it yields the same ordinals and the same shard.
"""

import collections
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from isoformer_cli.errors import InputError, check_choice
from isoformer_cli.genomics.annotation import read_annotation
from isoformer_cli.genomics.contigs import ContigAliases, ContigMatcher
from isoformer_cli.formats.sharding import SHARD_KEY, decode_order
from isoformer_cli.formats.triples_table import read_triples_provenance, read_triples_table
from isoformer_cli.triples.builder import BuildOptions, TripleBuilder
from isoformer_cli.triples.dna_window import DEFAULT_DNA_LENGTH, is_padded, window_span
from isoformer_cli.genomics.flags import ON_INVALID_CHOICES, WINDOW_PADDED, format_flags, invalid_flags
from isoformer_cli.triples.orf import DEFAULT_MIN_ORF_LENGTH
from isoformer_cli.genomics.records import Transcript, Triple
from isoformer_cli.genomics.selection import TranscriptSelection
from isoformer_cli.genomics.shards import gene_key, parse_shard

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
    shard: Optional[str] = None

    def __post_init__(self):
        if (self.annotation is None) == (self.triples is None):
            raise InputError("give exactly one of --annotation and --triples")
        check_choice("--on-invalid", self.on_invalid, ON_INVALID_CHOICES)
        self.build_options()  # BuildOptions checks dna_length, orf and min_orf_length
        self.selection()  # the selection's syntax (and any @FILE of ids)
        if self.shard is not None:
            parse_shard(self.shard)

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

    def own_shard(self):
        """The :class:`~isoformer_cli.genomics.shards.Shard` of ``--shard``, or None."""
        return parse_shard(self.shard) if self.shard is not None else None

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
    other_shards: int = 0
    flag_counts: Dict[str, int] = field(default_factory=dict)


def source_shard(source):
    """The shard a run of ``source`` yields: its own ``--shard``, or the shard a sharded triples table came
    from (``None`` when neither). InputError when a sharded table is sharded again."""
    own = source.own_shard()
    if source.triples is None:
        return own
    inherited = read_triples_provenance(source.triples).get(SHARD_KEY)
    if inherited is None:
        return own
    if own is not None:
        raise InputError(f"{source.triples}: this triples table is already shard {inherited['shard']}; "
                         "drop --shard (or shard the annotation itself)")
    return parse_shard(inherited["shard"])


def shard_source_inputs(source):
    """For a run on a shard's triples table, the inputs that table was built from (its provenance's
    ``inputs``); None otherwise."""
    if source.triples is None:
        return None
    provenance = read_triples_provenance(source.triples)
    return provenance.get("inputs") if SHARD_KEY in provenance else None


def iter_triples(source, genome, summary=None, ordinals=None):
    """Yield the triples of ``source`` in input order, applying selection, the shard and ``on_invalid``.

    Args:
        source: a :class:`TripleSource`.
        genome: an open :class:`~isoformer_cli.genomics.genome.Genome` of ``source.genome``.
        summary: optional :class:`SourceSummary` updated as records go by.
        ordinals: optional list; the ordinal (module docstring) of each yielded triple is appended to it,
            so one pass gives both the triples and what :func:`shard_ordinals` would.

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
    build = _builder(source, genome)
    for ordinal, transcript, row, genome_chrom in _candidates(source, selection, aliases, matcher, summary):
        triple = build(transcript, row, genome_chrom)
        if keep_triple(triple, source, summary, flag_counts):
            if ordinals is not None:
                ordinals.append(ordinal)
            yield triple
    summary.flag_counts = dict(sorted(flag_counts.items()))
    mapping = matcher.finish()  # logs contigs missing from the genome; raises ContigError when none matched
    summary.missing_contigs = {contig: matcher.counts[contig] for contig, target in mapping.items() if target is None}
    selection.report_unmatched(annotation_label=source.label)


def keep_triple(triple, source, summary, flag_counts):
    """Whether ``triple`` is yielded under ``source.on_invalid``; counts its flags and the outcome in
    ``flag_counts`` (a Counter) and ``summary``. InputError for an invalid triple with ``"fail"``."""
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
            return False
    summary.yielded += 1
    return True


def shard_ordinals(source, genome):
    """The ordinals (module docstring) of the triples :func:`iter_triples` yields for ``source``, in order,
    without logging. Only ``--on-invalid skip`` needs the triples built (to know which are invalid)."""
    selection = source.selection()
    aliases = ContigAliases(genome.contigs, alias_file=source.contig_alias)
    matcher = ContigMatcher(aliases, annotation_label=source.label)
    build = _builder(source, genome) if source.on_invalid == "skip" else None
    ordinals = []
    for ordinal, transcript, row, genome_chrom in _candidates(source, selection, aliases, matcher, SourceSummary()):
        if build is None or not invalid_flags(build(transcript, row, genome_chrom).flags):
            ordinals.append(ordinal)
    return ordinals


def _candidates(source, selection, aliases, matcher, summary):
    """``(ordinal, transcript, row, genome_chrom)`` of every input transcript that passes the selection and
    the shard and whose contig is in the genome; ``row`` is its TripleRow (table) or None (annotation)."""
    shard = source_shard(source)
    if source.annotation is not None:
        reader = read_annotation(source.annotation)
        selected = ((ordinal, transcript, None) for ordinal, transcript in enumerate(reader)
                    if selection.selects_all or selection.matches(transcript, aliases))
    else:
        reader = None
        selected = _table_rows(source, selection, aliases, summary)
    for ordinal, transcript, row in selected:
        summary.selected += 1
        if shard is not None and not shard.holds(gene_key(transcript.gene_id, transcript.transcript_id)):
            summary.other_shards += 1
            continue
        genome_chrom = matcher.resolve(transcript.chrom)
        if genome_chrom is None:
            summary.skipped_missing_contig += 1
            continue
        yield ordinal, transcript, row, genome_chrom
    if reader is not None:
        summary.transcripts_read = reader.summary.transcripts


def _table_rows(source, selection, aliases, summary):
    """``(ordinal, transcript, row)`` of the selected rows of a triples table; the ordinal is the row's
    position, or the one its shard run recorded."""
    recorded = read_triples_provenance(source.triples).get(SHARD_KEY)
    order = decode_order(recorded["order"], source.triples) if recorded else None
    for index, row in enumerate(read_triples_table(source.triples)):
        summary.transcripts_read += 1
        if order is not None and index >= len(order):
            raise InputError(f"{source.triples}:{row.line}: the table holds more rows than its shard order "
                             f"lists ({len(order)}); write it again with isoformer triples")
        # The table keeps no exon structure: the transcript is represented by its TSS, so
        # --region selects by TSS, and coding status comes from the CDS columns.
        transcript = Transcript(
            transcript_id=row.transcript_id, gene_id=row.gene_id, gene_name=row.gene_name,
            biotype=row.biotype, chrom=row.chrom, strand=row.strand, exons=[(row.tss, row.tss + 1)],
            cds=[(row.tss, row.tss + 1)] if row.cds_start is not None else [],
            source=f"{source.triples}:{row.line}",
        )
        if selection.matches(transcript, aliases):
            yield (order[index] if order is not None else index), transcript, row


def _builder(source, genome):
    """``build(transcript, row, genome_chrom) -> Triple`` for what :func:`_candidates` yields."""
    if source.annotation is not None:
        builder = TripleBuilder(genome, source.build_options())
        return lambda transcript, row, genome_chrom: builder.build(transcript, genome_chrom)

    def from_row(transcript, row, genome_chrom):
        # The window follows the model's length, whatever length the table was built with.
        window_start, window_end = window_span(row.tss, row.strand, source.dna_length)
        flags = set(row.flags) - {WINDOW_PADDED}
        if is_padded(window_start, window_end, genome.length(genome_chrom)):
            flags.add(WINDOW_PADDED)
        return Triple(
            transcript=transcript, genome_chrom=genome_chrom, tss=row.tss,
            window_start=window_start, window_end=window_end, cds_start=row.cds_start, cds_end=row.cds_end,
            rna=row.rna, protein=row.protein, flags=tuple(sorted(flags)),
        )

    return from_row
