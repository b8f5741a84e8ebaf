"""Prediction tables: TSV/HDF5 writers, the reader, streaming, kill-safe resume, provenance."""

import gzip
import hashlib
import os
import struct
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest

from isoformer_cli.errors import CheckpointError, InputError, OutputError
from isoformer_cli.formats import predictions, streaming
from isoformer_cli.formats.atomic import temporary_path_for
from isoformer_cli.formats.predictions import (
    OBS_FIELDS,
    ROWS_PER_GZIP_MEMBER,
    obs_row,
    open_prediction_writer,
    output_format,
    read_predictions,
)
from isoformer_cli.formats.provenance import (
    build_provenance,
    checkpoint_id,
    recorded_command_line,
    sha256_file,
)
from isoformer_cli.genomics.records import Transcript, Triple

TISSUES = ["Adipose Tissue", "Brain", "Liver"]
FORMATS = ["out.tsv", "out.tsv.gz", "out.h5ad", "out.h5"]
# More rows than one gzip member, so .tsv.gz resumes across member boundaries.
N_ROWS = 2 * ROWS_PER_GZIP_MEMBER + 345


def make_provenance(**changes):
    provenance = {
        "format_version": 1,
        "tool": "isoformer",
        "tool_version": "0.1.0",
        "command_line": "isoformer predict --genome g.fa --annotation a.gtf -o out",
        "checkpoint_id": "demo@sha256:" + "ab" * 32,
        "inputs": {"annotation": "sha256:" + "01" * 32, "genome": "sha256:" + "02" * 32},
        "units": "log(TPM+1)",
        "demo": False,
    }
    provenance.update(changes)
    return provenance


def make_rows(n=N_ROWS):
    return [
        {
            "transcript_id": f"ENST{i:011d}.1",
            "gene_id": f"ENSG{i // 3:011d}",
            "gene_name": f"GENE{i // 3}" if i % 7 else "",
            "biotype": "protein_coding" if i % 2 else "lncRNA",
            "chrom": "chr16",
            "strand": "+-"[i % 2],
            "tss": 1000 + 10 * i,
            "window_start": 1000 + 10 * i - 98304,
            "window_end": 1000 + 10 * i + 98304,
            "flags": ("window_padded",) if i % 5 == 0 else (),
        }
        for i in range(n)
    ]


def make_values(n=N_ROWS, tissues=TISSUES):
    rng = np.random.default_rng(7)
    values = rng.uniform(0, 12, size=(n, len(tissues))).astype(np.float32)
    values[0] = [0.0, 1e-7, 123456.789]  # zero, tiny and large values through %.6g
    return values


def write_table(target, rows, values, chunk_sizes, provenance=None, tissues=TISSUES, resume=False, skip=0):
    """Write rows[skip:] in chunks of the given sizes (cycled) and finish."""
    writer = open_prediction_writer(str(target), tissues, provenance or make_provenance(), resume=resume)
    with writer:
        start, turn = skip, 0
        while start < len(rows):
            size = chunk_sizes[turn % len(chunk_sizes)]
            writer.write_chunk(rows[start:start + size], values[start:start + size])
            start, turn = start + size, turn + 1
    return writer


def kill_after(target, rows, values, n_rows, chunk_size):
    """Write about n_rows in chunks, then drop the writer without finishing (as kill -9 would)."""
    writer = open_prediction_writer(str(target), TISSUES, make_provenance())
    for start in range(0, n_rows, chunk_size):
        writer.write_chunk(rows[start:start + chunk_size], values[start:start + chunk_size])
    del writer


