"""Checking a checkpoint folder of our format without reading tensor data: the folder, ``config.json`` (valid
JSON, known fields, a model that builds) and the header of ``model.safetensors`` (every tensor of the model with
the right shape, nothing else). :func:`check_checkpoint` is the one check every command's ``--checkpoint`` goes
through (see :func:`isoformer_cli.models.distribution.locate.locate_checkpoint`).
"""

import os
from dataclasses import dataclass

from safetensors import safe_open

from isoformer_cli.errors import CheckpointError
from isoformer_cli.models.checkpoint.schema import CONFIG_FILE, WEIGHTS_FILE, config_from_dict
from isoformer_cli.models.checkpoint.weights import (
    compare_shapes,
    read_json_file,
    tensor_aliases,
    transformers_renames,
    weights_file_shapes,
)
from isoformer_cli.models.network.build import build_model


@dataclass(frozen=True)
class CheckedCheckpoint:
    """A checkpoint folder that passed :func:`check_checkpoint`; load it with
    :func:`isoformer_cli.models.checkpoint.load.load_checked` (nothing is checked twice).

    Attributes:
        folder: the checkpoint folder.
        config: its :class:`~isoformer_cli.models.network.configuration.IsoformerConfig`.
        weights: path of its ``model.safetensors``.
        renames: ``{name in the file: the model's name}`` (None: a recomputed buffer to skip).
    """

    folder: str
    config: object
    weights: str
    renames: dict

    def files(self) -> list:
        """``(option, path)`` of the checkpoint's two files, for the same-file check of outputs."""
        return [("--checkpoint", os.path.join(self.folder, name)) for name in (CONFIG_FILE, WEIGHTS_FILE)]


def load_config(folder):
    """The :class:`IsoformerConfig` of a checkpoint folder (``config.json``), with clear errors."""
    folder = os.fspath(folder)
    check_checkpoint_folder(folder)
    path = os.path.join(folder, CONFIG_FILE)
    return config_from_dict(read_json_file(path, "model configuration"), path)


def check_checkpoint_folder(folder):
    """CheckpointError unless ``folder`` exists and is a folder."""
    if not os.path.exists(folder):
        raise CheckpointError(f"{folder}: no such checkpoint folder")
    if not os.path.isdir(folder):
        raise CheckpointError(f"{folder}: not a folder; a checkpoint is a folder with {CONFIG_FILE} and {WEIGHTS_FILE}")


def check_checkpoint(folder) -> CheckedCheckpoint:
    """Validate our checkpoint folder without reading tensor data; return its :class:`CheckedCheckpoint`.

    Checks: the folder exists, ``config.json`` is valid JSON with known fields that build a valid model,
    ``model.safetensors`` exists and its header is intact, and every tensor of the model is in the file
    with the right shape and nothing else is. ``renames`` maps each name in the file to the model's
    name (None: a recomputed buffer to skip), see :func:`transformers_renames`.
    """
    folder = os.fspath(folder)
    check_checkpoint_folder(folder)
    weights = os.path.join(folder, WEIGHTS_FILE)
    if not os.path.isfile(weights):
        hint = ""
        if os.path.isfile(os.path.join(folder, "pytorch_model.bin")):
            hint = "; this looks like the official InstaDeepAI/isoformer release: run 'isoformer convert' on it first"
        raise CheckpointError(f"{weights}: no such file (the checkpoint's weights are missing){hint}")
    config = load_config(folder)
    skeleton = build_model(config, device="meta")
    expected = {name: tuple(t.shape) for name, t in skeleton.state_dict(keep_vars=True).items()}
    file_shapes = weights_file_shapes(weights)
    # IsoformerModel.save_pretrained (transformers) may spell a few names its own way; undo that.
    renames = transformers_renames(file_shapes, expected)
    offered = {renames[name]: shape for name, shape in file_shapes.items() if renames[name] is not None}
    mismatch = compare_shapes(expected, tensor_aliases(skeleton), offered)
    if mismatch:
        raise CheckpointError(f"{weights} does not match the model: {mismatch.describe()}; {rebuild_hint(folder)}")
    return CheckedCheckpoint(folder, config, weights, renames)


def rebuild_hint(folder):
    """The fix of a weights file that does not match its configuration."""
    return (
        f"{os.path.join(folder, WEIGHTS_FILE)} was not written for {os.path.join(folder, CONFIG_FILE)}; "
        "re-create the checkpoint"
    )


def checkpoint_metadata(weights_path):
    """The string metadata of a safetensors header (provenance written by :func:`save_checkpoint`)."""
    with safe_open(weights_path, framework="pt", device="cpu") as handle:
        return dict(handle.metadata() or {})
