"""`isoformer triples` in worker processes (triples/parallel.py) gives the sequential pass's output,
logs and errors, byte for byte; and the file is cut only where the contig changes (genomics/gtf_parts.py)."""

import gzip
import os
import random
import shutil
import sys

import pytest
from click.testing import CliRunner

from isoformer_cli.cli.main import cli
from isoformer_cli.genomics.genome import Genome
from isoformer_cli.genomics import gtf_parts
from isoformer_cli.genomics.gtf_parts import contig_parts
from isoformer_cli.triples import parallel

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "example_data")


# -- cutting a file at contig changes -------------------------------------------------------------

def _contig_file(path, sizes, seed=0):
    """A GTF-shaped file with contigs of ``sizes`` lines, comments and blank lines between."""
    rng = random.Random(seed)
    lines = ["##description: parts test\n"]
    for index, count in enumerate(sizes):
        for line in range(count):
            if rng.random() < 0.05:
                lines.append("# a comment\n" if rng.random() < 0.5 else "\n")
            padding = "x" * rng.randrange(0, 300)
            lines.append(f"c{index}\tsrc\texon\t{line + 1}\t{line + 2}\t.\t+\t.\t"
                         f'gene_id "g"; transcript_id "t{index}"; note "{padding}";\n')
    path.write_text("".join(lines))
    return lines


def _check_parts(path, parts):
    data = path.read_bytes()
    assert parts[0][0] == 0 and parts[-1][1] == len(data)
    for (_, end), (start, _) in zip(parts, parts[1:]):
        assert end == start
    previous = None
    starts = {start for start, _ in parts}
    position = 0
    for line in data.splitlines(keepends=True):
        if line.strip() and not line.startswith(b"#"):
            contig = line.split(b"\t", 1)[0]
            if position in starts and position != 0:
                assert contig != previous, f"part starting at {position} does not start a contig"
            previous = contig
        else:
            assert position not in starts or position == 0, "a part starts at a comment or blank line"
        position += len(line)


@pytest.mark.parametrize("scan", [64, 1 << 16])
@pytest.mark.parametrize("parts", [2, 3, 7, 40])
def test_parts_start_where_the_contig_changes(tmp_path, monkeypatch, scan, parts):
    monkeypatch.setattr(gtf_parts, "_SCAN_BYTES", scan)
    path = tmp_path / "a.gtf"
    _contig_file(path, [300, 5, 1, 800, 40, 40, 2, 600])
    found = contig_parts(path, parts)
    _check_parts(path, found)
    assert 1 < len(found) <= min(parts, 8)


def test_a_file_of_one_contig_is_one_part(tmp_path, monkeypatch):
    monkeypatch.setattr(gtf_parts, "_SCAN_BYTES", 64)
    path = tmp_path / "a.gtf"
    _contig_file(path, [500])
    assert contig_parts(path, 5) == [(0, path.stat().st_size)]


def test_every_contig_can_be_a_part(tmp_path, monkeypatch):
    monkeypatch.setattr(gtf_parts, "_SCAN_BYTES", 64)
    path = tmp_path / "a.gtf"
    _contig_file(path, [50] * 10)
    found = contig_parts(path, 200)
    _check_parts(path, found)
    assert len(found) == 10


# -- parallel == sequential ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    sys.path.insert(0, os.path.join(EXAMPLES, ".."))
    from benchmarks.synthetic_annotation import write_synthetic_dataset

    folder = tmp_path_factory.mktemp("synthetic")
    dataset = write_synthetic_dataset(str(folder), n_transcripts=400, seed=5, n_contigs=6)
    Genome(dataset.fasta).close()  # index it now: the first run would log that
    return dataset


@pytest.fixture
def force_parallel(monkeypatch):
    """Parts of ~20 kb, two workers, whatever the file size and the machine; records each use."""
    monkeypatch.setattr(parallel, "MIN_PARALLEL_BYTES", 0)
    monkeypatch.setattr(parallel, "PART_BYTES", 20_000)
    monkeypatch.setattr(parallel, "usable_cores", lambda: 2)
    used = []
    original = parallel.write_in_parallel

    def spy(*args):
        used.append(original(*args))
        return used[-1]

    monkeypatch.setattr("isoformer_cli.app.triples.write_in_parallel", spy)
    return used


def _run(args, tmp_path, name):
    """Exit code, stderr, and the bytes of every output file, of `isoformer triples ARGS`."""
    folder = tmp_path / name
    folder.mkdir()
    runner = CliRunner()
    result = runner.invoke(cli, ["triples", *args, "-o", str(folder / "t.tsv"), "--fasta-prefix", str(folder / "p")])
    outputs = {path.name: path.read_bytes() for path in sorted(folder.iterdir())}
    return result.exit_code, result.stderr.replace(str(folder), "OUT"), outputs


