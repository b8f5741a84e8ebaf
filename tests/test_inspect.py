"""``isoformer inspect``: configuration summary and parameter counts, for presets and checkpoints."""

import json
import time

import pytest
import torch
from click.testing import CliRunner

from isoformer_cli.cli.main import cli
from isoformer_cli.models.checkpoint.save import save_checkpoint
from isoformer_cli.models.checkpoint.summary import inspect_model
from isoformer_cli.models.network.configuration import GTEX_TISSUES, IsoformerConfig
from isoformer_cli.models.network.modeling import IsoformerModel

from cli_helpers import invoke

# The parameter budget of the official 2.8 GB file (float32, about 700.6M parameters).
ENFORMER_STEM_AND_TOWER = 50_877_952
ENFORMER_TRANSFORMER = 174_242_816
ENFORMER_FINAL_POINTWISE = 4_724_736
CROSS_ATTENTION_RNA = 23_605_248
CROSS_ATTENTION_PROTEIN = 22_818_816
HEAD = 19_064_862
# ESM-2 150M as EsmForMaskedLM (148,817,914) without what IsoFormer does not use: the LM head
# (dense 640x640 + bias, LayerNorm 2x640, untied decoder 33x640, bias 33) and the absolute position
# table (1026x640) that old transformers versions created although ESM-2 is rotary.
ESM2_150M_MASKED_LM = 148_817_914
ESM2_LM_HEAD = 640 * 640 + 640 + 2 * 640 + 33 * 640 + 33
ESM2_POSITION_TABLE = 1026 * 640
# NT-v2 250M as a masked LM (235,120,780) without its LM head (768x768 + bias, LayerNorm, decoder
# 4107x768, bias 4107), position table (2050x768) and contact head (24 layers x 16 heads -> 1, + bias).
NT_V2_250M_MASKED_LM = 235_120_780
NT_V2_LM_HEAD = 768 * 768 + 768 + 2 * 768 + 4107 * 768 + 4107
NT_V2_POSITION_TABLE = 2050 * 768
NT_V2_CONTACT_HEAD = 24 * 16 + 1


def run(*arguments):
    return invoke("inspect", *arguments, quiet=False)


