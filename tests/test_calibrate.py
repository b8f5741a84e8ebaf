"""`isoformer models calibrate`: finding a checkpoint's unpublished settings from labels.

The acceptance test: a tiny random model whose settings differ from the defaults labels the human example's
transcripts; a copy of it with the default settings is calibrated on those labels, which must recover the
settings and then reproduce the labels to 1e-5, with the encoders run once per distinct input however many
candidates there are. Then the refusal, --in-place (and its atomicity), the uncalibrated warning of converted
checkpoints, and bad inputs.
"""

import json
import os
import pathlib
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from isoformer_cli.app.calibrate import REFUSAL
from isoformer_cli.app.checkpoints import InitConfig, run_init
from isoformer_cli.cli.main import cli
from isoformer_cli.formats.predictions import read_predictions
from isoformer_cli.inference.calibration import Candidate, candidate_settings
from isoformer_cli.models.checkpoint.check import check_checkpoint, checkpoint_metadata
from isoformer_cli.models.network.configuration import CALIBRATED_FIELDS, IsoformerConfig
from isoformer_cli.models.network.modeling import IsoformerModel

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "example_data"
HUMAN_GENOME = str(EXAMPLES / "hg38_chr16_186964-397118.fa")
HUMAN_GTF = str(EXAMPLES / "hg38_chr16_186964-397118.refGene.gtf")
INPUTS = ["--genome", HUMAN_GENOME, "--annotation", HUMAN_GTF]

#: Settings that differ from the defaults in every calibrated field.
ORIGINAL = {"fusion_order": "protein,rna", "head_activation": "relu", "pool_window_start": -2, "pool_window_end": 2,
            "pool_window_reference": "tss"}
DEFAULTS = {name: IsoformerConfig().to_dict()[name] for name in CALIBRATED_FIELDS}


def invoke(*args, env=None):
    return CliRunner().invoke(cli, ["-q", *[str(arg) for arg in args]], env=env)


def make_model(folder, settings, seed=5):
    run_init(InitConfig(output=str(folder), preset="tiny", seed=seed))
    set_settings(folder, settings)
    return str(folder)


def set_settings(folder, settings):
    """Rewrite the calibrated fields of a checkpoint's config.json (the weights do not depend on them)."""
    path = pathlib.Path(folder) / "config.json"
    fields = json.loads(path.read_text())
    fields.update(settings)
    path.write_text(json.dumps(fields, indent=2))


def predict_values(checkpoint, output):
    result = invoke("predict", "--checkpoint", checkpoint, *INPUTS, "-o", output)
    assert result.exit_code == 0, result.output
    table = read_predictions(str(output))
    return table


def write_labels(path, table, values=None):
    """An expression matrix (log1p values, full float precision) of a prediction table."""
    values = table.values if values is None else values
    lines = ["transcript_id\t" + "\t".join(table.tissues)]
    for row, numbers in zip(table.obs, values):
        lines.append(row["transcript_id"] + "\t" + "\t".join("%.9g" % value for value in numbers))
    pathlib.Path(path).write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """``(folder, original checkpoint, labels table, labels path, copy with default settings)``."""
    folder = tmp_path_factory.mktemp("calibrate")
    original = make_model(folder / "original", ORIGINAL)
    table = predict_values(original, folder / "labels.h5")
    labels = write_labels(folder / "labels.tsv", table)
    defaults = folder / "defaults"
    shutil.copytree(original, defaults)
    set_settings(defaults, DEFAULTS)
    return folder, original, table, labels, str(defaults)


class EncoderCount:
    """Counts the inputs each encoder is run on (batch rows), over every model of the process."""

    def __init__(self, monkeypatch):
        self.rows = {"dna": 0, "rna": 0, "protein": 0}
        for modality in self.rows:
            method = getattr(IsoformerModel, f"encode_{modality}")

            def counted(model, input_ids, *args, _method=method, _modality=modality, **kwargs):
                self.rows[_modality] += int(input_ids.shape[0])
                return _method(model, input_ids, *args, **kwargs)

            monkeypatch.setattr(IsoformerModel, f"encode_{modality}", counted)


