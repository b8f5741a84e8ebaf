"""Two real processes on one output: the second stops at once, and the finished file is one run's, byte for byte.

The first process is frozen (SIGSTOP) as soon as it holds the output's lock, so the overlap does not
depend on timing; then the second runs to its end, the first is thawed and finishes. Both start
orders of two different commands are tried, and a kill -9 of a lock holder is followed by --resume.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from cli_helpers import HUMAN_GENOME, HUMAN_GTF, fingerprint, leftovers
from isoformer_cli.formats.atomic import temporary_path_for
from isoformer_cli.formats.locks import lock_path_for

COMMON = ["predict", "--genome", HUMAN_GENOME, "--annotation", HUMAN_GTF, "--checkpoint", "demo"]
# Two commands whose outputs differ, so the finished file tells which one wrote it.
COMMANDS = {"all": COMMON + ["--chunk-size", "4"], "coding": COMMON + ["--coding-only", "--chunk-size", "4"]}


def _command(name, output, *extra):
    return [sys.executable, "-m", "isoformer_cli", "-q", *COMMANDS[name], "-o", str(output), *extra]


def _environment():
    return dict(os.environ, OMP_NUM_THREADS="1")


def _run(name, output, *extra):
    return subprocess.run(_command(name, output, *extra), env=_environment(), capture_output=True, text=True,
                          timeout=300)


def _start_and_freeze_holding_the_lock(name, output):
    """Start ``name`` on ``output`` and stop it once it holds the lock; the Popen."""
    process = subprocess.Popen(_command(name, output), env=_environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    lock, deadline = lock_path_for(str(output)), time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with open(lock) as stream:
                if stream.read().strip() == str(process.pid):
                    process.send_signal(signal.SIGSTOP)
                    return process
        except FileNotFoundError:
            pass
        time.sleep(0.002)
    process.kill()
    pytest.fail(f"the first run never held the lock: {process.communicate()[1]}")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """One folder and output path for every run (the path is recorded in the output), and each
    command's output when it runs alone."""
    folder = tmp_path_factory.mktemp("concurrent")
    output = folder / "out.tsv"
    references = {}
    for name in COMMANDS:
        completed = _run(name, output)
        assert completed.returncode == 0, completed.stderr
        references[name] = output.read_bytes()
        output.unlink()
    assert references["all"] != references["coding"]
    return folder, output, references


def _refusal(output, pid):
    return (f"isoformer: error: {output}: another isoformer run (process {pid}) is writing this output; wait for "
            "it to finish, or choose another output path\n")


@pytest.mark.parametrize("first, second", [("all", "coding"), ("coding", "all")])
def test_a_second_run_stops_at_once_and_the_first_one_wins(workspace, first, second):
    folder, output, references = workspace
    holder = _start_and_freeze_holding_the_lock(first, output)
    try:
        partial = temporary_path_for(str(output))
        before = fingerprint(partial) if os.path.exists(partial) else None
        started = time.monotonic()
        late = _run(second, output)
        after = fingerprint(partial) if os.path.exists(partial) else None
    finally:
        holder.send_signal(signal.SIGCONT)
    _, stderr = holder.communicate(timeout=300)
    assert late.returncode == 1 and late.stderr == _refusal(output, holder.pid), late.stderr
    assert time.monotonic() - started < 60  # at once: it did not wait for the first run
    assert after == before, "the refused run touched the first run's partial output"
    assert holder.returncode == 0, stderr
    assert output.read_bytes() == references[first]
    assert leftovers(folder) == []
    output.unlink()


def test_kill_9_releases_the_lock_and_resume_finishes_the_file(workspace):
    folder, output, references = workspace
    holder = _start_and_freeze_holding_the_lock("all", output)
    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=60)
    assert os.path.exists(lock_path_for(str(output))), "the lock file of a killed run stays (unlocked)"
    assert not output.exists()
    resumed = _run("all", output, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert output.read_bytes() == references["all"]
    assert leftovers(folder) == []
    output.unlink()
