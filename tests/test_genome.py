"""Genome FASTA layer: plain and BGZF files, index creation, fork safety, every error branch."""

import gzip
import multiprocessing
import os
import pickle
import shutil
import subprocess

import pysam
import pytest

from isoformer_cli.errors import GenomeError
from isoformer_cli.genomics import genome as genome_module
from isoformer_cli.genomics.genome import Genome

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "example_data")
HUMAN_FASTA = os.path.join(EXAMPLE, "hg38_chr16_186964-397118.fa")
MOUSE_FASTA = os.path.join(EXAMPLE, "chr9.4M.fa.gz")

SEQUENCES = {
    "chr1": "ACGTacgtNNNNRYKMacgtACGTTTTTGGGGCCCCAAAA" * 3,   # soft-masked, IUPAC, N
    "chrM": "GATCACAGGTCTATCACCCTATTAACCACTCACGGGAGCT",
    "2": "A" * 61,
}


def write_fasta(path, sequences=SEQUENCES, width=10):
    with open(path, "w") as handle:
        for name, sequence in sequences.items():
            handle.write(f">{name} description text\n")
            for start in range(0, len(sequence), width):
                handle.write(sequence[start:start + width] + "\n")
    return str(path)


def test_plain_fasta_is_indexed_and_fetched(tmp_path):
    path = write_fasta(tmp_path / "genome.fa")
    with Genome(path) as genome:
        assert os.path.exists(path + ".fai")
        assert genome.contigs == ("chr1", "chrM", "2")
        assert genome.lengths == {name: len(seq) for name, seq in SEQUENCES.items()}
        assert genome.length("chrM") == 40 and "chr1" in genome and "chr3" not in genome
        for name, sequence in SEQUENCES.items():
            assert genome.fetch(name, 0, len(sequence)) == sequence.upper()
        # soft-masked letters are upper-cased, IUPAC letters and N are kept as they are
        assert genome.fetch("chr1", 4, 16) == "ACGTNNNNRYKM"
        assert genome.fetch("chr1", 5, 5) == ""
        assert genome.fetch("2", 55, 61) == "AAAAAA"


def test_bgzf_fasta_gets_fai_and_gzi(tmp_path):
    plain = write_fasta(tmp_path / "genome.fa")
    pysam.tabix_compress(plain, plain + ".gz")
    with Genome(plain + ".gz") as genome:
        assert genome.compressed
        assert os.path.exists(plain + ".gz.fai") and os.path.exists(plain + ".gz.gzi")
        assert genome.fetch("chr1", 3, 13) == SEQUENCES["chr1"][3:13].upper()


def test_example_genomes_match_samtools_when_present(tmp_path):
    # Copies, so that the index files are written under tmp_path and not into example_data/.
    shutil.copy(HUMAN_FASTA, tmp_path)
    shutil.copy(MOUSE_FASTA, tmp_path)
    human_fasta = str(tmp_path / os.path.basename(HUMAN_FASTA))
    human = Genome(human_fasta)
    assert human.contigs == ("chr16",) and human.length("chr16") == 397118 - 186964 + 1
    mouse = Genome(str(tmp_path / os.path.basename(MOUSE_FASTA)))
    assert mouse.contigs == ("chr9",) and mouse.length("chr9") == 4_000_000
    assert set(mouse.fetch("chr9", 0, 1000)) == {"N"}  # the first 3 Mb are N
    window = mouse.fetch("chr9", 3_000_000, 3_000_300)
    assert set(window) <= set("ACGTN") and window == window.upper()
    if shutil.which("samtools"):
        out = subprocess.run(["samtools", "faidx", human_fasta, "chr16:1001-1100"], capture_output=True,
                             text=True, check=True).stdout
        assert human.fetch("chr16", 1000, 1100) == "".join(out.split("\n")[1:]).upper()


def test_fetch_errors(tmp_path):
    genome = Genome(write_fasta(tmp_path / "genome.fa"))
    with pytest.raises(GenomeError, match=r"genome\.fa: no contig named 'chr9' in the FASTA"):
        genome.fetch("chr9", 0, 10)
    with pytest.raises(GenomeError, match=r"genome\.fa: chrM:30-41 \(0-based half-open\) is outside the contig \(length 40\)"):
        genome.fetch("chrM", 30, 41)
    with pytest.raises(GenomeError, match=r"outside the contig"):
        genome.fetch("chrM", -1, 5)
    with pytest.raises(GenomeError, match=r"outside the contig"):
        genome.fetch("chrM", 10, 5)


def test_plain_gzip_fasta_says_how_to_bgzip(tmp_path):
    plain = write_fasta(tmp_path / "genome.fa")
    with open(plain, "rb") as source, gzip.open(plain + ".gz", "wb") as target:
        target.write(source.read())
    os.remove(plain)
    with pytest.raises(GenomeError) as info:
        Genome(plain + ".gz")
    message = str(info.value)
    assert "compressed with plain gzip" in message
    assert f"`gzip -d {plain}.gz && bgzip {plain}`" in message
    # the command works and the result opens
    if shutil.which("bgzip"):
        subprocess.run(f"gzip -d {plain}.gz && bgzip {plain}", shell=True, check=True)
        assert Genome(plain + ".gz").contigs == ("chr1", "chrM", "2")


