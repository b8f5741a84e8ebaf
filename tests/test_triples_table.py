"""The triples TSV / FASTA writer and the TSV reader (``isoformer predict --triples`` reads it back)."""

import gzip
import os

import pytest

from isoformer_cli.errors import InputError, OutputError
from isoformer_cli.formats.triples_table import COLUMNS, TriplesWriter, fasta_paths, read_triples_table
from isoformer_cli.genomics.records import Transcript, Triple


def make_triple(tid="T1", coding=True, dna=None, flags=("window_padded",), gene_name="ABC"):
    transcript = Transcript(tid, "G1", gene_name, "protein_coding", "1", "-", [(100, 200), (300, 400)])
    return Triple(transcript=transcript, genome_chrom="chr1", tss=399, window_start=-50, window_end=850,
                  cds_start=3 if coding else None, cds_end=30 if coding else None, rna="ACGT" * 50,
                  protein="MKV" if coding else "", flags=flags, dna=dna)


def test_round_trip_with_gzip_and_dna(tmp_path):
    path = str(tmp_path / "t.tsv.gz")
    triples = [make_triple("T1", dna="N" * 900), make_triple("T2", coding=False, dna="A" * 900, flags=())]
    with TriplesWriter(path, with_dna=True) as writer:
        for triple in triples:
            writer.write(triple)
    assert writer.rows == 2
    with gzip.open(path, "rt") as handle:
        assert handle.readline() == "\t".join(COLUMNS + ("dna",)) + "\n"
    first, second = read_triples_table(path)
    assert (first.transcript_id, first.chrom, first.strand, first.tss) == ("T1", "chr1", "-", 399)
    assert (first.window_start, first.window_end, first.cds_start, first.cds_end) == (-50, 850, 3, 30)
    assert (first.protein, first.flags, first.dna, first.gene_name) == ("MKV", ("window_padded",), "N" * 900, "ABC")
    assert (second.cds_start, second.cds_end, second.protein, second.flags) == (None, None, "", ())
    assert second.line == 3


def test_tabs_in_attribute_values_do_not_shift_columns(tmp_path):
    path = str(tmp_path / "t.tsv")
    with TriplesWriter(path) as writer:
        writer.write(make_triple(gene_name="odd\tname"))
    (row,) = read_triples_table(path)
    assert row.gene_name == "odd name"


def test_fasta_side_files(tmp_path):
    prefix = str(tmp_path / "P")
    with TriplesWriter(str(tmp_path / "t.tsv"), fasta_prefix=prefix, with_dna=True) as writer:
        writer.write(make_triple("T1", dna="C" * 130))
        writer.write(make_triple("T2", coding=False, dna="G" * 10))
    paths = fasta_paths(prefix, with_dna=True)
    assert open(paths["protein"]).read() == ">T1 gene_id=G1\nMKV\n"
    rna = open(paths["rna"]).read().splitlines()
    assert rna[0] == ">T1 gene_id=G1" and len(rna[1]) == 60 and rna.count(">T2 gene_id=G1") == 1
    dna = open(paths["dna"]).read().splitlines()
    assert dna[0] == ">T1 gene_id=G1 window=chr1:-50-850(-)"
    assert dna[1:4] == ["C" * 60, "C" * 60, "C" * 10]


def test_an_error_inside_the_writer_leaves_no_file(tmp_path):
    prefix = str(tmp_path / "P")
    path = str(tmp_path / "t.tsv")
    with pytest.raises(RuntimeError):
        with TriplesWriter(path, fasta_prefix=prefix) as writer:
            writer.write(make_triple())
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_writer_checks_targets_before_writing(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        with TriplesWriter(str(tmp_path / "missing" / "t.tsv")):
            pass
    with pytest.raises(OutputError, match="same file"):
        with TriplesWriter(str(tmp_path / "P.rna.fa"), fasta_prefix=str(tmp_path / "P")):
            pass
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("content, message", [
    ("a\tb\n", r":1: not a triples table"),
    ("\t".join(COLUMNS) + "\nT1\tG1\n", r":2: expected 14 tab-separated columns, found 2"),
    ("\t".join(COLUMNS) + "\n" + "\t".join(["T1", "G", "", "", "c", "+", "x", "0", "1", "", "", "A", "", ""]) + "\n",
     r":2: column tss must be an integer, not 'x'"),
    ("\t".join(COLUMNS) + "\n" + "\t".join(["T1", "G", "", "", "c", ".", "5", "0", "1", "", "", "A", "", ""]) + "\n",
     r":2: strand must be"),
])
def test_reader_rejects_malformed_tables(tmp_path, content, message):
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        list(read_triples_table(str(path)))


def test_reader_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"none\.tsv: triples table not found"):
        list(read_triples_table(str(tmp_path / "none.tsv")))
    with pytest.raises(InputError, match=r"is a folder, not a triples table"):
        list(read_triples_table(str(tmp_path)))


def test_reader_accepts_crlf(tmp_path):
    path = str(tmp_path / "t.tsv")
    with TriplesWriter(path) as writer:
        writer.write(make_triple())
    crlf = tmp_path / "crlf.tsv"
    crlf.write_bytes(open(path, "rb").read().replace(b"\n", b"\r\n"))
    assert list(read_triples_table(str(crlf)))[0].flags == ("window_padded",)
