"""The output policy, property style: every command that writes x every kind of target.

Kinds: a regular file (replaced, mode kept), a symbolic link (written through, the link stays), a
FIFO (written directly, never replaced), a missing path (created), a path in a read-only folder
(refused), and a path that is one of the command's inputs (refused before reading anything). For
each, the test checks the exit code, the message, and that inputs and non-regular targets are
unchanged and nothing temporary is left. Character devices and descriptors have their own tests
below (made in the test's folder, never the system's /dev/null).
"""

import os
import pathlib
import shutil
import stat
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import pytest

from cli_helpers import (
    HUMAN_GENOME,
    HUMAN_GTF,
    FifoReader,
    fingerprint,
    invoke,
    leftovers,
    make_character_device,
    one_error_line,
)
from isoformer_cli.formats.predictions import read_predictions

KINDS = ("regular", "symlink", "fifo", "missing", "read_only_folder", "same_as_input")
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OLD_CONTENT = b"an earlier result\n"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Private copies of every input, so a test that went wrong cannot damage the repository's."""
    folder = tmp_path_factory.mktemp("inputs")
    genome = folder / "genome.fa"
    shutil.copy(HUMAN_GENOME, genome)
    annotation = folder / "genes.gtf"
    shutil.copy(HUMAN_GTF, annotation)
    predictions = folder / "predictions.tsv"
    result = invoke("predict", "--genome", genome, "--annotation", annotation, "--checkpoint", "demo",
                    "-o", predictions)
    assert result.exit_code == 0, result.output
    table = read_predictions(str(predictions))
    expression = folder / "expression.tsv"
    rng = np.random.default_rng(0)
    expression.write_text("transcript_id\tLiver\tLung\n" + "".join(
        f"{row['transcript_id']}\t{rng.exponential(5):.3f}\t{rng.exponential(5):.3f}\n" for row in table.obs))
    encoders = folder / "encoders"
    encoders.mkdir()
    official = folder / "official"
    return {"genome": str(genome), "annotation": str(annotation), "predictions": str(predictions),
            "expression": str(expression), "encoders": str(encoders), "official": str(official)}


@pytest.fixture(scope="module")
def official_weights(inputs, tmp_path_factory):
    """An official-looking pytorch_model.bin of the tiny preset, for ``convert``."""
    import torch

    from official_format import official_state, write_official

    from isoformer_cli.models.network.configuration import IsoformerConfig
    from isoformer_cli.models.network.modeling import IsoformerModel

    torch.manual_seed(0)
    config = IsoformerConfig.from_preset("tiny")
    model = IsoformerModel(config).eval()
    return str(write_official(pathlib.Path(inputs["official"]), official_state(model, config), config))


@dataclass
class Command:
    """One output option of one command.

    ``args(target, inputs)`` builds the command line writing ``target``; ``same_input`` names the
    input that the same-file case reuses as output, and ``same_message`` the expected refusal.
    """

    name: str
    suffix: str
    args: Callable
    same_input: str
    same_message: Callable
    folder: bool = False
    magic: Optional[bytes] = None


def _same(option, input_option):
    return lambda target, path: (f"{option} {target} is the same file as {input_option} {path}; "
                                 "choose another output path")


def _is_folder(input_option):
    return lambda target, path: (f"-o/--output {target} is the same as {input_option} {path}; "
                                 "choose another output folder")


def _holds(input_option):
    """The output folder is the one holding the inputs; the first input named is the genome."""
    return lambda target, path: (f"-o/--output {target} holds {input_option} {path}, and the run writes into "
                                 "that folder; keep inputs outside it or choose another output folder")


def _predict(target, inputs, *extra):
    return ["predict", "--genome", inputs["genome"], "--annotation", inputs["annotation"], "--checkpoint", "demo",
            "--transcripts", "NM_001284497,NM_032039,NR_104317", *extra, "-o", target]


