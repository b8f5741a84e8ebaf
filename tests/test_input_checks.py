"""How inputs are read (issue 18, items 3, 4, 9, 10, 13, 14), through the command line: orphan GFF3 children,
selections that match nothing, files of the wrong kind, htslib's stderr, a read-only genome folder and the
provenance line of a triples table. Each case on inputs the test writes itself."""

import gzip
import json
import os
import re
import shutil
import subprocess
import sys

import pysam
import pytest

from cli_helpers import HUMAN_GENOME, HUMAN_GTF, invoke, one_error_line
from click.testing import CliRunner

from isoformer_cli.cli.main import cli
from isoformer_cli.genomics.sniff import sniff


def run_loud(*args):
    """The command line without -q (warnings shown); the click Result."""
    return CliRunner().invoke(cli, [str(arg) for arg in args])


def error_after_demo_warnings(result, text):
    """Exit 1 with ``isoformer: error: <text>`` as the one error line; any line before it is the DEMO
    checkpoint's warning (a run with the bundled model says so even under -q)."""
    assert result.exit_code == 1, result.output
    *before, last = result.output.splitlines()
    assert last == f"isoformer: error: {text}"
    assert all("DEMO checkpoint" in line for line in before), result.output


def rows(path):
    """The data rows of a TSV output (no '#' lines, no column header)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as stream:
        lines = [line for line in stream if not line.startswith("#")]
    return lines[1:]


@pytest.fixture()
def genome(tmp_path):
    """A copy of the human example genome (its index is written beside it, in tmp_path)."""
    target = tmp_path / "genome.fa"
    shutil.copy(HUMAN_GENOME, target)
    return target


# ---------------------------------------------------------------------------------- 3. GFF3 orphans

GFF3 = """##gff-version 3
chr16\tt\tgene\t100\t900\t.\t+\t.\tID=g1;Name=G1
chr16\tt\tmRNA\t100\t900\t.\t+\t.\tID=t1;Parent=g1
chr16\tt\texon\t100\t300\t.\t+\t.\tParent=t1
chr16\tt\texon\t500\t900\t.\t+\t.\tParent=t1
chr16\tt\tncRNA_gene\t2000\t2400\t.\t-\t.\tID=g2;Name=G2
chr16\tt\texon\t2000\t2400\t.\t-\t.\tParent=g2
"""
ORPHANS = """chr16\tt\texon\t3100\t3300\t.\t+\t.\tParent=lost1
chr16\tt\tCDS\t3100\t3300\t.\t+\t0\tParent=lost1
chr16\tt\tCDS\t4100\t4300\t.\t+\t0\tParent=lost2
chr16\tt\tregion\t1\t10000\t.\t+\t.\tID=r1
chr16\tt\texon\t5100\t5300\t.\t+\t.\tParent=r1
"""


def test_gff3_children_of_no_feature_are_left_out_with_one_warning(tmp_path, genome):
    annotation = tmp_path / "a.gff3"
    annotation.write_text(GFF3 + ORPHANS)
    result = run_loud("triples", "--genome", genome, "--annotation", annotation, "-o", tmp_path / "t.tsv")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if "Parent" in line]
    assert warnings == [f"isoformer: WARNING: {annotation}: 4 exon/CDS/UTR records name a Parent that is no feature "
                        "of the file (3 Parent ids: lost1, lost2, r1); they were left out (is the transcript line "
                        "of each missing?)"]
    # Exons hanging from a gene (RefSeq ncRNA genes) stay a transcript; the orphans are none.
    assert [row.split("\t")[:3] for row in rows(tmp_path / "t.tsv")] == [["t1", "g1", "G1"], ["g2", "g2", "G2"]]
    assert "2 read, 2 selected, 2 written" in result.output


def test_gff3_of_orphans_only_is_an_error(tmp_path, genome):
    annotation = tmp_path / "a.gff3"
    annotation.write_text("##gff-version 3\n" + ORPHANS)
    result = invoke("triples", "--genome", genome, "--annotation", annotation, "-o", tmp_path / "t.tsv")
    one_error_line(result, f"{annotation}: no transcripts found: 4 exon/CDS/UTR records name a Parent that is no "
                           "feature of the file (3 Parent ids: lost1, lost2, r1); each Parent must be the ID of a "
                           "transcript (mRNA, transcript, ...) or gene line of the file — are those lines missing "
                           "(a filtered file?)")
    assert not (tmp_path / "t.tsv").exists()


# ------------------------------------------------------------------------ 4. selections that match nothing

COMMON = ("--genome", HUMAN_GENOME, "--annotation", HUMAN_GTF)


@pytest.mark.parametrize("command", ["triples", "predict", "embed"])
@pytest.mark.parametrize("option, message", [
    ("--genes", "--genes: none of the 2 requested genes is in {gtf}: NOSUCH, NOPE; check the ids (gene ids or gene "
                "names; a version suffix and rna-/gene- prefixes may be left out)"),
    ("--transcripts", "--transcripts: none of the 2 requested transcript ids is in {gtf}: NOSUCH, NOPE; check the "
                      "ids (transcript ids; a version suffix and rna-/gene- prefixes may be left out)"),
])
def test_a_selection_that_matches_nothing_is_an_error_naming_the_ids(tmp_path, command, option, message):
    out = tmp_path / ("o.h5" if command == "embed" else "o.tsv")
    model = () if command == "triples" else ("--checkpoint", "demo")
    result = invoke(command, *COMMON, *model, option, "NOSUCH,NOPE", "-o", out)
    error_after_demo_warnings(result, message.format(gtf=HUMAN_GTF))
    assert not out.exists()


@pytest.mark.parametrize("option, message", [
    ("--genes", "--genes: none of the 2 requested genes is in {gtf}: NOSUCH, NOPE; check the ids (gene ids or gene "
                "names; a version suffix and rna-/gene- prefixes may be left out)"),
    ("--transcripts", "--transcripts: none of the 2 requested transcript ids is in {gtf}: NOSUCH, NOPE; check the "
                      "ids (transcript ids; a version suffix and rna-/gene- prefixes may be left out)"),
])
def test_finetune_selection_that_matches_nothing_is_an_error_naming_the_ids(tmp_path, option, message):
    """The selection pass of predict is finetune's too: nothing trains and no run folder is left.
    (``evaluate`` takes no selection: it compares two tables, and ``--genes`` is not one of its options.)"""
    expression = tmp_path / "expression.tsv"
    expression.write_text("transcript_id\tLiver\tBrain\nNM_032039\t1\t2\nNM_001278293\t3\t4\n")
    run = tmp_path / "run"
    result = invoke("finetune", *COMMON, "--expression", expression, "--checkpoint", "demo", option, "NOSUCH,NOPE",
                    "-o", run)
    error_after_demo_warnings(result, message.format(gtf=HUMAN_GTF))
    assert not run.exists() and sorted(os.listdir(tmp_path)) == ["expression.tsv"]


def test_variants_selection_that_matches_nothing_is_an_error(tmp_path):
    vcf = tmp_path / "v.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=chr16>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   "chr16\t102550\t.\tG\tA\t.\t.\t.\n")
    result = invoke("variants", *COMMON, "--checkpoint", "demo", "-I", vcf, "--genes", "NOSUCH", "-O", tmp_path / "o.vcf")
    error_after_demo_warnings(result, f"--genes: none of the 1 requested genes is in {HUMAN_GTF}: NOSUCH; check the ids (gene ids "
                           "or gene names; a version suffix and rna-/gene- prefixes may be left out)")
    assert not (tmp_path / "o.vcf").exists()


def test_a_selection_that_partly_matches_warns_with_the_others(tmp_path):
    result = run_loud("triples", *COMMON, "--genes", "NOSUCH,NM_032039,NOPE", "-o", tmp_path / "t.tsv")
    assert result.exit_code == 0, result.output
    assert f"isoformer: WARNING: 2 of 3 requested genes not found in {HUMAN_GTF}: NOSUCH, NOPE\n" in result.output
    assert [row.split("\t")[0] for row in rows(tmp_path / "t.tsv")] == ["NM_032039"]


# ------------------------------------------------------------------------------- 9. files of the wrong kind

def write_bam(path):
    header = {"HD": {"VN": "1.6"}, "SQ": [{"SN": "chr16", "LN": 210155}]}
    with pysam.AlignmentFile(str(path), "wb", header=header) as bam:
        read = pysam.AlignedSegment(bam.header)
        read.query_name, read.query_sequence, read.reference_id = "r1", "ACGTACGTAC", 0
        read.reference_start, read.cigarstring, read.query_qualities = 99, "10M", pysam.qualitystring_to_array("I" * 10)
        bam.write(read)
    return path


def test_the_sniffer_names_what_it_sees(tmp_path):
    bam = write_bam(tmp_path / "r.bam")
    vcf = tmp_path / "v.vcf.gz"
    with gzip.open(vcf, "wt") as stream:
        stream.write("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
    (tmp_path / "r.fq").write_text("@r1\nACGT\n+\nIIII\n")
    (tmp_path / "b.bed").write_text("chr1\t10\t20\tname\n")
    (tmp_path / "x.bin").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "t.tsv").write_text("transcript_id\tLiver\nNM_1\t1.5\n")
    assert sniff(bam).describe() == "a BAM file (binary)"
    assert sniff(vcf).describe() == "a gzip-compressed VCF file"
    assert sniff(tmp_path / "r.fq").code == "fastq" and sniff(tmp_path / "b.bed").code == "bed"
    assert sniff(tmp_path / "x.bin").describe() == "a binary file (not text)"
    assert sniff(HUMAN_GTF).code == "gtf" and sniff(HUMAN_GENOME).code == "fasta"
    assert sniff(tmp_path / "t.tsv") is None  # a table: the reader's own checks apply
    # a truncated BGZF file is still recognised from its first block
    (tmp_path / "cut.bam").write_bytes(bam.read_bytes()[:60])
    assert sniff(tmp_path / "cut.bam").code == "bam"


@pytest.mark.parametrize("role", ["annotation", "genome", "vcf", "expression"])
def test_a_bam_given_for_an_input_is_named(tmp_path, genome, role):
    bam = write_bam(tmp_path / "reads.bam")
    out = tmp_path / ("out.vcf" if role == "vcf" else "out.tsv")
    if role == "annotation":
        result = invoke("triples", "--genome", genome, "--annotation", bam, "-o", out)
        expected = f"{bam}: looks like a BAM file (binary), not a GTF/GFF3 annotation; --annotation takes a GTF or GFF3 " \
                   "file (plain or gzip)"
    elif role == "genome":
        result = invoke("triples", "--genome", bam, "--annotation", HUMAN_GTF, "-o", out)
        expected = f"{bam}: looks like a BAM file (binary), not a genome FASTA; --genome takes a FASTA file (plain or " \
                   "bgzip)"
    elif role == "vcf":
        result = invoke("variants", "--genome", genome, "--annotation", HUMAN_GTF, "--checkpoint", "demo",
                        "-I", bam, "-O", out)
        expected = f"{bam}: looks like a BAM file (binary), not a VCF; give a VCF (plain, gzip or bgzip) or BCF file"
    else:
        predictions = tmp_path / "p.tsv"
        assert invoke("predict", "--genome", genome, "--annotation", HUMAN_GTF, "--checkpoint", "demo",
                      "-o", predictions).exit_code == 0
        result = invoke("evaluate", "--predictions", predictions, "--expression", bam, "-o", out)
        expected = f"{bam}: looks like a BAM file (binary), not an expression table; --expression takes a TSV/CSV " \
                   "table (transcript id, then one column per tissue) or a GCT file, plain or gzip"
    error_after_demo_warnings(result, expected)
    assert not out.exists() and not os.path.exists(f"{bam}.fai")


def test_a_gzipped_annotation_given_as_the_genome_is_named_not_taken_for_plain_gzip(tmp_path):
    gtf = tmp_path / "genes.gtf.gz"
    with open(HUMAN_GTF, "rb") as source, gzip.open(gtf, "wb") as target:
        target.write(source.read())
    result = invoke("triples", "--genome", gtf, "--annotation", HUMAN_GTF, "-o", tmp_path / "t.tsv")
    one_error_line(result, f"{gtf}: looks like a gzip-compressed GTF annotation, not a genome FASTA; did you swap "
                           "--genome and --annotation?")


# ------------------------------------------------------------------------------- 10. htslib's stderr

def test_an_unindexed_bcf_prints_no_htslib_lines(tmp_path, genome, capfd):
    vcf = tmp_path / "v.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=chr16,length=210155>\n"
                   "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nchr16\t102550\t.\tG\tA\t.\t.\t.\n")
    bcf = tmp_path / "v.bcf"
    with pysam.VariantFile(str(vcf)) as source, pysam.VariantFile(str(bcf), "wb", header=source.header) as target:
        for record in source:
            target.write(record)
    assert not os.path.exists(f"{bcf}.csi")
    result = invoke("variants", "--genome", genome, "--annotation", HUMAN_GTF, "--checkpoint", "demo",
                    "-I", bcf, "-O", tmp_path / "o.vcf")
    assert result.exit_code == 0, result.output
    # htslib writes straight to file descriptor 2, past click's capture: capfd sees it.
    captured = capfd.readouterr()
    assert "[E::" not in captured.err + result.output and "[W::" not in captured.err + result.output
    records = [line for line in (tmp_path / "o.vcf").read_text().splitlines() if not line.startswith("#")]
    assert len(records) == 1 and records[0].startswith("chr16\t102550\t")


# ------------------------------------------------------------------------------- 13. read-only genome folder

def test_read_only_genome_folder_suggests_a_link_that_works(tmp_path, monkeypatch):
    folder = tmp_path / "refro"
    folder.mkdir()
    shutil.copy(HUMAN_GENOME, folder / "g.fa")
    folder.chmod(0o555)
    # Tests run as root, whom chmod does not stop: make the writability check see the folder as read-only.
    # What this proves: the message given for a folder os.access calls read-only, and that its command works.
    real_access = os.access
    read_only = os.path.realpath(folder)
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if (
        mode & os.W_OK and os.path.realpath(path) == read_only) else real_access(path, mode, **kw))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = invoke("triples", "--genome", folder / "g.fa", "--annotation", HUMAN_GTF, "-o", "t.tsv")
    link = os.path.join(".", "g.fa")
    one_error_line(result, f"{folder / 'g.fa'}: the FASTA has no index and its folder {folder} is not writable; link "
                           "the FASTA into a writable folder and give that path, where the index is then written: "
                           f"`ln -s {folder / 'g.fa'} {link}` and --genome {link}")
    assert "samtools faidx" not in result.output
    command = re.search(r"`(ln -s [^`]+)`", result.output).group(1)
    subprocess.run(command, shell=True, check=True)
    result = invoke("triples", "--genome", link, "--annotation", HUMAN_GTF, "-o", "t.tsv")
    assert result.exit_code == 0, result.output
    assert os.path.exists(work / "g.fa.fai") and sorted(os.listdir(folder)) == ["g.fa"]
    assert len(rows(work / "t.tsv")) == 17
    folder.chmod(0o755)


# ------------------------------------------------------------------------------- 14. triples provenance

def test_a_plain_triples_table_has_a_provenance_line_that_readers_skip(tmp_path, genome, monkeypatch):
    table = tmp_path / "t.tsv.gz"
    arguments = ["triples", "--genome", str(genome), "--annotation", str(HUMAN_GTF), "--dna-length", "1000",
                 "-o", str(table)]
    # Commands record sys.argv (the real command line); in-process, that is pytest's unless set here.
    monkeypatch.setattr(sys, "argv", ["isoformer", *arguments])
    result = invoke(*arguments)
    assert result.exit_code == 0, result.output
    with gzip.open(table, "rt") as stream:
        first = stream.readline()
    assert first.startswith("# provenance: ")
    provenance = json.loads(first[len("# provenance: "):])
    assert provenance["tool"] == "isoformer" and set(provenance["inputs"]) == {"annotation", "genome"}
    assert provenance["command_line"].startswith("isoformer ") and "shard" not in provenance
    by_table, by_annotation = tmp_path / "a.tsv", tmp_path / "b.tsv"
    assert invoke("predict", "--genome", genome, "--triples", table, "--checkpoint", "demo",
                  "-o", by_table).exit_code == 0
    assert invoke("predict", "--genome", genome, "--annotation", HUMAN_GTF, "--checkpoint", "demo",
                  "-o", by_annotation).exit_code == 0
    assert rows(by_table) == rows(by_annotation) and len(rows(by_table)) == 17
