"""`isoformer triples` through the command line: outputs, options, and every bad-input path.

Bad input must give exit code 1, exactly one line on stderr naming the file and line or record,
no traceback, and no output file at all (neither -o nor the --fasta-prefix files, nor a partial
temporary file). Bad option values are usage errors, exit code 2.
"""

import gzip
import json
import os
import shutil
import subprocess
import sys

import pytest

from isoformer_cli.cli.main import EXIT_ERROR, EXIT_USAGE
from isoformer_cli.formats.triples_table import COLUMNS, read_triples_table

from cli_helpers import invoke

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "example_data")
HS_FASTA = "hg38_chr16_186964-397118.fa"
HS_GTF = "hg38_chr16_186964-397118.refGene.gtf"
MM_FASTA = "chr9.4M.fa.gz"
MM_GTF = "chr9.4M.gtf.gz"

# One GTF line of the tests' small transcripts; chr16 positions are 1-based inclusive.
LINE = 'chr16\ttest\t{feature}\t{start}\t{end}\t.\t{strand}\t{phase}\tgene_id "G{n}"; transcript_id "T{n}";'


def gtf_line(n, feature, start, end, strand="+", phase="."):
    return LINE.format(n=n, feature=feature, start=start, end=end, strand=strand, phase=phase)


@pytest.fixture
def data(tmp_path):
    """Copies of the example files in a private folder (indexing writes next to the FASTA)."""
    for name in (HS_FASTA, HS_GTF, MM_FASTA, MM_GTF):
        shutil.copy(os.path.join(EXAMPLES, name), tmp_path / name)
    return tmp_path


def triples(data, *args, genome=HS_FASTA, annotation=HS_GTF):
    return invoke("triples", "--genome", data / genome, "--annotation", data / annotation, *args, quiet=False)


def rows_of(path):
    return {row.transcript_id: row for row in read_triples_table(str(path))}


# -- outputs -------------------------------------------------------------------------------------

def test_stdout_table_and_summary(data):
    result = triples(data)
    assert result.exit_code == 0, result.output
    provenance, *lines = result.stdout.splitlines()
    # Like every output, the table says what made it (issue 18): the inputs by checksum, no model.
    assert provenance.startswith("# provenance: ")
    recorded = json.loads(provenance[len("# provenance: "):])
    assert set(recorded["inputs"]) == {"genome", "annotation"} and "checkpoint_id" not in recorded
    assert "shard" not in recorded
    assert lines[0].split("\t") == list(COLUMNS)
    assert len(lines) == 18
    assert all(len(line.split("\t")) == len(COLUMNS) for line in lines)
    assert "17 read, 17 selected, 17 written" in result.stderr
    assert "window_padded 17" in result.stderr


def test_files_gzip_fasta_and_dna(data):
    out = data / "out.tsv.gz"
    result = triples(data, "-o", out, "--fasta-prefix", data / "P", "--with-dna", "--dna-length", 1000)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    with gzip.open(out, "rt") as handle:
        assert handle.readline().startswith("# provenance: {")
        assert handle.readline().rstrip("\n").split("\t") == list(COLUMNS) + ["dna"]
    rows = rows_of(out)
    assert len(rows) == 17
    assert all(len(row.dna) == 1000 for row in rows.values())
    rna = (data / "P.rna.fa").read_text()
    protein = (data / "P.protein.fa").read_text()
    dna = (data / "P.dna.fa").read_text()
    assert rna.count(">") == 17 and protein.count(">") == 14 and dna.count(">") == 17
    assert ">NM_001284497 gene_id=NM_001284497\n" in rna
    first_rna = "".join(rna.split(">")[1].splitlines()[1:])
    assert first_rna == next(iter(rows.values())).rna
    assert max(len(line) for line in dna.splitlines() if not line.startswith(">")) == 60


def test_without_dna_there_is_no_dna_column_or_file(data):
    result = triples(data, "-o", data / "t.tsv", "--fasta-prefix", data / "P")
    assert result.exit_code == 0, result.output
    assert not (data / "P.dna.fa").exists()
    assert all(row.dna is None for row in rows_of(data / "t.tsv").values())


def test_bgzf_genome_and_gzipped_gtf(data):
    result = triples(data, "-o", data / "mm.tsv", genome=MM_FASTA, annotation=MM_GTF)
    assert result.exit_code == 0, result.output
    rows = rows_of(data / "mm.tsv")
    assert len(rows) == 54
    assert rows["ENSMUST00000027027.6"].gene_name and rows["ENSMUST00000027027.6"].biotype == "protein_coding"