def test_official_preset_counts_match_the_design_figures():
    result = run("--preset", "official", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    counts, detailed = summary["parameters"], summary["parameters_detailed"]
    assert detailed["dna_encoder.stem_and_conv_tower"] == ENFORMER_STEM_AND_TOWER
    assert detailed["dna_encoder.transformer"] == ENFORMER_TRANSFORMER
    assert detailed["dna_encoder.final_pointwise"] == ENFORMER_FINAL_POINTWISE
    assert counts["dna_encoder"] == ENFORMER_STEM_AND_TOWER + ENFORMER_TRANSFORMER + ENFORMER_FINAL_POINTWISE == 229_845_504
    assert detailed["aggregation.rna_cross_attention"] == CROSS_ATTENTION_RNA
    assert detailed["aggregation.protein_cross_attention"] == CROSS_ATTENTION_PROTEIN
    assert counts["aggregation"] == CROSS_ATTENTION_RNA + CROSS_ATTENTION_PROTEIN
    assert counts["head"] == HEAD
    assert counts["protein_encoder"] == ESM2_150M_MASKED_LM - ESM2_LM_HEAD - ESM2_POSITION_TABLE
    assert counts["rna_encoder"] == NT_V2_250M_MASKED_LM - NT_V2_LM_HEAD - NT_V2_POSITION_TABLE - NT_V2_CONTACT_HEAD
    parts = ("dna_encoder", "rna_encoder", "protein_encoder", "aggregation", "head")
    assert counts["total"] == sum(counts[name] for name in parts) == 672_858_615


def test_official_preset_summary_fields():
    summary = inspect_model(preset="official")
    assert summary["source"] == {"preset": "official"}
    assert summary["modalities"] == ["dna", "rna", "protein"]
    assert summary["dna_encoder"]["type"] == "enformer"
    assert (summary["dna_encoder"]["window_bp"], summary["dna_encoder"]["positions"]) == (196_608, 896)
    assert summary["dna_encoder"]["output_width"] == 3072
    assert (summary["rna_encoder"]["hidden_size"], summary["rna_encoder"]["max_tokens"]) == (768, 2048)
    assert (summary["protein_encoder"]["layers"], summary["protein_encoder"]["max_residues"]) == (30, 1022)
    assert summary["aggregation"]["type"] == "cross-attention"
    assert summary["aggregation"]["heads"] == 8
    assert summary["head"]["outputs"] == 30
    assert summary["target_units"] == "log1p_tpm"
    assert summary["tissues"] == list(GTEX_TISSUES)


def test_presets_are_built_without_memory():
    # The official preset is counted on the meta device: building it for real would take many seconds
    # and 2.7 GB of memory.
    start = time.perf_counter()
    inspect_model(preset="official")
    assert time.perf_counter() - start < 10


def test_text_output():
    result = run("--preset", "official")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "model: preset official"
    assert "dna_encoder: enformer (dim 1536, depth 11, 8 heads), 196,608 bp -> 896 bins of 128 bp x 3072" in lines
    assert any(line.split() == ["total", "672,858,615"] for line in lines)
    assert any(line.startswith("tissues (30): Adipose Tissue, Adrenal Gland") for line in lines)


@pytest.fixture()
def tiny_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = IsoformerModel(IsoformerConfig.from_preset("tiny", modalities="dna,rna"))
    save_checkpoint(model, str(tmp_path / "checkpoint"), metadata={"converted_from": "somewhere"})
    return tmp_path / "checkpoint", model


def test_checkpoint_summary(tiny_checkpoint):
    folder, model = tiny_checkpoint
    result = run(str(folder), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["source"]["checkpoint"] == str(folder)
    assert summary["modalities"] == ["dna", "rna"]
    assert summary["protein_encoder"] is None
    assert summary["parameters"] == model.parameter_counts()
    assert summary["weights"]["bytes"] == (folder / "model.safetensors").stat().st_size
    assert summary["weights"]["metadata"]["converted_from"] == "somewhere"
    text = run(str(folder)).output
    assert "protein_encoder: none" in text
    assert "  converted_from: somewhere" in text


def test_broken_checkpoint_is_one_line(tiny_checkpoint):
    folder, _ = tiny_checkpoint
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    result = run(str(folder))
    assert result.exit_code == 1
    assert result.output.startswith(
        f"isoformer: error: {weights}: not a valid safetensors file, it is truncated or corrupted ("
    )
    assert result.output.endswith("); download or write it again\n")
    assert result.output.count("\n") == 1


def test_missing_checkpoint_and_unknown_preset(tmp_path):
    result = run(str(tmp_path / "absent"))
    assert (result.exit_code, result.output) == (
        1, f"isoformer: error: {tmp_path / 'absent'}: checkpoint folder not found; give the folder written by "
           "isoformer init/convert/finetune\n")
    result = run("--preset", "huge")
    assert result.exit_code == 1
    assert "unknown model preset 'huge'; choose one of: official, tiny" in result.output


def test_exactly_one_source_is_a_usage_error(tiny_checkpoint):
    folder, _ = tiny_checkpoint
    assert run().exit_code == 2
    both = run(str(folder), "--preset", "tiny")
    assert both.exit_code == 2
    assert "exactly one" in both.output


def test_demo_names_the_bundled_checkpoint():
    result = CliRunner().invoke(cli, ["inspect", "demo", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["parameters"]["total"] == 2_097_703


def test_a_name_is_looked_up_in_the_model_folder_as_checkpoint_does(tiny_checkpoint, tmp_path, monkeypatch):
    """``inspect NAME`` resolves like ``--checkpoint NAME``: in --model-dir, else $ISOFORMER_MODEL_DIR."""
    import shutil

    folder, _ = tiny_checkpoint
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(folder, models / "mine")
    monkeypatch.chdir(tmp_path)  # no folder "mine" here: only the model folder has it
    by_option = run("mine", "--model-dir", str(models), "--json")
    assert by_option.exit_code == 0, by_option.output
    assert json.loads(by_option.output)["source"] == {"checkpoint": str(models / "mine")}
    monkeypatch.setenv("ISOFORMER_MODEL_DIR", str(models))
    by_variable = run("mine")
    assert by_variable.exit_code == 0, by_variable.output
    assert by_variable.output.startswith(f"model: {models / 'mine'}\n")
    absent = run("other")
    assert (absent.exit_code, absent.output) == (
        1, f"isoformer: error: checkpoint 'other' is not in the model folder {models} (it holds: mine)\n")
    assert run("demo").exit_code == 0
