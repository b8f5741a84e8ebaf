"""Consequences at the start codon (issue 18, item 16), pinned to what ``bcftools csq -l`` 1.16 writes.

Runs without bcftools: each expected value below is csq 1.16's output for the (normalised) record on the
one-transcript model of :func:`variant_oracle.start_codon_model` (plus strand: ATG at 251-253, 5' UTR
201-250; minus strand: the codon at 648-650, CAT on the forward strand, 5' UTR 651-700).
tests/test_variants_oracle.py checks the same rules against csq itself on some 160 records per strand.
"""

import pytest

import variant_oracle as oracle
from isoformer_cli.genomics.genome import Genome
from isoformer_cli.triples.consequence import consequence
from isoformer_cli.triples.source import TripleSource, iter_triples
from isoformer_cli.triples.variants import Allele

CASES = [
    # strand, POS, REF, ALT, terms (csq's, in any order), amino-acid change
    # (a) an edit of the codon's bases is start_lost by position, even where ATG is left in place
    ("+", 251, "A", "C", "start_lost", ""),
    ("+", 252, "TG", "T", "start_lost", ""),  # ATG|GGA -> ATG|GA...: still ATG, csq still start_lost
    ("+", 251, "ATGG", "A", "start_lost", ""),
    ("+", 250, "TATG", "T", "start_lost", ""),  # the whole codon, anchor in the UTR
    ("+", 251, "A", "AC", "start_lost", ""),
    ("+", 252, "T", "TGC", "start_lost", ""),
    ("+", 250, "T", "TATG", "5_prime_utr", ""),  # before the codon
    ("+", 253, "GGGA", "G", "inframe_deletion", "1MG>1M"),  # after it: shown from the anchor's codon
    ("+", 254, "GGAGCTT", "G", "inframe_deletion", "2GAF>2V"),
    ("+", 254, "G", "GAAA", "inframe_insertion", "2G>2ER"),
    ("+", 254, "G", "GTTT", "inframe_insertion&stop_gained", "2G>2V*"),
    # right after the intact codon: csq 1.16 says start_lost on this strand only (see consequence.py)
    ("+", 253, "G", "GCCC", "inframe_insertion", "1M>1MP"),
    # (b) from the 5' UTR into the CDS
    ("+", 249, "TTAT", "T", "5_prime_utr&coding_sequence", ""),
    ("+", 247, "CATTATG", "C", "5_prime_utr&coding_sequence", ""),
    ("+", 250, "TA", "AC", "start_lost&5_prime_utr", ""),
    ("-", 649, "ATC", "A", "start_lost&5_prime_utr", ""),  # one CDS base: no frame term from csq
    ("-", 648, "CATCT", "C", "frameshift&start_lost&5_prime_utr", ""),
    ("-", 647, "CCATCT", "C", "start_lost&inframe_deletion&5_prime_utr", ""),
    ("-", 650, "TC", "AA", "start_lost&5_prime_utr", ""),
    # (c) a minus-strand deletion that reaches the codon's first base (the CDS's genomic end)
    ("-", 647, "CCAT", "C", "start_lost&inframe_deletion", ""),
    ("-", 648, "CAT", "C", "frameshift&start_lost", ""),
    ("-", 649, "AT", "A", "start_lost", ""),  # one base: csq adds no frame term
    ("-", 647, "CCA", "C", "start_lost", ""),  # not reaching it
    ("-", 646, "CCCA", "C", "start_lost", ""),
    ("-", 649, "A", "AGC", "start_lost", ""),
    ("-", 648, "C", "CAAA", "start_lost", ""),
    ("-", 650, "T", "TGGG", "5_prime_utr", ""),
    # (d) codons 2-3 on the minus strand: numbered from the anchor's codon, cut after an inserted stop
    ("-", 647, "C", "CAAA", "inframe_insertion", "2G>2FG"),
    ("-", 647, "C", "CCAT", "inframe_insertion", "2G>2MG"),
    ("-", 647, "C", "CTCA", "stop_gained&inframe_insertion", "2G>2*"),
    ("-", 644, "C", "CTCA", "stop_gained&inframe_insertion", "3A>3*"),
]


@pytest.fixture(scope="module")
def triples(tmp_path_factory):
    folder = tmp_path_factory.mktemp("start")
    found = {}
    for strand in "+-":
        genome_path, gff3, _, _ = oracle.start_codon_model(folder, strand)
        genome = Genome(genome_path)
        found[strand] = next(iter_triples(TripleSource(genome=genome_path, annotation=gff3, dna_length=2048), genome))
    return found