def test_calibration_recovers_the_settings_and_reproduces_the_labels(labelled, tmp_path, monkeypatch):
    folder, _, labels_table, labels, defaults = labelled
    count = EncoderCount(monkeypatch)
    result = invoke("predict", "--checkpoint", defaults, *INPUTS, "-o", tmp_path / "uncalibrated.h5")
    assert result.exit_code == 0, result.output
    predict_rows = dict(count.rows)
    uncalibrated = read_predictions(str(tmp_path / "uncalibrated.h5")).values
    assert np.abs(uncalibrated - labels_table.values).max() > 1e-3  # the defaults do not reproduce the labels

    count.rows = {name: 0 for name in count.rows}
    out = tmp_path / "calibrated"
    result = invoke("models", "calibrate", defaults, *INPUTS, "--expression", labels, "--values", "log1p", "-o", out)
    assert result.exit_code == 0, result.output
    # One pass of the encoders, as predict's, though there are hundreds of candidates.
    candidates = candidate_settings(check_checkpoint(defaults).config)
    assert len(candidates) > 100
    assert count.rows == predict_rows

    table = [line.split("\t") for line in result.stdout.splitlines()]
    assert table[0][:4] == ["rank", "fusion_order", "head_activation", "pool_window"]
    assert len(table) == len(candidates) + 1
    assert table[1][1:4] == ["protein,rna", "relu", "tss[-2,2)"]
    assert float(table[1][4]) == pytest.approx(1.0, abs=1e-9)
    assert float(table[1][5]) == pytest.approx(1.0, abs=1e-9)
    assert float(table[2][4]) < float(table[1][4]) or float(table[2][5]) < float(table[1][5])

    calibrated = json.loads((out / "config.json").read_text())
    assert {name: calibrated[name] for name in CALIBRATED_FIELDS} == ORIGINAL
    reproduced = predict_values(str(out), tmp_path / "reproduced.h5")
    np.testing.assert_allclose(reproduced.values, labels_table.values, atol=1e-5, rtol=0)

    metadata = checkpoint_metadata(str(out / "model.safetensors"))
    assert metadata["settings_calibrated"] == "true"
    record = json.loads(metadata["calibration"])
    assert record["best"] == ORIGINAL and record["transcripts"] == 17 and len(record["tissues"]) == 30
    ranked = json.loads(metadata["calibration_table"])
    assert len(ranked) == len(candidates)
    assert ranked[0]["fusion_order"] == "protein,rna" and ranked[0]["spearman"] == pytest.approx(1.0)


def test_poor_labels_are_refused_and_nothing_is_written(labelled, tmp_path):
    folder, _, labels_table, _, defaults = labelled
    noise = np.random.default_rng(0).normal(size=labels_table.values.shape)
    labels = write_labels(tmp_path / "noise.tsv", labels_table, noise)
    out = tmp_path / "calibrated"
    result = invoke("models", "calibrate", defaults, *INPUTS, "--expression", labels, "--values", "log1p", "-o", out)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"isoformer: error: {REFUSAL} (best: ")
    assert "< --min-spearman 0.3" in error and error.endswith("nothing was written")
    assert not out.exists()
    assert not [name for name in os.listdir(tmp_path) if ".isoformer-" in name]
    # With a lower bar the same labels are accepted.
    result = invoke("models", "calibrate", defaults, *INPUTS, "--expression", labels, "--values", "log1p",
                    "--min-spearman", "-1", "-o", out)
    assert result.exit_code == 0, result.output
    assert (out / "config.json").is_file()