COMMANDS = [
    Command("triples", ".tsv",
            lambda target, inputs: ["triples", "--genome", inputs["genome"], "--annotation", inputs["annotation"],
                                    "--dna-length", "1000", "-o", target],
            "annotation", _same("-o/--output", "--annotation")),
    Command("predict-tsv", ".tsv", lambda target, inputs: _predict(target, inputs),
            "annotation", _same("-o/--output", "--annotation")),
    Command("predict-h5ad", ".h5ad", lambda target, inputs: _predict(target, inputs),
            "genome", _same("-o/--output", "--genome"), magic=HDF5_MAGIC),
    Command("gene-summary", ".tsv",
            lambda target, inputs: _predict(str(pathlib.Path(inputs["annotation"]).parent / "with-summary.tsv"),
                                            inputs, "--gene-summary", target),
            "annotation", _same("--gene-summary", "--annotation")),
    Command("embed", ".h5",
            lambda target, inputs: ["embed", "--genome", inputs["genome"], "--annotation", inputs["annotation"],
                                    "--checkpoint", "demo", "--transcripts", "NM_001284497,NR_104317", "--modalities",
                                    "-o", target],
            "genome", _same("-o/--output", "--genome"), magic=HDF5_MAGIC),
    Command("evaluate", ".tsv",
            lambda target, inputs: ["evaluate", "--predictions", inputs["predictions"], "--expression",
                                    inputs["expression"], "-o", target],
            "expression", _same("-o/--output", "--expression")),
    Command("evaluate-plot", ".png",
            lambda target, inputs: ["evaluate", "--predictions", inputs["predictions"], "--expression",
                                    inputs["expression"], "-o", str(pathlib.Path(target).parent / "metrics.tsv"),
                                    "--plot", target],
            "predictions", _same("--plot", "--predictions"), magic=PNG_MAGIC),
    Command("finetune", "",
            lambda target, inputs: ["finetune", "-o", target, "--genome", inputs["genome"], "--annotation",
                                    inputs["annotation"], "--expression", inputs["expression"], "--checkpoint", "demo",
                                    "--epochs", "1", "--max-steps", "1", "--batch-size", "4", "--val-fraction", "0.2",
                                    "--test-fraction", "0.2"],
            "inputs folder", _holds("--genome"), folder=True),
    Command("init", "",
            lambda target, inputs: ["init", "--preset", "tiny", "-o", target]
            + (["--rna-encoder", target] if target == inputs["encoders"] else []),
            "encoders", _is_folder("--rna-encoder"), folder=True),
    Command("convert", "",
            lambda target, inputs: ["convert", inputs["official"], "--preset", "tiny", "-o", target],
            "official", _is_folder("OFFICIAL"), folder=True),
]


def _make_target(kind, tmp_path, command, inputs, monkeypatch):
    """The ``-o`` path of this case, prepared; returns ``(target, path whose content the run writes)``."""
    name = f"out{command.suffix}"
    if kind == "regular":
        target = tmp_path / name
        target.write_bytes(OLD_CONTENT)
        target.chmod(0o640)
        return str(target), str(target)
    if kind == "symlink":
        real_folder = tmp_path / "real"
        real_folder.mkdir()
        real = real_folder / name
        real.write_bytes(OLD_CONTENT)
        real.chmod(0o640)
        link = tmp_path / f"link{command.suffix}"
        link.symlink_to(real)
        return str(link), str(real)
    if kind == "fifo":
        target = tmp_path / name
        os.mkfifo(target)
        return str(target), str(target)
    if kind == "missing":
        target = tmp_path / name
        return str(target), str(target)
    if kind == "read_only_folder":
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        # Root may write anywhere; make the permission check see the folder as it is meant to be.
        real_access = os.access
        read_only = os.path.realpath(folder)
        monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if (
            mode & os.W_OK and os.path.realpath(path) == read_only) else real_access(path, mode, **kw))
        return str(folder / name), None
    if command.same_input == "inputs folder":
        return os.path.dirname(inputs["genome"]), None
    path = inputs[command.same_input]
    return path, path


