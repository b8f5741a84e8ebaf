"""A variant allele applied to a transcript's three sequences: the alternative triple.

Coordinates: 0-based half-open genomic on the forward strand, as everywhere inside the tool; VCF's
1-based ``POS`` is converted once by the reader (:mod:`isoformer_cli.genomics.vcf`).

The alternative genome is the reference with one allele applied (:class:`AlternativeGenome`, the
``Genome.length/fetch`` interface, so :func:`~isoformer_cli.triples.dna_window.fetch_window` and the
CDS code work on it unchanged). Features are carried over to it with :func:`lift_interval`, the rule a
chain file from ``bcftools consensus`` gives when lifted with ``CrossMap bed`` and the pieces of a split
feature are merged again:

* bases before the allele keep their position, bases after it move by ``len(alt) - len(ref)``;
* a feature that contains the whole replaced stretch and at least one base on either side of it takes
  the alternative bases in (an insertion strictly inside an exon lengthens the exon);
* a feature boundary inside the replaced stretch (or an insertion exactly at a boundary) does not move
  into the new bases: the feature keeps only the bases that survive, and one whose bases are all
  deleted is lost.

Alleles are first trimmed to their minimal form (common suffix, then common prefix removed), so
``CGAT>C`` at 100 is the deletion of ``GAT`` at ``[101, 104)`` and ``G>GAAA`` inserts ``AAA`` before
101. Substitutions of equal length (SNV, MNP) map base to base.

The alternative triple (:func:`alternative_triple`):

* DNA: the window of the model's length, re-cut from the alternative genome around the transcript's
  TSS (which keeps index ``L/2``): an indel upstream of the TSS moves the far upstream end of the window
  (a deletion brings in more genome there, an insertion pushes bases out), one downstream moves the far
  downstream end; past a contig end the window is N as usual. A variant that deletes the TSS base cannot
  be scored this way (status ``tss_deleted``).
* RNA: the lifted exons spliced from the alternative genome (the reference RNA when no exon changes).
* protein: the lifted CDS translated by the reference's own rule (:mod:`isoformer_cli.triples.protein`):
  internal stops of the reference that the allele leaves in place are read through as in the reference, a
  stop the allele creates ends the protein early, a lost stop or a frameshift reads on into the 3' UTR (to
  the end of the RNA when no stop comes), and an in-frame change elsewhere ends at the annotated end as the
  reference does; no protein when the start codon is lost or deleted.
"""

import dataclasses
from dataclasses import dataclass
from typing import Optional

from isoformer_cli.errors import AnnotationError
from isoformer_cli.genomics.contigs import is_mitochondrial
from isoformer_cli.triples.cds import cds_layout
from isoformer_cli.triples.dna_window import (
    fetch_window,
    transcription_start_site,
    window_span,
)
from isoformer_cli.triples.sequence import normalise, reverse_complement
from isoformer_cli.triples.protein import alternative_protein
from isoformer_cli.triples.translation import MITOCHONDRIAL_CODE, STANDARD_CODE


@dataclass(frozen=True)
class Allele:
    """One alternative allele of a VCF record, on the genome's contig.

    Attributes:
        contig: the contig as the genome FASTA names it.
        start: 0-based position of the first REF base (VCF ``POS - 1``).
        ref, alt: upper-case A/C/G/T/N alleles as written in the VCF (not trimmed).
    """

    contig: str
    start: int
    ref: str
    alt: str

    @property
    def end(self):
        """0-based exclusive end of REF."""
        return self.start + len(self.ref)

    @property
    def length_change(self):
        """``len(alt) - len(ref)``: negative for deletions, positive for insertions."""
        return len(self.alt) - len(self.ref)

    def minimal(self):
        """``(start, end, inserted)``: the replaced genomic stretch ``[start, end)`` and the bases put in
        its place, after removing the common suffix and then the common prefix of REF and ALT."""
        ref, alt, start = self.ref, self.alt, self.start
        while ref and alt and ref[-1] == alt[-1]:
            ref, alt = ref[:-1], alt[:-1]
        while ref and alt and ref[0] == alt[0]:
            ref, alt, start = ref[1:], alt[1:], start + 1
        return start, start + len(ref), alt

    @property
    def is_substitution(self):
        """SNV or MNP: REF and ALT of equal length."""
        return len(self.ref) == len(self.alt)