def test_in_place_replaces_a_named_model_atomically(labelled, tmp_path, monkeypatch):
    _, _, _, labels, defaults = labelled
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    named = model_dir / "mine"
    shutil.copytree(defaults, named)
    (named / "isoformer-model.json").write_text(json.dumps({"name": "mine", "model": "official"}))
    env = {"ISOFORMER_MODEL_DIR": str(model_dir)}
    before = {name: (named / name).read_bytes() for name in os.listdir(named)}

    # A failure while writing leaves the model as it was, and no temporary folder.
    import isoformer_cli.models.checkpoint.save as save

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(save, "save_file", broken)
    result = invoke("models", "calibrate", "mine", *INPUTS, "--expression", labels, "--values", "log1p",
                    "--in-place", env=env)
    assert result.exit_code != 0
    assert {name: (named / name).read_bytes() for name in os.listdir(named)} == before
    assert sorted(os.listdir(model_dir)) == ["mine"]
    monkeypatch.undo()

    result = invoke("models", "calibrate", "mine", *INPUTS, "--expression", labels, "--values", "log1p",
                    "--in-place", env=env)
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(model_dir)) == ["mine"]
    config = json.loads((named / "config.json").read_text())
    assert {name: config[name] for name in CALIBRATED_FIELDS} == ORIGINAL
    manifest = json.loads((named / "isoformer-model.json").read_text())
    assert manifest["calibration"]["best"] == ORIGINAL
    assert manifest["files"]["model.safetensors"]["size"] == os.path.getsize(named / "model.safetensors")
    result = invoke("models", "verify", "mine", env=env)
    assert result.exit_code == 0, result.output


def test_a_converted_official_checkpoint_warns_until_calibrated(tmp_path, labelled):
    from official_format import official_state, small_model, write_official

    from isoformer_cli.models.conversion.convert import convert_official

    _, _, _, labels, _ = labelled
    config, model = small_model(seed=3)
    official = write_official(tmp_path / "official", official_state(model, config, "documented"), config)
    converted = tmp_path / "converted"
    convert_official(str(official), str(converted), preset="tiny")
    assert checkpoint_metadata(str(converted / "model.safetensors"))["settings_calibrated"] == "false"

    result = invoke("predict", "--checkpoint", converted, *INPUTS, "-o", tmp_path / "p.tsv")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "never calibrated" in line]
    assert len(warnings) == 1 and "isoformer models calibrate" in warnings[0]
    result = invoke("models", "calibrate", converted, *INPUTS, "--expression", labels, "--values", "log1p",
                    "--min-spearman", "-1", "-o", tmp_path / "calibrated")
    assert result.exit_code == 0, result.output
    assert "never calibrated" not in result.stderr
    result = invoke("predict", "--checkpoint", tmp_path / "calibrated", *INPUTS, "-o", tmp_path / "q.tsv")
    assert result.exit_code == 0, result.output
    assert "never calibrated" not in result.stderr


def test_the_grid_covers_each_reading_of_the_official_window():
    config = IsoformerConfig.from_preset("tiny")  # 128 DNA bins
    candidates = candidate_settings(config)
    windows = {candidate.window_label() for candidate in candidates}
    # All bins (= fractions 0..1), the TSS bin (0..1 relative to the TSS), the first bin (0..1 absolute).
    assert {"all", "tss[0,1)", "absolute[0,1)", "fraction[0.25,0.75)", "tss[-2,2)"} <= windows
    assert "fraction[0,1)" not in windows and "tss[-64,64)" not in windows  # the same bins as "all"
    assert {c.fusion_order for c in candidates} == {"rna,protein", "protein,rna", "parallel"}
    assert len(candidates) == len(set(candidates))
    # Without a protein block the order changes nothing: only the configured one is tried.
    assert {c.fusion_order for c in candidate_settings(IsoformerConfig.from_preset("tiny", modalities="dna,rna"))} \
        == {"rna,protein"}


