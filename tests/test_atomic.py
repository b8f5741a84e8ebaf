"""Atomic outputs: nothing half-written at the target path, whatever happens."""

import gzip
import os

import pytest

from isoformer_cli.errors import OutputError
from isoformer_cli.formats.atomic import atomic_path, atomic_text_output, temporary_path_for


def test_text_output_appears_only_when_complete(tmp_path):
    target = tmp_path / "out.tsv"
    with atomic_text_output(str(target)) as stream:
        stream.write("a\tb\n")
        assert not target.exists()
        # A temporary file unique to this run (not the resumable one of streaming writers).
        temporaries = [name for name in os.listdir(tmp_path) if name.endswith(".isoformer-partial")]
        assert len(temporaries) == 1 and temporaries[0].startswith(".out.tsv.")
        assert not os.path.exists(temporary_path_for(str(target)))
    assert target.read_text() == "a\tb\n"
    assert os.listdir(tmp_path) == ["out.tsv"]


def test_failure_leaves_neither_target_nor_temporary_file(tmp_path):
    target = tmp_path / "out.tsv"
    with pytest.raises(RuntimeError):
        with atomic_text_output(str(target)) as stream:
            stream.write("partial\n")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_an_existing_target_untouched(tmp_path):
    target = tmp_path / "out.tsv"
    target.write_text("previous result\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic_text_output(str(target)) as stream:
            stream.write("new\n")
            raise KeyboardInterrupt
    assert target.read_text() == "previous result\n"


def test_gzip_output_is_reproducible(tmp_path):
    first, second = tmp_path / "a.tsv.gz", tmp_path / "b.tsv.gz"
    for target in (first, second):
        with atomic_text_output(str(target)) as stream:
            stream.write("x\n")
    assert gzip.decompress(first.read_bytes()) == b"x\n"
    assert first.read_bytes() == second.read_bytes()


def test_missing_folder_is_reported_before_any_work(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        with atomic_path(str(tmp_path / "nope" / "out.h5")):
            pass


def test_read_only_folder_is_reported(tmp_path, monkeypatch):
    # Tests run as root in CI, where chmod cannot make a folder unwritable; fake the permission check.
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(OutputError, match="not writable"):
        with atomic_path(str(tmp_path / "out.h5")):
            pass