def _compare(args, tmp_path, force_parallel, expect_parallel=True):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(parallel, "MIN_PARALLEL_BYTES", 1 << 60)  # the sequential pass, for reference
        sequential = _run(args, tmp_path, "sequential")
    assert not force_parallel
    in_parallel = _run(args, tmp_path, "parallel")
    assert force_parallel == [expect_parallel]
    assert in_parallel == sequential
    return sequential


@pytest.mark.parametrize("options", [[], ["--dna-length", "100", "--with-dna"],
                                     ["--orf", "longest"]])
def test_synthetic_annotation_in_parallel_is_the_sequential_output(synthetic, tmp_path, force_parallel, options):
    code, stderr, outputs = _compare(["--genome", synthetic.fasta, "--annotation", synthetic.gtf, *options],
                                     tmp_path, force_parallel)
    assert code == 0
    assert outputs["t.tsv"].count(b"\n") > 300
    assert "written" in stderr


def _mouse(tmp_path, *, second_contig="chr9_copy", edit=None):
    """The mouse example, plain, with a copy of its records on a contig the genome lacks (renamed ids)."""
    with gzip.open(os.path.join(EXAMPLES, "chr9.4M.gtf.gz"), "rt") as handle:
        lines = handle.readlines()
    records = [line for line in lines if not line.startswith("#")]
    copy = [line.replace("chr9\t", f"{second_contig}\t", 1).replace('transcript_id "', 'transcript_id "copy-')
            .replace('gene_id "', 'gene_id "copy-') for line in records]
    lines = lines + copy
    if edit is not None:
        lines = edit(lines)
    path = tmp_path / "mouse.gtf"
    path.write_text("".join(lines))
    genome = tmp_path / "chr9.4M.fa.gz"
    shutil.copy(os.path.join(EXAMPLES, "chr9.4M.fa.gz"), genome)
    Genome(str(genome)).close()
    return str(genome), str(path)


def test_contigs_missing_from_the_genome_are_logged_as_in_the_sequential_pass(tmp_path, force_parallel):
    genome, annotation = _mouse(tmp_path)
    code, stderr, _ = _compare(["--genome", genome, "--annotation", annotation], tmp_path, force_parallel)
    assert code == 0
    assert "chr9_copy" in stderr


def test_a_bad_record_in_a_later_part_is_the_sequential_error(synthetic, tmp_path, force_parallel):
    lines = open(synthetic.gtf).readlines()
    index = max(i for i, line in enumerate(lines) if "\texon\t" in line and line.startswith("chr5\t"))
    fields = lines[index].split("\t")
    fields[3], fields[4] = fields[4], fields[3]  # start after end
    lines[index] = "\t".join(fields)
    bad = tmp_path / "bad.gtf"
    bad.write_text("".join(lines))
    code, stderr, outputs = _compare(["--genome", synthetic.fasta, "--annotation", str(bad)], tmp_path,
                                     force_parallel, expect_parallel=False)
    assert code == 1
    assert f"bad.gtf:{index + 1}: start" in stderr
    assert outputs == {}


def test_a_transcript_in_two_contig_blocks_is_the_sequential_error(tmp_path, force_parallel):
    def move_one_exon(lines):
        # An exon of the first chr9 transcript, put back after the copy's records: not grouped.
        index = next(i for i, line in enumerate(lines) if line.startswith("chr9\t") and "\texon\t" in line)
        return lines[:index] + lines[index + 1:] + [lines[index]]

    genome, annotation = _mouse(tmp_path, edit=move_one_exon)
    code, stderr, outputs = _compare(["--genome", genome, "--annotation", annotation], tmp_path, force_parallel,
                                     expect_parallel=False)
    assert code == 1
    assert "resume after records of other contigs" in stderr
    assert outputs == {}


def _discontinuous(synthetic, tmp_path, contig="chr4"):
    """The synthetic GTF with a middle CDS line of one transcript on ``contig`` removed: its CDS skips
    exonic bases (flag cds_discontinuous, an invalid record)."""
    lines = open(synthetic.gtf).readlines()
    cds = {}
    for index, line in enumerate(lines):
        if line.startswith(contig + "\t") and "\tCDS\t" in line:
            cds.setdefault(line.split('transcript_id "')[1].split('"')[0], []).append(index)
    indices = next(indices for indices in cds.values() if len(indices) >= 3)
    del lines[indices[1]]
    path = tmp_path / "discontinuous.gtf"
    path.write_text("".join(lines))
    return str(path)


