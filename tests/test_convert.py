"""``isoformer convert``: the official weights, in the layout we expect them in, into our format.

The synthetic "official" state dict is built from a tiny model's own tensors renamed into the documented
layout: ``esm_model.esm.*`` + ``esm_model.lm_head.*`` (ESM-2
EsmForMaskedLM, old per-layer rotary buffers and the unused absolute position table), ``nt_model.esm.*`` +
``nt_model.lm_head.*`` + an NT contact head, ``enformer_model.*`` in enformer-pytorch's ``Enformer`` layout
with human/mouse heads (both the named and the ``_trunk.N`` spellings, sharing storage; our trunk registered
the way enformer-pytorch registers its own, see ``tests/enformer_layout.py``),
``cross_attention_layer_{rna,protein}.*`` and ``head_layer_{1,2}.*``.
"""

import hashlib
import json
import logging
import os
import time

import pytest
import torch
from click.testing import CliRunner
from enformer_layout import enformer_pytorch_module
from safetensors import safe_open

from isoformer_cli.cli.main import cli
from isoformer_cli.errors import CheckpointError
from isoformer_cli.models import IsoformerConfig, IsoformerModel
from isoformer_cli.models.checkpoint import load_checkpoint
from isoformer_cli.models.convert import OFFICIAL_KEY_MAP, convert_official
from isoformer_cli.models.key_mapping import plan_conversion

EXTRA_TENSOR_SEED = 123


TINY_SPECIES_HEADS = {"human": 5, "mouse": 3}
OFFICIAL_SPECIES_HEADS = {"human": 5313, "mouse": 1643}


def official_layout(model, config, device="cpu", species_heads=TINY_SPECIES_HEADS):
    """The official-looking state dict for ``model`` (our tensors, renamed; extra official-only tensors random).

    ``species_heads``: output sizes of Enformer's human/mouse heads (the official file has 5,313 / 1,643).
    """
    generator = torch.Generator().manual_seed(EXTRA_TENSOR_SEED)

    def extra(*shape):
        if device == "meta":
            return torch.empty(*shape, device="meta")
        return torch.randn(*shape, generator=generator)

    state = {}
    # Protein encoder inside EsmForMaskedLM, as saved by transformers 4.x.
    for key, tensor in model.protein_encoder.state_dict().items():
        if key != "rotary_embeddings.inv_freq":
            state[f"esm_model.esm.{key}"] = tensor
    head_dim = config.esm_hidden_size // config.esm_num_attention_heads
    for layer in range(config.esm_num_hidden_layers):
        state[f"esm_model.esm.encoder.layer.{layer}.attention.self.rotary_embeddings.inv_freq"] = extra(head_dim // 2)
    state["esm_model.esm.embeddings.position_embeddings.weight"] = extra(config.esm_max_position_embeddings, config.esm_hidden_size)
    hidden, vocab = config.esm_hidden_size, config.esm_vocab_size
    state.update(
        {
            "esm_model.lm_head.dense.weight": extra(hidden, hidden),
            "esm_model.lm_head.dense.bias": extra(hidden),
            "esm_model.lm_head.layer_norm.weight": extra(hidden),
            "esm_model.lm_head.layer_norm.bias": extra(hidden),
            "esm_model.lm_head.decoder.weight": extra(vocab, hidden),
            "esm_model.lm_head.bias": extra(vocab),
        }
    )
    # RNA encoder: NT-v2 in its masked-LM wrapper.
    for key, tensor in model.rna_encoder.state_dict().items():
        state[f"nt_model.esm.{key}"] = tensor
    hidden, vocab = config.nt_hidden_size, config.nt_vocab_size
    state.update(
        {
            "nt_model.esm.embeddings.position_embeddings.weight": extra(config.nt_max_position_embeddings, hidden),
            "nt_model.esm.contact_head.regression.weight": extra(1, config.nt_num_hidden_layers * config.nt_num_attention_heads),
            "nt_model.esm.contact_head.regression.bias": extra(1),
            "nt_model.lm_head.dense.weight": extra(hidden, hidden),
            "nt_model.lm_head.dense.bias": extra(hidden),
            "nt_model.lm_head.layer_norm.weight": extra(hidden),
            "nt_model.lm_head.layer_norm.bias": extra(hidden),
            "nt_model.lm_head.decoder.weight": extra(vocab, hidden),
            "nt_model.lm_head.bias": extra(vocab),
        }
    )
    # DNA encoder: enformer-pytorch's layout with species heads, carrying our trunk's tensors.
    with torch.device(device):
        enformer = enformer_pytorch_module(config, species_heads, trunk=model.dna_encoder.enformer)
    for key, tensor in enformer.state_dict().items():
        state[f"enformer_model.{key}"] = tensor
    for key, tensor in model.aggregation.rna_cross_attention.state_dict().items():
        state[f"cross_attention_layer_rna.{key}"] = tensor
    for key, tensor in model.aggregation.protein_cross_attention.state_dict().items():
        state[f"cross_attention_layer_protein.{key}"] = tensor
    for key, tensor in model.head.dense.state_dict().items():
        state[f"head_layer_1.{key}"] = tensor
    for key, tensor in model.head.output.state_dict().items():
        state[f"head_layer_2.{key}"] = tensor
    return state


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    config = IsoformerConfig.from_preset("tiny")
    model = IsoformerModel(config).eval()
    # BatchNorm statistics and counters differ from their defaults in a trained model; make them so here.
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if "running_" in name:
                buffer.uniform_(0.5, 1.5)
            elif name.endswith("num_batches_tracked"):
                buffer.fill_(1234)
    return config, model


def write_official(folder, state):
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, str(folder / "pytorch_model.bin"))
    return folder


