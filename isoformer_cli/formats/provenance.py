"""Provenance: what every output file records about the run that made it.

The provenance is a plain dict of JSON types (str, int, bool, lists of str, nested dicts) so it can
be written as one JSON line in a TSV header, as AnnData ``uns`` in HDF5 and as an HDF5 attribute:

    {
      "format_version": 1,                   # version of isoformer's output layouts
      "tool": "isoformer",
      "tool_version": "0.1.0",
      "command_line": "isoformer predict --genome hg38.fa ...",   # without --resume
      "checkpoint_id": "demo@sha256:3a7b...",
      "inputs": {"genome": "sha256:...", "annotation": "sha256:..."},
      "units": "log(TPM+1)",                 # omitted for embeddings
      "demo": false
    }

It deliberately holds nothing that changes between two runs of the same command on the same
inputs (no timestamps, host names or absolute program paths), so that a run resumed with
``--resume`` writes a file byte-identical to an uninterrupted one; ``--resume`` itself is dropped
from the recorded command line for the same reason.

Input checksums are the SHA-256 of each file's bytes, hashed in 1 MiB blocks (constant memory).
Whole genomes are hashed too, not just their ``.fai`` index: an index only records names, lengths
and offsets, so an edited base would go unnoticed, and hashing costs about 1.3 GB/s on this
machine kind (about 3 s for hg38, small next to any prediction run).
"""

import glob
import hashlib
import os
import shlex

from isoformer_cli import __version__
from isoformer_cli.errors import CheckpointError, InputError

FORMAT_VERSION = 1
PREDICTION_UNITS = "log(TPM+1)"
RESUME_OPTION = "--resume"
# Weights of a checkpoint in our format (``save_pretrained`` with safetensors, possibly sharded).
WEIGHTS_PATTERN = "*.safetensors"

# The file that marks a fine-tuning run folder (isoformer_cli.training.run_folder); its checkpoints (best/,
# last/) are identified by the run's name too.
RUN_FOLDER_FILE = "run.json"

_BLOCK_BYTES = 1 << 20


def sha256_hex(path: str) -> str:
    """The SHA-256 of the file's bytes as 64 hex digits (what ``sha256sum`` prints), read in 1 MiB blocks.

    Raises:
        InputError: the file cannot be read.
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(_BLOCK_BYTES), b""):
                digest.update(block)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file to checksum it: {exc.strerror}") from exc
    return digest.hexdigest()


def sha256_file(path: str) -> str:
    """``"sha256:<hex>"``: how provenance records and run folders name a file's content."""
    return "sha256:" + sha256_hex(path)


def checkpoint_id(checkpoint_dir: str) -> str:
    """``"<folder name>@sha256:<hex>"`` identifying a checkpoint folder by its weights.

    A checkpoint of a fine-tuning run folder is named by its run: ``"<run>/best@sha256:..."``.

    With one weights file the hex is that file's SHA-256, so ``sha256sum model.safetensors``
    verifies it. With several shards it is the SHA-256 of the text ``sha256sum`` prints for them
    in name order (``"<hex>  <name>\\n"`` per file), i.e. ``sha256sum *.safetensors | sha256sum``.
    """
    folder = os.path.abspath(checkpoint_dir)
    if not os.path.isdir(folder):
        raise CheckpointError(f"{checkpoint_dir}: checkpoint folder does not exist; check --checkpoint")
    weights = sorted(glob.glob(os.path.join(glob.escape(folder), WEIGHTS_PATTERN)))
    if not weights:
        raise CheckpointError(
            f"{checkpoint_dir}: no {WEIGHTS_PATTERN} weights file in the checkpoint folder; "
            "point --checkpoint at a folder written by isoformer"
        )
    hexes = [sha256_hex(path) for path in weights]
    if len(weights) == 1:
        hex_id = hexes[0]
    else:
        listing = "".join(f"{hex_}  {os.path.basename(path)}\n" for hex_, path in zip(hexes, weights))
        hex_id = hashlib.sha256(listing.encode("utf-8")).hexdigest()
    name = os.path.basename(folder)
    run_dir = os.path.dirname(folder)
    if os.path.isfile(os.path.join(run_dir, RUN_FOLDER_FILE)):
        name = f"{os.path.basename(run_dir)}/{name}"
    return f"{name}@sha256:{hex_id}"


def units_label(target_units):
    """How outputs state a checkpoint's target units ("log1p_tpm" is written log(TPM+1))."""
    return PREDICTION_UNITS if target_units == "log1p_tpm" else target_units


def recorded_command_line(args):
    """The command line to record: ``"isoformer " + args`` shell-quoted, without ``--resume``.

    ``args`` are the arguments after the program name (``sys.argv[1:]``); the program's own
    path is replaced by ``isoformer`` because it differs between installs, not between runs.
    """
    kept = [arg for arg in args if arg != RESUME_OPTION]
    return shlex.join(["isoformer", *kept])


def build_provenance(args, checkpoint_dir, inputs, units=PREDICTION_UNITS, demo=False, tool_version=__version__,
                     demo_derived=False):
    """Build the provenance dict of one run (layout in the module docstring).

    Args:
        args: command-line arguments after the program name (``sys.argv[1:]``).
        checkpoint_dir: the checkpoint folder, identified with :func:`checkpoint_id`; None for a run
            without a model (a shard of ``isoformer triples``), whose provenance then has neither
            ``checkpoint_id`` nor ``demo``.
        inputs: ``{role: path}`` of the input files, e.g. ``{"genome": ..., "annotation": ...}``;
            each is hashed with :func:`sha256_file`. Roles are recorded in sorted order.
        units: the values' units (the checkpoint's target units); ``None`` leaves the key out.
        demo: True when the checkpoint is the bundled demo, whose numbers are not biology.
        demo_derived: True when the checkpoint was fine-tuned from the demo (random-weight encoders): recorded
            as ``"demo": true`` and ``"demo_derived": true`` (the key is absent otherwise).
    """
    provenance = {
        "format_version": FORMAT_VERSION,
        "tool": "isoformer",
        "tool_version": tool_version,
        "command_line": recorded_command_line(args),
    }
    if checkpoint_dir is not None:
        provenance["checkpoint_id"] = checkpoint_id(checkpoint_dir)
    provenance["inputs"] = {role: sha256_file(path) for role, path in sorted(inputs.items())}
    if units is not None:
        provenance["units"] = units
    if checkpoint_dir is not None:
        provenance["demo"] = bool(demo or demo_derived)
        if demo_derived:
            provenance["demo_derived"] = True
    return provenance


def demo_warning(provenance):
    """The one-line warning every demo output carries, or ``None`` for a real checkpoint."""
    if provenance.get("demo_derived"):
        return (
            f"checkpoint {provenance.get('checkpoint_id', '')} was fine-tuned from the DEMO checkpoint, whose "
            "encoders have random weights: these numbers are not biological predictions; use a real checkpoint "
            "for analysis"
        )
    if provenance.get("demo"):
        return (
            f"DEMO checkpoint {provenance.get('checkpoint_id', '')}: these numbers are not "
            "biological predictions; use a real checkpoint for analysis"
        )
    return None