@pytest.mark.parametrize("on_invalid", ["flag", "skip"])
def test_invalid_records_flagged_or_skipped_in_parallel(synthetic, tmp_path, force_parallel, on_invalid):
    annotation = _discontinuous(synthetic, tmp_path)
    code, stderr, outputs = _compare(["--genome", synthetic.fasta, "--annotation", annotation,
                                      "--on-invalid", on_invalid], tmp_path, force_parallel)
    assert code == 0
    assert "cds_discontinuous 1" in stderr
    assert ("1 skipped as invalid" in stderr) == (on_invalid == "skip")


def test_on_invalid_fail_is_the_sequential_error(synthetic, tmp_path, force_parallel):
    annotation = _discontinuous(synthetic, tmp_path)
    code, stderr, outputs = _compare(["--genome", synthetic.fasta, "--annotation", annotation,
                                      "--on-invalid", "fail"], tmp_path, force_parallel, expect_parallel=False)
    assert code == 1
    assert "is invalid (cds_discontinuous)" in stderr
    assert outputs == {}


def test_standard_output_before_an_error_is_the_sequential_output(synthetic, tmp_path, force_parallel):
    annotation = _discontinuous(synthetic, tmp_path)
    args = ["triples", "--genome", synthetic.fasta, "--annotation", annotation, "--on-invalid", "fail"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(parallel, "MIN_PARALLEL_BYTES", 1 << 60)
        sequential = CliRunner().invoke(cli, args)
    in_parallel = CliRunner().invoke(cli, args)
    assert force_parallel == [False]
    assert in_parallel.exit_code == sequential.exit_code == 1
    assert in_parallel.stdout == sequential.stdout
    assert in_parallel.stdout.count("\n") > 1  # rows before the invalid one reached the reader


def test_small_compressed_selected_or_sharded_inputs_stay_sequential(synthetic, tmp_path):
    from isoformer_cli.triples.source import TripleSource

    base = TripleSource(genome=synthetic.fasta, annotation=synthetic.gtf)
    assert parallel.parallel_workers(base, min_bytes=1 << 60) == 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(parallel, "usable_cores", lambda: 2)
        assert parallel.parallel_workers(base, min_bytes=0) == 2
        assert parallel.parallel_workers(TripleSource(genome=synthetic.fasta, annotation=synthetic.gtf,
                                                      coding_only=True), min_bytes=0) == 0
        assert parallel.parallel_workers(TripleSource(genome=synthetic.fasta, annotation=synthetic.gtf,
                                                      shard="1/2"), min_bytes=0) == 0
        compressed = tmp_path / "a.gtf.gz"
        with open(synthetic.gtf, "rb") as source, gzip.open(compressed, "wb") as target:
            shutil.copyfileobj(source, target)
        assert parallel.parallel_workers(TripleSource(genome=synthetic.fasta, annotation=str(compressed)),
                                         min_bytes=0) == 0
        patch.setattr(parallel, "usable_cores", lambda: 1)
        assert parallel.parallel_workers(base, min_bytes=0) == 0


# -- a shard's table in one pass -------------------------------------------------------------------

def test_a_shard_reads_the_annotation_once(synthetic, tmp_path, monkeypatch):
    from isoformer_cli.triples import source as source_module

    opened = []
    original = source_module.read_annotation

    def counting(path, **options):
        opened.append(path)
        return original(path, **options)

    monkeypatch.setattr(source_module, "read_annotation", counting)
    tables = []
    for k in (1, 2):
        output = tmp_path / f"{k}.tsv"
        result = CliRunner().invoke(cli, ["triples", "--genome", synthetic.fasta, "--annotation", synthetic.gtf,
                                          "--shard", f"{k}/2", "-o", str(output)])
        assert result.exit_code == 0, result.stderr
        tables.append(output.read_text().splitlines())
    assert opened == [synthetic.gtf, synthetic.gtf]  # one pass per shard run
    whole = CliRunner().invoke(cli, ["triples", "--genome", synthetic.fasta, "--annotation", synthetic.gtf])
    rows = whole.stdout.splitlines()
    for table in tables:
        assert table[0].startswith("# provenance: ") and table[1] == rows[0]
    assert sorted(tables[0][2:] + tables[1][2:]) == sorted(rows[1:])
    assert 0 < len(tables[0]) - 2 < len(rows) - 1


def test_encoded_text_reaches_any_output_the_same(tmp_path, monkeypatch):
    import io

    from isoformer_cli.formats.triples_table import TriplesWriter

    text = "T1\tG1\tnamé\n"
    for encoding in ("utf-8", "latin-1"):  # a latin-1 standard output gets the text re-encoded
        raw = io.BytesIO()
        stream = io.TextIOWrapper(raw, encoding=encoding, newline="\n")
        monkeypatch.setattr(sys, "stdout", stream)
        with TriplesWriter("-") as writer:
            writer.write_encoded("table", text.encode("utf-8"))
        stream.flush()
        assert raw.getvalue().decode(encoding).endswith(text)
