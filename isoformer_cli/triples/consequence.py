"""The consequence of an allele on one transcript, named and written as ``bcftools csq`` does.

Coordinates: genomic positions are 0-based half-open (forward strand); transcript positions are
0-based half-open on the spliced RNA (5'->3'); amino-acid positions in the written change are 1-based,
as csq prints them.

Terms (csq's spelling, joined with ``&`` when several hold, most severe first): ``splice_acceptor``,
``splice_donor``, ``stop_gained``, ``frameshift``, ``stop_lost``, ``start_lost``, ``inframe_insertion``,
``inframe_deletion``, ``missense``, ``splice_region``, ``synonymous``, ``stop_retained``, ``non_coding``,
``5_prime_utr``, ``3_prime_utr``, ``intron``, ``coding_sequence`` (the CDS changes in a way none of the
others describes, such as an indel across an exon boundary). csq says nothing about a variant outside a
transcript; the tool, which also scores those through the DNA window, writes ``upstream`` (5' of the
transcript on its strand) or ``downstream``.

Regions, on the transcript's strand (an insertion touches a region when both bases around it are inside):

* ``splice_donor``: the first two intron bases; ``splice_acceptor``: the last two;
* ``splice_region``: the three exon bases next to an intron and intron bases 3 to 8 from either end
  (reported only when neither splice_donor nor splice_acceptor is);
* coding terms when the allele lies inside one exon and touches the CDS (stop codon included); a
  transcript with no CDS gets ``non_coding`` for an exonic allele.

Amino-acid change (:attr:`Consequence.amino_acids`), csq's notation: ``12K`` (synonymous, stop
retained ``326*``), ``310S>310N`` (missense, stop gained ``20Q>20*``, stop lost ``326*>326Q``; nothing for a lost
start), ``299HR>299R`` / ``307R>307FR`` (in-frame: the codons that the edit touches, before and
after), and for a frameshift the reference from the first touched codon to its stop and the alternative
translated over the same stretch of the CDS, both ending at their first stop. The codons shown are
those of the VCF REF as written, its anchor base included (``CGTG>C`` shows the anchor's codon too).
"""

from dataclasses import dataclass
from typing import Tuple

from isoformer_cli.triples.cds import ExonMap
from isoformer_cli.triples.sequence import reverse_complement
from isoformer_cli.triples.variants import genetic_code, starts_with_methionine

# csq's order of severity; the tool's own terms for alleles outside the transcript come last.
TERMS = (
    "splice_acceptor", "splice_donor", "stop_gained", "frameshift", "stop_lost", "start_lost",
    "inframe_insertion", "inframe_deletion", "missense", "splice_region", "synonymous", "stop_retained",
    "coding_sequence", "non_coding", "5_prime_utr", "3_prime_utr", "intron", "upstream", "downstream",
)
_RANK = {term: rank for rank, term in enumerate(TERMS)}
SPLICE_TERMS = frozenset({"splice_acceptor", "splice_donor", "splice_region"})

SPLICE_SITE = 2
SPLICE_REGION_EXON = 3
SPLICE_REGION_INTRON = 8


@dataclass(frozen=True)
class Consequence:
    """What one allele does to one transcript.

    Attributes:
        terms: consequence terms, most severe first (see the module docstring).
        amino_acids: csq's amino-acid change ('' when the CDS is not touched).
    """

    terms: Tuple[str, ...]
    amino_acids: str = ""

    @property
    def name(self):
        """The terms joined with ``&``, as written in the output."""
        return "&".join(self.terms)

    @property
    def splice(self):
        """True when the allele touches a splice site or region (flagged, junctions not modelled)."""
        return bool(SPLICE_TERMS.intersection(self.terms))


def _touches(var_start, var_end, start, end):
    """True when the minimal allele ``[var_start, var_end)`` (empty: an insertion before ``var_start``)
    touches the genomic region ``[start, end)``."""
    if var_start == var_end:
        return start < var_start < end
    return var_start < end and var_end > start


