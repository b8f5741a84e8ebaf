"""``last/``: what ``--resume`` continues from, saved as one folder so that weights and state always agree.

``last/`` holds::

    config.json, model.safetensors   the checkpoint, as :func:`isoformer_cli.models.checkpoint.save.save_checkpoint`
                                     writes it (readable by every command that takes --checkpoint)
    training_state.safetensors       ``optimizer/<parameter>/<key>``: AdamW's step, exp_avg, exp_avg_sq;
                                     ``rng/<rank>/<key>``: each process's random generator states
    training_state.json              the :class:`TrainingState` fields, ``rng`` (each rank's JSON part of
                                     its generator states, in rank order) and ``world_size``

The folder is assembled in a hidden temporary folder and renamed into place, so a run killed while saving
keeps the previous ``last/``. Each rank restores its own generator states, so only when the process count
is unchanged; the batch order and dropout seeds never depend on them (they are derived from the seed, epoch
and step), which is why a run may resume on another number of processes.
"""

import contextlib
import dataclasses
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

from isoformer_cli.errors import InputError
from isoformer_cli.formats.config_fields import check_field_types
from isoformer_cli.formats.json_file import read_json_object
from isoformer_cli.models.checkpoint.save import atomic_folder, save_checkpoint
from isoformer_cli.runtime import distributed
from isoformer_cli.training.run_folder import write_json
from isoformer_cli.training.state import capture_rng, load_optimizer_state, optimizer_state_tensors, restore_rng

STATE_TENSORS = "training_state.safetensors"
STATE_JSON = "training_state.json"


@dataclass
class TrainingState:
    """Counters that ``--resume`` restores (saved in ``last/training_state.json``)."""

    epoch: int = 0              # 0-based epoch in progress
    step_in_epoch: int = 0      # optimiser steps of that epoch already done
    global_step: int = 0        # optimiser steps done in total
    epoch_loss_sum: float = 0.0  # sum of the epoch's per-step losses so far
    epoch_steps: int = 0
    best_val_spearman: Optional[float] = None
    best_epoch: Optional[int] = None
    epochs_since_best: int = 0
    stop_early: bool = False
    history: list = field(default_factory=list)


def checkpoint_metadata(state):
    """The safetensors header entries of a checkpoint saved at ``state``: the optimiser steps done and the epoch
    its weights belong to, 1-based as in metrics.tsv and summary.json (the epoch just completed, or the one in
    progress for a save within an epoch; 0 before the first step)."""
    epoch = state.epoch + (1 if state.step_in_epoch else 0)
    return {"finetune_step": str(state.global_step), "finetune_epoch": str(epoch)}


def gather_training_state(group, optimizer, named_parameters, state):
    """``(tensors, state_json)`` of training_state.safetensors / .json; collective: every rank calls it."""
    rng = distributed.all_gather(group, capture_rng())
    optimizer_tensors = optimizer_state_tensors(optimizer, named_parameters)
    tensors = {f"optimizer/{key}": value for key, value in optimizer_tensors.items()}
    plain_rng = []
    for rank, (rng_tensors, rng_plain) in enumerate(rng):
        tensors.update({f"rng/{rank}/{key}": value for key, value in rng_tensors.items()})
        plain_rng.append(rng_plain)
    state_json = dict(dataclasses.asdict(state), rng=plain_rng, world_size=group.world_size)
    return tensors, state_json


def write_last(last_dir, model, tensors, state_json, metadata, on_written=None):
    """Write ``last/`` from :func:`gather_training_state`'s output (rank 0 only); ``on_written(partial)`` adds
    files to the folder before it is moved into place."""
    from safetensors.torch import save_file

    with atomic_folder(last_dir, overwrite=True) as partial:
        # save_checkpoint writes its own folder; move its two files into ours so that weights and
        # training state appear together in one rename.
        inner = os.path.join(partial, "checkpoint")
        with _quiet(logging.getLogger("isoformer_cli.models.checkpoint")):  # its "wrote" names the inner folder
            save_checkpoint(model, inner, metadata=metadata)
        for name in os.listdir(inner):
            os.replace(os.path.join(inner, name), os.path.join(partial, name))
        os.rmdir(inner)
        save_file(tensors, os.path.join(partial, STATE_TENSORS))
        write_json(os.path.join(partial, STATE_JSON), state_json)
        if on_written is not None:
            on_written(partial)


# The JSON kinds of training_state.json: TrainingState's fields, the random states and the process count.
TRAINING_STATE_KINDS = {
    "epoch": ("integer",), "step_in_epoch": ("integer",), "global_step": ("integer",),
    "epoch_loss_sum": ("number",), "epoch_steps": ("integer",), "best_val_spearman": ("number", "null"),
    "best_epoch": ("integer", "null"), "epochs_since_best": ("integer",), "stop_early": ("boolean",),
    "history": ("list",), "rng": ("list",), "world_size": ("integer",),
}


def load_training_state(last_dir, optimizer, named_parameters, group):
    """The TrainingState saved in ``last_dir``; puts the AdamW state back into ``optimizer`` and, with the same
    process count, this rank's generator states back into the process."""
    from safetensors.torch import load_file

    json_path = os.path.join(last_dir, STATE_JSON)
    tensor_path = os.path.join(last_dir, STATE_TENSORS)
    saved = read_json_object(json_path, "training state", "the run folder is damaged")
    try:
        tensors = load_file(tensor_path)
    except (OSError, ValueError) as exc:
        raise InputError(f"{tensor_path}: cannot read the training state ({exc}); the run folder is "
                         "damaged") from None
    check_field_types(saved, TRAINING_STATE_KINDS, json_path, refuse_unknown=True)
    fields = {key: saved[key] for key in dataclasses.asdict(TrainingState()) if key in saved}
    state = TrainingState(**fields)
    load_optimizer_state(optimizer, named_parameters,
                         {key[len("optimizer/"):]: value for key, value in tensors.items()
                          if key.startswith("optimizer/")}, tensor_path)
    rank = group.rank
    if saved.get("world_size") == group.world_size:
        restore_rng({key[len(f"rng/{rank}/"):]: value for key, value in tensors.items()
                     if key.startswith(f"rng/{rank}/")}, saved["rng"][rank])
    return state


@contextlib.contextmanager
def _quiet(logger):
    """Raise ``logger`` to WARNING inside the block."""
    previous = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(previous)
