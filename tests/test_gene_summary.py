"""Gene summary: TPM totals and isoform usage, checked against values worked out by hand."""

import gzip
import math
import os

import numpy as np
import pytest

from isoformer_cli.errors import OutputError
from isoformer_cli.formats.gene_summary import COLUMNS, isoform_usage, write_gene_summary
from isoformer_cli.formats.predictions import open_prediction_writer, read_predictions

TISSUES = ["Brain", "Liver"]
PROVENANCE = {"checkpoint_id": "demo@sha256:00", "units": "log(TPM+1)", "demo": False, "format_version": 1}


def row(transcript_id, gene_id, gene_name=""):
    return {"transcript_id": transcript_id, "gene_id": gene_id, "gene_name": gene_name, "flags": ""}


# Predictions are log(TPM+1), so log(k + 1) means k TPM.
OBS = [row("A1", "GA", "alpha"), row("B1", "GB", "beta"), row("A2", "GA", "alpha"),
       row("B2", "GB", "beta"), row("C1", "GC"), row("N1", "")]
VALUES = np.log([
    [3.0, 1.0],    # A1: 2 TPM in Brain, 0 in Liver
    [5.0, 2.0],    # B1: 4, 1
    [1.0, 1.0],    # A2: 0, 0  -> gene A has 0 TPM in Liver: usage undefined
    [5.0, 4.0],    # B2: 4, 3
    [0.5, 11.0],   # C1: log(0.5) < 0 is clipped to 0 TPM; 10 in Liver
    [2.0, 2.0],    # N1: no gene_id, a gene of its own: 1, 1
]).astype(np.float32)

EXPECTED_LINES = [
    # gene_id gene_name tissue gene_tpm transcript_id tpm usage
    "GA\talpha\tBrain\t2\tA1\t2\t1",
    "GA\talpha\tBrain\t2\tA2\t0\t0",
    "GA\talpha\tLiver\t0\tA1\t0\tNA",
    "GA\talpha\tLiver\t0\tA2\t0\tNA",
    "GB\tbeta\tBrain\t8\tB1\t4\t0.5",
    "GB\tbeta\tBrain\t8\tB2\t4\t0.5",
    "GB\tbeta\tLiver\t4\tB1\t1\t0.25",
    "GB\tbeta\tLiver\t4\tB2\t3\t0.75",
    "GC\t\tBrain\t0\tC1\t0\tNA",
    "GC\t\tLiver\t10\tC1\t10\t1",
    "N1\t\tBrain\t1\tN1\t1\t1",
    "N1\t\tLiver\t1\tN1\t1\t1",
]


def data_lines(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as stream:
        lines = [line.rstrip("\n") for line in stream if not line.startswith("#")]
    assert lines[0] == "\t".join(COLUMNS)
    return lines[1:]


def test_hand_worked_summary(tmp_path):
    target = tmp_path / "genes.tsv"
    write_gene_summary(str(target), OBS, TISSUES, VALUES, PROVENANCE)
    assert data_lines(target) == EXPECTED_LINES
    header = [line for line in target.read_text().splitlines() if line.startswith("#")]
    assert header[0] == "# isoformer gene summary, format 1"
    assert "usage = tpm / gene_tpm, NA when gene_tpm is 0" in header[1]
    assert header[-1].startswith('# provenance: {"checkpoint_id": "demo@sha256:00"')


def test_totals_are_sums_of_tpm_not_of_logs():
    # Two isoforms at log(3) each: 2 + 2 = 4 TPM; summing logs would claim expm1(2 log 3) = 8.
    tpm, gene_tpm, usage = isoform_usage(["G", "G"], np.log([[3.0], [3.0]]))
    np.testing.assert_allclose(tpm, [[2.0], [2.0]])
    np.testing.assert_allclose(gene_tpm, [[4.0], [4.0]])
    np.testing.assert_allclose(usage, [[0.5], [0.5]])


def test_usage_arrays_shape_and_nan():
    tpm, gene_tpm, usage = isoform_usage(["GA", "GB", "GA"], np.log([[3.0, 1.0], [2.0, 1.0], [1.0, 1.0]]))
    assert tpm.shape == gene_tpm.shape == usage.shape == (3, 2)
    np.testing.assert_allclose(usage[:, 0], [1.0, 1.0, 0.0])
    assert np.isnan(usage[:, 1]).all()
    tpm, gene_tpm, usage = isoform_usage([], np.zeros((0, 2)))
    assert usage.shape == (0, 2)


def test_summary_from_a_predictions_file_is_gzip_and_pandas_ready(tmp_path):
    pandas = pytest.importorskip("pandas")
    predictions = tmp_path / "pred.h5ad"
    full_rows = [dict(r, biotype="", chrom="chr1", strand="+", tss=0, window_start=0, window_end=1) for r in OBS]
    with open_prediction_writer(str(predictions), TISSUES, PROVENANCE) as writer:
        writer.write_chunk(full_rows, VALUES)
    table = read_predictions(str(predictions))
    target = tmp_path / "genes.tsv.gz"
    write_gene_summary(str(target), table.obs, table.tissues, table.values, table.provenance)
    assert data_lines(target) == EXPECTED_LINES
    frame = pandas.read_csv(target, sep="\t", comment="#")
    assert list(frame.columns) == list(COLUMNS)
    assert frame["usage"].isna().sum() == 3
    liver_b = frame[(frame.gene_id == "GB") & (frame.tissue == "Liver")]
    assert math.isclose(liver_b["usage"].sum(), 1.0)


def test_other_units_are_refused_and_nothing_is_written(tmp_path):
    target = tmp_path / "genes.tsv"
    with pytest.raises(OutputError, match="needs predictions in log\\(TPM\\+1\\).*'log2\\(TPM\\)'"):
        write_gene_summary(str(target), OBS, TISSUES, VALUES, dict(PROVENANCE, units="log2(TPM)"))
    assert os.listdir(tmp_path) == []


def test_shape_mismatch_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"expected \(6, 2\)"):
        write_gene_summary(str(tmp_path / "g.tsv"), OBS, TISSUES, VALUES[:, :1], PROVENANCE)
    assert os.listdir(tmp_path) == []
