"""The front door stays light: `--version`, `--help` and `triples` never import torch or transformers.

Importing the ML stack costs ~4 s and ~350 MB before a line is read; `isoformer triples` (no model)
must not pay it. Each case runs the CLI in a fresh interpreter and then looks at ``sys.modules``.
"""

import os
import shutil
import subprocess
import sys

import pytest

from isoformer_cli.cli import options
from isoformer_cli.models.tokenizers import TRUNCATION_POLICIES

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "example_data")
HS_FASTA = "hg38_chr16_186964-397118.fa"
HS_GTF = "hg38_chr16_186964-397118.refGene.gtf"

# Runs cli.main(argv) in this interpreter, then prints which heavy modules got imported.
PROBE = """
import sys
from isoformer_cli.cli.main import cli
try:
    cli.main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted(name for name in ("torch", "transformers") if name in sys.modules)
models = sorted(name for name in sys.modules if name.startswith("isoformer_cli.models"))
print("PROBE", code, ",".join(heavy) or "-", ",".join(models) or "-", file=sys.stderr)
"""


def probe(args, cwd):
    result = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    line = [line for line in result.stderr.splitlines() if line.startswith("PROBE ")]
    assert line, result.stderr
    _, code, heavy, models = line[-1].split(" ")
    return int(code or 0), heavy, models


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["triples", "--help"]])
def test_front_door_does_not_import_torch(args, tmp_path):
    code, heavy, models = probe(args, tmp_path)
    assert code == 0
    assert heavy == "-", f"isoformer {' '.join(args)} imported {heavy}"
    assert models == "-", f"isoformer {' '.join(args)} imported {models}"


def test_triples_does_not_import_torch(tmp_path):
    for name in (HS_FASTA, HS_GTF):
        shutil.copy(os.path.join(EXAMPLES, name), tmp_path / name)
    code, heavy, models = probe(["-q", "triples", "--genome", HS_FASTA, "--annotation", HS_GTF,
                                 "-o", "out.tsv"], tmp_path)
    assert code == 0
    assert (tmp_path / "out.tsv").stat().st_size > 0
    assert heavy == "-", f"isoformer triples imported {heavy}"
    assert models == "-", f"isoformer triples imported {models}"


def test_truncation_choices_match_the_tokenizers():
    # cli/options.py spells the policies out (importing models would load torch); they must not drift.
    assert options.TRUNCATION_POLICIES == TRUNCATION_POLICIES