# ---------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", FORMATS)
def test_round_trip(tmp_path, name):
    rows, values = make_rows(), make_values()
    target = tmp_path / name
    write_table(target, rows, values, [500])
    assert not os.path.exists(temporary_path_for(str(target)))
    table = read_predictions(str(target))
    assert table.tissues == TISSUES
    assert table.provenance == make_provenance()
    assert table.provenance["demo"] is False and type(table.provenance["format_version"]) is int
    assert table.values.dtype == np.float32 and table.values.shape == (N_ROWS, len(TISSUES))
    if name.endswith(".gz") or name.endswith(".tsv"):
        np.testing.assert_allclose(table.values, values, rtol=5e-6, atol=0)
        fields = ("transcript_id", "gene_id", "gene_name")
    else:
        np.testing.assert_array_equal(table.values, values)
        fields = OBS_FIELDS[:-1]
    for read, written in zip(table.obs, rows):
        assert {field: read[field] for field in fields} == {field: written[field] for field in fields}
        assert read["flags"] == ",".join(written["flags"])


@pytest.mark.parametrize("name", FORMATS)
def test_empty_table(tmp_path, name):
    write_table(tmp_path / name, [], np.zeros((0, 3), np.float32), [1])
    table = read_predictions(str(tmp_path / name))
    assert table.obs == [] and table.tissues == TISSUES and table.values.shape == (0, 3)


def test_obs_row_of_a_triple():
    # chrom is the genome FASTA's spelling ("16" here), as in the triples table.
    transcript = Transcript("T1.2", "G1", "AXIN1", "protein_coding", "chr16", "-", [(100, 200), (300, 400)])
    triple = Triple(transcript, "16", tss=399, window_start=299, window_end=499, cds_start=None, cds_end=None,
                    rna="ACGT", protein="", flags=("no_cds", "window_padded"))
    assert obs_row(triple) == {
        "transcript_id": "T1.2", "gene_id": "G1", "gene_name": "AXIN1", "biotype": "protein_coding",
        "chrom": "16", "strand": "-", "tss": 399, "window_start": 299, "window_end": 499,
        "flags": "no_cds,window_padded",
    }


def test_tsv_equals_hdf5(tmp_path):
    rows, values = make_rows(), make_values()
    write_table(tmp_path / "a.tsv.gz", rows, values, [1000])
    write_table(tmp_path / "a.h5ad", rows, values, [333])
    tsv, hdf5 = read_predictions(str(tmp_path / "a.tsv.gz")), read_predictions(str(tmp_path / "a.h5ad"))
    assert tsv.tissues == hdf5.tissues and tsv.provenance == hdf5.provenance
    assert [{key: row[key] for key in tsv.obs[0]} for row in hdf5.obs] == tsv.obs
    np.testing.assert_allclose(tsv.values, hdf5.values, rtol=5e-6, atol=0)


def test_anndata_reads_the_h5ad_file(tmp_path):
    anndata = pytest.importorskip("anndata")
    rows, values = make_rows(50), make_values(50)
    provenance = make_provenance(demo=True)
    write_table(tmp_path / "p.h5ad", rows, values, [20], provenance=provenance)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "could not read, falling back" or encoding warnings
        adata = anndata.read_h5ad(tmp_path / "p.h5ad")
    assert adata.shape == (50, 3)
    assert list(adata.obs_names) == [row["transcript_id"] for row in rows]
    assert list(adata.var_names) == TISSUES
    assert adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X, values)
    assert list(adata.obs.columns) == list(OBS_FIELDS[1:])
    assert list(adata.obs["gene_name"]) == [row["gene_name"] for row in rows]
    assert list(adata.obs["tss"]) == [row["tss"] for row in rows]
    assert adata.obs["tss"].dtype == np.int64
    assert list(adata.obs["flags"])[:2] == ["window_padded", ""]
    assert adata.uns["provenance"] == provenance