def test_crlf_annotation_and_fasta_give_the_same_table(data):
    (data / "crlf.gtf").write_bytes((data / HS_GTF).read_bytes().replace(b"\n", b"\r\n"))
    (data / "crlf.fa").write_bytes((data / HS_FASTA).read_bytes().replace(b"\n", b"\r\n"))
    plain = triples(data, "--with-dna", "--dna-length", 500)
    crlf = triples(data, "--with-dna", "--dna-length", 500, genome="crlf.fa", annotation="crlf.gtf")
    assert plain.exit_code == 0 and crlf.exit_code == 0, crlf.output
    # Only the provenance line differs: it records each input's checksum.
    assert crlf.stdout.split("\n", 1)[1] == plain.stdout.split("\n", 1)[1]
    assert crlf.stdout.split("\n", 1)[0] != plain.stdout.split("\n", 1)[0]


# -- selection, ORF, contigs, invalid records ---------------------------------------------------------

@pytest.mark.parametrize("options, expected", [
    (["--transcripts", "NM_001284497,NM_032039"], {"NM_001284497", "NM_032039"}),
    (["--genes", "NR_104317"], {"NR_104317"}),
    (["--region", "chr16:1-45,000"], {"NM_201412", "NM_018032"}),
    (["--coding-only", "--region", "16:190,000-210,155"], {"NM_021259"}),
])
def test_selection_options(data, options, expected):
    result = triples(data, "-o", data / "s.tsv", *options)
    assert result.exit_code == 0, result.output
    assert set(rows_of(data / "s.tsv")) == expected


def test_ids_from_file_and_biotype(data):
    (data / "ids.txt").write_text("ENSMUST00000181242.1\nENSMUST00000027027.6\n")
    result = triples(data, "-o", data / "s.tsv", "--transcripts", f"@{data / 'ids.txt'}", "--biotype", "lincRNA",
                     genome=MM_FASTA, annotation=MM_GTF)
    assert result.exit_code == 0, result.output
    assert set(rows_of(data / "s.tsv")) == {"ENSMUST00000181242.1"}


def test_orf_longest_fills_non_coding_transcripts(data):
    result = triples(data, "-o", data / "orf.tsv", "--orf", "longest", "--min-orf-length", 50,
                     genome=MM_FASTA, annotation=MM_GTF)
    assert result.exit_code == 0, result.output
    rows = rows_of(data / "orf.tsv")
    predicted = [row for row in rows.values() if "orf_predicted" in row.flags]
    assert predicted
    for row in predicted:
        assert "no_cds" not in row.flags
        assert row.rna[row.cds_start:row.cds_start + 3] == "ATG"
        assert len(row.protein) >= 50 and row.protein.startswith("M") and "*" not in row.protein
    # Annotated CDSs are untouched.
    assert rows["ENSMUST00000027027.6"].flags == () and rows["ENSMUST00000027027.6"].cds_start == 506


def test_contig_aliases_builtin_and_file(data):
    text = (data / HS_GTF).read_text()
    (data / "renamed.gtf").write_text(text.replace("chr16\t", "16\t"))
    result = triples(data, "-o", data / "a.tsv", annotation="renamed.gtf")
    assert result.exit_code == 0, result.output
    assert {row.chrom for row in rows_of(data / "a.tsv").values()} == {"chr16"}

    (data / "refseq.gtf").write_text(text.replace("chr16\t", "NC_000016.10\t"))
    (data / "alias.txt").write_text("# ucsc\trefseq\nchr16\tNC_000016.10\n")
    failed = triples(data, "-o", data / "b.tsv", annotation="refseq.gtf")
    assert failed.exit_code == EXIT_ERROR and "NC_000016.10" in failed.stderr
    result = triples(data, "-o", data / "b.tsv", "--contig-alias", data / "alias.txt", annotation="refseq.gtf")
    assert result.exit_code == 0, result.output
    assert len(rows_of(data / "b.tsv")) == 17


def test_missing_contigs_are_reported_and_skipped(data):
    lines = [gtf_line(1, "exon", 100, 200), gtf_line(2, "exon", 100, 200).replace("chr16", "chrUn_x")]
    (data / "two.gtf").write_text("\n".join(lines) + "\n")
    result = triples(data, "-o", data / "t.tsv", annotation="two.gtf")
    assert result.exit_code == 0, result.output
    assert set(rows_of(data / "t.tsv")) == {"T1"}
    assert "chrUn_x (1)" in result.stderr
    assert "1 on contigs missing" in result.stderr


