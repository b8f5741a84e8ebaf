"""Numbers, not just shapes: the bundled demo checkpoint's predictions and embeddings on both example datasets
equal the stored goldens (``tests/golden/make_demo_outputs.py`` writes them), also with enformer-pytorch made
unimportable, and moving every DNA window by one base changes them."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from isoformer_cli.cli.main import cli
from isoformer_cli.formats.embeddings import read_embeddings
from isoformer_cli.formats.predictions import read_predictions
from isoformer_cli.formats.triples_table import COLUMNS

ROOT = pathlib.Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
EXAMPLES = ROOT / "example_data"
DATASETS = {
    "hg38_chr16": ("hg38_chr16_186964-397118.fa", "hg38_chr16_186964-397118.refGene.gtf"),
    "mm10_chr9": ("chr9.4M.fa.gz", "chr9.4M.gtf.gz"),
}
# The demo's outputs are about 1e-3 (random weights): compare at a fraction of that, far above the
# float32 summation-order noise of different CPUs and batchings (about 1e-9 here).
ATOL = 1e-7
RTOL = 1e-4


def isoformer(*args):
    result = CliRunner().invoke(cli, ["-q", *args])
    assert result.exit_code == 0, result.output
    return result


def inputs(name):
    fasta, annotation = DATASETS[name]
    return ["--genome", str(EXAMPLES / fasta), "--annotation", str(EXAMPLES / annotation), "--checkpoint", "demo"]


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_predictions_equal_the_golden_table(tmp_path, name):
    output = tmp_path / "predictions.tsv"
    isoformer("predict", *inputs(name), "-o", str(output))
    golden = read_predictions(str(GOLDEN / f"demo.{name}.predictions.tsv"))
    table = read_predictions(str(output))
    assert [row["transcript_id"] for row in table.obs] == [row["transcript_id"] for row in golden.obs]
    assert [row["flags"] for row in table.obs] == [row["flags"] for row in golden.obs]
    np.testing.assert_allclose(table.values, golden.values, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_fused_embeddings_equal_the_golden_ones(tmp_path, name):
    output = tmp_path / "embeddings.h5"
    isoformer("embed", *inputs(name), "-o", str(output))
    golden = np.load(GOLDEN / f"demo.{name}.fused.npz")
    embeddings = read_embeddings(str(output))
    assert embeddings.transcript_ids == list(golden["transcript_id"])
    np.testing.assert_allclose(embeddings.fused, golden["fused"], rtol=RTOL, atol=1e-5)


def test_a_one_base_window_shift_changes_the_predictions(tmp_path):
    """The same RNA and protein with every TSS one base downstream: a window or pooling slip shows."""
    name = "hg38_chr16"
    fasta, annotation = DATASETS[name]
    table = tmp_path / "triples.tsv"
    isoformer("triples", "--genome", str(EXAMPLES / fasta), "--annotation", str(EXAMPLES / annotation),
              "-o", str(table))
    shifted = tmp_path / "shifted.tsv"
    tss = COLUMNS.index("tss")
    with open(table) as source, open(shifted, "w") as out:
        for line in source:
            if line.startswith("#") or line.startswith("transcript_id\t"):  # provenance and header
                out.write(line)
                continue
            fields = line.rstrip("\n").split("\t")
            fields[tss] = str(int(fields[tss]) + 1)
            out.write("\t".join(fields) + "\n")
    results = {}
    for label, triples in (("original", table), ("shifted", shifted)):
        output = tmp_path / f"predictions_{label}.tsv"
        isoformer("predict", "--genome", str(EXAMPLES / fasta), "--triples", str(triples), "--checkpoint", "demo",
                  "-o", str(output))
        results[label] = read_predictions(str(output)).values
    golden = read_predictions(str(GOLDEN / f"demo.{name}.predictions.tsv")).values
    np.testing.assert_allclose(results["original"], golden, rtol=RTOL, atol=ATOL)
    moved = np.abs(results["shifted"] - golden) > ATOL + RTOL * np.abs(golden)
    # Every transcript moves (no window of this slice is entirely N).
    assert moved.any(axis=1).all(), f"{int((~moved.any(axis=1)).sum())} transcripts did not change"


BLOCKER = '''"""Stands in for enformer-pytorch: records that something tried to import it, then refuses."""
import os

with open(os.environ["ENFORMER_IMPORT_MARKER"], "a") as marker:
    marker.write("imported\\n")
raise ImportError("enformer_pytorch is blocked in this test")
'''


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_predict_runs_without_enformer_pytorch(tmp_path, name):
    """enformer-pytorch is a test-only oracle: ``isoformer predict`` in a fresh process where importing it
    fails (and where even a caught import attempt is recorded) still gives the golden predictions."""
    blocked = tmp_path / "block" / "enformer_pytorch"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text(BLOCKER)
    marker = tmp_path / "enformer_import_attempts"
    output = tmp_path / "predictions.tsv"
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocked.parent), str(ROOT)]),
                       ENFORMER_IMPORT_MARKER=str(marker))
    done = subprocess.run([sys.executable, "-m", "isoformer_cli", "-q", "predict", *inputs(name), "-o", str(output)],
                          env=environment, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    assert not marker.exists(), "something imported enformer_pytorch"
    golden = read_predictions(str(GOLDEN / f"demo.{name}.predictions.tsv"))
    table = read_predictions(str(output))
    assert [row["transcript_id"] for row in table.obs] == [row["transcript_id"] for row in golden.obs]
    np.testing.assert_allclose(table.values, golden.values, rtol=RTOL, atol=ATOL)