def test_all_matched_gives_bit_identical_tensors(tmp_path, tiny):
    config, model = tiny
    official = write_official(tmp_path / "official", official_layout(model, config))
    plan = convert_official(str(official), str(tmp_path / "out"), preset="tiny")

    assert plan.unmatched == []
    assert plan.missing == []
    assert plan.wrong_shape == []
    trunk_keys = [key for key in plan.targets if key.startswith("enformer_model._trunk.")]
    assert len(trunk_keys) > 0
    assert sorted(plan.duplicates) == sorted(trunk_keys)
    reasons = {reason for _, reason in plan.ignored}
    assert "Enformer human/mouse output heads (not used by IsoFormer)" in reasons
    assert "ESM-2 masked-LM head (not used by IsoFormer)" in reasons
    assert "contact-prediction head (not used by IsoFormer)" in reasons
    ignored = {key for key, _ in plan.ignored}
    assert "esm_model.esm.embeddings.position_embeddings.weight" in ignored
    assert "enformer_model._heads.human.0.weight" in ignored

    loaded = load_checkpoint(str(tmp_path / "out"))
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    with safe_open(str(tmp_path / "out" / "model.safetensors"), framework="pt") as handle:
        metadata = handle.metadata()
    expected_sha = hashlib.sha256((official / "pytorch_model.bin").read_bytes()).hexdigest()
    assert metadata["source_sha256"] == expected_sha
    assert "unverified" in metadata["key_mapping"]


def test_unknown_key_is_reported_with_its_shape(tmp_path, tiny, caplog):
    config, model = tiny
    state = official_layout(model, config)
    state["mystery_module.weight"] = torch.zeros(7, 3)
    official = write_official(tmp_path / "official", state)
    with caplog.at_level(logging.WARNING, logger="isoformer_cli"):
        plan = convert_official(str(official), str(tmp_path / "out"), preset="tiny")
    assert plan.unmatched == [("mystery_module.weight", (7, 3))]
    assert "unmatched official tensor mystery_module.weight [7, 3]" in caplog.text
    assert (tmp_path / "out" / "model.safetensors").exists()


