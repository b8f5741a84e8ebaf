"""Weight files and our checkpoint folder: safe reading, strict matching, atomic saving, clear errors."""

import json
import os
import pathlib

import pytest
import torch
from safetensors.torch import save_file

from isoformer_cli.errors import CheckpointError, OutputError
from isoformer_cli.models.checkpoint import save as checkpoint_module
from isoformer_cli.models.checkpoint.check import load_config
from isoformer_cli.models.checkpoint.load import load_checkpoint
from isoformer_cli.models.checkpoint.save import atomic_folder, save_checkpoint
from isoformer_cli.models.checkpoint.weights import (
    fill_module,
    load_weights_file,
    load_weights_folder,
    name_some,
    weights_file_shapes,
)
from isoformer_cli.models.network.configuration import IsoformerConfig
from isoformer_cli.models.network.modeling import IsoformerModel

TENSORS = {"layer.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4), "steps": torch.tensor(7)}


def truncate(path, keep_fraction=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return IsoformerModel(IsoformerConfig.from_preset("tiny")).eval()


@pytest.fixture()
def saved_checkpoint(tmp_path, tiny_model):
    folder = tmp_path / "checkpoint"
    save_checkpoint(tiny_model, str(folder))
    return folder


def assert_same_tensors(model_a, model_b):
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert state_a.keys() == state_b.keys()
    for name, tensor in state_a.items():
        assert tensor.dtype == state_b[name].dtype, name
        assert torch.equal(tensor, state_b[name]), name


# ------------------------------------------------------------------------------------ weight files


@pytest.mark.parametrize("suffix", [".safetensors", ".bin", ".pt", ".pth"])
def test_weights_file_round_trip(tmp_path, suffix):
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file(TENSORS, str(path))
    else:
        torch.save(TENSORS, str(path))
    loaded = load_weights_file(str(path))
    assert loaded.keys() == TENSORS.keys()
    for name, tensor in TENSORS.items():
        assert torch.equal(loaded[name], tensor)
    assert weights_file_shapes(str(path)) == {"layer.weight": (3, 4), "steps": ()}


def test_legacy_torch_save_format_is_read_without_mmap(tmp_path):
    path = tmp_path / "legacy.bin"
    torch.save(TENSORS, str(path), _use_new_zipfile_serialization=False)
    assert torch.equal(load_weights_file(str(path))["layer.weight"], TENSORS["layer.weight"])


def test_missing_file_folder_and_unknown_suffix(tmp_path):
    with pytest.raises(CheckpointError, match=r"nothing\.bin: no such file"):
        load_weights_file(str(tmp_path / "nothing.bin"))
    with pytest.raises(CheckpointError, match="is a folder, expected a weights file"):
        load_weights_file(str(tmp_path))
    other = tmp_path / "weights.npz"
    other.write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"weights\.npz: unknown weights file type"):
        load_weights_file(str(other))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_safetensors_file(tmp_path, damage):
    path = tmp_path / "model.safetensors"
    save_file(TENSORS, str(path))
    if damage == "truncated":
        truncate(path)
    elif damage == "garbage":
        path.write_bytes(b"this is not a safetensors file at all" * 4)
    else:
        path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a valid safetensors file, it is truncated or corrupted"):
        load_weights_file(str(path))
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        weights_file_shapes(str(path))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_torch_file(tmp_path, damage):
    path = tmp_path / "pytorch_model.bin"
    torch.save(TENSORS, str(path))
    if damage == "truncated":
        truncate(path)
    elif damage == "garbage":
        path.write_bytes(b"this is not a pytorch file at all" * 4)
    else:
        path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin: not a PyTorch weights file, or it is truncated or corrupted"):
        load_weights_file(str(path))


class _TouchOnUnpickle:
    """An object whose unpickling would create a file: proof that arbitrary objects are never unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_objects_are_refused_and_never_executed(tmp_path):
    marker = tmp_path / "unpickled-marker"
    path = tmp_path / "evil.bin"
    torch.save({"weight": torch.zeros(2), "payload": _TouchOnUnpickle(str(marker))}, str(path))
    with pytest.raises(CheckpointError, match="contains Python objects other than tensors; refusing to unpickle"):
        load_weights_file(str(path))
    assert not marker.exists()


def test_non_tensor_content_is_refused(tmp_path):
    mixed = tmp_path / "mixed.bin"
    torch.save({"weight": torch.zeros(2), "step": 3, "optimizer": {"lr": 0.1}}, str(mixed))
    with pytest.raises(CheckpointError, match=r"2 entries are not named tensors \(optimizer, step\)"):
        load_weights_file(str(mixed))
    as_list = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], str(as_list))
    with pytest.raises(CheckpointError, match="holds a list, expected a dictionary of named tensors"):
        load_weights_file(str(as_list))


def test_sharded_folder_is_read_through_its_index(tmp_path):
    save_file({"a": torch.ones(2)}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({"b": torch.zeros(3)}, str(tmp_path / "model-00002-of-00002.safetensors"))
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    tensors, source = load_weights_folder(str(tmp_path))
    assert sorted(tensors) == ["a", "b"]
    assert source.endswith("model.safetensors.index.json")
    index["weight_map"]["c"] = "model-00002-of-00002.safetensors"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=r"1 tensors listed in the index are in no shard \(c\)"):
        load_weights_folder(str(tmp_path))


def test_folder_without_weights(tmp_path):
    with pytest.raises(CheckpointError, match="no weights file found; expected one of model.safetensors"):
        load_weights_folder(str(tmp_path))


# ------------------------------------------------------------------------------------ matching


def test_name_some_counts_what_it_leaves_out():
    assert name_some(["c", "a", "b"]) == "a, b, c"
    assert name_some([f"t{i}" for i in range(8)], limit=3) == "t0, t1, t2 and 5 more"


def test_fill_module_names_every_kind_of_problem():
    module = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    offered = {
        "0.weight": torch.zeros(3, 2),
        "0.bias": torch.zeros(4),  # wrong shape
        "1.weight": torch.zeros(1, 3),
        "extra.weight": torch.zeros(1),
    }  # 1.bias missing
    with pytest.raises(CheckpointError) as error:
        fill_module(module, offered, "weights.bin", fix="rebuild it")
    message = str(error.value)
    assert message.startswith("weights.bin does not match the model: ")
    assert "1 tensors missing (1.bias)" in message
    assert "0.bias is [4] in the file but [3] in the model" in message
    assert "1 unexpected (extra.weight)" in message
    assert message.endswith("; rebuild it")
    assert "\n" not in message


def test_fill_module_copies_bits_and_counts_aliases_once():
    shared = torch.nn.Linear(2, 2)
    module = torch.nn.Module()
    module.first = shared
    module.second = shared  # the same tensors under two names
    values = {"first.weight": torch.randn(2, 2), "first.bias": torch.randn(2)}
    fill_module(module, values, "file")
    assert torch.equal(module.second.weight, values["first.weight"])
    conflicting = dict(values, **{"second.weight": values["first.weight"] + 1})
    with pytest.raises(CheckpointError, match=r"1 given twice with different values \(first.weight\)"):
        fill_module(module, conflicting, "file")


# ------------------------------------------------------------------------------------ our format


def test_round_trip_is_bit_exact(saved_checkpoint, tiny_model):
    assert sorted(os.listdir(saved_checkpoint)) == ["config.json", "model.safetensors"]
    loaded = load_checkpoint(str(saved_checkpoint))
    assert not loaded.training
    assert loaded.config.to_dict()["tissues"] == tiny_model.config.tissues
    assert_same_tensors(loaded, tiny_model)


def test_reads_what_isoformer_model_save_pretrained_writes(tmp_path, tiny_model):
    # transformers spells some ESM tensors its own way on save (LayerNorm gamma/beta); both writers must load.
    tiny_model.save_pretrained(str(tmp_path / "hf"))
    assert_same_tensors(load_checkpoint(str(tmp_path / "hf")), tiny_model)


def test_missing_folder_and_not_a_folder(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        load_checkpoint(str(tmp_path / "absent"))
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(CheckpointError, match="not a folder; a checkpoint is a folder with config.json and model.safetensors"):
        load_checkpoint(str(a_file))


def test_missing_config(saved_checkpoint):
    os.remove(saved_checkpoint / "config.json")
    with pytest.raises(CheckpointError, match=r"config\.json: no such file \(the model configuration is missing\)"):
        load_checkpoint(str(saved_checkpoint))


def test_invalid_json_names_line_and_column(saved_checkpoint):
    (saved_checkpoint / "config.json").write_text('{\n  "aggregation": "cross-attention",\n  oops\n}')
    with pytest.raises(CheckpointError, match=r"config\.json:3:3: invalid JSON in the model configuration"):
        load_checkpoint(str(saved_checkpoint))


def edit_config(folder, **changes):
    path = folder / "config.json"
    fields = json.loads(path.read_text())
    fields.update(changes)
    path.write_text(json.dumps(fields))


def test_unknown_config_fields(saved_checkpoint):
    edit_config(saved_checkpoint, colour="blue", enformer_depht=3)
    with pytest.raises(CheckpointError, match=r"unknown configuration fields colour, enformer_depht"):
        load_config(str(saved_checkpoint))


def test_invalid_config_value_and_foreign_model_type(saved_checkpoint):
    edit_config(saved_checkpoint, aggregation="mean")
    with pytest.raises(CheckpointError, match=r"config\.json: invalid IsoFormer configuration: aggregation='mean'"):
        load_checkpoint(str(saved_checkpoint))
    edit_config(saved_checkpoint, aggregation="cross-attention", model_type="esm")
    with pytest.raises(CheckpointError, match="model_type is 'esm', not 'isoformer'"):
        load_checkpoint(str(saved_checkpoint))


def test_missing_weights_file_and_official_release_hint(saved_checkpoint):
    os.remove(saved_checkpoint / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"model\.safetensors: no such file \(the checkpoint's weights are missing\)$"):
        load_checkpoint(str(saved_checkpoint))
    # The official release: its own config.json (fields we do not know) and pytorch_model.bin.
    (saved_checkpoint / "config.json").write_text(json.dumps({"model_type": "isoformer", "enformer_output_heads": 0}))
    (saved_checkpoint / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(CheckpointError, match="run 'isoformer convert' on it first"):
        load_checkpoint(str(saved_checkpoint))


def test_truncated_weights(saved_checkpoint):
    truncate(saved_checkpoint / "model.safetensors", 0.7)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a valid safetensors file, it is truncated"):
        load_checkpoint(str(saved_checkpoint))


def rewrite_weights(folder, change):
    path = str(folder / "model.safetensors")
    tensors = dict(load_weights_file(path))
    change(tensors)
    save_file(tensors, path)


def test_missing_and_unexpected_tensors_are_named(saved_checkpoint):
    def change(tensors):
        del tensors["head.output.bias"]
        del tensors["head.output.weight"]
        tensors["head.extra.weight"] = torch.zeros(1)

    rewrite_weights(saved_checkpoint, change)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(str(saved_checkpoint))
    message = str(error.value)
    assert "2 tensors missing (head.output.bias, head.output.weight)" in message
    assert "1 unexpected (head.extra.weight)" in message
    assert "re-create the checkpoint" in message


def test_shape_mismatch_between_config_and_weights(saved_checkpoint):
    edit_config(saved_checkpoint, head_hidden_size=100)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(str(saved_checkpoint))
    message = str(error.value)
    config = IsoformerConfig.from_preset("tiny")
    assert "3 with the wrong shape" in message
    expected = (
        f"head.dense.weight is [{config.head_hidden_size}, {config.query_size}] in the file "
        f"but [100, {config.query_size}] in the model"
    )
    assert expected in message


def test_many_missing_tensors_are_counted(saved_checkpoint):
    removed = []
    rewrite_weights(
        saved_checkpoint, lambda tensors: removed.extend(tensors.pop(k) for k in list(tensors) if k.startswith("rna_"))
    )
    count = len(removed)
    pattern = rf"{count} tensors missing \(rna_encoder\.\S+, .* and {count - 5} more\)"
    with pytest.raises(CheckpointError, match=pattern):
        load_checkpoint(str(saved_checkpoint))


# ------------------------------------------------------------------------------------ saving


def test_save_refuses_a_non_empty_folder_unless_overwriting(tmp_path, tiny_model):
    target = tmp_path / "out"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="folder exists and is not empty"):
        save_checkpoint(tiny_model, str(target))
    assert os.listdir(target) == ["notes.txt"]
    save_checkpoint(tiny_model, str(target), overwrite=True)
    assert sorted(os.listdir(target)) == ["config.json", "model.safetensors"]
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_save_into_an_existing_empty_folder(tmp_path, tiny_model):
    (tmp_path / "out").mkdir()
    save_checkpoint(tiny_model, str(tmp_path / "out"))
    assert_same_tensors(load_checkpoint(str(tmp_path / "out")), tiny_model)


def test_failed_save_leaves_nothing_behind(tmp_path, tiny_model, monkeypatch):
    def broken_save_file(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("isoformer_cli.models.checkpoint.save.save_file", broken_save_file)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(tiny_model, str(tmp_path / "out"))
    assert os.listdir(tmp_path) == []


def test_atomic_folder_checks_the_parent(tmp_path):
    with pytest.raises(OutputError, match="does not exist; create it first"):
        with atomic_folder(str(tmp_path / "missing" / "out")):
            pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="exists and is not a folder"):
        with atomic_folder(str(tmp_path / "file")):
            pass


def test_checkpoint_state_has_one_name_per_tensor(tiny_model):
    state = checkpoint_module.checkpoint_state(tiny_model)
    assert set(state) == set(tiny_model.state_dict())
    assert all(tensor.is_contiguous() for tensor in state.values())


def test_weights_are_read_into_the_model_in_place_and_converted_when_dtypes_differ(tmp_path):
    from safetensors.torch import save_file

    from isoformer_cli.models.checkpoint.weights import read_safetensors_into

    path = str(tmp_path / "w.safetensors")
    values = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.tensor([1.5, -2.0]),
              "empty": torch.zeros(0)}
    save_file(values, path)
    a, b, empty = torch.zeros(2, 3), torch.zeros(2, dtype=torch.bfloat16), torch.zeros(0)
    read_safetensors_into(path, {"a": a, "b": b, "empty": empty})
    assert torch.equal(a, values["a"]) and torch.equal(b, values["b"].to(torch.bfloat16))
    with pytest.raises(CheckpointError, match="tensor a in the header .* does not fit the model"):
        read_safetensors_into(path, {"a": torch.zeros(3, 2)})
    with pytest.raises(CheckpointError, match="tensor c is missing"):
        read_safetensors_into(path, {"c": torch.zeros(1)})
    data = pathlib.Path(path).read_bytes()
    pathlib.Path(path).write_bytes(data[:-4])
    with pytest.raises(CheckpointError, match="does not fit the model or the file|file ends inside tensor"):
        read_safetensors_into(path, {"a": torch.zeros(2, 3), "b": torch.zeros(2)})
