"""Transcript + genome -> Triple on hand-made transcripts placed in a random genome.

Each test designs the spliced RNA first, writes it into the genome on the requested strand, and
converts transcript coordinates to genomic ones with a per-base map (deliberately simpler than
the builder's interval arithmetic), so expectations never come from the code under test.
"""

import random

import pytest

from isoformer_cli.errors import AnnotationError
from isoformer_cli.triples.builder import BuildOptions, TripleBuilder
from isoformer_cli.genomics.records import Transcript
from isoformer_cli.triples.sequence import reverse_complement
from isoformer_cli.triples.translation import STANDARD_CODE

CONTIG_LENGTH = 20_000


class DictGenome:
    def __init__(self, contigs):
        self.sequences = dict(contigs)
        self.fetches = 0

    def length(self, contig):
        return len(self.sequences[contig])

    def fetch(self, contig, start, end):
        assert 0 <= start <= end <= len(self.sequences[contig]), (start, end)
        self.fetches += 1
        return self.sequences[contig][start:end].upper()


def random_dna(length, seed):
    rng = random.Random(seed)
    return "".join(rng.choice("ACGT") for _ in range(length))


def random_codons(count, seed):
    """``count`` random sense codons (no stop in the standard code)."""
    rng = random.Random(seed)
    sense = sorted(codon for codon, aa in STANDARD_CODE.codons.items() if aa != "*" and "N" not in codon)
    return "".join(rng.choice(sense) for _ in range(count))


class Placed:
    """A designed RNA written into a contig as exons separated by introns."""

    def __init__(self, genome, contig, strand, rna, exon_lengths, start=5000, intron=300):
        assert sum(exon_lengths) == len(rna)
        sequence = list(genome.sequences[contig])
        exons = []
        position = start
        for length in exon_lengths:
            exons.append((position, position + length))
            position += length + intron
        # Per-base map: transcript index -> genomic position.
        genomic = [p for s, e in exons for p in range(s, e)]
        if strand == "-":
            genomic = genomic[::-1]
        for index, base in enumerate(rna):
            sequence[genomic[index]] = base if strand == "+" else reverse_complement(base)
        genome.sequences[contig] = "".join(sequence)
        self.genomic = genomic
        self.exons = exons
        self.strand = strand
        self.contig = contig

    def intervals(self, tx_start, tx_end):
        """Genomic intervals (ascending) covering transcript bases [tx_start, tx_end)."""
        positions = sorted(self.genomic[i] for i in range(tx_start, tx_end))
        runs = []
        for p in positions:
            if runs and runs[-1][1] == p:
                runs[-1][1] = p + 1
            else:
                runs.append([p, p + 1])
        return [tuple(run) for run in runs]

    def transcript(self, **fields):
        values = dict(transcript_id="T1", gene_id="G1", gene_name="GENE", biotype="protein_coding",
                      chrom=self.contig, strand=self.strand, exons=self.exons, source="test.gtf:1")
        values.update(fields)
        return Transcript(**values)


def small_builder(genome, **options):
    """A builder with 1 kb windows, which fit inside the 20 kb test contigs."""
    return TripleBuilder(genome, BuildOptions(dna_length=1000, **options))


@pytest.fixture
def genome():
    return DictGenome({"c1": random_dna(CONTIG_LENGTH, 1), "chrM": random_dna(CONTIG_LENGTH, 2)})


def coding_rna(codons=40, seed=3):
    utr5 = "GCGCGCAAGG"
    body = "ATG" + random_codons(codons, seed) + "TAA"
    utr3 = "CCCGGGTTTAAACCC"
    return utr5, body, utr3