def _all_inputs(inputs):
    paths = [inputs["genome"], inputs["annotation"], inputs["predictions"], inputs["expression"]]
    return {path: fingerprint(path) for path in paths}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", COMMANDS, ids=[command.name for command in COMMANDS])
def test_every_writer_follows_the_output_policy(tmp_path, inputs, official_weights, command, kind, monkeypatch):
    target, written = _make_target(kind, tmp_path, command, inputs, monkeypatch)
    before_inputs = _all_inputs(inputs)
    before_target = fingerprint(target) if os.path.lexists(target) else None
    reader = FifoReader(target) if kind == "fifo" else None
    if reader:
        with reader:
            result = invoke(*command.args(target, inputs))
    else:
        result = invoke(*command.args(target, inputs))

    assert _all_inputs(inputs) == before_inputs, "an input changed"
    if kind == "same_as_input":
        named = inputs["genome"] if command.same_input == "inputs folder" else target
        one_error_line(result, command.same_message(target, named))
        assert fingerprint(target) == before_target
        return
    if kind == "read_only_folder":
        assert result.exit_code == 1 and "is not writable" in result.output, result.output
        assert result.output.count("\n") == 1
        assert os.listdir(os.path.dirname(target)) == []
        return
    if command.folder and kind in ("regular", "symlink", "fifo"):
        # A run or checkpoint folder is never created over a file, a link to one or a FIFO.
        assert result.exit_code == 1 and "exists and is not a folder" in result.output, result.output
        assert fingerprint(target) == before_target
        if reader:
            assert reader.data == b""
        assert leftovers(tmp_path) == []
        return

    assert result.exit_code == 0, result.output
    if command.folder:  # kind == "missing"
        assert os.path.isdir(target) and os.listdir(target)
    elif kind == "fifo":
        assert fingerprint(target) == before_target, "the FIFO was replaced"
        assert reader.data and (command.magic is None or reader.data.startswith(command.magic))
    else:
        assert os.path.isfile(written)
        content = pathlib.Path(written).read_bytes()
        assert content != OLD_CONTENT and (command.magic is None or content.startswith(command.magic))
        umask = os.umask(0)
        os.umask(umask)
        expected_mode = 0o640 if kind in ("regular", "symlink") else 0o666 & ~umask
        assert stat.S_IMODE(os.stat(written).st_mode) == expected_mode
    if kind == "symlink":
        assert os.path.islink(target) and fingerprint(target) == before_target, "the link was replaced"
        assert leftovers(tmp_path / "real") == []
    assert leftovers(tmp_path) == []


def test_triples_through_a_fifo_equal_a_file(tmp_path, inputs):
    args = ["triples", "--genome", inputs["genome"], "--annotation", inputs["annotation"], "--dna-length", "1000"]
    assert invoke(*args, "-o", tmp_path / "file.tsv").exit_code == 0
    os.mkfifo(tmp_path / "pipe.tsv")
    with FifoReader(tmp_path / "pipe.tsv") as reader:
        assert invoke(*args, "-o", tmp_path / "pipe.tsv").exit_code == 0
    assert reader.data == (tmp_path / "file.tsv").read_bytes()


@pytest.mark.parametrize("command", [c for c in COMMANDS if not c.folder], ids=[c.name for c in COMMANDS
                                                                               if not c.folder])
def test_a_character_device_is_written_directly_and_stays(tmp_path, inputs, command):
    device = make_character_device(tmp_path / f"null{command.suffix}")
    before = fingerprint(device)
    result = invoke(*command.args(device, inputs))
    assert result.exit_code == 0, result.output
    assert fingerprint(device) == before
    assert leftovers(tmp_path) == []


def test_one_device_may_take_two_outputs(tmp_path, inputs):
    device = make_character_device(tmp_path / "null")
    result = invoke(*_predict(device, inputs, "--gene-summary", device))
    assert result.exit_code == 0, result.output
    assert stat.S_ISCHR(os.lstat(device).st_mode)


