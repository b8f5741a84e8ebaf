"""Where a model comes from: ``--checkpoint DIR|NAME|demo`` resolved to a checkpoint folder.

* ``demo``: the checkpoint bundled inside the package (the tiny architecture with random weights; every
  output made with it says its numbers are not biological);
* a folder written by ``isoformer init``, ``convert`` or ``finetune``;
* a name, looked up inside ``--model-dir`` (default ``$ISOFORMER_MODEL_DIR``).

The network is never used.
"""

import os
from importlib import resources

from isoformer_cli.errors import CheckpointError, InputError

DEMO_CHECKPOINT_NAME = "demo"
# A file inside the bundled demo checkpoint that marks it as the demo.
DEMO_MARKER = "DEMO_CHECKPOINT"
MODEL_DIR_VARIABLE = "ISOFORMER_MODEL_DIR"


def demo_checkpoint_path():
    """Folder of the demo checkpoint shipped inside the package (tiny preset, random weights)."""
    return str(resources.files("isoformer_cli") / "data" / "demo_checkpoint")


def resolve_checkpoint(checkpoint, model_dir=None):
    """Folder of the checkpoint named by ``--checkpoint`` (a folder, a name inside ``model_dir``, or ``demo``).

    Never touches the network: a name is only looked up inside the model folder.
    """
    if not checkpoint:
        raise InputError(
            "no model given: use --checkpoint DIR (a folder written by isoformer init/convert/finetune), "
            f"--checkpoint NAME with --model-dir or ${MODEL_DIR_VARIABLE}, or --checkpoint demo for the "
            "bundled demo (not biological predictions)"
        )
    if checkpoint == DEMO_CHECKPOINT_NAME:
        return demo_checkpoint_path()
    if os.path.isdir(checkpoint):
        return checkpoint
    model_dir = model_dir or os.environ.get(MODEL_DIR_VARIABLE)
    if model_dir and os.sep not in checkpoint:
        candidate = os.path.join(model_dir, checkpoint)
        if os.path.isdir(candidate):
            return candidate
        available = sorted(name for name in os.listdir(model_dir) if os.path.isdir(os.path.join(model_dir, name))) \
            if os.path.isdir(model_dir) else []
        raise CheckpointError(
            f"checkpoint {checkpoint!r} is not in the model folder {model_dir} "
            f"(it holds: {', '.join(available) or 'nothing'})"
        )
    raise CheckpointError(
        f"{checkpoint}: checkpoint folder not found; give the folder written by isoformer init/convert/finetune"
        + ("" if model_dir else f", or a name inside --model-dir / ${MODEL_DIR_VARIABLE}")
    )


def checkpoint_files(checkpoint, model_dir=None):
    """``(option, path)`` of the files of ``--checkpoint``, for the same-file check of outputs.

    Empty when the checkpoint does not resolve: that error is reported when it is loaded.
    """
    from isoformer_cli.errors import IsoformerError
    from isoformer_cli.models.checkpoint import CONFIG_FILE, WEIGHTS_FILE

    try:
        folder = resolve_checkpoint(checkpoint, model_dir)
    except IsoformerError:
        return []
    return [("--checkpoint", os.path.join(folder, name)) for name in (CONFIG_FILE, WEIGHTS_FILE)]


def is_demo_checkpoint(folder):
    """True when ``folder`` is the bundled demo checkpoint (or a copy of it)."""
    return os.path.exists(os.path.join(folder, DEMO_MARKER))
