"""Write output files so that a failed or killed run never leaves a half-written target.

Data for a file target goes to a hidden temporary file in the target's own folder, unique to the
run (so the final ``os.replace`` is an atomic rename on the same filesystem, and two runs never
share one), and is renamed over the target only when the writer finished without error. On an
exception the temporary file is removed; on ``kill -9`` it stays behind under its temporary name
(the next run on the target removes it), and the target path is never touched. While a file is
written its lock is held (:mod:`isoformer_cli.formats.locks`).

Standard output, descriptors, FIFOs and character devices are written directly, and symbolic
links are written through: the policy is :mod:`isoformer_cli.formats.targets`.
"""

import contextlib
import gzip
import io
import logging
import os
import sys

from isoformer_cli.errors import OutputError
from isoformer_cli.formats.locks import lock_target
from isoformer_cli.formats.targets import (
    STDOUT,
    classify_output,
    create_temporary_file,
    open_direct,
    publish,
    resumable_partial_path,
)

log = logging.getLogger(__name__)

__all__ = ["STDOUT", "atomic_path", "atomic_text_output", "check_writable", "replace_into_place",
           "temporary_path_for"]


def temporary_path_for(target):
    """The stable partial file a streaming writer keeps beside ``target`` (found again by ``--resume``)."""
    return resumable_partial_path(classify_output(target))


def check_writable(target):
    """Fail early, before any work, when ``target`` cannot be written (see ``classify_output``)."""
    classify_output(target)


@contextlib.contextmanager
def atomic_path(target):
    """Yield a temporary path to write; move it to ``target`` when the block succeeds.

    For writers that need a path rather than a stream (h5py, matplotlib). A direct target
    (FIFO, device, descriptor) gets the finished file's bytes copied in.
    """
    output = classify_output(target)
    lock = lock_target(output)
    try:
        partial = create_temporary_file(output)
        try:
            yield partial
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.remove(partial)
            raise
        publish(partial, output)
    finally:
        if lock is not None:
            lock.release()
    log.debug("wrote %s", target)


def replace_into_place(built, target):
    """Move a finished file to ``target`` (atomic rename, or a copy into a direct target).

    OutputError, and ``built`` removed, when that fails.
    """
    publish(built, classify_output(target))


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
    output = classify_output(target)
    if output.is_direct:
        with open_direct(output) as raw, _text_stream(raw, target, compresslevel) as text:
            yield text
        return
    with atomic_path(target) as partial:
        try:
            raw = open(partial, "wb")
        except OSError as exc:
            raise OutputError(f"{target}: cannot write: {exc.strerror}") from exc
        with raw, _text_stream(raw, target, compresslevel) as text:
            yield text


@contextlib.contextmanager
def _text_stream(raw, target, compresslevel):
    # mtime=0 and no embedded file name keep gzip output byte-identical between runs.
    binary = raw
    if target.endswith(".gz"):
        binary = gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=compresslevel, mtime=0)
    with binary, io.TextIOWrapper(binary, encoding="utf-8", newline="\n") as text:
        yield text
