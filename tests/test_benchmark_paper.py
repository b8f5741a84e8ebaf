"""`benchmarks/paper.py`: its plumbing, offline, on a tiny random model in the official layout and a synthetic
dataset in the official CSV layout (tests/test_datasets.py writes it), from a local --source folder.

The run pulls (offline, from the source), converts, calibrates on the validation split, predicts the test split
(--limit: whole genes) and prints the evaluation; its figures must be those `isoformer evaluate` reports on the
same predictions. The same run without --source downloads both repositories from a loopback hub. Then the steps
that cannot run: no genome, offline without --source, an incomplete source, no
network.
"""

import io
import json

import pytest
import torch
from huggingface_hub import constants as hub_constants

from benchmarks import paper
from cli_helpers import HUMAN_GENOME, invoke
from local_hub import LocalHub
from official_format import official_config_json, official_state, small_model, vocabulary_files
from test_datasets import official_csv
from isoformer_cli.formats.metrics_table import read_metrics_table
from isoformer_cli.formats.predictions import read_predictions
from isoformer_cli.models.checkpoint.check import checkpoint_metadata
from isoformer_cli.models.network.configuration import GTEX_TISSUES

# Twelve human-example transcripts in six two-isoform genes; each gene in one split (as the paper's gene split).
GENES = [f"G{index // 2}" for index in range(12)]
GENE_SPLITS = ["train", "validation", "test", "validation", "test", "test"]
SPLITS = [GENE_SPLITS[index // 2] for index in range(12)]


@pytest.fixture
def environment(tmp_path, monkeypatch):
    """No real Hugging Face cache or folders of the user's."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("ISOFORMER_MODEL_DIR", raising=False)
    monkeypatch.delenv("ISOFORMER_DATASET_DIR", raising=False)


def write_source(folder):
    """``folder/model`` (the official repository's files for a tiny model), ``folder/dataset`` (the dataset's)."""
    config, model = small_model()
    model_folder = folder / "model"
    model_folder.mkdir(parents=True)
    for name, content in vocabulary_files().items():
        (model_folder / name).write_bytes(content)
    (model_folder / "config.json").write_text(json.dumps(official_config_json(config), indent=2))
    buffer = io.BytesIO()
    torch.save(official_state(model, config, "documented"), buffer)
    (model_folder / "pytorch_model.bin").write_bytes(buffer.getvalue())
    table, normalization, _ = official_csv(splits=SPLITS, genes=GENES)
    data = folder / "dataset" / "transcript_expression"
    data.mkdir(parents=True)
    (data / "GTEx_final.csv").write_bytes(table)
    (data / "normalization_values.csv").write_bytes(normalization)
    return folder


def printed_rows(text):
    lines = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
    assert tuple(lines[0]) == paper.COLUMNS
    return [dict(zip(paper.COLUMNS, line)) for line in lines[1:]]


def test_one_command_pulls_calibrates_predicts_and_prints_what_evaluate_reports(tmp_path, environment, capsys):
    source = write_source(tmp_path / "source")
    out, cache = tmp_path / "out", tmp_path / "cache"
    code = paper.main(["--genome", HUMAN_GENOME, "--source", str(source), "--cache", str(cache), "--out", str(out),
                       "--device", "cpu", "--limit", "5", "--preset", "tiny", "--min-spearman", "-1", "-q"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    # Both pulls went through the commands: a converted checkpoint with its manifest, a converted dataset.
    assert (cache / "models" / "official" / "isoformer-model.json").is_file()
    assert (cache / "datasets" / "isoformer-gtex" / "triples.test.tsv").is_file()
    # The pull removed its download folder (links to the source), not the source's files.
    assert not (cache / "models" / ".downloads" / "InstaDeepAI__isoformer").exists()
    assert (source / "model" / "pytorch_model.bin").is_file()
    metadata = checkpoint_metadata(str(out / "calibrated" / "model.safetensors"))
    assert metadata["settings_calibrated"] == "true"
    assert json.loads(metadata["calibration"])["transcripts"] == 4  # the validation split: genes G1 and G3

    # --limit 5: whole genes of the test split in table order, G2 and G4 (G5 would make 6).
    predictions = read_predictions(str(out / "predictions.test.tsv"))
    kept = [row["transcript_id"] for row in predictions.obs]
    assert [row["gene_id"] for row in predictions.obs] == ["G2", "G2", "G4", "G4"]
    assert (out / "test.transcripts.txt").read_text().split() == kept

    rows = printed_rows(captured.out)
    assert [(row["scope"], row["tissue"]) for row in rows] == [("pooled", "all"), ("mean", "all")] + [
        ("tissue", tissue) for tissue in GTEX_TISSUES]
    assert [(row["paper_r2"], row["paper_spearman"]) for row in rows[:2]] == [("0.53", "0.72")] * 2
    assert all(row["paper_r2"] == "" for row in rows[2:])
    assert (out / "paper.tsv").read_text() == captured.out

    # The figures are those `isoformer evaluate` reports on the same predictions.
    result = invoke("evaluate", "--predictions", out / "predictions.test.tsv", "--expression",
                    cache / "datasets" / "isoformer-gtex" / "expression.tsv", "--values", "log1p",
                    "-o", tmp_path / "evaluate.tsv")
    assert result.exit_code == 0, result.output
    reported = {(row["scope"], row["tissue"]): row for row in read_metrics_table(str(tmp_path / "evaluate.tsv"))}
    for row in rows:
        expected = reported[(row["scope"], row["tissue"])]
        assert row["n_transcripts"] == "4"
        for column in ("r2", "spearman", "isoform_spearman"):
            assert row[column] == paper.figure(expected[column]), (row, column)
        assert int(row["isoform_genes_used"]) == int(expected["isoform_genes_used"])
    assert int(rows[0]["isoform_genes_used"]) > 0 and rows[0]["isoform_spearman"] != "NA"

    notes = [line for line in captured.out.splitlines() if line.startswith("#")]
    assert any(line.startswith("# predict: ") and "for 4 test transcripts" in line and "transcripts/s" in line
               for line in notes)
    assert any(line.startswith("# calibrate: ") and "for 4 validation transcripts" in line for line in notes)
    assert any(line.startswith("# calibrated settings: fusion_order=") for line in notes)


def test_steps_that_cannot_run_say_why_and_exit_non_zero(tmp_path, environment, capsys, monkeypatch):
    common = ["--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out"), "-q"]
    with pytest.raises(SystemExit) as exited:
        paper.main(["--genome", str(tmp_path / "missing.fa"), *common])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--genome" in err and "no such file; give an hg38 FASTA" in err

    # Offline without --source: nothing to pull from.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert paper.main(["--genome", HUMAN_GENOME, *common]) == 1
    err = capsys.readouterr().err
    assert "HF_HUB_OFFLINE is set" in err and "--source DIR" in err and "Traceback" not in err

    # A source folder without the weights.
    (tmp_path / "empty" / "model").mkdir(parents=True)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert paper.main(["--genome", HUMAN_GENOME, "--source", str(tmp_path / "empty"), *common]) == 1
    err = capsys.readouterr().err
    assert "lacks config.json, pytorch_model.bin" in err

    # No network: the pull's own message, then which step and what to do.
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert paper.main(["--genome", HUMAN_GENOME, *common]) == 1
    err = capsys.readouterr().err
    assert "isoformer: error:" in err and "step 'pull model' failed" in err and "give --source DIR" in err
    assert "Traceback" not in err


def test_the_network_path_pulls_both_repositories_from_the_hub(tmp_path, environment, capsys, monkeypatch):
    """Without --source: both pulls download from HF_ENDPOINT (a loopback hub serving the two repositories)."""
    source = write_source(tmp_path / "source")
    with LocalHub() as hub:
        hub.add("InstaDeepAI/isoformer", {path.name: path.read_bytes() for path in (source / "model").iterdir()})
        dataset = source / "dataset"
        hub.add("datasets/InstaDeepAI/multi_omics_transcript_expression",
                {str(path.relative_to(dataset)): path.read_bytes() for path in dataset.rglob("*.csv")})
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        code = paper.main(["--genome", HUMAN_GENOME, "--cache", str(tmp_path / "cache"), "--out",
                           str(tmp_path / "out"), "--device", "cpu", "--limit", "2", "--preset", "tiny",
                           "--min-spearman", "-1", "-q"])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        assert hub.requests("GET", "pytorch_model.bin") and hub.requests("GET", "GTEx_final.csv")
    manifest = json.loads((tmp_path / "cache" / "models" / "official" / "isoformer-model.json").read_text())
    assert manifest["sources"][0]["repo_id"] == "InstaDeepAI/isoformer"
    assert json.loads((tmp_path / "cache" / "datasets" / "isoformer-gtex" / "dataset.json").read_text())[
        "pulled_from"].startswith("InstaDeepAI/multi_omics_transcript_expression@")
    rows = printed_rows(captured.out)
    assert rows[0]["scope"] == "pooled" and rows[0]["n_transcripts"] == "2"  # --limit 2: gene G2 only