class AlternativeGenome:
    """The genome with one allele applied, behind the ``Genome.length/fetch`` interface.

    Positions on ``allele.contig`` are alternative-genome coordinates (0-based half-open); other
    contigs are unchanged. ``fetch`` returns upper-case letters, as ``Genome.fetch`` does.
    """

    def __init__(self, genome, allele):
        self.genome = genome
        self.allele = allele
        self.var_start, self.var_end, self.inserted = allele.minimal()
        self.delta = len(self.inserted) - (self.var_end - self.var_start)
        # The alternative bases occupy [var_start, alt_end) in alternative coordinates.
        self.alt_end = self.var_start + len(self.inserted)

    def length(self, contig):
        length = self.genome.length(contig)
        return length + self.delta if contig == self.allele.contig else length

    def fetch(self, contig, start, end):
        if contig != self.allele.contig:
            return self.genome.fetch(contig, start, end)
        pieces = []
        if start < self.var_start:  # reference bases before the allele
            pieces.append(self.genome.fetch(contig, start, min(end, self.var_start)))
        low, high = max(start, self.var_start), min(end, self.alt_end)
        if low < high:  # the alternative bases
            pieces.append(self.inserted[low - self.var_start:high - self.var_start])
        if end > self.alt_end:  # reference bases after the allele, shifted by delta
            pieces.append(self.genome.fetch(contig, max(start, self.alt_end) - self.delta, end - self.delta))
        return "".join(pieces).upper()

    def lift_interval(self, start, end):
        """:func:`lift_interval` of ``[start, end)`` on the allele's contig."""
        return lift_interval(start, end, self.var_start, self.var_end, len(self.inserted))

    def lift_point(self, position):
        """Alternative position of reference base ``position``; None when that base is replaced."""
        lifted = self.lift_interval(position, position + 1)
        if lifted is None or (self.delta and lifted[1] - lifted[0] != 1):
            return None
        if not self.delta and self.var_start <= position < self.var_end:
            return position  # a substitution maps base to base
        return lifted[0]


def lift_interval(start, end, var_start, var_end, inserted_length):
    """The alternative-genome interval of reference ``[start, end)`` (see the module docstring).

    Args:
        start, end: 0-based half-open reference interval.
        var_start, var_end: the replaced reference stretch (minimal allele; empty for an insertion).
        inserted_length: number of alternative bases put in its place.

    Returns:
        ``(start, end)`` in alternative coordinates, or None when every base of the interval is replaced.
    """
    delta = inserted_length - (var_end - var_start)
    if delta == 0 and var_end > var_start:
        return start, end  # substitution: base to base
    if end <= var_start:
        return start, end
    if start >= var_end:
        return start + delta, end + delta
    # The interval overlaps or (for an insertion) surrounds the replaced stretch.
    new_start = start if start < var_start else var_start + inserted_length
    new_end = end + delta if end > var_end else var_start
    if start < var_start and end > var_end:
        new_end = end + delta  # the alternative bases fall inside the interval
    if new_end <= new_start:
        return None
    return new_start, new_end


def lift_intervals(genome_view, intervals):
    """Lift every interval (ascending); lost ones are dropped. Returns a list."""
    lifted = []
    for start, end in intervals:
        moved = genome_view.lift_interval(start, end)
        if moved is not None:
            lifted.append(moved)
    return lifted


@dataclass(frozen=True)
class AlternativeTriple:
    """The alternative inputs of one (allele, transcript).

    Attributes:
        window_start, window_end: the DNA window, 0-based half-open in alternative-genome coordinates.
        dna_changed: the allele lies inside the reference window (the DNA input differs).
        rna: the alternative spliced RNA (equal to the reference one when no exon changes).
        rna_changed: the RNA differs from the reference.
        protein: the alternative protein ('' for none).
        protein_changed: the protein differs from the reference.
        cds_start, cds_end: CDS span on the alternative RNA (0-based half-open, stop included), or None.
        start_lost: the start codon is changed or deleted (no protein).
        transcript: the transcript with lifted exons and CDS (alternative-genome coordinates).
    """

    window_start: int
    window_end: int
    dna_changed: bool
    rna: str
    rna_changed: bool
    protein: str
    protein_changed: bool
    cds_start: Optional[int]
    cds_end: Optional[int]
    start_lost: bool
    transcript: object


class TssDeleted(Exception):
    """The allele deletes the transcript's TSS base: the DNA window has no centre."""


def genetic_code(genome_chrom, annotation_chrom):
    """The vertebrate mitochondrial code on chrM/MT (either spelling), the standard code elsewhere."""
    if is_mitochondrial(genome_chrom) or is_mitochondrial(annotation_chrom):
        return MITOCHONDRIAL_CODE
    return STANDARD_CODE


def overlaps_window(triple, allele):
    """True when the allele's REF (or, for an insertion, its insertion point) lies in the window."""
    start, end, _ = allele.minimal()
    if start == end:  # insertion before ``start``: inside when both flanking bases are
        return triple.window_start < start < triple.window_end
    return start < triple.window_end and end > triple.window_start


