"""The import-layer contracts of ``.importlinter`` hold, and they would catch an upward import."""

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
LINT_IMPORTS = shutil.which("lint-imports") or (
    str(pathlib.Path(sys.executable).parent / "lint-imports")
    if (pathlib.Path(sys.executable).parent / "lint-imports").exists() else None
)

pytestmark = pytest.mark.skipif(LINT_IMPORTS is None, reason="import-linter is not installed")


def lint(package_parent):
    """Run lint-imports on the package found under ``package_parent``, with the ``.importlinter`` found there
    (how CI runs it); returns the completed process."""
    environment = {"PYTHONPATH": str(package_parent), "PATH": "/usr/bin:/bin"}
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=package_parent, capture_output=True, text=True,
                          env=environment, timeout=120)


def test_the_package_keeps_its_import_contracts():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers_contract(tmp_path):
    copy = tmp_path / "isoformer_cli"
    shutil.copytree(ROOT / "isoformer_cli", copy, ignore=shutil.ignore_patterns("__pycache__", "data"))
    planted = copy / "genomics" / "genome.py"
    planted.write_text(planted.read_text() + "\nfrom isoformer_cli.models import configuration  # planted\n")
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    result = lint(tmp_path)
    assert result.returncode != 0
    assert "isoformer_cli.genomics is not allowed to import isoformer_cli.models" in result.stdout
    assert "isoformer_cli.genomics.genome -> isoformer_cli.models.network.configuration" in result.stdout


def test_an_enformer_pytorch_import_breaks_its_contract(tmp_path):
    """enformer-pytorch is the tests' reference only: a run-time import of it anywhere in the package fails CI."""
    copy = tmp_path / "isoformer_cli"
    shutil.copytree(ROOT / "isoformer_cli", copy, ignore=shutil.ignore_patterns("__pycache__", "data"))
    planted = copy / "models" / "encoders" / "enformer.py"
    planted.write_text(planted.read_text() + "\n\ndef _planted():\n    import enformer_pytorch  # planted\n")
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    result = lint(tmp_path)
    assert result.returncode != 0
    assert "enformer-pytorch is a test-only reference" in result.stdout
    assert "isoformer_cli.models.network.encoders.enformer -> enformer_pytorch" in result.stdout