def test_tsv_layout_is_documented_text(tmp_path):
    rows, values = make_rows(2), np.array([[0.0, 1e-7, 123456.789], [1.5, 2.25, 10.0]], dtype=np.float32)
    write_table(tmp_path / "t.tsv", rows, values, [2], provenance=make_provenance(demo=True))
    lines = (tmp_path / "t.tsv").read_text().splitlines()
    assert lines[0] == "# isoformer predictions, format 1"
    assert lines[1] == "# units: log(TPM+1); values printed with %.6g"
    assert lines[2].startswith("# WARNING: DEMO checkpoint demo@sha256:abab")
    assert lines[3].startswith('# provenance: {"checkpoint_id": ')
    assert lines[4] == "transcript_id\tgene_id\tgene_name\tAdipose Tissue\tBrain\tLiver\tflags"
    assert lines[5] == "ENST00000000000.1\tENSG00000000000\t\t0\t1e-07\t123457\twindow_padded"
    assert lines[6] == "ENST00000000001.1\tENSG00000000000\tGENE0\t1.5\t2.25\t10\t"
    assert len(lines) == 7


def test_real_checkpoint_has_no_demo_warning_and_pandas_reads_the_table(tmp_path):
    pandas = pytest.importorskip("pandas")
    rows, values = make_rows(20), make_values(20)
    write_table(tmp_path / "t.tsv.gz", rows, values, [7])
    with gzip.open(tmp_path / "t.tsv.gz", "rt") as stream:
        assert "DEMO" not in stream.read()
    frame = pandas.read_csv(tmp_path / "t.tsv.gz", sep="\t", comment="#")
    assert list(frame.columns) == ["transcript_id", "gene_id", "gene_name", *TISSUES, "flags"]
    assert list(frame["transcript_id"]) == [row["transcript_id"] for row in rows]
    np.testing.assert_allclose(frame[TISSUES].to_numpy(), values, rtol=5e-6)


def test_stdout_output(capsys):
    rows, values = make_rows(3), make_values(3)
    write_table("-", rows, values, [2])
    out = capsys.readouterr().out
    assert out.splitlines()[3].startswith("transcript_id\t")  # title, units, provenance, columns
    assert len(out.splitlines()) == 4 + 3


# ------------------------------------------------------------------------------------ streaming


@pytest.mark.parametrize("name", FORMATS[:3])
def test_chunk_sizes_do_not_change_the_bytes(tmp_path, name):
    rows, values = make_rows(), make_values()
    write_table(tmp_path / ("one-" + name), rows, values, [N_ROWS])
    write_table(tmp_path / ("many-" + name), rows, values, [1, 0, 999, 17, 1200])
    assert (tmp_path / ("one-" + name)).read_bytes() == (tmp_path / ("many-" + name)).read_bytes()


def test_hdf5_bytes_do_not_depend_on_the_clock(tmp_path):
    rows, values = make_rows(10), make_values(10)
    write_table(tmp_path / "a.h5ad", rows, values, [10])
    time.sleep(1.1)  # HDF5 object timestamps have one-second resolution
    write_table(tmp_path / "b.h5ad", rows, values, [10])
    assert (tmp_path / "a.h5ad").read_bytes() == (tmp_path / "b.h5ad").read_bytes()


def test_target_appears_only_at_finish(tmp_path):
    target = tmp_path / "out.h5ad"
    writer = open_prediction_writer(str(target), TISSUES, make_provenance())
    writer.write_chunk(make_rows(3), make_values(3))
    assert not target.exists() and os.path.exists(temporary_path_for(str(target)))
    writer.finish()
    assert target.exists() and not os.path.exists(temporary_path_for(str(target)))
    with pytest.raises(ValueError, match="already finished"):
        writer.write_chunk(make_rows(1), make_values(1))


@pytest.mark.parametrize("name", FORMATS[:3])
def test_error_removes_partial_but_interrupt_keeps_it(tmp_path, name):
    target = tmp_path / name
    target.write_text("previous result\n")
    with pytest.raises(RuntimeError):
        with open_prediction_writer(str(target), TISSUES, make_provenance()) as writer:
            writer.write_chunk(make_rows(3), make_values(3))
            raise RuntimeError("engine failed")
    assert sorted(os.listdir(tmp_path)) == [name]
    assert target.read_text() == "previous result\n"
    with pytest.raises(KeyboardInterrupt):
        with open_prediction_writer(str(target), TISSUES, make_provenance()) as writer:
            writer.write_chunk(make_rows(3), make_values(3))
            raise KeyboardInterrupt
    assert os.path.exists(temporary_path_for(str(target)))
    assert target.read_text() == "previous result\n"


