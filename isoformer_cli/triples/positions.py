"""Where each position the model reads lies: its genome coordinate and its region of the transcript.

Coordinates are 0-based genomic positions on the forward strand (a bedGraph's ``start``; the base covers
``[start, start + 1)``). The model reads the DNA window and the RNA 5' to 3' of the transcript, so on ``-``
the window's position ``i`` is the genomic base ``window_end - 1 - i`` and the RNA's position ``j`` walks the
exons from the highest coordinate down.

Regions (:data:`REGIONS`), from the transcript's exons and its CDS span in RNA coordinates
(``Triple.cds_start`` / ``cds_end``, the stop codon included):

* ``upstream``: window bases 5' of the transcript (the promoter side of the window);
* ``5utr``, ``cds``, ``3utr``: exonic bases before, inside and after the CDS span (a transcript without CDS has
  ``exon`` instead);
* ``intron``: bases between the exons;
* ``downstream``: window bases 3' of the transcript's last base.

Window bases past the contig ends (read as N) have coordinate -1 and region ``outside``.
"""

import numpy as np

REGIONS = ("upstream", "5utr", "cds", "3utr", "exon", "intron", "downstream", "outside")


def exons_in_transcript_order(transcript):
    """The exon intervals 5' to 3' of the transcript (descending on ``-``)."""
    return list(transcript.exons) if transcript.strand == "+" else list(reversed(transcript.exons))


def rna_genome_positions(transcript):
    """``(rna length,)`` int64: the genomic base of each position of the spliced RNA, 5' to 3'."""
    parts = []
    for start, end in exons_in_transcript_order(transcript):
        bases = np.arange(start, end, dtype=np.int64)
        parts.append(bases if transcript.strand == "+" else bases[::-1])
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def window_genome_positions(triple, contig_length):
    """``(window length,)`` int64: the genomic base of each window position in the order the model reads it;
    -1 for positions past the contig ends."""
    bases = np.arange(triple.window_start, triple.window_end, dtype=np.int64)
    if triple.transcript.strand == "-":
        bases = bases[::-1].copy()
    bases[(bases < 0) | (bases >= contig_length)] = -1
    return bases


def rna_regions(triple):
    """``(rna length,)`` region names of the RNA positions (``5utr``/``cds``/``3utr``, or ``exon``)."""
    length = len(triple.rna) if triple.rna else sum(end - start for start, end in triple.transcript.exons)
    positions = np.arange(length)
    if triple.cds_start is None:
        return np.full(length, "exon", dtype=object)
    regions = np.full(length, "cds", dtype=object)
    regions[positions < triple.cds_start] = "5utr"
    regions[positions >= triple.cds_end] = "3utr"
    return regions


def window_regions(triple, genome_positions):
    """Region names of the window positions whose genomic bases are ``genome_positions`` (see
    :func:`window_genome_positions`)."""
    transcript = triple.transcript
    regions = np.full(len(genome_positions), "intron", dtype=object)
    exonic = rna_genome_positions(transcript)
    order = np.argsort(exonic)
    found = np.searchsorted(exonic[order], genome_positions)
    found = np.minimum(found, len(exonic) - 1)
    in_exon = exonic[order][found] == genome_positions
    regions[in_exon] = rna_regions(triple)[order][found[in_exon]]
    before, after = genome_positions < transcript.start, genome_positions >= transcript.end
    regions[before] = "upstream" if transcript.strand == "+" else "downstream"
    regions[after] = "downstream" if transcript.strand == "+" else "upstream"
    regions[genome_positions < 0] = "outside"
    return regions
