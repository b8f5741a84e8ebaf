"""Evaluation metrics, the evaluation table and `isoformer evaluate` end to end."""

import os

import numpy as np
import pytest
from click.testing import CliRunner

from isoformer_cli.cli.main import cli
from isoformer_cli.evaluation.metrics import (
    average_ranks,
    evaluate,
    headline,
    isoform_spearman_values,
    gene_groups,
    pearson,
    r_squared,
    spearman,
)
from isoformer_cli.formats.metrics_table import read_metrics_table
from isoformer_cli.formats.predictions import TsvPredictionWriter


def test_metrics_agree_with_scipy_including_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    for _ in range(20):
        x = rng.integers(0, 6, 40).astype(float)  # many ties
        y = x + rng.normal(size=40)
        np.testing.assert_allclose(average_ranks(x), stats.rankdata(x))
        assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)
        assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)


def test_r_squared_is_the_coefficient_of_determination():
    observed = np.array([1.0, 2.0, 3.0, 4.0])
    assert r_squared(observed, observed) == 1.0
    assert r_squared(observed, np.full(4, observed.mean())) == 0.0
    assert r_squared(observed, observed + 10) < 0  # perfectly correlated, but far off
    assert np.isnan(r_squared(np.ones(3), np.arange(3.0)))


def test_undefined_correlations_are_nan():
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert np.isnan(pearson([1, 2, 3], [5, 5, 5]))
    assert np.isnan(spearman([1], [2]))


def test_within_gene_isoform_spearman_by_hand():
    genes = ["a", "a", "a", "b", "b", "c", "d", "d"]
    observed = np.array([1.0, 2.0, 3.0, 5.0, 4.0, 9.0, 1.0, 1.0])
    predicted = np.array([0.1, 0.2, 0.3, 1.0, 2.0, 0.0, 3.0, 4.0])
    groups = gene_groups(genes)
    # a: perfect order (+1); b: reversed (-1); c: one isoform (not a group); d: observed constant (skipped).
    assert sorted(isoform_spearman_values(groups, observed, predicted)) == [-1.0, 1.0]
    rows = evaluate(observed[:, None], predicted[:, None], ["Liver"], genes)
    assert rows[0].isoform_spearman == 0.0 and rows[0].isoform_genes_used == 2


def test_evaluate_rows_pooled_and_mean():
    rng = np.random.default_rng(0)
    observed = rng.normal(size=(50, 3))
    predicted = observed.copy()
    predicted[:, 2] = rng.normal(size=50)  # one tissue unpredicted
    rows = evaluate(observed, predicted, ["A", "B", "C"], [f"g{i // 2}" for i in range(50)])
    assert [row.scope for row in rows] == ["tissue"] * 3 + ["pooled", "mean"]
    assert rows[0].spearman == pytest.approx(1.0) and rows[0].isoform_spearman == pytest.approx(1.0)
    mean = headline(rows)
    assert mean.spearman == pytest.approx(np.mean([row.spearman for row in rows[:3]]))
    assert rows[3].isoform_genes_used == sum(row.isoform_genes_used for row in rows[:3])
    with pytest.raises(ValueError):
        evaluate(observed, predicted[:, :2], ["A", "B", "C"], ["g"] * 50)


def _predictions(path, ids, genes, tissues, values):
    writer = TsvPredictionWriter(str(path), tissues, {"units": "log(TPM+1)"})
    with writer:
        obs = [{"transcript_id": t, "gene_id": g, "gene_name": "", "flags": ""} for t, g in zip(ids, genes)]
        writer.write_chunk(obs, np.asarray(values, dtype=np.float32))
    return str(path)


