"""``--orf longest``: call the longest ATG-initiated open reading frame on an RNA.

Used only for transcripts without an annotated CDS (long-read assemblies from StringTie,
IsoQuant or FLAIR usually carry none); an annotated CDS is never replaced. The ORF:

* lies on the RNA as given (5'->3', the transcript's own strand; the reverse strand is not searched);
* starts at an ATG and ends with the first in-frame stop codon of the genetic code, included;
  a reading frame that runs off the 3' end without a stop is not an ORF here;
* has at least ``min_length`` amino acids, not counting the stop (default 100, as TransDecoder);
* is the longest such ORF on any of the three frames; on a tie the 5'-most one wins.

Coordinates returned are 0-based half-open transcript coordinates.
"""

import re
from typing import NamedTuple, Optional

from isoformer_cli.triples.translation import STANDARD_CODE

DEFAULT_MIN_ORF_LENGTH = 100
ORF_CHOICES = ("none", "longest")


class Orf(NamedTuple):
    """An open reading frame on the RNA: ``[start, end)`` includes the stop codon."""

    start: int
    end: int

    @property
    def amino_acids(self):
        """Number of amino acids encoded, the stop excluded."""
        return (self.end - self.start) // 3 - 1


def _positions(pattern, sequence):
    """Start positions of (possibly overlapping) matches of ``pattern`` in ``sequence``."""
    return [match.start() for match in re.finditer(f"(?=(?:{pattern}))", sequence)]


def longest_orf(rna, code=STANDARD_CODE, min_length=DEFAULT_MIN_ORF_LENGTH) -> Optional[Orf]:
    """The longest ATG...stop ORF of ``rna`` with at least ``min_length`` amino acids, or None.

    Args:
        rna: upper-case A/C/G/T/N transcript sequence, 5'->3'.
        code: genetic code whose stop codons end an ORF.
        min_length: minimum number of amino acids (stop excluded).
    """
    starts = _positions("ATG", rna)
    stops = _positions("|".join(sorted(code.stops)), rna)
    best = None
    for frame in range(3):
        frame_starts = [position for position in starts if position % 3 == frame]
        frame_stops = [position for position in stops if position % 3 == frame]
        next_start = 0
        previous_stop_end = -1
        for stop in frame_stops:
            # The first ATG after the previous in-frame stop opens the longest ORF ending here.
            while next_start < len(frame_starts) and frame_starts[next_start] < previous_stop_end:
                next_start += 1
            if next_start < len(frame_starts) and frame_starts[next_start] < stop:
                candidate = Orf(frame_starts[next_start], stop + 3)
                if best is None or _longer(candidate, best):
                    best = candidate
            previous_stop_end = stop + 3
    if best is None or best.amino_acids < min_length:
        return None
    return best


def _longer(candidate, best):
    candidate_length = candidate.end - candidate.start
    best_length = best.end - best.start
    return candidate_length > best_length or (candidate_length == best_length and candidate.start < best.start)