def test_chunk_shape_and_fields_are_checked(tmp_path):
    writer = open_prediction_writer(str(tmp_path / "x.h5ad"), TISSUES, make_provenance())
    with pytest.raises(ValueError, match=r"expected \(3, 3\)"):
        writer.write_chunk(make_rows(3), np.zeros((3, 2), np.float32))
    rows = make_rows(1)
    del rows[0]["biotype"]
    with pytest.raises(ValueError, match="lacks biotype"):
        writer.write_chunk(rows, np.zeros((1, 3), np.float32))
    writer.abort()
    assert os.listdir(tmp_path) == []


def test_identifier_with_tab_or_hash_is_refused(tmp_path):
    rows = make_rows(1)
    rows[0]["gene_name"] = "bad#name"
    with pytest.raises(OutputError, match="ENST00000000000.1.*'#'"):
        write_table(tmp_path / "x.tsv", rows, make_values(1), [1])
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------ resuming


# A frame header with the right magic whose payload fails its CRC, and no newline for TSV.
GARBAGE = b"IFJ1" + struct.pack("<QI", 11, 0) + b"01234567890"
assert b"\n" not in GARBAGE


@pytest.mark.parametrize(
    "name, damage, expected_rows",
    [
        # .tsv keeps every complete line, .tsv.gz every complete 1000-row member, .h5ad every chunk.
        ("out.tsv", None, 2100), ("out.tsv", "cut", 2099), ("out.tsv", "garbage", 2100),
        ("out.tsv.gz", None, 2000), ("out.tsv.gz", "cut", 1000), ("out.tsv.gz", "garbage", 2000),
        ("out.h5ad", None, 2100), ("out.h5ad", "cut", 1800), ("out.h5ad", "garbage", 2100),
    ],
)
def test_kill_then_resume_is_byte_identical(tmp_path, name, damage, expected_rows):
    rows, values = make_rows(), make_values()
    reference = tmp_path / ("reference-" + name)
    write_table(reference, rows, values, [400])

    target = tmp_path / name
    kill_after(target, rows, values, n_rows=2100, chunk_size=300)
    partial = temporary_path_for(str(target))
    if damage == "cut":  # the kill landed in the middle of writing the last chunk
        os.truncate(partial, os.path.getsize(partial) - 7)
    elif damage == "garbage":
        with open(partial, "ab") as stream:
            stream.write(GARBAGE)
    writer = open_prediction_writer(str(target), TISSUES, make_provenance(), resume=True)
    assert writer.completed_rows == expected_rows
    writer.close()
    write_table(target, rows, values, [333, 1], resume=True, skip=expected_rows)
    assert target.read_bytes() == reference.read_bytes()
    assert not os.path.exists(partial)


@pytest.mark.parametrize("name, after_first, more, after_second", [
    ("out.tsv", 2099, 201, 2300), ("out.tsv.gz", 1000, 1201, 2000), ("out.h5ad", 1800, 201, 2001),
])
def test_second_kill_after_a_resume_loses_nothing_written_since(tmp_path, name, after_first, more, after_second):
    """The torn end is cut away on resume, so rows appended after it are found by the next resume."""
    rows, values = make_rows(), make_values()
    reference = tmp_path / ("reference-" + name)
    write_table(reference, rows, values, [N_ROWS])
    target = tmp_path / name
    kill_after(target, rows, values, n_rows=2100, chunk_size=300)
    partial = temporary_path_for(str(target))
    os.truncate(partial, os.path.getsize(partial) - 7)
    writer = open_prediction_writer(str(target), TISSUES, make_provenance(), resume=True)
    assert writer.completed_rows == after_first
    writer.write_chunk(rows[after_first:after_first + more], values[after_first:after_first + more])
    del writer
    writer = open_prediction_writer(str(target), TISSUES, make_provenance(), resume=True)
    assert writer.completed_rows == after_second
    writer.close()
    write_table(target, rows, values, [500], resume=True, skip=after_second)
    assert target.read_bytes() == reference.read_bytes()


