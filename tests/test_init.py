"""``isoformer init``: tiny random encoders saved in their libraries' formats arrive bit-exact in a new model.

Formats written here:
* ESM-2: ``transformers.EsmForMaskedLM.save_pretrained`` (transformers 5 spells LayerNorm tensors
  ``gamma``/``beta`` and the rotary buffer as a ``*`` pattern), and the transformers 4.x layout of the hub
  files (``pytorch_model.bin``; ``weight``/``bias``, per-layer ``inv_freq``, absolute position table).
* NT-v2: the Hugging Face layout of InstaDeepAI's folders (``EsmConfig.save_pretrained`` with
  ``add_bias_fnn``; ``esm.*`` + ``lm_head.*`` + contact head in ``model.safetensors``). The NT-v2 model
  code itself is remote code, so the tensors come from our own NT module, which mirrors its names.
* Enformer: enformer-pytorch's ``config.json`` plus the weights as transformers 4.x saved them
  (``torch.save`` of the state dict: named and ``_trunk.N`` spellings, species heads), or deduplicated by
  ``safetensors.torch.save_model``. ``Enformer.save_pretrained`` itself fails under transformers 5 (it
  refuses the shared ``_trunk`` tensors), so these are the two files a user can hold. The module is our trunk
  registered as enformer-pytorch registers its own (``tests/enformer_layout.py``; that layout is checked
  against enformer-pytorch in ``test_enformer_trunk.py``), so these tests do not need enformer-pytorch.
"""

import json
import logging
import os

import pytest
import torch
from click.testing import CliRunner
from enformer_layout import enformer_pytorch_module, write_enformer_pytorch_config
from safetensors import safe_open
from safetensors.torch import save_file, save_model
from transformers import EsmForMaskedLM

from isoformer_cli.cli.main import cli
from isoformer_cli.errors import CheckpointError, InputError
from isoformer_cli.models.checkpoint.load import load_checkpoint
from isoformer_cli.models.conversion.pretrained import init_model
from isoformer_cli.models.network.configuration import IsoformerConfig
from isoformer_cli.models.network.encoders.esm import esm_config
from isoformer_cli.models.network.encoders.nucleotide_transformer import (
    NucleotideTransformer,
    dna_network_config,
    rna_network_config,
)

CONFIG = IsoformerConfig.from_preset("tiny")


def randomise_batch_norm_statistics(module):
    with torch.no_grad():
        for name, buffer in module.named_buffers():
            if "running_" in name:
                buffer.uniform_(0.5, 1.5)
            elif name.endswith("num_batches_tracked"):
                buffer.fill_(77)


