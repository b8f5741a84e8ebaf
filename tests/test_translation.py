"""Genetic codes, CDS translation, ORF calling and sequence helpers (pure functions, no files)."""

import itertools

import pytest

from isoformer_cli.triples.orf import Orf, longest_orf
from isoformer_cli.triples.sequence import has_non_acgt, normalise, reverse_complement
from isoformer_cli.triples.translation import (
    GENETIC_CODES,
    MITOCHONDRIAL_CODE,
    STANDARD_CODE,
    translate_cds,
)

# Textbook (NCBI) assignments, spelled out independently of the compact tables in the module.
STANDARD_SPOT_CHECKS = {
    "ATG": "M", "TGG": "W", "TAA": "*", "TAG": "*", "TGA": "*", "TTT": "F", "TTA": "L",
    "CTG": "L", "ATA": "I", "AGA": "R", "AGG": "R", "GGG": "G", "GCT": "A", "CAT": "H",
    "AAA": "K", "GAT": "D", "GAA": "E", "TGT": "C", "TCA": "S", "AGT": "S", "CCC": "P",
    "ACG": "T", "TAT": "Y", "CAA": "Q", "AAT": "N", "GTC": "V", "CGA": "R", "ATT": "I",
}


def test_standard_code_matches_textbook_assignments():
    for codon, amino_acid in STANDARD_SPOT_CHECKS.items():
        assert STANDARD_CODE.codons[codon] == amino_acid, codon
    assert STANDARD_CODE.stops == {"TAA", "TAG", "TGA"}
    assert STANDARD_CODE.starts == {"ATG", "CTG", "TTG"}


def test_standard_code_has_twenty_amino_acids_and_64_plain_codons():
    plain = {codon: aa for codon, aa in STANDARD_CODE.codons.items() if "N" not in codon}
    assert len(plain) == 64
    assert set(plain.values()) == set("ACDEFGHIKLMNPQRSTVWY*")


def test_vertebrate_mitochondrial_code_differences():
    differences = {
        codon for codon in STANDARD_CODE.codons if STANDARD_CODE.codons[codon] != MITOCHONDRIAL_CODE.codons[codon]
        and "N" not in codon
    }
    assert differences == {"AGA", "AGG", "ATA", "TGA"}
    assert MITOCHONDRIAL_CODE.codons["TGA"] == "W"
    assert MITOCHONDRIAL_CODE.codons["ATA"] == "M"
    assert MITOCHONDRIAL_CODE.codons["AGA"] == "*"
    assert MITOCHONDRIAL_CODE.stops == {"TAA", "TAG", "AGA", "AGG"}
    assert MITOCHONDRIAL_CODE.starts == {"ATT", "ATC", "ATA", "ATG", "GTG"}
    assert set(GENETIC_CODES) == {1, 2}


def test_codons_with_n_resolve_only_when_unambiguous():
    # Fourfold-degenerate third positions resolve (gffread does the same: GGN -> G).
    assert STANDARD_CODE.translate("GGNCCNACNCTNGCNGTNTCNCGN") == "GPTLAVSR"
    # Twofold or mixed ones do not.
    assert STANDARD_CODE.translate("AANTANNNNNTG") == "XXXX"
    assert MITOCHONDRIAL_CODE.translate("AGN") == "X"  # AGA/AGG stop, AGC/AGT serine
    assert STANDARD_CODE.translate("AGN") == "X"


def test_translate_ignores_trailing_partial_codon_and_unknown_letters():
    assert STANDARD_CODE.translate("ATGGC") == "M"
    assert STANDARD_CODE.translate("ATGRYA") == "MX"
    assert STANDARD_CODE.translate("") == ""


def test_translate_cds_drops_terminal_stop_only():
    result = translate_cds("ATGGCCTAA")
    assert result.protein == "MA"
    assert result.terminal_stop and not result.internal_stop and result.initiator


def test_translate_cds_reports_internal_stop_and_keeps_it_as_star():
    result = translate_cds("ATGTAAGCCTGA")
    assert result.protein == "M*A"
    assert result.internal_stop and result.terminal_stop


