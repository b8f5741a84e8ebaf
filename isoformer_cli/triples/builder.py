"""Transcript + genome -> Triple: the DNA window, spliced RNA, CDS span and protein of one isoform.

The builder is streaming: it takes transcripts one at a time and keeps only one stretch of one
contig in memory (see :class:`_LocusCache`), so memory does not grow with the annotation.
DNA windows (~196 kb each) are fetched only when asked for (``with_dna``); otherwise a triple
carries the window's coordinates and a later step fetches the sequence lazily.

Coordinates: genomic positions are 0-based half-open on the forward strand; ``cds_start`` and
``cds_end`` are 0-based half-open on the spliced RNA (see :mod:`isoformer_cli.triples.cds`).
"""

from dataclasses import dataclass

from isoformer_cli.errors import AnnotationError, InputError, check_choice
from isoformer_cli.genomics.contigs import is_mitochondrial
from isoformer_cli.genomics import flags as F
from isoformer_cli.triples.cds import cds_layout
from isoformer_cli.triples.dna_window import (
    DEFAULT_DNA_LENGTH,
    check_dna_length,
    fetch_window,
    is_padded,
    transcription_start_site,
    window_span,
)
from isoformer_cli.triples.orf import DEFAULT_MIN_ORF_LENGTH, ORF_CHOICES, longest_orf
from isoformer_cli.genomics.records import Triple
from isoformer_cli.triples.protein import translate_layout
from isoformer_cli.triples.sequence import normalise, reverse_complement
from isoformer_cli.triples.translation import MITOCHONDRIAL_CODE, STANDARD_CODE, translate_cds


@dataclass(frozen=True)
class BuildOptions:
    """How triples are built.

    Attributes:
        dna_length: DNA window length in bases (positive, even).
        with_dna: fetch the window sequence into ``Triple.dna`` (off: coordinates only).
        orf: ``"none"``, or ``"longest"`` to call the longest ATG ORF of transcripts without CDS.
        min_orf_length: minimum ORF length in amino acids for ``orf="longest"``.
    """

    dna_length: int = DEFAULT_DNA_LENGTH
    with_dna: bool = False
    orf: str = "none"
    min_orf_length: int = DEFAULT_MIN_ORF_LENGTH

    def __post_init__(self):
        check_dna_length(self.dna_length)
        check_choice("--orf", self.orf, ORF_CHOICES)
        if isinstance(self.min_orf_length, bool) or not isinstance(self.min_orf_length, int) \
                or self.min_orf_length < 1:
            raise InputError(f"--min-orf-length must be at least 1 amino acid, not {self.min_orf_length}")


class _LocusCache:
    """One cached stretch of one contig, so neighbouring transcripts share a single fetch.

    Annotations list transcripts gene by gene in position order, so a chunk fetched for one
    transcript usually serves the next ones too; one fetch per chunk instead of one per exon
    matters most for BGZF genomes, where every fetch decompresses a block.
    """

    CHUNK = 1 << 20  # 1 Mb: a few MB of memory, about a dozen genes per fetch in a dense region
    BACKWARD = 1 << 16  # start a little before the transcript: the next one may start earlier

    def __init__(self, genome):
        self.genome = genome
        # The RNA is normalised (upper case, non-ACGT -> N) after splicing, so the stored case serves
        # as well as upper case, and upper-casing every chunk (~1 ms per Mb) is saved where the genome
        # offers it; other genomes (test doubles, the alternative genome of variants) give upper case.
        self._fetch = getattr(genome, "fetch_as_stored", genome.fetch)
        self.contig = None
        self.start = 0
        self.end = 0
        self.sequence = ""

    def chunk(self, contig, start, end, contig_length):
        """``(sequence, offset)``: a cached stretch of ``contig`` (in the genome's case) that covers
        ``[start, end)`` and the genomic position of its first base. The span must lie within
        the contig; callers slice ``sequence[s - offset:e - offset]`` without copying the span."""
        if contig != self.contig or start < self.start or end > self.end:
            chunk_start = max(0, start - self.BACKWARD)
            chunk_end = min(contig_length, max(end, start + self.CHUNK))
            self.sequence = self._fetch(contig, chunk_start, chunk_end)
            self.contig, self.start, self.end = contig, chunk_start, chunk_end
        return self.sequence, self.start