def test_shape_mismatch_is_refused_and_nothing_written(tmp_path, tiny):
    config, model = tiny
    state = official_layout(model, config)
    state["head_layer_2.weight"] = torch.zeros(31, config.head_hidden_size)
    official = write_official(tmp_path / "official", state)
    with pytest.raises(CheckpointError) as error:
        convert_official(str(official), str(tmp_path / "out"), preset="tiny")
    message = str(error.value)
    assert (
        f"head_layer_2.weight -> head.output.weight is [31, {config.head_hidden_size}] in the file "
        f"but [30, {config.head_hidden_size}] in the model"
    ) in message
    assert message.endswith("; nothing was written")
    assert sorted(os.listdir(tmp_path)) == ["official"]


def test_missing_tensor_is_refused_and_no_output_folder_left(tmp_path, tiny):
    config, model = tiny
    state = official_layout(model, config)
    del state["cross_attention_layer_protein.value.bias"]
    official = write_official(tmp_path / "official", state)
    expected = r"1 tensors of the model would stay uninitialised \(aggregation\.protein_cross_attention\.value\.bias\)"
    with pytest.raises(CheckpointError, match=expected):
        convert_official(str(official), str(tmp_path / "out"), preset="tiny")
    assert sorted(os.listdir(tmp_path)) == ["official"]


def test_duplicate_spellings_with_different_values_are_refused(tmp_path, tiny):
    config, model = tiny
    state = official_layout(model, config)
    state["enformer_model._trunk.1.0.weight"] = state["enformer_model.stem.0.weight"].clone() + 1
    official = write_official(tmp_path / "official", state)
    expected = r"1 spelled twice with different values \(enformer_model\.stem\.0\.weight / enformer_model\._trunk\.1\.0\.weight\)"
    with pytest.raises(CheckpointError, match=expected):
        convert_official(str(official), str(tmp_path / "out"), preset="tiny")


def test_mapping_file_corrects_the_table(tmp_path, tiny):
    config, model = tiny
    state = {
        key.replace("cross_attention_layer_rna.", "rna_attention_block."): tensor
        for key, tensor in official_layout(model, config).items()
    }
    official = write_official(tmp_path / "official", state)
    with pytest.raises(CheckpointError, match=r"rna_cross_attention.*correct the key mapping with --mapping FILE\)$"):
        convert_official(str(official), str(tmp_path / "out"), preset="tiny")
    mapping = tmp_path / "mapping.tsv"
    mapping.write_text("# our correction\n^rna_attention_block\\.\taggregation.rna_cross_attention.\n")
    plan = convert_official(str(official), str(tmp_path / "out"), preset="tiny", mapping_file=str(mapping))
    assert plan.unmatched == [] and plan.missing == []
    mapping.write_text("^broken(\taggregation.\n")
    with pytest.raises(CheckpointError, match=r"mapping\.tsv:1: invalid regular expression"):
        convert_official(str(official), str(tmp_path / "out2"), preset="tiny", mapping_file=str(mapping))


def test_official_layout_at_full_size_maps_completely():
    # On the meta device: the documented layout of the official preset leaves nothing unmatched or missing,
    # and its element count is the budget of the 2.8 GB file (about 700.6M float32 elements).
    config = IsoformerConfig.from_preset("official")
    with torch.device("meta"):
        model = IsoformerModel(config)
    state = official_layout(model, config, device="meta", species_heads=OFFICIAL_SPECIES_HEADS)
    shapes = {key: tuple(tensor.shape) for key, tensor in state.items()}
    plan = plan_conversion(shapes, model, OFFICIAL_KEY_MAP)
    assert (plan.unmatched, plan.missing, plan.wrong_shape) == ([], [], [])
    unique = {}
    for key, tensor in state.items():
        if tensor.dtype.is_floating_point and "running_" not in key and "inv_freq" not in key:
            unique.setdefault(plan.targets.get(key, key), tensor.numel())
    assert sum(unique.values()) == 700_648_912



def test_official_config_differences_are_warned(tmp_path, tiny, caplog):
    config, model = tiny
    official = write_official(tmp_path / "official", official_layout(model, config))
    official_config = {"model_type": "isoformer", "enformer_output_heads": 0, "head_hidden_size": 6144}
    (official / "config.json").write_text(json.dumps(official_config))
    with caplog.at_level(logging.WARNING, logger="isoformer_cli"):
        convert_official(str(official), str(tmp_path / "out"), preset="tiny")
    expected = f"official config.json has head_hidden_size=6144, the tiny preset {config.head_hidden_size}"
    assert expected in caplog.text
    assert "enformer_output_heads" not in caplog.text