def test_translate_cds_without_stop_keeps_everything():
    result = translate_cds("ATGGCCGCC")
    assert result.protein == "MAA"
    assert not result.terminal_stop and not result.internal_stop


def test_selenocysteine_codon_becomes_u_and_is_not_an_internal_stop():
    result = translate_cds("ATGTGAGCCTAA", selenocysteine_codons=(1,))
    assert result.protein == "MUA"
    assert not result.internal_stop
    # Without the annotation the same TGA is an internal stop.
    assert translate_cds("ATGTGAGCCTAA").internal_stop


def test_mitochondrial_alternative_initiator_reads_as_methionine():
    # ATT codes isoleucine but starts MT-ND2: the protein begins with Met.
    result = translate_cds("ATTAAATGAAGA", MITOCHONDRIAL_CODE)
    assert result.protein == "MKW"
    assert result.terminal_stop and not result.internal_stop
    # Only at a real (5'-complete) start.
    assert translate_cds("ATTAAA", MITOCHONDRIAL_CODE, five_prime_complete=False).protein == "IK"
    # The standard code never rewrites the first codon (gffread does not either).
    assert translate_cds("CTGAAA").protein == "LK"


def test_first_codon_not_a_start():
    assert not translate_cds("GCCATGTAA").initiator


@pytest.mark.parametrize("sequence, expected", [
    ("acgtACGT", "ACGTACGT"),
    ("ACGTRYKMSWBDHVN", "ACGTNNNNNNNNNNN"),
    ("a-c.g*t", "ANCNGNT"),
    ("", ""),
])
def test_normalise(sequence, expected):
    assert normalise(sequence) == expected


def test_reverse_complement():
    assert reverse_complement("AACGTN") == "NACGTT"
    assert reverse_complement("acgt") == "ACGT"
    assert reverse_complement("ARC") == "GNT"
    for letters in itertools.product("ACGTN", repeat=3):
        sequence = "".join(letters)
        assert reverse_complement(reverse_complement(sequence)) == sequence


def test_has_non_acgt():
    assert not has_non_acgt("ACGTacgt")
    assert has_non_acgt("ACGN")
    assert has_non_acgt("ACGR")


def test_longest_orf_picks_longest_in_any_frame():
    short = "ATG" + "GCC" * 2 + "TAA"              # 3 aa at 0..12
    long = "ATG" + "AAA" * 5 + "TAG"               # 6 aa
    rna = short + "C" + long + "GG"                  # long ORF in frame 1
    orf = longest_orf(rna, min_length=1)
    assert orf == Orf(13, 13 + len(long))
    assert orf.amino_acids == 6
    assert STANDARD_CODE.translate(rna[orf.start:orf.end]) == "MKKKKK*"


def test_longest_orf_uses_first_atg_after_previous_stop():
    rna = "ATGATGCCCATGTGA"
    assert longest_orf(rna, min_length=1) == Orf(0, 15)


def test_longest_orf_requires_a_stop_and_the_minimum_length():
    assert longest_orf("ATG" + "GCC" * 50, min_length=1) is None   # runs off the 3' end
    rna = "ATG" + "GCC" * 9 + "TAA"                                  # 10 aa
    assert longest_orf(rna, min_length=10) == Orf(0, len(rna))
    assert longest_orf(rna, min_length=11) is None
    assert longest_orf("", min_length=1) is None


def test_longest_orf_tie_goes_to_the_5_prime_one():
    first = "ATGAAATAA"
    second = "ATGCCCTAG"
    assert longest_orf(first + second, min_length=1) == Orf(0, 9)


def test_longest_orf_with_mitochondrial_stops():
    rna = "ATG" + "GCC" * 3 + "AGA" + "GCC" * 3 + "TAA"
    assert longest_orf(rna, STANDARD_CODE, min_length=1) == Orf(0, len(rna))
    assert longest_orf(rna, MITOCHONDRIAL_CODE, min_length=1) == Orf(0, 15)
