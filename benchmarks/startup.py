"""Start-up cost of the front door: ``isoformer --version``, ``triples --help`` and ``triples`` on the human
example, against a bare ``python -c "import click"``, for this checkout and (optionally) another one.

    python benchmarks/startup.py                              # this checkout
    python benchmarks/startup.py --before /path/to/old/tree   # and a checkout of an older revision
    python benchmarks/startup.py --repeats 7

Every command runs as ``python -c`` in a fresh process with ``PYTHONPATH`` set to the tree measured (so no
installed copy interferes), writing its output to a temporary folder; wall time is the best of ``--repeats``
runs (the page cache warm after the first), peak RSS comes from ``os.wait4`` of that child alone. Printed: one
table, a row per command and a column pair per tree, with the ratio to ``import click``.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLES = os.path.join(ROOT, "example_data")
GENOME = os.path.join(EXAMPLES, "hg38_chr16_186964-397118.fa")
ANNOTATION = os.path.join(EXAMPLES, "hg38_chr16_186964-397118.refGene.gtf")

# The CLI as its console script runs it, with sys.argv from the rest of the command line.
ENTRY = "import sys; sys.argv[0] = 'isoformer'; from isoformer_cli.cli.main import main; main()"


def commands(workdir):
    """``{label: argv}`` of what is measured; ``triples`` reads a copy of the genome (its index is built once)."""
    genome = os.path.join(workdir, "genome.fa")
    return {
        'python -c "import click"': [sys.executable, "-c", "import click"],
        "isoformer --version": [sys.executable, "-c", ENTRY, "--version"],
        "isoformer triples --help": [sys.executable, "-c", ENTRY, "triples", "--help"],
        "isoformer triples (human example)": [sys.executable, "-c", ENTRY, "-q", "triples", "--genome", genome,
                                              "--annotation", ANNOTATION, "-o", os.path.join(workdir, "t.tsv")],
    }


def timed_run(argv, tree, workdir):
    """(wall seconds, peak RSS in MB) of one run of ``argv`` with ``PYTHONPATH=tree``, in ``workdir`` (``python -c``
    puts the working folder first on ``sys.path``: it must not hold a checkout)."""
    environment = dict(os.environ, PYTHONPATH=tree)
    began = time.perf_counter()
    with open(os.devnull, "wb") as devnull:
        process = subprocess.Popen(argv, stdout=devnull, stderr=subprocess.PIPE, env=environment,
                                   cwd=workdir)
        stderr = process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - began
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(argv)} failed under {tree}:\n{stderr.decode(errors='replace')}")
    return elapsed, usage.ru_maxrss / 1024


def measure(tree, repeats, workdir):
    """``{label: (best wall seconds, peak RSS MB)}`` for ``tree``."""
    results = {}
    output = os.path.join(workdir, "t.tsv")
    for label, argv in commands(workdir).items():
        runs = []
        for _ in range(repeats):
            if os.path.exists(output):
                os.remove(output)
            runs.append(timed_run(argv, tree, workdir))
        results[label] = (min(wall for wall, _ in runs), max(rss for _, rss in runs))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", metavar="TREE", help="another checkout (the folder holding isoformer_cli/)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per command; the best is kept [5]")
    args = parser.parse_args()
    trees = ([("before", os.path.abspath(args.before))] if args.before else []) + [("after", ROOT)]
    with tempfile.TemporaryDirectory(prefix="isoformer-startup-") as workdir:
        shutil.copy(GENOME, os.path.join(workdir, "genome.fa"))
        results = {name: measure(tree, args.repeats, workdir) for name, tree in trees}
    labels = list(commands("/").keys())
    header = f"{'command':<36}" + "".join(f"{name + ' s':>11}{'x click':>9}{'RSS MB':>8}" for name, _ in trees)
    print(header)
    print("-" * len(header))
    for label in labels:
        row = f"{label:<36}"
        for name, _ in trees:
            wall, rss = results[name][label]
            base = results[name][labels[0]][0]
            row += f"{wall:>11.2f}{wall / base:>9.1f}{rss:>8.0f}"
        print(row)
    for name, tree in trees:
        print(f"{name}: PYTHONPATH={tree}")


if __name__ == "__main__":
    main()