# ------------------------------------------------------------------------------------ command line


def test_cli_list_keys_groups_by_prefix(tmp_path, tiny):
    config, model = tiny
    state = official_layout(model, config)
    state["mystery_module.weight"] = torch.zeros(7, 3)
    official = write_official(tmp_path / "official", state)
    result = CliRunner().invoke(cli, ["convert", str(official), "--list-keys", "--preset", "tiny"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    esm_count = sum(1 for key in state if key.startswith("esm_model."))
    esm_elements = sum(t.numel() for key, t in state.items() if key.startswith("esm_model."))
    assert f"# group esm_model: {esm_count:,} tensors, {esm_elements:,} elements" in lines
    assert "# group mystery_module: 1 tensors, 21 elements" in lines
    assert "mystery_module.weight\t[7, 3]\tUNMATCHED" in lines
    assert "head_layer_1.bias\t[" + str(config.head_hidden_size) + "]\thead.dense.bias" in lines
    assert any(line.startswith("enformer_model._heads.human.0.weight\t") and "ignored: Enformer" in line for line in lines)


def test_cli_refusal_is_one_line_and_leaves_nothing(tmp_path, tiny):
    config, model = tiny
    state = official_layout(model, config)
    del state["head_layer_1.weight"]
    official = write_official(tmp_path / "official", state)
    result = CliRunner().invoke(cli, ["convert", str(official), "-o", str(tmp_path / "out"), "--preset", "tiny"])
    assert result.exit_code == 1
    assert result.output.startswith("isoformer: error: ")
    assert "head.dense.weight" in result.output
    assert result.output.count("\n") == 1
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_cli_missing_source_and_missing_output_option(tmp_path):
    result = CliRunner().invoke(cli, ["convert", str(tmp_path / "nowhere"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    expected = "no such file or folder (give the downloaded InstaDeepAI/isoformer folder)"
    assert result.output == f"isoformer: error: {tmp_path / 'nowhere'}: {expected}\n"
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(cli, ["convert", str(tmp_path / "empty"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "no pytorch_model.bin or model.safetensors in this folder" in result.output
    result = CliRunner().invoke(cli, ["convert", str(tmp_path / "empty")])
    assert result.exit_code == 2
    assert "missing -o/--output" in result.output


def test_cli_converts(tmp_path, tiny):
    config, model = tiny
    official = write_official(tmp_path / "official", official_layout(model, config))
    arguments = ["convert", str(official / "pytorch_model.bin"), "-o", str(tmp_path / "out"), "--preset", "tiny"]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 0, result.output
    assert torch.equal(load_checkpoint(str(tmp_path / "out")).head.output.weight, model.head.output.weight)


@pytest.mark.slow
def test_full_size_conversion_round_trip(tmp_path, capsys):
    """The official preset at full size: synthetic official file -> convert -> load, bit-identical (minutes, ~9 GB)."""
    import resource

    config = IsoformerConfig.from_preset("official")
    torch.manual_seed(0)
    model = IsoformerModel(config).eval()
    state = official_layout(model, config, species_heads=OFFICIAL_SPECIES_HEADS)
    official = write_official(tmp_path / "official", state)
    del state
    start = time.perf_counter()
    plan = convert_official(str(official), str(tmp_path / "out"))
    converted = time.perf_counter()
    loaded = load_checkpoint(str(tmp_path / "out"))
    loaded_at = time.perf_counter()
    assert (plan.unmatched, plan.missing, plan.wrong_shape) == ([], [], [])
    reference = model.state_dict()
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, reference[name]), name
    with capsys.disabled():
        print(
            f"\nfull-size convert {converted - start:.1f} s, load_checkpoint {loaded_at - converted:.1f} s, "
            f"file {os.path.getsize(official / 'pytorch_model.bin') / 1e9:.2f} GB, "
            f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.1f} GB"
        )