@pytest.mark.parametrize("name", FORMATS[:3])
def test_resume_after_a_real_kill_9(tmp_path, name):
    """A child process writes 3 chunks of 700 rows then SIGKILLs itself mid-run."""
    rows, values = make_rows(), make_values()
    reference = tmp_path / ("reference-" + name)
    write_table(reference, rows, values, [N_ROWS])
    target = tmp_path / name
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_predictions_output import TISSUES, make_provenance, make_rows, make_values
        from isoformer_cli.formats.predictions import open_prediction_writer
        rows, values = make_rows(), make_values()
        writer = open_prediction_writer({str(target)!r}, TISSUES, make_provenance())
        for start in range(0, 2100, 700):
            writer.write_chunk(rows[start:start + 700], values[start:start + 700])
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    child = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert child.returncode == -9, child.stderr.decode()
    assert not target.exists()
    writer = open_prediction_writer(str(target), TISSUES, make_provenance(), resume=True)
    assert writer.completed_rows == {"out.tsv": 2100, "out.tsv.gz": 2000, "out.h5ad": 2100}[name]
    done = writer.completed_rows
    with writer:
        writer.write_chunk(rows[done:], values[done:])
    assert target.read_bytes() == reference.read_bytes()


@pytest.mark.parametrize("name", FORMATS[:3])
def test_interrupted_rename_keeps_the_partial_for_resume(tmp_path, monkeypatch, name):
    """SIGTERM while finish() moves the file into place: every row is in the partial file."""
    rows, values = make_rows(), make_values()
    reference = tmp_path / ("reference-" + name)
    write_table(reference, rows, values, [N_ROWS])
    target = tmp_path / name

    def interrupted(built, target):
        raise KeyboardInterrupt

    for module in (predictions, streaming):
        monkeypatch.setattr(module, "replace_into_place", interrupted)
    writer = open_prediction_writer(str(target), TISSUES, make_provenance())
    writer.write_chunk(rows, values)
    with pytest.raises(KeyboardInterrupt):
        writer.finish()
    assert not target.exists()
    monkeypatch.undo()
    writer = open_prediction_writer(str(target), TISSUES, make_provenance(), resume=True)
    assert writer.completed_rows == N_ROWS
    writer.finish()
    assert target.read_bytes() == reference.read_bytes()
    assert sorted(os.listdir(tmp_path)) == sorted([name, "reference-" + name])


@pytest.mark.parametrize("name", FORMATS[:3])
@pytest.mark.parametrize(
    "change, differing",
    [
        ({"checkpoint_id": "other@sha256:00"}, "checkpoint_id"),
        ({"inputs": {"annotation": "sha256:ff", "genome": "sha256:" + "02" * 32}}, "inputs.annotation"),
        ({"command_line": "isoformer predict --genome g.fa --annotation a.gtf -o out --coding-only"}, "command_line"),
    ],
)
def test_resume_refuses_a_partial_from_another_run(tmp_path, name, change, differing):
    rows, values = make_rows(), make_values()
    target = tmp_path / name
    kill_after(target, rows, values, n_rows=1200, chunk_size=600)
    partial = temporary_path_for(str(target))
    before = open(partial, "rb").read()
    with pytest.raises(OutputError, match=f"different run.*{differing}"):
        open_prediction_writer(str(target), TISSUES, make_provenance(**change), resume=True)
    assert open(partial, "rb").read() == before  # refused: the other run's rows are kept