def test_a_descriptor_path_writes_to_that_descriptor(tmp_path, inputs):
    """``-o /dev/fd/N``: what ``-o >(gzip > x.gz)`` passes; the pipe's reader gets the table."""
    args = ["triples", "--genome", inputs["genome"], "--annotation", inputs["annotation"], "--dna-length", "1000"]
    assert invoke(*args, "-o", tmp_path / "file.tsv").exit_code == 0
    read_end, write_end = os.pipe()
    chunks = []

    def drain():
        with os.fdopen(read_end, "rb") as stream:
            chunks.append(stream.read())

    thread = threading.Thread(target=drain)
    thread.start()
    try:
        result = invoke(*args, "-o", f"/dev/fd/{write_end}")
    finally:
        os.close(write_end)
    thread.join(timeout=30)
    assert result.exit_code == 0, result.output
    assert chunks == [(tmp_path / "file.tsv").read_bytes()]


def test_gene_summary_of_a_direct_output_equals_the_file_one(tmp_path, inputs):
    """Predictions to a FIFO cannot be read back: the summary is made from the rows as written."""
    from_file = tmp_path / "from_file.tsv"
    assert invoke(*_predict(tmp_path / "p.tsv", inputs, "--gene-summary", from_file)).exit_code == 0
    os.mkfifo(tmp_path / "pipe.tsv")
    from_fifo = tmp_path / "from_fifo.tsv"
    with FifoReader(tmp_path / "pipe.tsv"):
        assert invoke(*_predict(tmp_path / "pipe.tsv", inputs, "--gene-summary", from_fifo)).exit_code == 0
    def body(path):
        return [line for line in path.read_text().splitlines() if not line.startswith("# provenance")]

    assert body(from_fifo) == body(from_file)


def test_resume_needs_a_file(tmp_path, inputs):
    os.mkfifo(tmp_path / "pipe.tsv")
    with FifoReader(tmp_path / "pipe.tsv") as reader:
        result = invoke(*_predict(tmp_path / "pipe.tsv", inputs, "--resume"))
    one_error_line(result, f"--resume needs an output file (-o FILE): {tmp_path / 'pipe.tsv'} is a FIFO, which "
                           "cannot be resumed")
    assert reader.data == b"" and stat.S_ISFIFO(os.lstat(tmp_path / "pipe.tsv").st_mode)


def test_temporary_files_of_killed_runs_are_removed_by_the_next_run(tmp_path, inputs):
    """Unique temporary names cannot be reused; the next run holding the lock clears them instead."""
    stale = [tmp_path / ".out.tsv.4242-0badcafe.isoformer-partial",
             tmp_path / ".out.tsv.17-deadbeef.isoformer-building"]
    for path in stale:
        path.write_text("left by kill -9\n")
    lock = tmp_path / ".out.tsv.isoformer-lock"
    lock.write_text("4242\n")  # a killed run's lock file: unlocked, so taken over
    unrelated = tmp_path / ".other.tsv.4242-0badcafe.isoformer-partial"
    unrelated.write_text("another output's\n")
    result = invoke("triples", "--genome", inputs["genome"], "--annotation", inputs["annotation"], "--dna-length",
                    "1000", "-o", tmp_path / "out.tsv")
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path)) == sorted([".other.tsv.4242-0badcafe.isoformer-partial", "out.tsv"])


def test_dev_stdout_is_standard_output_never_replaced(tmp_path, inputs):
    """``-o /dev/stdout`` writes to this process's standard output (here a pipe), like ``-o -``."""
    args = ["triples", "--genome", inputs["genome"], "--annotation", inputs["annotation"], "--dna-length", "1000"]
    assert invoke(*args, "-o", tmp_path / "file.tsv").exit_code == 0
    completed = subprocess.run([sys.executable, "-m", "isoformer_cli", "-q", *args, "-o", "/dev/stdout"],
                               capture_output=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    # The same table; the provenance lines differ only in the recorded command line (-o and the program).
    body = [line for line in (tmp_path / "file.tsv").read_bytes().splitlines(True) if not line.startswith(b"# provenance:")]
    assert completed.stdout.startswith(b"# provenance: ")
    assert completed.stdout.splitlines(True)[1:] == body