def splice_terms(transcript, var_start, var_end):
    """splice_donor / splice_acceptor / splice_region terms of the allele on ``transcript``."""
    terms = set()
    exons = transcript.exons
    plus = transcript.strand == "+"
    for (_, intron_start), (intron_end, _) in zip(exons, exons[1:]):
        if intron_end <= intron_start:
            continue
        low_site = (intron_start, min(intron_start + SPLICE_SITE, intron_end))
        high_site = (max(intron_end - SPLICE_SITE, intron_start), intron_end)
        donor, acceptor = (low_site, high_site) if plus else (high_site, low_site)
        if _touches(var_start, var_end, *donor):
            terms.add("splice_donor")
        if _touches(var_start, var_end, *acceptor):
            terms.add("splice_acceptor")
        regions = (
            (intron_start - SPLICE_REGION_EXON, intron_start),  # exon bases before the intron
            (intron_end, intron_end + SPLICE_REGION_EXON),  # exon bases after it
            (intron_start + SPLICE_SITE, min(intron_start + SPLICE_REGION_INTRON, intron_end)),
            (max(intron_end - SPLICE_REGION_INTRON, intron_start), intron_end - SPLICE_SITE),
        )
        if any(start < end and _touches(var_start, var_end, start, end) for start, end in regions):
            terms.add("splice_region")
    if terms & {"splice_donor", "splice_acceptor"}:
        terms.discard("splice_region")
    return terms


def consequence(triple, allele):
    """The :class:`Consequence` of ``allele`` (an :class:`~isoformer_cli.triples.variants.Allele`) on the
    reference ``triple``."""
    transcript = triple.transcript
    var_start, var_end, inserted = allele.minimal()
    if not _touches(var_start, var_end, transcript.start, transcript.end) and not (
            var_start == var_end and var_start in (transcript.start, transcript.end)):
        before = var_end <= transcript.start if var_start < var_end else var_start <= transcript.start
        upstream = before == (transcript.strand == "+")
        return Consequence(("upstream" if upstream else "downstream",))
    terms = splice_terms(transcript, var_start, var_end)
    exonic = [index for index, (start, end) in enumerate(transcript.exons)
              if _touches(var_start, var_end, start, end)]
    amino_acids = ""
    if triple.cds_start is None or not transcript.cds:
        terms.add("non_coding")  # csq's term for any allele within a non-coding transcript
    elif not exonic:
        if not terms:
            terms.add("intron")  # only when nothing else is said, as csq does
    else:
        edit = _transcript_edit(transcript, var_start, var_end, inserted)
        if edit is None:
            # Across an exon boundary: csq's coding logic does not apply; say whether the CDS is touched.
            if _touches_cds_genomic(transcript, var_start, var_end):
                terms.add("coding_sequence")
            else:
                terms.add(_utr_term(transcript, var_start))
        else:
            first, last, bases = edit
            cds_start, cds_end = triple.cds_start, triple.cds_end
            in_cds = (cds_start < first < cds_end) if first == last else (first < cds_end and last > cds_start)
            if in_cds and first >= cds_start and last <= cds_end:
                touched = _touched_codon_bases(transcript, allele, first, last)
                coding_terms, amino_acids = _coding(triple, first, last, bases, touched)
                terms.update(coding_terms)
            elif in_cds:
                terms.add("coding_sequence")
            else:
                terms.add("5_prime_utr" if first < cds_start or (first == last == cds_start) else "3_prime_utr")
    return Consequence(tuple(sorted(terms, key=_RANK.__getitem__)), amino_acids)


def _utr_term(transcript, var_start):
    cds_low = transcript.cds[0][0]
    upstream_of_cds = var_start < cds_low
    return "5_prime_utr" if upstream_of_cds == (transcript.strand == "+") else "3_prime_utr"


def _touches_cds_genomic(transcript, var_start, var_end):
    return any(_touches(var_start, var_end, start, end) for start, end in transcript.cds + transcript.stop_codons)


