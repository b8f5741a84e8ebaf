"""Helpers shared by the tests: the command line in this process, the example data, oracle tools on PATH,
and what the tests of output safety (targets, same-file refusal, concurrent runs) look at."""

import hashlib
import os
import pathlib
import shutil
import stat
import sys
import threading
import time

import pytest
from click.testing import CliRunner

from isoformer_cli.cli.main import cli

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "example_data"
HUMAN_GENOME = str(EXAMPLES / "hg38_chr16_186964-397118.fa")
HUMAN_GTF = str(EXAMPLES / "hg38_chr16_186964-397118.refGene.gtf")


def invoke(*args, expect=None, quiet=True):
    """Run ``isoformer ARGS`` in this process (with ``-q`` unless ``quiet=False``); the click Result, whose
    exit code must be ``expect`` when one is given."""
    result = CliRunner().invoke(cli, ["-q"] * quiet + [str(arg) for arg in args])
    if expect is not None:
        assert result.exit_code == expect, result.output
    return result


def tool_path(tool):
    """The tool on PATH, or beside the running Python (CrossMap installed into a virtual environment)."""
    found = shutil.which(tool)
    if found is None:
        beside = os.path.join(os.path.dirname(sys.executable), tool)
        found = beside if os.access(beside, os.X_OK) else None
    return found


def one_error_line(result, text):
    """The command failed with exit 1 and printed exactly ``isoformer: error: <text>``."""
    assert result.exit_code == 1, result.output
    assert result.output == f"isoformer: error: {text}\n"


def fingerprint(path):
    """What must not change about a path: its type, mode, device numbers, link target and content."""
    path = str(path)
    info = os.lstat(path)
    kind = stat.S_IFMT(info.st_mode)
    content = None
    if stat.S_ISREG(info.st_mode):
        content = hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()
    link = os.readlink(path) if stat.S_ISLNK(info.st_mode) else None
    return kind, stat.S_IMODE(info.st_mode), info.st_rdev, info.st_ino, link, content


def make_character_device(path):
    """A character device node like /dev/null (major 1, minor 3) at ``path``, or skip the test."""
    try:
        os.mknod(str(path), stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot create a character device here: {exc}")
    return str(path)


def leftovers(*folders):
    """Temporary or lock files of the tool left in ``folders``."""
    return sorted(name for folder in folders for name in os.listdir(folder) if ".isoformer-" in name)


class FifoReader:
    """Read everything written to a FIFO in a background thread (``data`` once the block ends).

    When the command never opens the FIFO, leaving the block opens it for writing once, so the
    reader sees an empty stream instead of waiting forever.
    """

    def __init__(self, path):
        self.path = str(path)
        self.data = None
        self._thread = threading.Thread(target=self._read, daemon=True)

    def _read(self):
        with open(self.path, "rb") as stream:
            self.data = stream.read()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        deadline = time.monotonic() + 30
        while self._thread.is_alive() and time.monotonic() < deadline:
            try:
                # Succeeds only once the reader has the FIFO open; closing it at once ends its read.
                os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
            self._thread.join(timeout=0.01)
        assert not self._thread.is_alive(), "the FIFO reader did not finish"


def descendants(pid):
    """The pids of every process below ``pid`` (children, their children, ...), read from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:  # the process ended while the table was read
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def signal_all(pids, signum):
    """Send ``signum`` to each of ``pids`` that still exists."""
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def run_torchrun(args, env, timeout):
    """``python -m torch.distributed.run --standalone --nproc-per-node 2 -m isoformer_cli ARGS``; the
    CompletedProcess (text). The test fails when it exits non-zero.

    On a timeout every process of the run (the agent and its ranks, in one session) gets SIGABRT, so that
    Python's fault handler prints each thread's stack on stderr, and the test fails with that dump: a hang
    in CI then says where it waited instead of only that it waited.
    """
    import signal
    import subprocess
    import sys

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "isoformer_cli", *[str(arg) for arg in args]]
    process = subprocess.Popen(command, env=dict(env, PYTHONFAULTHANDLER="1"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # The agent starts each rank in a session of its own, so the agent's process group does not reach them:
        # signal every descendant by pid, or a hung rank would hold the pipes open and the test would wait forever.
        tree = [process.pid, *descendants(process.pid)]
        signal_all(tree, signal.SIGABRT)
        try:
            stdout, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            signal_all(tree, signal.SIGKILL)
            stdout, stderr = process.communicate(timeout=30)
        pytest.fail(f"torchrun did not finish in {timeout} s; the stacks of its processes:\n{stderr[-20000:]}")
    assert process.returncode == 0, stderr[-3000:]
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