@pytest.mark.parametrize("strand", ["+", "-"])
def test_gtf_style_cds_with_stop_codon_split_by_an_intron(genome, strand):
    utr5, body, utr3 = coding_rna()
    rna = utr5 + body + utr3
    cds_start, cds_end = len(utr5), len(utr5) + len(body)
    # Exon boundary one base before the end of the stop codon: the stop is split.
    first = cds_end - 1
    placed = Placed(genome, "c1", strand, rna, [40, first - 40, len(rna) - first])
    transcript = placed.transcript(
        cds=placed.intervals(cds_start, cds_end - 3), cds_phase=0,
        stop_codons=placed.intervals(cds_end - 3, cds_end),
    )
    triple = small_builder(genome).build(transcript)
    assert triple.rna == rna
    assert (triple.cds_start, triple.cds_end) == (cds_start, cds_end)
    assert triple.protein == STANDARD_CODE.translate(body)[:-1]
    assert triple.protein.startswith("M") and "*" not in triple.protein
    assert triple.flags == ()
    assert triple.tss == (placed.exons[0][0] if strand == "+" else placed.exons[-1][1] - 1)
    assert triple.window_end - triple.window_start == 1000
    assert triple.dna is None


@pytest.mark.parametrize("strand", ["+", "-"])
def test_gff3_style_cds_including_stop_gives_the_same_triple(genome, strand):
    utr5, body, utr3 = coding_rna()
    rna = utr5 + body + utr3
    placed = Placed(genome, "c1", strand, rna, [30, 60, len(rna) - 90])
    cds = placed.intervals(len(utr5), len(utr5) + len(body))
    gff3 = small_builder(genome).build(placed.transcript(cds=cds, cds_phase=0, annotation_format="gff3"))
    assert (gff3.cds_start, gff3.cds_end) == (len(utr5), len(utr5) + len(body))
    assert gff3.protein == STANDARD_CODE.translate(body)[:-1]
    assert gff3.flags == ()


@pytest.mark.parametrize("strand", ["+", "-"])
def test_phase_of_a_5prime_incomplete_cds(genome, strand):
    # The CDS starts 2 bases into a codon whose first base is not in the transcript.
    body = "GC" + random_codons(30, 5) + "TGA"
    rna = "AAA" + body + "CCC"
    placed = Placed(genome, "c1", strand, rna, [20, len(rna) - 20])
    transcript = placed.transcript(
        cds=placed.intervals(3, 3 + len(body) - 3), cds_phase=2,
        stop_codons=placed.intervals(3 + len(body) - 3, 3 + len(body)), tags=("cds_start_NF",),
    )
    triple = small_builder(genome).build(transcript)
    assert triple.cds_start == 5          # first complete codon, as gffread's CDS= range
    assert triple.cds_end == 3 + len(body)
    assert triple.protein == STANDARD_CODE.translate(body[2:])[:-1]
    assert "cds_start_incomplete" in triple.flags
    assert "cds_end_incomplete" not in triple.flags


def test_nonzero_phase_alone_marks_start_incomplete(genome):
    body = "C" + "ATG" + random_codons(10, 6) + "TAG"
    placed = Placed(genome, "c1", "+", body, [len(body)])
    triple = small_builder(genome).build(placed.transcript(cds=placed.intervals(0, len(body)), cds_phase=1))
    assert triple.cds_start == 1
    assert triple.flags == ("cds_start_incomplete",)


def test_3prime_incomplete_cds_without_stop(genome):
    body = "ATG" + random_codons(20, 7) + "GC"     # ends in a partial codon, no stop
    placed = Placed(genome, "c1", "+", body + "AAAA", [len(body) + 4])
    triple = small_builder(genome).build(
        placed.transcript(cds=placed.intervals(0, len(body)), cds_phase=0, tags=("cds_end_NF",)))
    assert (triple.cds_start, triple.cds_end) == (0, len(body))
    assert triple.protein == STANDARD_CODE.translate(body)
    assert len(triple.protein) == 21
    assert triple.flags == ("cds_end_incomplete",)


def test_internal_stop_is_flagged_and_shown(genome):
    body = "ATG" + "GCC" + "TAG" + "GCC" + "TAA"
    placed = Placed(genome, "c1", "+", body, [len(body)])
    triple = small_builder(genome).build(placed.transcript(cds=placed.intervals(0, len(body)), cds_phase=0))
    assert triple.protein == "MA*A"
    assert triple.flags == ("internal_stop",)


def test_selenocysteine_feature_gives_u(genome):
    body = "ATG" + "GCC" + "TGA" + "GCC" + "TAA"
    placed = Placed(genome, "c1", "-", body, [7, len(body) - 7])   # Sec codon split by the intron
    transcript = placed.transcript(cds=placed.intervals(0, len(body) - 3), cds_phase=0,
                                   stop_codons=placed.intervals(len(body) - 3, len(body)),
                                   selenocysteines=placed.intervals(6, 9))
    triple = small_builder(genome).build(transcript)
    assert triple.protein == "MAUA"
    assert triple.flags == ("selenocysteine",)