def alternative_triple(triple, allele, genome, dna_length):
    """The :class:`AlternativeTriple` of ``triple`` (a reference Triple) with ``allele`` applied.

    Args:
        triple: the reference :class:`~isoformer_cli.genomics.records.Triple`.
        allele: an :class:`Allele` on ``triple.genome_chrom``.
        genome: the reference genome (``length``/``fetch``).
        dna_length: the model's window length.

    Raises:
        TssDeleted: the allele deletes the TSS base.
    """
    transcript = triple.transcript
    view = AlternativeGenome(genome, allele)
    var_start, var_end = view.var_start, view.var_end
    tss = transcription_start_site(transcript)
    if view.delta and var_start <= tss < var_end:
        raise TssDeleted(transcript.transcript_id)
    exons = lift_intervals(view, transcript.exons)
    lifted = dataclasses.replace(
        transcript, exons=exons,
        cds=lift_intervals(view, transcript.cds),
        stop_codons=lift_intervals(view, transcript.stop_codons),
        selenocysteines=[moved for moved in (view.lift_interval(s, e) for s, e in transcript.selenocysteines)
                         if moved is not None and moved[1] - moved[0] == 3],
    )
    alt_tss = view.lift_point(tss)
    window_start, window_end = window_span(alt_tss, transcript.strand, dna_length)
    dna_changed = overlaps_window(triple, allele)

    rna_changed = exons != list(transcript.exons) or _exon_bases_replaced(transcript.exons, view)
    rna = _spliced(view, triple.genome_chrom, exons, transcript.strand) if rna_changed else triple.rna
    rna_changed = rna != triple.rna

    cds_start = cds_end = None
    protein, start_lost = "", False
    if triple.cds_start is not None and transcript.cds:
        if not rna_changed:
            protein, cds_start, cds_end = triple.protein, triple.cds_start, triple.cds_end
        else:
            protein, cds_start, cds_end, start_lost = _alternative_protein(triple, lifted, rna, view)
    elif triple.cds_start is not None:
        protein, cds_start, cds_end = triple.protein, triple.cds_start, triple.cds_end  # a predicted ORF: kept
    return AlternativeTriple(
        window_start=window_start, window_end=window_end, dna_changed=dna_changed,
        rna=rna, rna_changed=rna_changed, protein=protein, protein_changed=protein != triple.protein,
        cds_start=cds_start, cds_end=cds_end, start_lost=start_lost, transcript=lifted,
    )


def alternative_window(genome, allele, alternative, strand):
    """The DNA window sequence of an :class:`AlternativeTriple` (strand-oriented, model length)."""
    view = AlternativeGenome(genome, allele)
    return fetch_window(view, allele.contig, alternative.window_start, alternative.window_end, strand)


def starts_with_methionine(triple):
    """True when the reference CDS is 5'-complete and begins with Met: only then can a start be lost."""
    return bool(triple.protein) and triple.protein[0] == "M" and "cds_start_incomplete" not in triple.flags


def _exon_bases_replaced(exons, view):
    """True when a substitution changes a base inside an exon (lifting leaves the exons in place)."""
    if view.delta or view.var_end <= view.var_start:
        return False
    return any(start < view.var_end and end > view.var_start for start, end in exons)


def _spliced(view, contig, exons, strand):
    joined = "".join(view.fetch(contig, start, end) for start, end in exons)
    return normalise(joined) if strand == "+" else reverse_complement(joined)


def _alternative_protein(triple, lifted, rna, view):
    """``(protein, cds_start, cds_end, start_lost)`` of the lifted transcript on the alternative RNA."""
    transcript = triple.transcript
    code = genetic_code(triple.genome_chrom, transcript.chrom)
    if not lifted.cds:
        return "", None, None, True
    try:
        layout = cds_layout(lifted)
    except AnnotationError:
        return "", None, None, True
    # The first CDS base (in transcript order) must survive where it was, or the start is lost.
    first = transcript.cds[0][0] if transcript.strand == "+" else transcript.cds[-1][1] - 1
    if view.lift_point(first) is None:
        return "", None, None, True
    start = layout.start
    if starts_with_methionine(triple) and code.codons.get(rna[start:start + 3]) != "M":
        return "", None, None, True
    # The reference's rule on the lifted CDS (isoformer_cli.triples.protein): only the allele's change differs.
    protein, coding = alternative_protein(cds_layout(transcript), triple.rna, layout, rna, code)
    return protein, start, _rna_position(layout, coding, len(rna)), False


def _rna_position(layout, coding, rna_length):
    """RNA position (0-based, exclusive end) after ``coding`` bases of ``layout``'s in-frame coding sequence;
    bases past the annotated CDS continue on the RNA after its end (3' UTR read on), up to ``rna_length``."""
    offset = coding + (layout.phase if layout.discontinuous else 0)
    if not layout.discontinuous:
        return min(layout.start + coding, rna_length)
    for seg_start, seg_end in layout.segments:
        if offset <= seg_end - seg_start:
            return seg_start + offset
        offset -= seg_end - seg_start
    return min(layout.end + offset, rna_length)
