"""Loading a checkpoint folder of our format (``config.json`` + ``model.safetensors``) into an
:class:`~isoformer_cli.models.network.modeling.IsoformerModel`, after :mod:`.check` has checked everything it can
without reading tensor data. Weight files and tensor matching: :mod:`isoformer_cli.models.checkpoint.weights`.
"""

import os

from isoformer_cli.models.checkpoint.check import CheckedCheckpoint, check_checkpoint, rebuild_hint
from isoformer_cli.models.checkpoint.weights import (
    fill_module,
    load_weights_file,
    read_safetensors_into,
    tensor_aliases,
)
from isoformer_cli.models.network.build import build_model


def load_checkpoint(folder, device="cpu"):
    """Load our checkpoint folder (``config.json`` + ``model.safetensors``) into an :class:`IsoformerModel`.

    Everything :func:`check_checkpoint` checks is checked before any tensor data is read. Returns the
    model in eval mode on ``device``, with the file's values bit for bit.
    """
    return load_checked(check_checkpoint(os.fspath(folder)), device)


def load_checked(checked: CheckedCheckpoint, device="cpu"):
    """The model of a checkpoint :func:`check_checkpoint` passed, in eval mode on ``device``, with the file's
    values bit for bit (nothing is checked again)."""
    config, weights, renames, folder = checked.config, checked.weights, checked.renames, checked.folder
    # Every tensor is overwritten next (check_checkpoint found each one in the file), so skip the random
    # initialisation.
    model = build_model(config, initialise=False)
    aliases = tensor_aliases(model)
    own = model.state_dict(keep_vars=True)
    offered = [target for target in renames.values() if target is not None]
    if len({aliases[target] for target in offered}) == len(offered):
        # One file tensor per model tensor (what save_checkpoint writes): read each into its place, so the
        # process never holds the file's tensors and the model's at once.
        destinations = {name: own[aliases[target]].data for name, target in renames.items() if target is not None}
        read_safetensors_into(weights, destinations)
    else:
        # A tensor under two names (a file written by other tools): fill_module checks that the copies agree.
        tensors = {renames[name]: t for name, t in load_weights_file(weights).items() if renames[name] is not None}
        fill_module(model, tensors, weights, fix=rebuild_hint(folder))
    model.eval()
    return model.to(device) if device not in (None, "cpu") else model
