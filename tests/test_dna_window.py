"""TSS and DNA-window rules: centring on both strands, padding at contig ends, length checks."""

import random

import pytest

from isoformer_cli.errors import InputError
from isoformer_cli.triples.dna_window import (
    DEFAULT_DNA_LENGTH,
    check_dna_length,
    fetch_window,
    is_padded,
    transcription_start_site,
    window_span,
)
from isoformer_cli.genomics.records import Transcript
from isoformer_cli.triples.sequence import reverse_complement


class DictGenome:
    """In-memory stand-in for io.genome.Genome (same length/fetch contract)."""

    def __init__(self, contigs):
        self.sequences = dict(contigs)

    def length(self, contig):
        return len(self.sequences[contig])

    def fetch(self, contig, start, end):
        assert 0 <= start <= end <= len(self.sequences[contig]), (start, end)
        return self.sequences[contig][start:end].upper()


def transcript(strand, exons):
    return Transcript("t1", "g1", "", "", "c1", strand, exons)


@pytest.fixture
def genome():
    rng = random.Random(7)
    return DictGenome({"c1": "".join(rng.choice("ACGT") for _ in range(1000))})


def test_tss_is_first_base_on_plus_and_last_base_on_minus():
    exons = [(100, 150), (300, 420)]
    assert transcription_start_site(transcript("+", exons)) == 100
    assert transcription_start_site(transcript("-", exons)) == 419


def test_window_spans():
    assert window_span(500, "+", 10) == (495, 505)
    assert window_span(500, "-", 10) == (496, 506)
    assert window_span(0, "+") == (-DEFAULT_DNA_LENGTH // 2, DEFAULT_DNA_LENGTH // 2)


@pytest.mark.parametrize("strand", ["+", "-"])
def test_tss_sits_at_index_half_length_on_both_strands(genome, strand):
    length = 20
    tss = 400
    start, end = window_span(tss, strand, length)
    window = fetch_window(genome, "c1", start, end, strand)
    assert len(window) == length
    tss_base = genome.sequences["c1"][tss]
    expected = tss_base if strand == "+" else reverse_complement(tss_base)
    assert window[length // 2] == expected
    # The transcript reads left to right: the bases after the TSS are downstream on its strand.
    downstream = genome.sequences["c1"][tss:tss + 5] if strand == "+" else \
        reverse_complement(genome.sequences["c1"][tss - 4:tss + 1])
    assert window[length // 2:length // 2 + 5] == downstream


def test_minus_window_is_reverse_complement_of_its_span(genome):
    start, end = window_span(300, "-", 50)
    assert fetch_window(genome, "c1", start, end, "-") == reverse_complement(genome.sequences["c1"][start:end])


def test_padding_past_the_contig_end(genome):
    start, end = window_span(990, "+", 40)          # [970, 1010): 10 bases past the end
    window = fetch_window(genome, "c1", start, end, "+")
    assert window == genome.sequences["c1"][970:] + "N" * 10
    assert is_padded(start, end, 1000)
    # On '-' the same overhang sits at the window's left after reverse complement.
    start, end = window_span(990, "-", 40)          # [971, 1011): 11 past the end
    window = fetch_window(genome, "c1", start, end, "-")
    assert window == "N" * 11 + reverse_complement(genome.sequences["c1"][971:])


def test_padding_before_the_contig_start(genome):
    start, end = window_span(5, "+", 40)            # [-15, 25)
    window = fetch_window(genome, "c1", start, end, "+")
    assert window == "N" * 15 + genome.sequences["c1"][:25]
    start, end = window_span(5, "-", 40)            # [-14, 26)
    window = fetch_window(genome, "c1", start, end, "-")
    assert window == reverse_complement(genome.sequences["c1"][:26]) + "N" * 14
    assert is_padded(start, end, 1000)


def test_window_larger_than_contig_on_both_sides(genome):
    window = fetch_window(genome, "c1", -500, 1600, "+")
    assert window == "N" * 500 + genome.sequences["c1"] + "N" * 600


def test_window_entirely_outside_contig(genome):
    assert fetch_window(genome, "c1", 1200, 1210, "+") == "N" * 10


def test_window_inside_is_not_padded():
    assert not is_padded(0, 1000, 1000)
    assert is_padded(-1, 999, 1000)
    assert is_padded(1, 1001, 1000)


def test_window_is_normalised():
    genome = DictGenome({"c1": "acgtRYacgt"})
    assert fetch_window(genome, "c1", 0, 10, "+") == "ACGTNNACGT"
    assert fetch_window(genome, "c1", 0, 10, "-") == "ACGTNNACGT"


@pytest.mark.parametrize("length", [196_608, 2, 1000])
def test_check_dna_length_accepts_positive_even(length):
    assert check_dna_length(length) == length


@pytest.mark.parametrize("length", [0, -2, 7, 196_607, 2.0, "196608", True])
def test_check_dna_length_rejects_others(length):
    with pytest.raises(InputError, match="--dna-length"):
        check_dna_length(length)