def test_missing_folder_empty_and_not_fasta(tmp_path):
    with pytest.raises(GenomeError, match=r"nope\.fa: genome FASTA not found"):
        Genome(str(tmp_path / "nope.fa"))
    with pytest.raises(GenomeError, match=r"is a folder, not a genome FASTA file"):
        Genome(str(tmp_path))
    empty = tmp_path / "empty.fa"
    empty.write_text("")
    with pytest.raises(GenomeError, match=r"empty\.fa: the FASTA file is empty"):
        Genome(str(empty))
    blank = tmp_path / "blank.fa"
    blank.write_text("\n\n")
    with pytest.raises(GenomeError, match=r"blank\.fa: the FASTA file is empty"):
        Genome(str(blank))
    gtf = tmp_path / "genes.gtf"
    gtf.write_text('chr1\tx\texon\t1\t10\t.\t+\t.\ttranscript_id "t";\n')
    with pytest.raises(GenomeError, match=r"genes\.gtf: looks like a GTF annotation, not a genome FASTA; did you swap "
                                          r"--genome and --annotation\?"):
        Genome(str(gtf))
    text = tmp_path / "notes.txt"
    text.write_text("some notes\n")  # text of no known kind: the reader's own message
    with pytest.raises(GenomeError, match=r"notes\.txt: not a FASTA file .*found 'some notes'"):
        Genome(str(text))


def test_unreadable_fasta(tmp_path, monkeypatch):
    path = write_fasta(tmp_path / "genome.fa")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # Tests may run as root, for whom chmod does not bite: refuse the open itself.
    monkeypatch.setattr(genome_module, "open", refuse, raising=False)
    with pytest.raises(GenomeError, match=r"genome\.fa: permission denied; make the FASTA readable"):
        Genome(path)


def test_read_only_folder_without_index(tmp_path, monkeypatch):
    path = write_fasta(tmp_path / "genome.fa")
    monkeypatch.setattr(genome_module, "_folder_writable", lambda folder: False)
    with pytest.raises(GenomeError) as info:
        Genome(path)
    message = str(info.value)
    assert "has no index and its folder" in message and "is not writable" in message
    # `samtools faidx` writes beside the FASTA, which is what fails here: only the link is suggested.
    assert "samtools faidx" not in message and f"`ln -s {os.path.abspath(path)} " in message
    assert not os.path.exists(path + ".fai")
    # with an index already there, a read-only folder is fine
    monkeypatch.undo()
    Genome(path).close()
    monkeypatch.setattr(genome_module, "_folder_writable", lambda folder: False)
    assert Genome(path).contigs == ("chr1", "chrM", "2")


def test_corrupt_and_outdated_index(tmp_path):
    path = write_fasta(tmp_path / "genome.fa")
    Genome(path).close()
    with open(path + ".fai", "w") as handle:
        handle.write("chr1\tnot-a-number\n")
    with pytest.raises(GenomeError, match=r"corrupt index.*delete genome\.fa\.fai .*samtools faidx"):
        Genome(path)
    # FASTA edited after indexing: a record added in front shifts every offset
    os.remove(path + ".fai")
    Genome(path).close()
    write_fasta(path, {"chr0": "C" * 25, **SEQUENCES})
    with pytest.raises(GenomeError, match=r"the index does not match .*was the FASTA changed after indexing"):
        Genome(path)
    # FASTA extended after indexing: the index misses the new tail
    os.remove(path + ".fai")
    write_fasta(path)
    Genome(path).close()
    write_fasta(path, {**SEQUENCES, "chrY": "T" * 30})
    with pytest.raises(GenomeError, match=r"the index does not cover the end of"):
        Genome(path)


def test_fasta_without_sequence_and_empty_index(tmp_path):
    path = tmp_path / "headers.fa"
    path.write_text(">only_a_header\n")
    with pytest.raises(GenomeError, match=r"headers\.fa: cannot index the FASTA .*check that it is a valid FASTA"):
        Genome(str(path))
    good = write_fasta(tmp_path / "genome.fa")
    open(good + ".fai", "w").close()
    with pytest.raises(GenomeError, match=r"genome\.fa: its index lists no sequence records \(corrupt index\?\): delete"):
        Genome(good)


def _fetch_in_child(genome, queue):
    queue.put(genome.fetch("chrM", 0, 8))


def test_handle_is_reopened_after_fork_and_pickling(tmp_path):
    genome = Genome(write_fasta(tmp_path / "genome.fa"))
    assert genome.fetch("chrM", 0, 4) == "GATC"
    parent_handle = genome._handle
    clone = pickle.loads(pickle.dumps(genome))
    assert clone._handle is None and clone.fetch("chrM", 0, 4) == "GATC"
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_fetch_in_child, args=(genome, queue))
    child.start()
    assert queue.get(timeout=30) == "GATCACAG"
    child.join(30)
    assert child.exitcode == 0
    assert genome._handle is parent_handle and genome.fetch("chrM", 4, 8) == "ACAG"
    genome.close()
    assert genome.fetch("chrM", 0, 2) == "GA"  # reopened lazily


def test_crlf_fasta(tmp_path):
    path = tmp_path / "windows.fa"
    path.write_bytes(b">a desc\r\nACGTACGTAC\r\nGGGG\r\n>b\r\nTTTTTTTTTT\r\nTT\r\n")
    with Genome(str(path)) as genome:
        assert genome.lengths == {"a": 14, "b": 12}
        assert genome.fetch("a", 8, 14) == "ACGGGG" and genome.fetch("b", 0, 12) == "T" * 12