def test_alternative_settings_equal_a_model_built_with_them():
    """predict_under_settings(s) is fuse_and_predict of a model configured with s, for a fraction window too."""
    import torch

    torch.manual_seed(0)
    model = IsoformerModel(IsoformerConfig.from_preset("tiny")).eval()
    dna = torch.randn(3, 128, model.config.query_size)
    rna = torch.randn(3, 7, 64)
    protein = torch.randn(3, 5, 64)
    inputs = dict(dna_embeddings=dna, rna_embeddings=rna, protein_embeddings=protein,
                  rna_attention_mask=torch.ones(3, 7, dtype=torch.bool),
                  protein_attention_mask=torch.tensor([[1] * 5, [1] * 3 + [0] * 2, [0] * 5], dtype=torch.bool))
    settings = [Candidate("parallel", "tanh", 0.25, 0.75, "fraction").settings, ORIGINAL, DEFAULTS]
    with torch.no_grad():
        together = model.predict_under_settings(settings, **inputs)
        for index, setting in enumerate(settings):
            model.apply_settings(setting)
            torch.testing.assert_close(together[index], model.fuse_and_predict(**inputs).predictions)


@pytest.mark.parametrize("args, message", [
    (["-o", "OUT", "--in-place"], "give -o/--output DIR (a new checkpoint folder) or --in-place"),
    ([], "give -o/--output DIR (a new checkpoint folder) or --in-place"),
    (["-o", "OUT", "--min-spearman", "2"], "--min-spearman must be between -1 and 1, not 2.0"),
    (["-o", "OUT", "--chunk-size", "0"], "--chunk-size must be at least 1, not 0"),
])
def test_bad_options_are_usage_errors(labelled, tmp_path, args, message):
    _, _, _, labels, defaults = labelled
    args = [str(tmp_path / "out") if arg == "OUT" else arg for arg in args]
    result = invoke("models", "calibrate", defaults, *INPUTS, "--expression", labels, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "out").exists()


def test_in_place_takes_a_name_not_a_path(labelled):
    _, _, _, labels, defaults = labelled
    result = invoke("models", "calibrate", defaults, *INPUTS, "--expression", labels, "--in-place")
    assert result.exit_code == 2, result.output
    assert "is not a checkpoint name" in result.output


def test_bad_inputs_are_one_line_errors(labelled, tmp_path):
    _, _, labels_table, labels, defaults = labelled

    def fails(*args, text):
        result = invoke("models", "calibrate", *args)
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("isoformer: error: ") and text in lines[0], result.stderr
        return lines[0]

    other = tmp_path / "other.tsv"
    other.write_text("transcript_id\tAdipose Tissue\nENST1\t1.0\nENST2\t2.0\n")
    fails(defaults, *INPUTS, "--expression", other, "-o", tmp_path / "a", text="no transcript of")
    tissues = tmp_path / "tissues.tsv"
    tissues.write_text("transcript_id\tLiverish\n" + "".join(f"{row['transcript_id']}\t{i}\n"
                                                            for i, row in enumerate(labels_table.obs)))
    fails(defaults, *INPUTS, "--expression", tissues, "-o", tmp_path / "b", text="no tissue of")
    linear = str(tmp_path / "linear")
    run_init(InitConfig(output=linear, preset="tiny", aggregation="linear"))
    fails(linear, *INPUTS, "--expression", labels, "-o", tmp_path / "c", text="aggregation 'linear'")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "file").write_text("x")
    fails(defaults, *INPUTS, "--expression", labels, "-o", busy, text="folder exists and is not empty")
    # Replacing the checkpoint being read is refused before anything is read.
    line = fails(defaults, *INPUTS, "--expression", labels, "--values", "log1p", "-o", defaults, "--force",
                 text="-o/--output")
    assert "--checkpoint" in line
    assert check_checkpoint(defaults).config.fusion_order == DEFAULTS["fusion_order"]
    assert not any((tmp_path / name).exists() for name in ("a", "b", "c"))