@pytest.fixture
def internal_stop_gtf(data):
    """T1: a CDS with an in-frame TAA inside (found on the real slice), T2 a plain lncRNA."""
    genome = "".join(line.strip() for line in (data / HS_FASTA).read_text().splitlines()[1:]).upper()
    start = genome.index("ATGTAA", 1000)          # 0-based; ATG TAA then 9 more bases
    first, last = start + 1, start + 15            # 1-based inclusive: 5 codons, stop at codon 2
    lines = [gtf_line(1, "exon", first - 10, last + 10), gtf_line(1, "CDS", first, last, phase="0"),
             gtf_line(2, "exon", 5000, 5400)]
    (data / "stop.gtf").write_text("\n".join(lines) + "\n")
    return "stop.gtf"


def test_on_invalid_flag_keeps_the_record(data, internal_stop_gtf):
    result = triples(data, "-o", data / "f.tsv", annotation=internal_stop_gtf)
    assert result.exit_code == 0, result.output
    rows = rows_of(data / "f.tsv")
    assert "internal_stop" in rows["T1"].flags and rows["T1"].protein.startswith("M*")


def test_on_invalid_skip_drops_the_record(data, internal_stop_gtf):
    result = triples(data, "-o", data / "s.tsv", "--on-invalid", "skip", annotation=internal_stop_gtf)
    assert result.exit_code == 0, result.output
    assert set(rows_of(data / "s.tsv")) == {"T2"}
    assert "1 skipped as invalid" in result.stderr


def test_on_invalid_fail_stops_without_output(data, internal_stop_gtf):
    outputs = [data / "x.tsv", data / "P.rna.fa", data / "P.protein.fa"]
    result = triples(data, "-o", outputs[0], "--fasta-prefix", data / "P", "--on-invalid", "fail",
                     annotation=internal_stop_gtf)
    assert_clean_failure(result, data, outputs, "transcript T1 is invalid (internal_stop)")
    assert "stop.gtf:1" in result.stderr


# -- bad input: exit 1, one line, no traceback, no output ---------------------------------------------

def assert_clean_failure(result, folder, outputs, *fragments):
    assert result.exit_code == EXIT_ERROR, result.output
    assert "Traceback" not in result.output
    error_lines = [line for line in result.stderr.splitlines()
                   if not line.startswith(("isoformer: INFO:", "isoformer: WARNING:"))]
    assert len(error_lines) == 1, result.stderr
    assert error_lines[0].startswith("isoformer: error: ")
    for fragment in fragments:
        assert fragment in error_lines[0]
    for path in outputs:
        assert not os.path.exists(path), path
    assert not [name for name in os.listdir(folder) if name.endswith(".isoformer-partial")]
    assert result.stdout == ""


BAD_ANNOTATIONS = {
    "wrong_columns": ([gtf_line(1, "exon", 100, 200).rsplit("\t", 1)[0]], ["bad.gtf:1", "columns"]),
    "non_integer": ([gtf_line(1, "exon", "1x0", 200)], ["bad.gtf:1", "1x0"]),
    "reversed": ([gtf_line(1, "exon", 300, 200)], ["bad.gtf:1", "start 300 is after end 200"]),
    "unknown_strand": ([gtf_line(1, "exon", 100, 200, strand="x")], ["bad.gtf:1", "strand"]),
    "missing_transcript_id": ([gtf_line(1, "exon", 100, 200).replace(' transcript_id "T1";', "")],
                              ["bad.gtf:1", "transcript_id"]),
    "cds_outside_exons": ([gtf_line(1, "exon", 100, 200), gtf_line(1, "CDS", 300, 320, phase="0")],
                          ["bad.gtf", "T1", "not inside any of its exons"]),
    "unknown_contig": ([gtf_line(1, "exon", 100, 200).replace("chr16", "chrZ")], ["bad.gtf", "chrZ", "chr16"]),
    "empty": ([], ["bad.gtf", "no transcripts"]),
    "duplicate_ids_on_two_contigs": (
        [gtf_line(1, "exon", 100, 200), gtf_line(1, "exon", 100, 200).replace("chr16", "chr1")],
        ["bad.gtf:2", "T1", "chr16", "chr1"]),
}


@pytest.mark.parametrize("case", sorted(BAD_ANNOTATIONS))
def test_bad_annotation(data, case):
    lines, fragments = BAD_ANNOTATIONS[case]
    (data / "bad.gtf").write_text("".join(line + "\n" for line in lines))
    outputs = [data / "out.tsv", data / "P.rna.fa", data / "P.protein.fa", data / "P.dna.fa"]
    result = triples(data, "-o", outputs[0], "--fasta-prefix", data / "P", "--with-dna", "--dna-length", 100,
                     annotation="bad.gtf")
    assert_clean_failure(result, data, outputs, *fragments)