def _transcript_edit(transcript, var_start, var_end, inserted):
    """``(first, last, bases)``: the allele as an edit of the RNA, ``rna[first:last]`` replaced by
    ``bases`` (transcript orientation); None when it does not lie inside one exon."""
    exon_map = ExonMap(transcript)
    bases = inserted if transcript.strand == "+" else reverse_complement(inserted)
    if var_start == var_end:  # insertion between var_start - 1 and var_start
        index = exon_map.exon_index(var_start - 1, var_start + 1)
        if index is None:
            return None
        low, high = exon_map.to_transcript(var_start - 1, var_start + 1, "variant")
        return low + 1, low + 1, bases
    if exon_map.exon_index(var_start, var_end) is None:
        return None
    first, last = exon_map.to_transcript(var_start, var_end, "variant")
    return first, last, bases


def _touched_codon_bases(transcript, allele, first, last):
    """Transcript interval whose codons the amino-acid change shows: the VCF REF as written (its
    common suffix with ALT removed, its anchor base kept, as csq reads it), or the edit itself when
    that REF leaves the exon."""
    ref, alt = allele.ref, allele.alt
    while len(ref) > 1 and len(alt) > 1 and ref[-1] == alt[-1]:
        ref, alt = ref[:-1], alt[:-1]
    exon_map = ExonMap(transcript)
    start, end = allele.start, allele.start + len(ref)
    if exon_map.exon_index(start, end) is None:
        return first, max(last, first + 1)
    low, high = exon_map.to_transcript(start, end, "variant")
    return min(low, first), max(high, last)


def _coding(triple, first, last, bases, touched):
    """Coding terms and amino-acid change of the RNA edit ``rna[first:last] -> bases`` inside the CDS;
    ``touched``: the transcript interval whose codons the change shows."""
    code = genetic_code(triple.genome_chrom, triple.transcript.chrom)
    rna, cds_start, cds_end = triple.rna, triple.cds_start, triple.cds_end
    ref_cds = rna[cds_start:cds_end]
    alt_rna = rna[:first] + bases + rna[last:]
    delta = len(bases) - (last - first)
    alt_cds = alt_rna[cds_start:cds_end + delta]
    offset = first - cds_start
    codon = max(touched[0] - cds_start, 0) // 3
    terms = set()
    ref_first = code.codons.get(ref_cds[:3], "X")
    start_touched = offset < 3 and (last > cds_start or first == last) and starts_with_methionine(triple)
    if start_touched and code.codons.get(alt_cds[:3], "X") != "M" and ref_first == "M":
        return {"start_lost"}, ""  # csq writes no amino-acid change for a lost start
    if delta % 3:
        terms.add("frameshift")
        ref_aa = _until_stop(code.translate(ref_cds[3 * codon:]))
        alt_aa = _until_stop(code.translate(alt_cds[3 * codon:]))
        if "*" in alt_aa and "*" not in ref_aa:
            terms.add("stop_gained")  # the reference (an incomplete CDS) had no stop in this stretch
        return terms, f"{codon + 1}{ref_aa}>{codon + 1}{alt_aa}"
    # Codons the edit touches: an insertion touches the codon of the base after it.
    last_codon = max(codon, (min(touched[1], cds_end) - cds_start - 1) // 3)
    ref_span = ref_cds[3 * codon:3 * (last_codon + 1)]
    alt_span = alt_cds[3 * codon:3 * (last_codon + 1) + delta]
    ref_aa, alt_aa = code.translate(ref_span), code.translate(alt_span)
    if delta > 0:
        terms.add("inframe_insertion")
    elif delta < 0:
        terms.add("inframe_deletion")
    if "*" in alt_aa and "*" not in ref_aa:
        terms.add("stop_gained")
    elif "*" in ref_aa and "*" not in alt_aa:
        terms.add("stop_lost")
    elif not delta:
        if ref_aa == alt_aa:
            terms.add("stop_retained" if "*" in ref_aa else "synonymous")
            return terms, f"{codon + 1}{ref_aa}"
        terms.add("missense")
    return terms, f"{codon + 1}{ref_aa}>{codon + 1}{alt_aa}"


def _until_stop(protein):
    stop = protein.find("*")
    return protein if stop == -1 else protein[:stop + 1]