class TripleBuilder:
    """Builds :class:`~isoformer_cli.genomics.records.Triple` objects from one genome.

    Args:
        genome: object with ``length(contig)`` and ``fetch(contig, start, end)`` returning an
            upper-cased sequence (:class:`isoformer_cli.genomics.genome.Genome`).
        options: :class:`BuildOptions`.
    """

    def __init__(self, genome, options=None):
        self.genome = genome
        self.options = options or BuildOptions()
        self._cache = _LocusCache(genome)
        self._codes = {}

    def build(self, transcript, genome_chrom=None):
        """The triple of ``transcript``, whose contig is ``genome_chrom`` in the genome FASTA.

        Args:
            transcript: a Transcript.
            genome_chrom: the FASTA spelling of ``transcript.chrom`` (after the alias layer);
                defaults to ``transcript.chrom``.

        Raises:
            AnnotationError: an exon past the contig end, a bad strand, or a CDS /
                stop_codon / Selenocysteine interval outside the exons.
        """
        genome_chrom = genome_chrom or transcript.chrom
        contig_length = self.genome.length(genome_chrom)
        self._check_structure(transcript, genome_chrom, contig_length)
        flags = set()

        rna = self._spliced_rna(transcript, genome_chrom, contig_length)
        if "N" in rna:
            flags.add(F.NON_ACGT)

        tss = transcription_start_site(transcript)
        window_start, window_end = window_span(tss, transcript.strand, self.options.dna_length)
        if is_padded(window_start, window_end, contig_length):
            flags.add(F.WINDOW_PADDED)
        dna = None
        if self.options.with_dna:
            dna = fetch_window(self.genome, genome_chrom, window_start, window_end, transcript.strand)

        code = self._genetic_code(genome_chrom, transcript.chrom)
        cds_start = cds_end = None
        protein = ""
        layout = cds_layout(transcript)
        if layout is not None:
            cds_start, cds_end = layout.start, layout.end
            translation = translate_layout(layout, rna, code)
            protein = translation.protein
            if not layout.five_prime_complete or not translation.initiator:
                flags.add(F.CDS_START_INCOMPLETE)
            if layout.end_tagged_incomplete or not translation.terminal_stop:
                flags.add(F.CDS_END_INCOMPLETE)
            if translation.internal_stop:
                flags.add(F.INTERNAL_STOP)
            if layout.selenocysteine_codons:
                flags.add(F.SELENOCYSTEINE)
            if layout.discontinuous:
                flags.add(F.CDS_DISCONTINUOUS)
        elif self.options.orf == "longest":
            orf = longest_orf(rna, code, self.options.min_orf_length)
            if orf is not None:
                cds_start, cds_end = orf.start, orf.end
                protein = translate_cds(rna[orf.start:orf.end], code).protein
                flags.add(F.ORF_PREDICTED)
        if cds_start is None:
            flags.add(F.NO_CDS)
        elif code is MITOCHONDRIAL_CODE:
            flags.add(F.MITO_CODE)

        return Triple(
            transcript=transcript,
            genome_chrom=genome_chrom,
            tss=tss,
            window_start=window_start,
            window_end=window_end,
            cds_start=cds_start,
            cds_end=cds_end,
            rna=rna,
            protein=protein,
            flags=tuple(sorted(flags)),
            dna=dna,
        )

    def _genetic_code(self, genome_chrom, annotation_chrom):
        """The vertebrate mitochondrial code on chrM/MT (either spelling), the standard code elsewhere."""
        key = (genome_chrom, annotation_chrom)
        code = self._codes.get(key)
        if code is None:
            mitochondrial = is_mitochondrial(genome_chrom) or is_mitochondrial(annotation_chrom)
            code = self._codes[key] = MITOCHONDRIAL_CODE if mitochondrial else STANDARD_CODE
        return code

    def _spliced_rna(self, transcript, genome_chrom, contig_length):
        chunk, offset = self._cache.chunk(genome_chrom, transcript.start, transcript.end, contig_length)
        joined = "".join([chunk[start - offset:end - offset] for start, end in transcript.exons])
        return normalise(joined) if transcript.strand == "+" else reverse_complement(joined)

    @staticmethod
    def _check_structure(transcript, genome_chrom, contig_length):
        where = f"{transcript.source or 'annotation'}: transcript {transcript.transcript_id}"
        if transcript.strand not in ("+", "-"):
            raise AnnotationError(f"{where}: strand {transcript.strand!r} is not '+' or '-'")
        if not transcript.exons:
            raise AnnotationError(f"{where}: has no exons")
        if transcript.exons[0][0] < 0 or transcript.end > contig_length:
            raise AnnotationError(
                f"{where}: exons span {transcript.chrom}:{transcript.start + 1}-{transcript.end} (1-based) "
                f"but contig {genome_chrom} of the genome FASTA has {contig_length:,} bases; "
                "are the annotation and the FASTA from the same assembly?"
            )