@pytest.mark.parametrize("name", FORMATS)
def test_resume_accepts_the_same_run_spelled_otherwise_and_keeps_its_header(tmp_path, name):
    rows, values = make_rows(), make_values()
    target, reference = tmp_path / name, tmp_path / ("ref_" + name)
    write_table(reference, rows, values, [600])
    kill_after(target, rows, values, n_rows=1200, chunk_size=600)
    # -q, another option order, --opt=value, other paths of the inputs, a batch size: the same run.
    other = make_provenance(command_line="isoformer -q predict -o /abs/out --annotation=/x/a.gtf --max-tokens 9 "
                                         "--genome ../g.fa")
    writer = open_prediction_writer(str(target), TISSUES, other, resume=True)
    done = writer.completed_rows
    assert done >= 1000
    writer.write_chunk(rows[done:], values[done:])
    writer.finish()
    assert read_predictions(str(target)).provenance == make_provenance()  # the interrupted run's header
    assert target.read_bytes() == reference.read_bytes()


@pytest.mark.parametrize("name", FORMATS[:3])
def test_resume_refuses_other_tissues(tmp_path, name):
    rows, values = make_rows(), make_values()
    target = tmp_path / name
    kill_after(target, rows, values, n_rows=1000, chunk_size=1000)
    with pytest.raises(OutputError, match="different run.*(columns|tissues)"):
        open_prediction_writer(str(target), ["Brain", "Liver", "Lung"], make_provenance(), resume=True)


@pytest.mark.parametrize("name", FORMATS[:3])
def test_resume_without_partial_starts_from_scratch(tmp_path, name):
    rows, values = make_rows(30), make_values(30)
    write_table(tmp_path / ("reference-" + name), rows, values, [30])
    writer = write_table(tmp_path / name, rows, values, [30], resume=True)
    assert writer.completed_rows == 0
    assert (tmp_path / name).read_bytes() == (tmp_path / ("reference-" + name)).read_bytes()


@pytest.mark.parametrize("name", FORMATS[:3])
def test_partial_killed_inside_the_header_starts_from_scratch(tmp_path, name):
    rows, values = make_rows(30), make_values(30)
    write_table(tmp_path / ("reference-" + name), rows, values, [30])
    target = tmp_path / name
    kill_after(target, rows, values, n_rows=0, chunk_size=1)
    partial = temporary_path_for(str(target))
    os.truncate(partial, 20)
    writer = write_table(target, rows, values, [7], resume=True)
    assert writer.completed_rows == 0
    assert target.read_bytes() == (tmp_path / ("reference-" + name)).read_bytes()


def test_resume_refuses_a_damaged_tsv_partial(tmp_path):
    rows, values = make_rows(), make_values()
    target = tmp_path / "out.tsv"
    kill_after(target, rows, values, n_rows=100, chunk_size=100)
    partial = temporary_path_for(str(target))
    lines = open(partial).read().splitlines(keepends=True)
    lines[20] = "garbage line\n"  # four header lines, so data row 17
    with open(partial, "w") as stream:
        stream.writelines(lines)
    with pytest.raises(OutputError, match="damaged at data row 17"):
        open_prediction_writer(str(target), TISSUES, make_provenance(), resume=True)


def test_new_run_without_resume_replaces_a_stale_partial(tmp_path, caplog):
    rows, values = make_rows(40), make_values(40)
    write_table(tmp_path / "reference.tsv", rows, values, [40])
    target = tmp_path / "out.tsv"
    kill_after(target, rows, values, n_rows=20, chunk_size=20)
    write_table(target, rows, values, [40])
    assert "replacing the partial output" in caplog.text
    assert target.read_bytes() == (tmp_path / "reference.tsv").read_bytes()


# -------------------------------------------------------------------------------------- errors


def test_unknown_suffix_names_the_accepted_ones(tmp_path):
    with pytest.raises(OutputError, match=r"\.tsv, \.tsv\.gz, \.h5, \.h5ad"):
        open_prediction_writer(str(tmp_path / "out.csv"), TISSUES, make_provenance())
    assert output_format("-") == "tsv" and output_format("x.h5") == "h5ad"