def test_error_after_rows_were_written_leaves_no_file(data):
    # The bad transcript comes after 17 good ones, and only the genome shows it is bad (its exon
    # runs past the 210,155-bp contig): the rows already written must not survive.
    text = (data / HS_GTF).read_text() + gtf_line(99, "exon", 210_100, 210_300) + "\n"
    (data / "late.gtf").write_text(text)
    outputs = [data / "out.tsv.gz", data / "P.rna.fa", data / "P.protein.fa"]
    result = triples(data, "-o", outputs[0], "--fasta-prefix", data / "P", annotation="late.gtf")
    assert_clean_failure(result, data, outputs, "late.gtf:368", "T99", "210,155 bases")


def test_missing_fasta(data):
    (data / "ok.gtf").write_text(gtf_line(1, "exon", 100, 200) + "\n")
    result = triples(data, "-o", data / "o.tsv", genome="nope.fa", annotation="ok.gtf")
    assert_clean_failure(result, data, [data / "o.tsv"], "nope.fa", "not found")


def test_unreadable_fasta(data):
    (data / "ok.gtf").write_text(gtf_line(1, "exon", 100, 200) + "\n")
    (data / "folder.fa").mkdir()
    result = triples(data, "-o", data / "o.tsv", genome="folder.fa", annotation="ok.gtf")
    assert_clean_failure(result, data, [data / "o.tsv"], "folder.fa")
    if os.geteuid() != 0:   # root reads files whatever their mode
        (data / "locked.fa").write_text(">chr16\nACGT\n")
        os.chmod(data / "locked.fa", 0)
        result = triples(data, "-o", data / "o.tsv", genome="locked.fa", annotation="ok.gtf")
        assert_clean_failure(result, data, [data / "o.tsv"], "locked.fa")


def test_not_a_fasta(data):
    (data / "ok.gtf").write_text(gtf_line(1, "exon", 100, 200) + "\n")
    (data / "junk.fa").write_bytes(b"\x00\x01binary junk\n")
    result = triples(data, "-o", data / "o.tsv", genome="junk.fa", annotation="ok.gtf")
    assert_clean_failure(result, data, [data / "o.tsv"], "junk.fa")


def test_plain_gzip_fasta(data):
    (data / "ok.gtf").write_text(gtf_line(1, "exon", 100, 200) + "\n")
    with open(data / HS_FASTA, "rb") as src, gzip.open(data / "plain.fa.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    result = triples(data, "-o", data / "o.tsv", genome="plain.fa.gz", annotation="ok.gtf")
    assert_clean_failure(result, data, [data / "o.tsv"], "plain.fa.gz", "bgzip")


def test_missing_annotation(data):
    result = triples(data, "-o", data / "o.tsv", annotation="nope.gtf")
    assert_clean_failure(result, data, [data / "o.tsv"], "nope.gtf")


def test_unwritable_output_folder(data):
    result = triples(data, "-o", data / "no" / "such" / "o.tsv")
    assert_clean_failure(result, data, [], "does not exist")


# -- usage errors: exit 2 -------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [
    ["--region", "chr16:5-x"],
    ["--region", "chr16:0-100"],
    ["--dna-length", "7"],
    ["--dna-length", "0"],
    ["--dna-length", "-2"],
    ["--on-invalid", "ignore"],
    ["--orf", "all"],
    ["--min-orf-length", "0"],
    ["--transcripts", "@/no/such/file"],
])
def test_usage_errors_exit_2(data, options):
    result = triples(data, "-o", data / "o.tsv", *options)
    assert result.exit_code == EXIT_USAGE, result.output
    assert "Traceback" not in result.output
    assert not (data / "o.tsv").exists()


def test_console_script_in_a_subprocess(data):
    """The installed entry point: real exit codes, stdout data only, stderr one error line."""
    command = [sys.executable, "-m", "isoformer_cli", "triples", "--genome", str(data / HS_FASTA),
               "--annotation", str(data / HS_GTF), "--transcripts", "NM_021259"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 3 and done.stdout.splitlines()[2].startswith("NM_021259\t")
    (data / "bad.gtf").write_text(gtf_line(1, "exon", 300, 200) + "\n")
    command[command.index(str(data / HS_GTF))] = str(data / "bad.gtf")
    done = subprocess.run(command + ["-o", str(data / "o.tsv")], capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_ERROR
    assert done.stderr.strip().splitlines()[-1].startswith("isoformer: error: ")
    assert "Traceback" not in done.stderr and not (data / "o.tsv").exists()
