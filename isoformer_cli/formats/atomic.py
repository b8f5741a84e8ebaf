"""Write output files so that a failed or killed run never leaves a half-written target.

Data goes to a hidden temporary file in the target's own folder (so the final ``os.replace`` is an
atomic rename on the same filesystem) and is renamed over the target only when the writer finished
without error. On an exception the temporary file is removed; on ``kill -9`` it stays behind under
its temporary name, and the target path is never touched.
"""

import contextlib
import gzip
import io
import logging
import os
import sys

from isoformer_cli.errors import OutputError

log = logging.getLogger(__name__)

STDOUT = "-"


def temporary_path_for(target):
    """Name of the temporary file used while ``target`` is being written (same folder)."""
    folder, name = os.path.split(os.path.abspath(target))
    return os.path.join(folder, f".{name}.isoformer-partial")


def check_writable(target):
    """Fail early, before any work, when ``target``'s folder is missing or not writable."""
    if target == STDOUT:
        return
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise OutputError(f"{target}: output folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{target}: output folder {folder} is not writable; choose another -o path")
    if os.path.isdir(target):
        raise OutputError(f"{target}: is a folder; give a file name for the output")


@contextlib.contextmanager
def atomic_path(target):
    """Yield a temporary path to write; rename it to ``target`` when the block succeeds.

    For writers that need a path rather than a stream (h5py, safetensors).
    """
    check_writable(target)
    partial = temporary_path_for(target)
    try:
        yield partial
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(partial)
        raise
    replace_into_place(partial, target)
    log.debug("wrote %s", target)


def replace_into_place(built, target):
    """Atomically move a finished file over ``target``; OutputError (and ``built`` removed) when that fails."""
    try:
        os.replace(built, target)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.remove(built)
        raise OutputError(f"{target}: cannot move the finished output into place: {exc.strerror}") from exc


@contextlib.contextmanager
def atomic_text_output(target, compresslevel=9):
    """Yield a text stream for ``target``: ``-`` is stdout, ``*.gz`` is gzip-compressed.

    The stream uses ``\\n`` line endings and UTF-8 whatever the platform. ``compresslevel``
    (1 fastest ... 9 smallest) applies to ``*.gz``; large tables write far faster at 6.
    """
    if target == STDOUT:
        yield sys.stdout
        sys.stdout.flush()
        return
    with atomic_path(target) as partial:
        try:
            raw = open(partial, "wb")
        except OSError as exc:
            raise OutputError(f"{target}: cannot write: {exc.strerror}") from exc
        with raw:
            # mtime=0 and no embedded file name keep gzip output byte-identical between runs.
            binary = raw
            if target.endswith(".gz"):
                binary = gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=compresslevel, mtime=0)
            with binary, io.TextIOWrapper(binary, encoding="utf-8", newline="\n") as text:
                yield text
