"""Writing a checkpoint folder of our format atomically: ``config.json`` and ``model.safetensors`` go into a
hidden temporary folder beside the target, which is renamed into place at the end, so a failed save never leaves
a half-written checkpoint.
"""

import contextlib
import logging
import os
import shlex
import shutil
import sys
import tempfile

from safetensors.torch import save_file

from isoformer_cli import __version__
from isoformer_cli.errors import OutputError
from isoformer_cli.models.checkpoint.schema import CONFIG_FILE, WEIGHTS_FILE
from isoformer_cli.models.checkpoint.weights import tensor_aliases

log = logging.getLogger(__name__)


def checkpoint_state(model):
    """``{name: contiguous CPU tensor}`` of every parameter and persistent buffer, one name per tensor."""
    aliases = tensor_aliases(model)
    return {
        name: tensor.detach().to("cpu").contiguous()
        for name, tensor in model.state_dict().items()
        if aliases[name] == name
    }


def save_checkpoint(model, folder, overwrite=False, metadata=None, on_written=None):
    """Write ``model`` as ``folder/config.json`` + ``folder/model.safetensors``, atomically.

    Refuses an existing non-empty ``folder`` unless ``overwrite``. The safetensors header records
    ``format: pt``, the tool version and the command line, plus ``metadata`` (str -> str: provenance).
    ``on_written(partial_folder)``, when given, runs after both files are written and before the folder is
    moved into place (to add files that describe them, such as a manifest with their checksums); if it
    raises, nothing is written.
    """
    header = {"format": "pt", "isoformer_version": __version__, "command_line": shlex.join(sys.argv)}
    header.update({str(key): str(value) for key, value in (metadata or {}).items()})
    with atomic_folder(folder, overwrite=overwrite) as partial:
        model.config.to_json_file(os.path.join(partial, CONFIG_FILE), use_diff=False)
        save_file(checkpoint_state(model), os.path.join(partial, WEIGHTS_FILE), metadata=header)
        if on_written is not None:
            on_written(partial)
    log.info("wrote checkpoint %s", folder)


def _default_permissions(folder):
    """Give ``folder`` and its files the permissions of a plain mkdir/open under the umask.

    ``mkdtemp`` makes a private 0700 folder; a checkpoint is usually shared within a lab.
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for entry in os.scandir(folder):
        if entry.is_file(follow_symlinks=False):
            os.chmod(entry.path, 0o666 & ~umask)


def check_folder_target(target, overwrite=False):
    """OutputError when ``target`` cannot become a new checkpoint folder; its absolute path otherwise.

    Its parent must exist and be writable; an existing ``target`` must be a folder, and empty
    unless ``overwrite``. (A FIFO or file there is refused, never replaced.)
    """
    target = os.path.abspath(os.fspath(target))
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        raise OutputError(f"{target}: output folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{target}: folder {parent} is not writable; choose another output path")
    if os.path.lexists(target):
        if not os.path.isdir(target):
            raise OutputError(f"{target}: exists and is not a folder; choose another output path")
        if os.listdir(target) and not overwrite:
            raise OutputError(f"{target}: folder exists and is not empty; choose a new output folder or use --force")
    return target


@contextlib.contextmanager
def atomic_folder(target, overwrite=False):
    """Yield a hidden temporary folder beside ``target``; rename it to ``target`` when the block succeeds.

    An existing empty folder at ``target`` is replaced; an existing non-empty one only with
    ``overwrite`` (the old content is removed once the new folder is in place). On any exception the
    temporary folder is removed and ``target`` is untouched.
    """
    target = check_folder_target(target, overwrite)
    parent, name = os.path.split(target)
    partial = tempfile.mkdtemp(prefix=f".{name}.", suffix=".isoformer-partial", dir=parent)
    try:
        yield partial
        _default_permissions(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    previous = None
    try:
        if os.path.exists(target):
            # Move the old folder aside first: rename() cannot replace a non-empty folder.
            previous = tempfile.mkdtemp(prefix=f".{name}.", suffix=".isoformer-old", dir=parent)
            os.replace(target, os.path.join(previous, "old"))
        os.replace(partial, target)
    except OSError as exc:
        if previous is not None and os.path.exists(os.path.join(previous, "old")) and not os.path.exists(target):
            os.replace(os.path.join(previous, "old"), target)
        shutil.rmtree(partial, ignore_errors=True)
        raise OutputError(f"{target}: cannot move the finished checkpoint into place: {exc.strerror}") from exc
    finally:
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
