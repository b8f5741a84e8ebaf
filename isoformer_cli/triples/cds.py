"""Where a transcript's CDS lies on its spliced RNA.

Input intervals are 0-based half-open genomic (from :class:`~isoformer_cli.genomics.records.Transcript`);
outputs are 0-based half-open *transcript* coordinates: position 0 is the first base of the RNA
(its 5' end, the highest genomic base on ``-``).

Rules (checked against gffread 0.12.7 on real annotations):

* The coding region is the union of the ``CDS`` segments and the ``stop_codon`` features. GTF
  CDS lines exclude the stop codon and GTF carries it as ``stop_codon`` (possibly split by an
  intron); GFF3 CDS lines usually include it already, and the union makes both cases the same.
  Without a stop_codon feature nothing is added (gffread does not extend the CDS either).
* The phase of the 5' CDS segment (``Transcript.cds_phase``) is the number of bases before the
  first complete codon: ``cds_start`` is the first base of that codon, as gffread's ``CDS=``
  range is. The phases of the other segments are ignored (gffread ignores them too).
* ``cds_end`` is the end of the 3'-most coding base, the stop codon included when annotated.
* Every CDS, stop_codon and Selenocysteine interval must lie inside one exon; otherwise the
  annotation is inconsistent and :class:`~isoformer_cli.errors.AnnotationError` names it.
"""

import bisect
from dataclasses import dataclass
from typing import Optional, Tuple

from isoformer_cli.errors import AnnotationError

CDS_START_NF = "cds_start_NF"
CDS_END_NF = "cds_end_NF"


@dataclass(frozen=True)
class CdsLayout:
    """A CDS in transcript coordinates (0-based half-open).

    Attributes:
        segments: transcript intervals covered by CDS/stop_codon features, 5' to 3', merged
            where they touch; more than one means the CDS skips exonic bases.
        start: first base of the first complete codon (annotated 5' end + phase).
        end: exclusive end of the 3'-most coding base (stop codon included when annotated).
        phase: bases skipped at the 5' end before the first complete codon (0, 1 or 2).
        selenocysteine_codons: codon indices, counted from ``start``, annotated as Sec.
        start_tagged_incomplete: the annotation tags the 5' end incomplete (``cds_start_NF``).
        end_tagged_incomplete: the annotation tags the 3' end incomplete (``cds_end_NF``).
    """

    segments: Tuple[Tuple[int, int], ...]
    start: int
    end: int
    phase: int
    selenocysteine_codons: Tuple[int, ...] = ()
    start_tagged_incomplete: bool = False
    end_tagged_incomplete: bool = False

    @property
    def five_prime_complete(self):
        """True when the CDS starts at its true start codon: not tagged incomplete and phase 0."""
        return not self.start_tagged_incomplete and self.phase == 0

    @property
    def discontinuous(self):
        """True when the CDS segments do not form one stretch of the RNA."""
        return len(self.segments) > 1

    def sequence(self, rna):
        """The in-frame coding sequence taken from ``rna`` (phase bases removed)."""
        if not self.discontinuous:
            return rna[self.start:self.end]
        spliced = "".join(rna[start:end] for start, end in self.segments)
        return spliced[self.phase:]


class ExonMap:
    """Maps genomic intervals of one transcript onto its spliced RNA.

    Args:
        transcript: a Transcript (exons ascending, 0-based half-open genomic).
    """

    def __init__(self, transcript):
        self.transcript = transcript
        self.exons = transcript.exons
        self.exon_starts = [start for start, _ in self.exons]
        lengths = [end - start for start, end in self.exons]
        # Transcript offset of each exon's 5' end: exons before it in transcript order, which
        # are the lower ones on '+' and the higher ones on '-'.
        total = 0
        ordered = range(len(lengths)) if transcript.strand == "+" else range(len(lengths) - 1, -1, -1)
        offsets = [0] * len(lengths)
        for index in ordered:
            offsets[index] = total
            total += lengths[index]
        self.offsets = offsets
        self.length = total

    def exon_index(self, start, end):
        """Index of the exon holding genomic ``[start, end)``, or None when no single exon does."""
        index = bisect.bisect_right(self.exon_starts, start) - 1
        if index >= 0 and end <= self.exons[index][1] and start < end:
            return index
        return None

    def to_transcript(self, start, end, what):
        """Transcript interval of genomic ``[start, end)``; AnnotationError when it leaves its exon."""
        index = self.exon_index(start, end)
        if index is None:
            transcript = self.transcript
            raise AnnotationError(
                f"{transcript.source or 'annotation'}: transcript {transcript.transcript_id}: "
                f"{what} {transcript.chrom}:{start + 1}-{end} (1-based) is not inside any of its exons; "
                "fix the annotation (or leave this transcript out with --transcripts/--genes)"
            )
        exon_start, exon_end = self.exons[index]
        offset = self.offsets[index]
        if self.transcript.strand == "+":
            return offset + start - exon_start, offset + end - exon_start
        return offset + exon_end - end, offset + exon_end - start


def _merge(intervals):
    merged = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1][1] = end
        else:
            merged.append([start, end])
    return tuple((start, end) for start, end in merged)


def cds_layout(transcript, exon_map: Optional[ExonMap] = None):
    """The :class:`CdsLayout` of ``transcript``, or None when it has no CDS.

    Raises:
        AnnotationError: a CDS, stop_codon or Selenocysteine interval outside the exons, a
            Selenocysteine outside the CDS, or a phase other than 0, 1, 2.
    """
    if not transcript.cds:
        return None
    exon_map = exon_map or ExonMap(transcript)
    pieces = [exon_map.to_transcript(start, end, "CDS") for start, end in transcript.cds]
    pieces += [exon_map.to_transcript(start, end, "stop_codon") for start, end in transcript.stop_codons]
    segments = _merge(pieces)
    phase = transcript.cds_phase or 0
    if phase not in (0, 1, 2):
        raise AnnotationError(
            f"{transcript.source or 'annotation'}: transcript {transcript.transcript_id}: "
            f"CDS phase {transcript.cds_phase!r} is not 0, 1 or 2; fix column 8 of its CDS lines"
        )
    start = min(segments[0][0] + phase, segments[-1][1])
    end = segments[-1][1]
    selenocysteines = _selenocysteine_codons(transcript, exon_map, segments, start, end)
    tags = set(transcript.tags)
    return CdsLayout(
        segments=segments,
        start=start,
        end=end,
        phase=phase,
        selenocysteine_codons=selenocysteines,
        start_tagged_incomplete=CDS_START_NF in tags,
        end_tagged_incomplete=CDS_END_NF in tags,
    )


def _selenocysteine_codons(transcript, exon_map, segments, start, end):
    codons = set()
    for sec_start, sec_end in transcript.selenocysteines:
        tx_start, tx_end = exon_map.to_transcript(sec_start, sec_end, "Selenocysteine")
        if tx_start < start or tx_end > end:
            raise AnnotationError(
                f"{transcript.source or 'annotation'}: transcript {transcript.transcript_id}: "
                f"Selenocysteine {transcript.chrom}:{sec_start + 1}-{sec_end} (1-based) lies outside "
                "the CDS; fix the annotation"
            )
        codons.add(_cds_offset(segments, tx_start, start) // 3)
    return tuple(sorted(codons))


def _cds_offset(segments, position, start):
    """Offset of transcript ``position`` in the in-frame CDS (gaps between segments removed)."""
    offset = 0
    for seg_start, seg_end in segments:
        if position < seg_end:
            return offset + max(position, seg_start) - seg_start - (start - segments[0][0])
        offset += seg_end - seg_start
    return offset - (start - segments[0][0])