def test_missing_or_unwritable_folder(tmp_path, monkeypatch):
    with pytest.raises(OutputError, match="does not exist"):
        open_prediction_writer(str(tmp_path / "no" / "out.tsv"), TISSUES, make_provenance())
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(OutputError, match="not writable"):
        open_prediction_writer(str(tmp_path / "out.h5ad"), TISSUES, make_provenance())


def test_stdout_cannot_resume():
    with pytest.raises(OutputError, match="standard output cannot be resumed"):
        open_prediction_writer("-", TISSUES, make_provenance(), resume=True)


def test_reader_names_the_bad_line(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("# x\ntranscript_id\tgene_id\tgene_name\tBrain\tflags\nT1\tG1\tA\t0.5\t\nT2\tG1\tA\tnope\t\n")
    with pytest.raises(InputError, match=r"bad.tsv:4: a tissue value is not a number"):
        read_predictions(str(path))
    path.write_text("transcript_id\tgene_id\tgene_name\tBrain\tflags\nT1\tG1\n")
    with pytest.raises(InputError, match=r"bad.tsv:2: expected 5 tab-separated fields, found 2"):
        read_predictions(str(path))
    path.write_text("id\tBrain\n")
    with pytest.raises(InputError, match="not an isoformer prediction table"):
        read_predictions(str(path))
    with pytest.raises(InputError, match="cannot read"):
        read_predictions(str(tmp_path / "missing.tsv"))


# ---------------------------------------------------------------------------------- provenance


def test_provenance_records_checksums_and_drops_resume(tmp_path):
    checkpoint = tmp_path / "my-model"
    checkpoint.mkdir()
    (checkpoint / "model.safetensors").write_bytes(b"weights")
    (checkpoint / "config.json").write_text("{}")
    genome = tmp_path / "g.fa"
    genome.write_text(">chr1\nACGT\n")
    args = ["predict", "--genome", str(genome), "--resume", "-o", "out file.tsv"]
    provenance = build_provenance(args, str(checkpoint), {"genome": str(genome)}, demo=True)
    assert provenance == {
        "format_version": 1,
        "tool": "isoformer",
        "tool_version": provenance["tool_version"],
        "command_line": f"isoformer predict --genome {genome} -o 'out file.tsv'",
        "checkpoint_id": "my-model@sha256:" + hashlib.sha256(b"weights").hexdigest(),
        "inputs": {"genome": "sha256:" + hashlib.sha256(b">chr1\nACGT\n").hexdigest()},
        "units": "log(TPM+1)",
        "demo": True,
    }
    embed = build_provenance(["embed"], str(checkpoint), {}, units=None)
    assert "units" not in embed and embed["demo"] is False
    assert recorded_command_line(["predict", "--resume"]) == "isoformer predict"


def test_sharded_checkpoint_id_is_the_checksum_of_the_sha256sum_listing(tmp_path):
    for name, content in [("model-00002-of-00002.safetensors", b"b"), ("model-00001-of-00002.safetensors", b"a")]:
        (tmp_path / name).write_bytes(content)
    listing = "".join(
        f"{hashlib.sha256(content).hexdigest()}  model-0000{i}-of-00002.safetensors\n"
        for i, content in [(1, b"a"), (2, b"b")]
    )
    expected = hashlib.sha256(listing.encode()).hexdigest()
    assert checkpoint_id(str(tmp_path)) == f"{tmp_path.name}@sha256:{expected}"


def test_provenance_errors_name_the_path(tmp_path):
    with pytest.raises(CheckpointError, match="no \\*.safetensors weights"):
        checkpoint_id(str(tmp_path))
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint_id(str(tmp_path / "nope"))
    with pytest.raises(InputError, match="missing.fa: cannot read"):
        sha256_file(str(tmp_path / "missing.fa"))