@pytest.mark.parametrize("strand, pos, ref, alt, terms, amino_acids", CASES)
def test_start_codon_consequence(triples, strand, pos, ref, alt, terms, amino_acids):
    triple = triples[strand]
    assert triple.genome_chrom == "c" and triple.protein.startswith("MGA")
    found = consequence(triple, Allele("c", pos - 1, ref, alt))
    assert (set(found.terms), found.amino_acids) == (set(terms.split("&")), amino_acids)  # csq's order differs


def test_frameshift_in_codon_two_minus_strand_reads_on_to_the_stop(triples):
    found = consequence(triples["-"], Allele("c", 644, "TCC", "T"))
    assert found.name == "frameshift"
    ref, alt = found.amino_acids.split(">")
    # csq: codon 2 GGA loses two bases and reads AGC (S), then the shifted frame to its first stop.
    assert ref.startswith("2GAF") and ref.endswith("K*") and alt.startswith("2SFPL") and alt.endswith("S*")


def test_no_start_to_lose_without_methionine(tmp_path):
    """A CDS whose first codon is not ATG (an incomplete start): indels there are ordinary coding changes."""
    genome_path, gff3, sequence, first = oracle.start_codon_model(tmp_path, "+")
    sequence = sequence[:first - 1] + "CTG" + sequence[first + 2:]  # ATG -> CTG (Leu)
    with open(genome_path, "w") as handle:
        handle.write(">c\n" + sequence + "\n")
    genome = Genome(genome_path)
    triple = next(iter_triples(TripleSource(genome=genome_path, annotation=gff3, dna_length=2048), genome))
    assert triple.protein.startswith("L")
    found = consequence(triple, Allele("c", first, sequence[first:first + 2], sequence[first]))  # the codon's last base
    assert found.name == "frameshift" and found.amino_acids.startswith("1LGA")
    found = consequence(triple, Allele("c", first - 3, sequence[first - 3:first + 1], sequence[first - 3]))  # UTR into CDS
    assert found.name == "coding_sequence&5_prime_utr"


@pytest.mark.parametrize("strand, pos, ref, alt, written", [
    ("-", 647, "CCAT", "C", "start_lost&inframe_deletion"),  # the whole codon (c)
    ("+", 249, "TTAT", "T", "coding_sequence&5_prime_utr"),  # 5' UTR into the CDS (b)
])
def test_command_writes_start_codon_indels(tmp_path, strand, pos, ref, alt, written):
    from click.testing import CliRunner

    from isoformer_cli.cli.main import cli

    genome_path, gff3, sequence, _ = oracle.start_codon_model(tmp_path, strand)
    assert sequence[pos - 1:pos - 1 + len(ref)] == ref
    oracle.write_vcf(tmp_path / "in.vcf", "c", len(sequence), [("v", pos, ref, alt)])
    result = CliRunner().invoke(cli, ["-q", "variants", "--checkpoint", "demo", "-I", str(tmp_path / "in.vcf"),
                                      "--genome", genome_path, "--annotation", gff3, "-O", str(tmp_path / "out.vcf")])
    assert result.exit_code == 0 and "error" not in result.output.lower(), result.output
    line = next(line for line in open(tmp_path / "out.vcf") if not line.startswith("#"))
    entry = line.split("ISOFORMER=", 1)[1].split(";")[0].split("\t")[0].split("|")
    # No amino-acid change; the alternative CDS no longer opens with ATG, so no protein is scored.
    assert entry[3] == written and entry[4] == "." and "start_lost" in entry[6].split("&"), entry


def test_mitochondrial_atg_to_ata_keeps_the_start(tmp_path):
    """In the vertebrate mitochondrial code ATA reads Met: that SNV is synonymous, an indel there is not."""
    genome_path, gff3, sequence, first = oracle.start_codon_model(tmp_path, "+")
    for path in (genome_path, gff3):
        text = open(path).read()
        with open(path, "w") as handle:
            handle.write(text.replace(">c\n", ">chrM\n").replace("\nc\t", "\nchrM\t"))
    genome = Genome(genome_path)
    triple = next(iter_triples(TripleSource(genome=genome_path, annotation=gff3, dna_length=2048), genome))
    assert triple.genome_chrom == "chrM" and sequence[first - 1:first + 2] == "ATG"
    found = consequence(triple, Allele("chrM", first + 1, "G", "A"))
    assert (found.name, found.amino_acids) == ("synonymous", "1M")
    assert consequence(triple, Allele("chrM", first + 1, "G", "C")).name == "start_lost"
    assert consequence(triple, Allele("chrM", first, "TG", "T")).name == "start_lost"