def _observed(path, ids, tissues, tpm):
    lines = ["transcript_id\t" + "\t".join(tissues)]
    lines += [f"{t}\t" + "\t".join(f"{v:.6f}" for v in row) for t, row in zip(ids, tpm)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture
def tables(tmp_path):
    rng = np.random.default_rng(1)
    ids = [f"ENST{i}.1" for i in range(40)]
    genes = [f"ENSG{i // 4}" for i in range(40)]
    tpm = rng.exponential(20, size=(40, 3))
    predicted = np.log1p(tpm) + rng.normal(scale=0.3, size=(40, 3))
    predictions = _predictions(tmp_path / "pred.tsv", ids, genes, ["Liver", "Brain", "Lung"], predicted)
    # Observed ids without versions, an extra row, tissues in another order plus one the model lacks.
    observed = _observed(tmp_path / "obs.tsv", [i.split(".")[0] for i in ids] + ["ENST999"],
                         ["Brain", "Liver", "Heart"], np.c_[tpm[:, 1], tpm[:, 0], tpm[:, 2]].tolist() + [[1, 1, 1]])
    return predictions, observed, np.log1p(tpm), predicted, genes


def test_evaluate_command_writes_the_table_and_a_plot(tmp_path, tables):
    pytest.importorskip("matplotlib")
    predictions, observed, log_tpm, predicted, genes = tables
    out, plot = tmp_path / "eval.tsv", tmp_path / "eval.png"
    result = CliRunner().invoke(cli, ["evaluate", "--predictions", predictions, "--expression", observed,
                                      "-o", str(out), "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert "40 of 40 predicted transcripts matched" in result.output
    assert "ENST999" not in result.output and "1 expression rows matched no transcript" in result.output
    rows = read_metrics_table(out)
    assert [row["tissue"] for row in rows] == ["Brain", "Liver", "all", "all"]  # observed order; Lung/Heart left out
    expected = evaluate(log_tpm[:, [1, 0]], predicted[:, [1, 0]], ["Brain", "Liver"], genes)
    for row, reference in zip(rows, expected):
        assert row["spearman"] == pytest.approx(reference.spearman, abs=1e-5)
        assert row["r2"] == pytest.approx(reference.r2, abs=1e-5)
        assert row["isoform_spearman"] == pytest.approx(reference.isoform_spearman, abs=1e-5)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 20_000


def test_evaluate_through_a_sample_sheet_equals_the_matrix(tmp_path, tables):
    predictions, observed, *_ = tables
    lines = [line.split("\t") for line in open(observed).read().splitlines()]
    rows = ["sample,path,condition"]
    for column, tissue in enumerate(lines[0][1:], start=1):
        # RSEM for one replicate, IsoQuant for the other: same values, so the mean is the matrix value.
        rsem = ["transcript_id\tgene_id\tlength\teffective_length\texpected_count\tTPM\tFPKM\tIsoPct"]
        rsem += [f"{row[0]}\tG\t900\t700.00\t5.00\t{row[column]}\t1.00\t100.00" for row in lines[1:]]
        isoquant = ["#feature_id\tTPM"] + [f"{row[0]}\t{row[column]}" for row in lines[1:]]
        (tmp_path / f"{tissue}.isoforms.results").write_text("\n".join(rsem) + "\n")
        (tmp_path / f"{tissue}.transcript_tpm.tsv").write_text("\n".join(isoquant) + "\n")
        rows += [f"{tissue}_a,{tissue}.isoforms.results,{tissue}", f"{tissue}_b,{tissue}.transcript_tpm.tsv,{tissue}"]
    (tmp_path / "samples.csv").write_text("\n".join(rows) + "\n")
    outputs = {}
    for name, expression in (("matrix", observed), ("sheet", str(tmp_path / "samples.csv"))):
        result = CliRunner().invoke(cli, ["evaluate", "--predictions", predictions, "--expression", expression,
                                          "-o", str(tmp_path / f"{name}.tsv")])
        assert result.exit_code == 0, result.output
        outputs[name] = read_metrics_table(tmp_path / f"{name}.tsv")
    assert "from the sample sheet" in result.output and "6 samples" in result.output
    assert outputs["sheet"] == outputs["matrix"]


@pytest.mark.parametrize("change, message", [
    ({"--expression": "wrong_ids"}, "no transcript of"),
    ({"--expression": "wrong_tissues"}, "no tissue in common"),
    ({"--predictions": "missing.tsv"}, "prediction table not found"),
    ({"--plot": "plot.jpg2"}, "--plot writes png, pdf, svg"),
    ({"-o": "no_such_folder/eval.tsv"}, "does not exist"),
])
def test_evaluate_errors_are_one_line_and_leave_nothing(tmp_path, tables, change, message, monkeypatch):
    predictions, observed, *_ = tables
    (tmp_path / "wrong_ids").write_text("transcript_id\tLiver\nNM_1\t1\n")
    (tmp_path / "wrong_tissues").write_text("transcript_id\tHeart\nENST1\t1\n")
    monkeypatch.chdir(tmp_path)
    options = {"--predictions": predictions, "--expression": observed, "-o": "eval.tsv", "--plot": "plot.png"}
    options.update(change)
    before = set(os.listdir(tmp_path))
    result = CliRunner().invoke(cli, ["evaluate"] + [item for pair in options.items() for item in pair])
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert set(os.listdir(tmp_path)) == before


def test_plot_without_matplotlib_is_a_clear_error(tmp_path, tables, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    predictions, observed, *_ = tables
    result = CliRunner().invoke(cli, ["evaluate", "--predictions", predictions, "--expression", observed,
                                      "-o", str(tmp_path / "e.tsv"), "--plot", str(tmp_path / "p.png")])
    assert result.exit_code == 1 and "--plot needs matplotlib" in result.output
    assert not (tmp_path / "e.tsv").exists()
