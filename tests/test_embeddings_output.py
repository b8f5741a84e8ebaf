"""Embedding HDF5 files: layout, masks, streaming invariance, kill-safe resume, errors."""

import json
import os

import h5py
import numpy as np
import pytest

from isoformer_cli.errors import InputError, OutputError
from isoformer_cli.formats.atomic import temporary_path_for
from isoformer_cli.formats.embeddings import open_embedding_writer, read_embeddings

N_ROWS, FUSED, DIMS = 120, 16, {"protein": 4, "dna": 8}
PROVENANCE = {"checkpoint_id": "tiny@sha256:00", "command_line": "isoformer embed", "demo": True, "format_version": 1}


def make_data(n=N_ROWS):
    rng = np.random.default_rng(3)
    ids = [f"T{i}" for i in range(n)]
    fused = rng.normal(size=(n, FUSED)).astype(np.float32)
    modalities = {name: (rng.normal(size=(n, dim)).astype(np.float32), np.ones(n, bool)) for name, dim in DIMS.items()}
    modalities["protein"][1][::3] = False  # every third transcript is non-coding
    return ids, fused, modalities


def write_embeddings(target, data, chunk_sizes, resume=False, skip=0, provenance=PROVENANCE):
    ids, fused, modalities = data
    writer = open_embedding_writer(str(target), FUSED, provenance, DIMS, resume=resume)
    with writer:
        start, turn = skip, 0
        while start < len(ids):
            stop = start + chunk_sizes[turn % len(chunk_sizes)]
            chunk = {name: (values[start:stop], has[start:stop]) for name, (values, has) in modalities.items()}
            writer.write_chunk(ids[start:stop], fused[start:stop], chunk)
            start, turn = stop, turn + 1
    return writer


def test_round_trip_and_layout(tmp_path):
    data = make_data()
    write_embeddings(tmp_path / "e.h5", data, [50])
    read = read_embeddings(str(tmp_path / "e.h5"))
    assert read.transcript_ids == data[0]
    np.testing.assert_array_equal(read.fused, data[1])
    assert list(read.modalities) == ["dna", "protein"]
    values, has = read.modalities["protein"]
    np.testing.assert_array_equal(has, data[2]["protein"][1])
    assert np.isnan(values[~has]).all()  # rows without a protein hold NaN, not engine leftovers
    np.testing.assert_array_equal(values[has], data[2]["protein"][0][has])
    assert read.provenance == PROVENANCE
    with h5py.File(tmp_path / "e.h5") as handle:
        assert sorted(handle) == ["dna", "fused", "has_dna", "has_protein", "protein", "transcript_id"]
        assert handle["fused"].dtype == np.float32 and handle["fused"].shape == (N_ROWS, FUSED)
        assert handle.attrs["format"] == "isoformer embeddings" and handle.attrs["format_version"] == 1
        assert json.loads(handle.attrs["provenance"]) == PROVENANCE


def test_fused_only(tmp_path):
    writer = open_embedding_writer(str(tmp_path / "f.hdf5"), 2, PROVENANCE)
    with writer:
        writer.write_chunk(["a", "b"], np.eye(2))
    read = read_embeddings(str(tmp_path / "f.hdf5"))
    assert read.modalities == {} and read.fused.dtype == np.float32


def test_chunk_sizes_do_not_change_the_bytes(tmp_path):
    data = make_data()
    write_embeddings(tmp_path / "one.h5", data, [N_ROWS])
    write_embeddings(tmp_path / "many.h5", data, [1, 0, 37, 50])
    assert (tmp_path / "one.h5").read_bytes() == (tmp_path / "many.h5").read_bytes()


@pytest.mark.parametrize("cut", [0, 9])
def test_kill_then_resume_is_byte_identical(tmp_path, cut):
    data = make_data()
    write_embeddings(tmp_path / "reference.h5", data, [N_ROWS])
    ids, fused, modalities = data
    target = tmp_path / "e.h5"
    writer = open_embedding_writer(str(target), FUSED, PROVENANCE, DIMS)
    for start in range(0, 90, 30):
        chunk = {name: (values[start:start + 30], has[start:start + 30]) for name, (values, has) in modalities.items()}
        writer.write_chunk(ids[start:start + 30], fused[start:start + 30], chunk)
    del writer  # killed: no finish, no clean-up
    partial = temporary_path_for(str(target))
    os.truncate(partial, os.path.getsize(partial) - cut)  # cut > 0 tears the last chunk
    writer = open_embedding_writer(str(target), FUSED, PROVENANCE, DIMS, resume=True)
    done = writer.completed_rows
    assert done == (90 if cut == 0 else 60)
    writer.close()
    write_embeddings(target, data, [7], resume=True, skip=done)
    assert target.read_bytes() == (tmp_path / "reference.h5").read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["e.h5", "reference.h5"]


def test_resume_refuses_another_run(tmp_path):
    data = make_data()
    target = tmp_path / "e.h5"
    writer = open_embedding_writer(str(target), FUSED, PROVENANCE, DIMS)
    writer.write_chunk(data[0][:5], data[1][:5], {name: (v[:5], h[:5]) for name, (v, h) in data[2].items()})
    writer.close()
    with pytest.raises(OutputError, match="different run.*modality_dims.rna"):
        open_embedding_writer(str(target), FUSED, PROVENANCE, dict(DIMS, rna=6), resume=True)
    with pytest.raises(OutputError, match="different run.*provenance.checkpoint_id"):
        open_embedding_writer(str(target), FUSED, dict(PROVENANCE, checkpoint_id="x"), DIMS, resume=True)
    assert os.path.exists(temporary_path_for(str(target)))


def test_target_errors(tmp_path):
    with pytest.raises(OutputError, match="not standard output"):
        open_embedding_writer("-", FUSED, PROVENANCE)
    with pytest.raises(OutputError, match=r"one of \.h5, \.hdf5"):
        open_embedding_writer(str(tmp_path / "e.h5ad"), FUSED, PROVENANCE)
    with pytest.raises(OutputError, match="does not exist"):
        open_embedding_writer(str(tmp_path / "missing" / "e.h5"), FUSED, PROVENANCE)
    with pytest.raises(ValueError, match="unknown modalities"):
        open_embedding_writer(str(tmp_path / "e.h5"), FUSED, PROVENANCE, {"atac": 3})


def test_chunk_errors_and_abort(tmp_path):
    writer = open_embedding_writer(str(tmp_path / "e.h5"), FUSED, PROVENANCE, {"rna": 2})
    with pytest.raises(ValueError, match=r"fused embeddings have shape \(2, 3\); expected \(2, 16\)"):
        writer.write_chunk(["a", "b"], np.zeros((2, 3)), {"rna": (np.zeros((2, 2)), [True, True])})
    with pytest.raises(ValueError, match="the writer expects \\['rna'\\]"):
        writer.write_chunk(["a", "b"], np.zeros((2, FUSED)))
    with pytest.raises(ValueError, match=r"has_rna has shape \(3,\)"):
        writer.write_chunk(["a", "b"], np.zeros((2, FUSED)), {"rna": (np.zeros((2, 2)), [True] * 3)})
    writer.abort()
    assert os.listdir(tmp_path) == []


def test_reader_refuses_other_files(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle["x"] = 1
    with pytest.raises(InputError, match="not an isoformer embedding file"):
        read_embeddings(str(tmp_path / "other.h5"))
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(InputError, match="cannot open the embeddings as HDF5"):
        read_embeddings(str(tmp_path / "text.h5"))
