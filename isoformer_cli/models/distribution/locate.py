"""Where a model comes from: ``--checkpoint DIR|NAME|demo`` resolved to a checkpoint folder.

* ``demo``: the checkpoint bundled inside the package (the tiny architecture with random weights; every
  output made with it says its numbers are not biological);
* a folder written by ``isoformer init``, ``convert`` or ``finetune``;
* a name, looked up inside the model folder: ``--model-dir``, else ``$ISOFORMER_MODEL_DIR``, else the
  per-user data folder (:func:`default_model_dir`), where ``isoformer models pull`` stores checkpoints.

A path that exists as a folder wins over a name. The network is never used.

Every command goes one way from ``--checkpoint`` (or ``inspect NAME``, ``models verify NAME``) to a model:
:func:`resolve_checkpoint` (the folder) -> :func:`~isoformer_cli.models.checkpoint.check.check_checkpoint` (once,
without reading tensor data) -> :func:`~isoformer_cli.models.checkpoint.load.load_checked`; the first two are
:func:`locate_checkpoint`.
"""

import os
import sys
from importlib import resources

from isoformer_cli.errors import CheckpointError, InputError
from isoformer_cli.formats.provenance import RUN_FOLDER_FILE
from isoformer_cli.models.checkpoint.check import CheckedCheckpoint, check_checkpoint
from isoformer_cli.models.distribution.registry import KNOWN_MODELS

DEMO_CHECKPOINT_NAME = "demo"
# A file inside the bundled demo checkpoint that marks it as the demo.
DEMO_MARKER = "DEMO_CHECKPOINT"
# A file inside a checkpoint fine-tuned from the demo (or from such a checkpoint): its encoders are still the
# demo's random weights, so its outputs carry the demo warning too.
DEMO_DERIVED_MARKER = "DEMO_DERIVED"
# The checkpoints of a fine-tuning run folder (isoformer_cli.training.run_folder).
RUN_CHECKPOINTS = ("best", "last")
MODEL_DIR_VARIABLE = "ISOFORMER_MODEL_DIR"


def default_model_dir():
    """The per-user model folder when neither ``--model-dir`` nor ``$ISOFORMER_MODEL_DIR`` is set.

    Linux and other Unix: ``$XDG_DATA_HOME/isoformer/models`` (``~/.local/share/isoformer/models``);
    macOS: ``~/Library/Application Support/isoformer/models``; Windows: ``%LOCALAPPDATA%\\isoformer\\models``.
    (The conventions of the platformdirs package, without depending on it.)
    """
    home = os.path.expanduser("~")
    if sys.platform == "darwin":
        base = os.path.join(home, "Library", "Application Support")
    elif os.name == "nt":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
    else:
        # XDG says a relative XDG_DATA_HOME is invalid and must be ignored.
        xdg = os.environ.get("XDG_DATA_HOME", "")
        base = xdg if os.path.isabs(xdg) else os.path.join(home, ".local", "share")
    return os.path.join(base, "isoformer", "models")


DATASET_DIR_VARIABLE = "ISOFORMER_DATASET_DIR"


def dataset_dir_for(dataset_dir=None):
    """The dataset folder in effect: ``dataset_dir`` (``--dataset-dir``), ``$ISOFORMER_DATASET_DIR``, or
    ``datasets`` beside the default model folder (``~/.local/share/isoformer/datasets`` on Linux)."""
    return dataset_dir or os.environ.get(DATASET_DIR_VARIABLE) or os.path.join(
        os.path.dirname(default_model_dir()), "datasets")


def model_dir_for(model_dir=None):
    """The model folder in effect: ``model_dir`` (``--model-dir``), ``$ISOFORMER_MODEL_DIR`` or the default."""
    return model_dir or os.environ.get(MODEL_DIR_VARIABLE) or default_model_dir()


def demo_checkpoint_path():
    """Folder of the demo checkpoint shipped inside the package (tiny preset, random weights)."""
    return str(resources.files("isoformer_cli") / "data" / "demo_checkpoint")