def test_mitochondrial_contig_uses_the_mitochondrial_code(genome):
    body = "ATA" + "TGA" + "GCC" + "AGA"     # Met(start) Trp Ala stop in vertebrate mito
    placed = Placed(genome, "chrM", "+", body, [len(body)], start=100)
    triple = small_builder(genome).build(placed.transcript(cds=placed.intervals(0, len(body)), cds_phase=0))
    assert triple.protein == "MWA"
    assert triple.flags == ("mito_code", "window_padded")


def test_n_in_exon_flags_non_acgt_and_translates_to_x(genome):
    body = "ATG" + "ANC" + "GGN" + "TAA"
    placed = Placed(genome, "c1", "+", body, [len(body)])
    triple = small_builder(genome).build(placed.transcript(cds=placed.intervals(0, len(body)), cds_phase=0))
    assert triple.rna == body
    assert triple.protein == "MXG"
    assert triple.flags == ("non_acgt",)


def test_soft_masked_and_iupac_bases_are_normalised(genome):
    rna = "acgtRYacgt"
    placed = Placed(genome, "c1", "-", rna, [len(rna)])
    triple = small_builder(genome).build(placed.transcript(biotype="lncRNA"))
    assert triple.rna == "ACGTNNACGT"
    assert triple.flags == ("no_cds", "non_acgt")


def test_non_coding_transcript_and_orf_prediction(genome):
    orf = "ATG" + random_codons(120, 8) + "TGA"
    rna = "CCTCC" + orf + "GGAGG"
    placed = Placed(genome, "c1", "-", rna, [100, len(rna) - 100])
    transcript = placed.transcript(biotype="lncRNA")
    plain = small_builder(genome).build(transcript)
    assert plain.flags == ("no_cds",)
    assert (plain.cds_start, plain.cds_end, plain.protein) == (None, None, "")

    predicted = small_builder(genome, orf="longest").build(transcript)
    assert (predicted.cds_start, predicted.cds_end) == (5, 5 + len(orf))
    assert predicted.protein == STANDARD_CODE.translate(orf)[:-1]
    assert predicted.flags == ("orf_predicted",)

    too_short = small_builder(genome, orf="longest", min_orf_length=200).build(transcript)
    assert too_short.flags == ("no_cds",)


def test_orf_prediction_never_replaces_an_annotated_cds(genome):
    utr5, body, utr3 = coding_rna(codons=10)
    rna = utr5 + "ATG" + random_codons(150, 9) + "TAA" + body + utr3
    placed = Placed(genome, "c1", "+", rna, [len(rna)])
    start = len(rna) - len(utr3) - len(body)
    transcript = placed.transcript(cds=placed.intervals(start, start + len(body)), cds_phase=0)
    triple = small_builder(genome, orf="longest", min_orf_length=1).build(transcript)
    assert (triple.cds_start, triple.cds_end) == (start, start + len(body))
    assert "orf_predicted" not in triple.flags


def test_with_dna_centres_the_tss(genome):
    utr5, body, utr3 = coding_rna()
    rna = utr5 + body + utr3
    placed = Placed(genome, "c1", "-", rna, [len(rna)])
    options = BuildOptions(dna_length=1000, with_dna=True)
    triple = TripleBuilder(genome, options).build(placed.transcript())
    assert len(triple.dna) == 1000
    assert triple.dna[500:500 + len(rna)] == rna      # single exon: the RNA starts at the TSS
    assert (triple.window_start, triple.window_end) == (triple.tss - 499, triple.tss + 501)
    assert "window_padded" not in triple.flags


def test_window_padded_flag_at_the_contig_end(genome):
    rna = random_dna(50, 10)
    placed = Placed(genome, "c1", "+", rna, [50], start=CONTIG_LENGTH - 90)   # TSS 19,910
    triple = TripleBuilder(genome, BuildOptions(dna_length=200, with_dna=True)).build(placed.transcript())
    assert triple.window_end - CONTIG_LENGTH == 10
    assert triple.dna.endswith("N" * 10) and not triple.dna.endswith("N" * 11)
    assert "window_padded" in triple.flags


