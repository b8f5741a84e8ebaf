"""The two records that flow through the tool: a parsed transcript and its built triple.

Coordinate system everywhere in this module: 0-based, half-open, genomic (forward strand)
intervals ``(start, end)``, as converted once from the 1-based closed GTF/GFF3 columns at parse
time. Interval lists are sorted by ``start`` ascending whatever the strand.
"""

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

Interval = Tuple[int, int]


@dataclass
class Transcript:
    """One transcript model as read from a GTF/GFF3 annotation.

    Attributes:
        transcript_id: identifier as written in the annotation (version suffix kept).
        gene_id, gene_name, biotype: from the attributes; ``""`` when the annotation has none.
        chrom: contig name as written in the annotation (aliases are resolved by the genome layer).
        strand: ``"+"`` or ``"-"``.
        exons: exon intervals, 0-based half-open genomic, ascending, non-overlapping.
        cds: CDS intervals, same convention; empty for a non-coding transcript. For GTF these
            exclude the stop codon; for GFF3 they usually include it (see ``annotation_format``).
        cds_phase: phase (0, 1 or 2) of the CDS segment at the transcript's 5' end (the first in
            transcript order: lowest ``start`` on ``+``, highest ``end`` on ``-``); the number of
            bases to skip before the first complete codon. ``None`` when there is no CDS.
        stop_codons: ``stop_codon`` feature intervals (GTF), ascending; may be split by an intron.
        selenocysteines: genomic ``(start, end)`` of each ``Selenocysteine`` codon feature.
        tags: attribute flags such as ``cds_start_NF``, ``cds_end_NF``, ``mRNA_start_NF``.
        annotation_format: ``"gtf"`` or ``"gff3"``.
        source: ``"FILE:LINE"`` of the first record of this transcript, for error messages.
    """

    transcript_id: str
    gene_id: str
    gene_name: str
    biotype: str
    chrom: str
    strand: str
    exons: List[Interval]
    cds: List[Interval] = field(default_factory=list)
    cds_phase: Optional[int] = None
    stop_codons: List[Interval] = field(default_factory=list)
    selenocysteines: List[Interval] = field(default_factory=list)
    tags: Tuple[str, ...] = ()
    annotation_format: str = "gtf"
    source: str = ""

    @property
    def start(self):
        """0-based genomic start of the first exon."""
        return self.exons[0][0]

    @property
    def end(self):
        """0-based exclusive genomic end of the last exon."""
        return self.exons[-1][1]

    @property
    def is_coding(self):
        return bool(self.cds)


@dataclass
class Triple:
    """The model inputs of one transcript, built by ``isoformer_cli.triples.builder``.

    Attributes:
        transcript: the parsed transcript (its ``chrom`` is the annotation's spelling).
        genome_chrom: the contig name in the genome FASTA that ``chrom`` resolved to.
        tss: 0-based genomic position of the transcription start site (first base of the first
            exon on ``+``, last base of the last exon on ``-``).
        window_start, window_end: 0-based half-open genomic span of the DNA window; may extend
            past the contig ends (those bases are N and the record is flagged ``window_padded``).
        cds_start, cds_end: 0-based half-open CDS span in transcript (RNA) coordinates,
            including the stop codon when the annotation has one; ``None`` when non-coding.
        rna: spliced transcript sequence, 5'->3', upper-case DNA letters (T, not U).
        protein: translated CDS without the terminal stop, ``""`` when there is no protein.
        flags: sorted, de-duplicated flag names (see ``isoformer_cli.genomics.flags``).
        dna: the DNA window sequence (strand-oriented, TSS-centred), only when requested.
    """

    transcript: Transcript
    genome_chrom: str
    tss: int
    window_start: int
    window_end: int
    cds_start: Optional[int]
    cds_end: Optional[int]
    rna: str
    protein: str
    flags: Tuple[str, ...] = ()
    dna: Optional[str] = None
