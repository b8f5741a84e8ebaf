"""The TSS-centred, strand-oriented DNA window of a transcript.

Coordinates are 0-based, half-open, genomic (forward strand).

* TSS: first base of the first exon on ``+`` (``exons[0][0]``), last base of the last exon on
  ``-`` (``exons[-1][1] - 1``).
* Window of even length ``L`` (default 196,608):

  - ``+`` strand: genomic ``[TSS - L/2, TSS + L/2)``, read as is: the TSS is at index ``L/2``.
  - ``-`` strand: genomic ``[TSS - L/2 + 1, TSS + L/2 + 1)``, reverse-complemented so the
    transcript reads left to right: the TSS is again at index ``L/2``.

  So on both strands the TSS is the first base of the window's right half, and with
  L = 196,608 it falls in Enformer's output bin 448 (of 896). The official InstaDeep builder
  takes ``[TSS - L/2, TSS + L/2)`` on both strands, which after reverse complement puts a
  minus-strand TSS at index ``L/2 - 1`` (one base left, in bin 447); we shift the minus-strand
  span by one base so both strands are alike.
* Positions before 0 or at/after the contig length are N (the record is flagged
  ``window_padded``): on ``+`` a window past the contig end has its Ns on the right, on ``-``
  (after reverse complement) on the left, and the other way round at the contig start.
"""

from isoformer_cli.errors import InputError
from isoformer_cli.triples.sequence import normalise, reverse_complement

DEFAULT_DNA_LENGTH = 196_608


def check_dna_length(length):
    """Return ``length`` when it is a positive even integer; raise InputError otherwise."""
    if isinstance(length, bool) or not isinstance(length, int) or length <= 0 or length % 2:
        raise InputError(
            f"--dna-length must be a positive even number of bases (got {length!r}); "
            f"the model expects {DEFAULT_DNA_LENGTH:,}"
        )
    return length


def transcription_start_site(transcript):
    """0-based genomic position of the TSS of ``transcript`` (see the module docstring)."""
    if transcript.strand == "+":
        return transcript.exons[0][0]
    return transcript.exons[-1][1] - 1


def window_span(tss, strand, length=DEFAULT_DNA_LENGTH):
    """Genomic ``(start, end)`` of the window around ``tss``; may reach below 0 or past the contig."""
    half = length // 2
    if strand == "+":
        return tss - half, tss + half
    return tss - half + 1, tss + half + 1


def is_padded(start, end, contig_length):
    """True when the genomic window ``[start, end)`` reaches outside ``[0, contig_length)``."""
    return start < 0 or end > contig_length


def fetch_window(genome, contig, start, end, strand):
    """Sequence of the genomic window ``[start, end)`` on ``contig``, strand-oriented.

    Args:
        genome: an object with ``length(contig)`` and ``fetch(contig, start, end)`` (the
            :class:`~isoformer_cli.genomics.genome.Genome` API).
        contig: the contig name as the genome spells it.
        start, end: 0-based half-open genomic span, as from :func:`window_span`.
        strand: ``+`` or ``-``; ``-`` returns the reverse complement.

    Returns:
        ``end - start`` upper-case letters over A/C/G/T/N; positions outside the contig are N.
    """
    contig_length = genome.length(contig)
    inside_start, inside_end = max(start, 0), min(end, contig_length)
    if inside_end <= inside_start:  # the window misses the contig entirely
        return "N" * (end - start)
    inside = normalise(genome.fetch(contig, inside_start, inside_end))
    forward = "N" * (inside_start - start) + inside + "N" * (end - inside_end)
    return forward if strand == "+" else reverse_complement(forward)