def resolve_checkpoint(checkpoint, model_dir=None, names_only=False):
    """Folder of the checkpoint named by ``--checkpoint`` (a folder, a name inside the model folder, or ``demo``).

    Never touches the network: a name is only looked up inside the model folder (:func:`model_dir_for`).
    ``names_only``: ``checkpoint`` is a name in the model folder even where a folder of that name exists here
    (``models remove``, which must never delete a folder given by path).
    """
    if not checkpoint:
        raise InputError(
            "no model given: use --checkpoint DIR (a folder written by isoformer init/convert/finetune), "
            "--checkpoint NAME for a checkpoint in the model folder (isoformer models list), or --checkpoint demo "
            "for the bundled demo (not biological predictions)"
        )
    if checkpoint == DEMO_CHECKPOINT_NAME:
        return demo_checkpoint_path()
    if os.path.isdir(checkpoint) and not names_only:
        _refuse_run_folder(checkpoint)
        return checkpoint
    parent, name = os.path.split(os.path.normpath(checkpoint))
    if name in RUN_CHECKPOINTS and os.path.isfile(os.path.join(parent or ".", RUN_FOLDER_FILE)):
        raise CheckpointError(_missing_run_checkpoint(parent or ".", name))
    if os.sep in checkpoint or (os.altsep and os.altsep in checkpoint):
        raise CheckpointError(
            f"{checkpoint}: checkpoint folder not found; give the folder written by isoformer init/convert/finetune"
        )
    model_dir = model_dir_for(model_dir)
    candidate = os.path.join(model_dir, checkpoint)
    if os.path.isdir(candidate):
        return candidate
    available = sorted(
        name for name in os.listdir(model_dir)
        if not name.startswith(".") and os.path.isdir(os.path.join(model_dir, name))
    ) if os.path.isdir(model_dir) else []
    hint = ""
    if checkpoint in KNOWN_MODELS and KNOWN_MODELS[checkpoint].pullable:
        hint = f"; get it with: isoformer models pull {checkpoint}"
    raise CheckpointError(
        f"checkpoint {checkpoint!r} is not in the model folder {model_dir} "
        f"(it holds: {', '.join(available) or 'nothing'}){hint}"
    )


def _refuse_run_folder(folder):
    """A fine-tuning run folder given as ``--checkpoint``: name the checkpoint inside it to use instead."""
    if not os.path.isfile(os.path.join(folder, RUN_FOLDER_FILE)) or os.path.isfile(os.path.join(folder, "config.json")):
        return
    present = [name for name in RUN_CHECKPOINTS if os.path.isdir(os.path.join(folder, name))]
    if not present:
        raise CheckpointError(_missing_run_checkpoint(folder, RUN_CHECKPOINTS[0]))
    raise CheckpointError(f"{folder} is a fine-tuning run folder, not a checkpoint; use --checkpoint "
                          f"{os.path.join(folder, present[0])}")


def _missing_run_checkpoint(run_dir, name):
    """Why the run folder ``run_dir`` has no ``name/`` checkpoint, and what to use instead."""
    last = os.path.join(run_dir, RUN_CHECKPOINTS[1])
    if name == RUN_CHECKPOINTS[0]:
        why = ("its validation never gave a Spearman (no validation split, or constant predictions), so no epoch "
               "was best" if os.path.isfile(os.path.join(run_dir, "summary.json"))
               else "no epoch with a validation Spearman has finished yet")
        instead = (f"use --checkpoint {last} (the final weights)" if os.path.isdir(last)
                   else "rerun the fine-tuning with --resume")
        return f"run folder {run_dir} has no {name}/: {why}; {instead}"
    return (f"run folder {run_dir} has no {name}/: no training step was saved yet; rerun the fine-tuning with "
            "--resume")


def locate_checkpoint(checkpoint, model_dir=None) -> CheckedCheckpoint:
    """``--checkpoint`` resolved (:func:`resolve_checkpoint`) and checked once, without reading tensor data;
    load it with :func:`isoformer_cli.models.checkpoint.load.load_checked`."""
    return check_checkpoint(resolve_checkpoint(checkpoint, model_dir))


def is_demo_checkpoint(folder):
    """True when ``folder`` is the bundled demo checkpoint (or a copy of it)."""
    return os.path.exists(os.path.join(folder, DEMO_MARKER))


def is_demo_derived(folder):
    """True when ``folder`` was fine-tuned from the demo checkpoint (or from such a checkpoint): random-weight
    encoders, like the demo's."""
    return os.path.exists(os.path.join(folder, DEMO_DERIVED_MARKER))


def mark_demo_derived(folder, source):
    """Write the marker of :func:`is_demo_derived` into ``folder`` (a checkpoint being saved), naming the
    checkpoint ``source`` it was fine-tuned from."""
    with open(os.path.join(folder, DEMO_DERIVED_MARKER), "w", encoding="utf-8") as stream:
        stream.write(f"Fine-tuned from {source}, which derives from the DEMO checkpoint of isoformer: its encoders "
                     "have random weights.\nIts outputs are NOT biological predictions.\n")
