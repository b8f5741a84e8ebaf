"""Refuse, before anything is read, an output that would overwrite an input or another output.

Every command calls :func:`refuse_shared_files` first with its inputs and outputs by option name.
Two paths are the same file when they resolve to the same path (symbolic links and ``..``
followed) or, both existing, have the same device and inode (hard links). An input inside an
output *folder* (a fine-tuning run, a checkpoint) is refused as well, since that folder is
written and may be replaced as a whole.

Never refused: ``-``, descriptors (``/dev/stdout``, ``/dev/fd/N``) and character devices
(``/dev/null``): writing to them cannot destroy a file, and ``-o /dev/null --gene-summary
/dev/null`` is a fair way to time a run.
"""

import os
import stat

from isoformer_cli.errors import OutputError
from isoformer_cli.formats.targets import STDOUT, descriptor_number


def refuse_shared_files(inputs, outputs, output_folders=None):
    """OutputError (one line naming both options) when two of these paths are the same file.

    Args:
        inputs: ``{option: path}`` or ``(option, path)`` pairs of files the command reads.
        outputs: the same for the files it writes.
        output_folders: the same for folders it writes (an input inside one is refused).

    Empty and None paths are skipped, so callers can pass every option as it is.
    """
    inputs = _files(inputs)
    outputs = _files(outputs)
    folders = _files(output_folders)
    for out_option, out_path, out_key in outputs:
        for in_option, in_path, in_key in inputs:
            if _same(out_key, in_key):
                raise OutputError(f"{out_option} {out_path} is the same file as {in_option} {in_path}; "
                                  "choose another output path")
    for position, (option, path, key) in enumerate(outputs):
        for earlier_option, earlier_path, earlier_key in outputs[:position]:
            if _same(key, earlier_key):
                raise OutputError(f"{option} {path} is the same file as {earlier_option} {earlier_path}; "
                                  "choose another output path")
    for folder_option, folder, folder_key in folders:
        for in_option, in_path, in_key in inputs:
            if _same(in_key, folder_key):
                raise OutputError(f"{folder_option} {folder} is the same as {in_option} {in_path}; "
                                  "choose another output folder")
            if _inside(in_key[0], folder_key[0]):
                raise OutputError(f"{folder_option} {folder} holds {in_option} {in_path}, and the run writes "
                                  "into that folder; keep inputs outside it or choose another output folder")


def _files(pairs):
    """``(option, path, identity)`` of every path that could be destroyed by writing (see above)."""
    if pairs is None:
        return []
    items = pairs.items() if hasattr(pairs, "items") else pairs
    files = []
    for option, path in items:
        if not path or path == STDOUT or descriptor_number(os.fspath(path)) is not None:
            continue
        path = os.fspath(path)
        identity = _identity(path)
        if identity[1] is not None and stat.S_ISCHR(identity[1][2]):
            continue
        files.append((option, path, identity))
    return files


def _identity(path):
    """``(resolved path, (device, inode, mode) or None when it does not exist)``."""
    real = os.path.realpath(path)
    try:
        info = os.stat(real)
    except OSError:
        return real, None
    return real, (info.st_dev, info.st_ino, info.st_mode)


def _same(first, second):
    if first[0] == second[0]:
        return True
    return first[1] is not None and second[1] is not None and first[1][:2] == second[1][:2]


def _inside(path, folder):
    return path.startswith(folder.rstrip(os.sep) + os.sep)