def test_discontinuous_cds_is_flagged(genome):
    body = "ATG" + "GCC" * 4 + "TAA"
    rna = body[:6] + "TTT" + body[6:]
    placed = Placed(genome, "c1", "+", rna, [len(rna)])
    cds = placed.intervals(0, 6) + placed.intervals(9, len(rna))
    triple = small_builder(genome).build(placed.transcript(cds=cds, cds_phase=0))
    assert (triple.cds_start, triple.cds_end) == (0, len(rna))
    assert triple.protein == "MAAAA"
    assert triple.flags == ("cds_discontinuous",)


def test_cds_outside_exons_names_the_transcript(genome):
    rna = random_dna(90, 11)
    placed = Placed(genome, "c1", "+", rna, [40, 50])
    intron_cds = [(placed.exons[0][1] + 10, placed.exons[0][1] + 40)]
    message = r"test.gtf:1: transcript T1: CDS c1:\d+-\d+ .*not inside any of its exons"
    with pytest.raises(AnnotationError, match=message):
        small_builder(genome).build(placed.transcript(cds=intron_cds, cds_phase=0))


def test_stop_codon_and_selenocysteine_outside(genome):
    rna = random_dna(90, 12)
    placed = Placed(genome, "c1", "+", rna, [90])
    cds = placed.intervals(0, 30)
    with pytest.raises(AnnotationError, match="stop_codon"):
        small_builder(genome).build(placed.transcript(cds=cds, cds_phase=0, stop_codons=[(100, 103)]))
    with pytest.raises(AnnotationError, match="Selenocysteine .* outside the CDS"):
        small_builder(genome).build(placed.transcript(cds=cds, cds_phase=0,
                                                      selenocysteines=placed.intervals(60, 63)))


def test_exon_past_the_contig_end_is_an_error(genome):
    transcript = Transcript("T9", "G9", "", "", "c1", "+", [(CONTIG_LENGTH - 10, CONTIG_LENGTH + 5)],
                            source="x.gtf:7")
    with pytest.raises(AnnotationError, match=r"x.gtf:7: transcript T9: .*same assembly"):
        small_builder(genome).build(transcript)


def test_bad_strand_is_an_error(genome):
    transcript = Transcript("T9", "G9", "", "", "c1", ".", [(10, 20)], source="x.gtf:3")
    with pytest.raises(AnnotationError, match="strand"):
        small_builder(genome).build(transcript)


def test_bad_phase_is_an_error(genome):
    transcript = Transcript("T9", "G9", "", "", "c1", "+", [(10, 40)], cds=[(10, 40)], cds_phase=3)
    with pytest.raises(AnnotationError, match="phase"):
        small_builder(genome).build(transcript)


def test_locus_cache_serves_neighbours_and_switches_contigs(genome):
    builder = small_builder(genome)
    one = Transcript("A", "G", "", "", "c1", "+", [(100, 200), (300, 400)])
    two = Transcript("B", "G", "", "", "c1", "-", [(150, 250)])
    three = Transcript("C", "G", "", "", "chrM", "+", [(100, 130)])
    far = Transcript("D", "G", "", "", "c1", "+", [(19_000, 19_100)])
    expected = {
        "A": genome.sequences["c1"][100:200] + genome.sequences["c1"][300:400],
        "B": reverse_complement(genome.sequences["c1"][150:250]),
        "C": genome.sequences["chrM"][100:130],
        "D": genome.sequences["c1"][19_000:19_100],
    }
    for transcript in (one, two, three, one, far):
        assert builder.build(transcript).rna == expected[transcript.transcript_id]
    # The 20 kb contigs fit one chunk: c1, chrM, then c1 again; 'B' and 'far' come from the cache.
    assert genome.fetches == 3


def test_options_are_checked():
    with pytest.raises(Exception, match="dna-length"):
        BuildOptions(dna_length=11)
    with pytest.raises(ValueError):
        BuildOptions(orf="all")
    with pytest.raises(ValueError):
        BuildOptions(min_orf_length=0)