def save_esm(folder, layout="transformers"):
    """A tiny ESM-2 masked-LM folder; returns the EsmModel whose tensors must arrive."""
    torch.manual_seed(1)
    model = EsmForMaskedLM(esm_config(CONFIG))
    if layout == "transformers":
        model.save_pretrained(str(folder))
    else:  # the transformers 4.x layout of facebook/esm2_* files
        model.config.save_pretrained(str(folder))
        state = {f"esm.{key}": tensor for key, tensor in model.esm.state_dict().items() if "inv_freq" not in key}
        head_dim = CONFIG.esm_hidden_size // CONFIG.esm_num_attention_heads
        for layer in range(CONFIG.esm_num_hidden_layers):
            state[f"esm.encoder.layer.{layer}.attention.self.rotary_embeddings.inv_freq"] = torch.rand(head_dim // 2)
        state["esm.embeddings.position_embeddings.weight"] = torch.randn(CONFIG.esm_max_position_embeddings, CONFIG.esm_hidden_size)
        state.update({f"lm_head.{key}": tensor for key, tensor in model.lm_head.state_dict().items()})
        torch.save(state, str(folder / "pytorch_model.bin"))
    return model.esm


def save_nt(folder, config=None):
    """A tiny NT-v2 folder in Hugging Face layout; returns the module whose tensors must arrive."""
    torch.manual_seed(2)
    nt_config = config or rna_network_config(CONFIG)
    module = NucleotideTransformer(nt_config)
    nt_config.save_pretrained(str(folder))
    hidden, vocab = nt_config.hidden_size, nt_config.vocab_size
    state = {f"esm.{key}": tensor.clone() for key, tensor in module.state_dict().items()}
    state.update(
        {
            "esm.contact_head.regression.weight": torch.randn(1, nt_config.num_hidden_layers * nt_config.num_attention_heads),
            "esm.contact_head.regression.bias": torch.randn(1),
            "esm.embeddings.position_embeddings.weight": torch.randn(nt_config.max_position_embeddings, hidden),
            "lm_head.dense.weight": torch.randn(hidden, hidden),
            "lm_head.dense.bias": torch.randn(hidden),
            "lm_head.layer_norm.weight": torch.randn(hidden),
            "lm_head.layer_norm.bias": torch.randn(hidden),
            "lm_head.decoder.weight": torch.randn(vocab, hidden),
            "lm_head.bias": torch.randn(vocab),
        }
    )
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return module


def save_enformer(folder, deduplicated=False):
    """A tiny enformer-pytorch folder with species heads; returns the module whose trunk must arrive."""
    torch.manual_seed(3)
    heads = {"human": 5, "mouse": 3}
    enformer = enformer_pytorch_module(CONFIG, heads)
    randomise_batch_norm_statistics(enformer)
    write_enformer_pytorch_config(folder, CONFIG, heads)
    if deduplicated:
        save_model(enformer, str(folder / "model.safetensors"))
    else:
        torch.save(enformer.state_dict(), str(folder / "pytorch_model.bin"))
    return enformer


def assert_arrived(source_module, target_module, skip=("inv_freq", "_trunk.", "_heads.", "position_embeddings")):
    """Every tensor of the source module (bar the skipped kinds) is bit-identical in the target module."""
    target = target_module.state_dict()
    checked = 0
    for name, tensor in source_module.state_dict().items():
        if any(part in name for part in skip):
            continue
        assert name in target, name
        assert target[name].dtype == tensor.dtype, name
        assert torch.equal(target[name], tensor), name
        checked += 1
    assert checked == len([name for name in target if "inv_freq" not in name])


@pytest.fixture()
def encoder_folders(tmp_path):
    folders = {name: tmp_path / name for name in ("esm", "nt", "enformer")}
    for folder in folders.values():
        folder.mkdir()
    modules = {
        "esm": save_esm(folders["esm"]),
        "nt": save_nt(folders["nt"]),
        "enformer": save_enformer(folders["enformer"]),
    }
    return folders, modules


def init_tiny(tmp_path, folders, name="out", **options):
    encoders = {
        "dna_encoder": str(folders["enformer"]) if "enformer" in folders else None,
        "rna_encoder": str(folders["nt"]) if "nt" in folders else None,
        "protein_encoder": str(folders["esm"]) if "esm" in folders else None,
    }
    return init_model(str(tmp_path / name), preset="tiny", encoder_folders=encoders, **options)


def test_every_encoder_tensor_arrives_bit_exact(tmp_path, encoder_folders):
    folders, modules = encoder_folders
    report = init_tiny(tmp_path, folders)
    assert sorted(report.loaded) == ["dna_encoder", "protein_encoder", "rna_encoder"]
    assert report.random == []
    model = load_checkpoint(str(tmp_path / "out"))
    assert_arrived(modules["esm"], model.protein_encoder)
    assert_arrived(modules["nt"], model.rna_encoder)
    assert_arrived(modules["enformer"], model.dna_encoder.enformer)
    with safe_open(str(tmp_path / "out" / "model.safetensors"), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["init_protein_encoder"].startswith(str(folders["esm"] / "model.safetensors"))
    assert metadata["init_seed"] == "0"
    # Each encoder was run against a reference built from its folder's own tensors.
    assert "transformers EsmModel" in metadata["self_check_protein_encoder"]
    assert "a new Enformer built from the source's configuration" in metadata["self_check_dna_encoder"]
    assert "NT-v2 module" in metadata["self_check_rna_encoder"]
    assert all(metadata[f"self_check_{name}"].startswith("passed") for name in report.loaded)
    assert [check.component for check in report.checks] == ["dna_encoder", "rna_encoder", "protein_encoder"]


def test_an_encoder_that_fails_its_self_check_writes_nothing(tmp_path, encoder_folders, monkeypatch):
    """A key mapping that put ESM-2's layers in the wrong order: every shape fits, the outputs do not."""
    from isoformer_cli.models.conversion.encoders import esm
    from isoformer_cli.models.conversion.key_mapping import MappingRow

    folders, _ = encoder_folders
    original = esm.Esm2Conversion.pretrained_folder

    def swapped(self, config):
        spec = original(self, config)
        rows = (MappingRow(r"^esm\.encoder\.layer\.0\.", "protein_encoder.encoder.layer.1."),
                MappingRow(r"^esm\.encoder\.layer\.1\.", "protein_encoder.encoder.layer.0."))
        return type(spec)(**{**spec.__dict__, "rows": rows + spec.rows})

    monkeypatch.setattr(esm.Esm2Conversion, "pretrained_folder", swapped)
    with pytest.raises(CheckpointError, match=r"self-check failed: protein_encoder FAILED: .*nothing was written$"):
        init_tiny(tmp_path, folders)
    assert sorted(os.listdir(tmp_path)) == ["enformer", "esm", "nt"]


def test_hub_layouts_of_esm_and_deduplicated_enformer(tmp_path):
    folders = {"esm": tmp_path / "esm", "enformer": tmp_path / "enformer"}
    for folder in folders.values():
        folder.mkdir()
    esm = save_esm(folders["esm"], layout="transformers-4")
    enformer = save_enformer(folders["enformer"], deduplicated=True)
    init_tiny(tmp_path, folders)
    model = load_checkpoint(str(tmp_path / "out"))
    assert_arrived(esm, model.protein_encoder)
    assert_arrived(enformer, model.dna_encoder.enformer)


def test_same_seed_gives_the_same_new_weights(tmp_path, encoder_folders):
    folders, _ = encoder_folders
    init_tiny(tmp_path, folders, name="first", seed=5)
    init_tiny(tmp_path, folders, name="second", seed=5)
    first, second = load_checkpoint(str(tmp_path / "first")), load_checkpoint(str(tmp_path / "second"))
    assert torch.equal(first.head.dense.weight, second.head.dense.weight)
    assert torch.equal(
        first.aggregation.rna_cross_attention.query.weight, second.aggregation.rna_cross_attention.query.weight
    )


def test_omitted_encoder_is_random_with_a_warning(tmp_path, encoder_folders, caplog):
    folders, modules = encoder_folders
    del folders["nt"]
    with caplog.at_level(logging.WARNING, logger="isoformer_cli"):
        report = init_tiny(tmp_path, folders)
    assert report.random == ["rna_encoder"]
    assert "no --rna-encoder given: the RNA (Nucleotide Transformer v2) encoder is randomly initialised" in caplog.text
    model = load_checkpoint(str(tmp_path / "out"))
    assert_arrived(modules["esm"], model.protein_encoder)


def edit_json(path, **changes):
    fields = json.loads(path.read_text())
    fields.update(changes)
    path.write_text(json.dumps(fields))


def test_architecture_mismatch_is_refused_naming_field_values_and_file(tmp_path, encoder_folders):
    folders, _ = encoder_folders
    edit_json(folders["esm"] / "config.json", num_hidden_layers=30, hidden_size=640)
    with pytest.raises(CheckpointError) as error:
        init_tiny(tmp_path, folders)
    message = str(error.value)
    assert message.startswith(f"{folders['esm'] / 'config.json'}: the protein (ESM-2) encoder does not match the tiny preset")
    assert f"hidden_size is 640 there but {CONFIG.esm_hidden_size} in the tiny preset" in message
    assert f"num_hidden_layers is 30 there but {CONFIG.esm_num_hidden_layers}" in message
    assert not (tmp_path / "out").exists()


def test_behaviour_difference_is_a_warning(tmp_path, encoder_folders, caplog):
    folders, modules = encoder_folders
    edit_json(folders["esm"] / "config.json", token_dropout=False)
    edit_json(folders["enformer"] / "config.json", use_tf_gamma=True)
    with caplog.at_level(logging.WARNING, logger="isoformer_cli"):
        report = init_tiny(tmp_path, folders)
    assert any("token_dropout is False there but True in the tiny preset; using the preset's value" in w for w in report.warnings)
    assert "use_tf_gamma is True there but False" in caplog.text
    assert load_checkpoint(str(tmp_path / "out")).config.esm_token_dropout is True


def test_wrong_folder_for_the_option(tmp_path, encoder_folders):
    folders, _ = encoder_folders
    folders["enformer"] = folders["esm"]
    with pytest.raises(CheckpointError, match=r"model_type is 'esm', expected 'enformer' for the DNA \(enformer-pytorch\) encoder"):
        init_tiny(tmp_path, folders)
    folders["enformer"] = tmp_path / "enformer"
    folders["nt"] = folders["esm"]
    with pytest.raises(CheckpointError, match=r"vocab_size is 33 there but 4107 in the tiny preset"):
        init_tiny(tmp_path, folders)


def test_missing_encoder_tensor_is_refused(tmp_path, encoder_folders):
    folders, _ = encoder_folders
    path = folders["nt"] / "model.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        state = {key: handle.get_tensor(key) for key in handle.keys()}
    del state["esm.encoder.layer.1.output.dense.weight"]
    save_file(state, str(path))
    expected = (
        r"cannot load the RNA \(Nucleotide Transformer v2\) encoder: 1 tensors of the model would stay "
        r"uninitialised \(rna_encoder\.encoder\.layer\.1\.output\.dense\.weight\)"
    )
    with pytest.raises(CheckpointError, match=expected):
        init_tiny(tmp_path, folders)
    assert not (tmp_path / "out").exists()


def test_stray_tensor_in_an_encoder_folder_is_refused(tmp_path, encoder_folders):
    folders, _ = encoder_folders
    state = torch.load(str(folders["enformer"] / "pytorch_model.bin"), weights_only=True)
    state["final_pointwise.9.weight"] = torch.zeros(2)
    torch.save(state, str(folders["enformer"] / "pytorch_model.bin"))
    with pytest.raises(CheckpointError, match=r"1 tensors of the file do not belong to the encoder \(final_pointwise\.9\.weight \[2\]\)"):
        init_tiny(tmp_path, folders)


def test_encoder_for_an_absent_modality(tmp_path, encoder_folders):
    folders, _ = encoder_folders
    expected = r"--protein-encoder .* given, but the model has no protein modality \(modalities: dna,rna\)"
    with pytest.raises(InputError, match=expected):
        init_tiny(tmp_path, folders, overrides={"modalities": "dna,rna"})


def test_nucleotide_transformer_as_dna_encoder(tmp_path):
    dna_folder = tmp_path / "nt_dna"
    dna_folder.mkdir()
    overrides = {"dna_encoder_type": "nucleotide_transformer", "modalities": "dna"}
    config = IsoformerConfig.from_preset("tiny", **overrides)
    module = save_nt(dna_folder, dna_network_config(config))
    init_model(str(tmp_path / "out"), preset="tiny", encoder_folders={"dna_encoder": str(dna_folder)}, overrides=overrides)
    assert_arrived(module, load_checkpoint(str(tmp_path / "out")).dna_encoder.nucleotide_transformer)


# ------------------------------------------------------------------------------------ command line


def test_cli_init(tmp_path, encoder_folders):
    folders, modules = encoder_folders
    arguments = ["init", "--preset", "tiny", "-o", str(tmp_path / "out"), "--protein-encoder", str(folders["esm"])]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 0, result.output
    assert "DNA (enformer-pytorch) encoder is randomly initialised" in result.output
    assert_arrived(modules["esm"], load_checkpoint(str(tmp_path / "out")).protein_encoder)
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 1
    assert "folder exists and is not empty; choose a new output folder or use --force" in result.output
    assert CliRunner().invoke(cli, arguments + ["--force"]).exit_code == 0


def test_cli_errors_are_one_line_and_leave_nothing(tmp_path, encoder_folders):
    folders, _ = encoder_folders
    edit_json(folders["nt"] / "config.json", num_attention_heads=8)
    result = CliRunner().invoke(
        cli, ["init", "--preset", "tiny", "-o", str(tmp_path / "out"), "--rna-encoder", str(folders["nt"])]
    )
    assert result.exit_code == 1
    assert result.output.startswith("isoformer: error: ")
    assert result.output.count("\n") == 1
    assert "num_attention_heads is 8 there" in result.output
    assert not (tmp_path / "out").exists()
    assert not any(name.endswith(".isoformer-partial") for name in os.listdir(tmp_path))
    arguments = ["init", "--preset", "tiny", "-o", str(tmp_path / "out"), "--dna-encoder", str(tmp_path / "none")]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 1
    assert "none: no such folder (the DNA (enformer-pytorch) encoder)" in result.output
