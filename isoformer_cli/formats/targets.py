"""Output targets: what an output path is, and how to write it there without destroying anything.

Every writer of the tool classifies its target with :func:`classify_output` and follows one policy:

=========================  ==========================================================================
target                     how it is written
=========================  ==========================================================================
``-``                      standard output, as a stream
``/dev/stdout``,           the descriptor the path names (already open in this process, e.g. the
``/dev/fd/N``,             pipe of ``-o >(gzip > x.gz)``) is written directly; nothing is opened by
``/proc/self/fd/N``        name, renamed or removed
regular file (new or       a hidden temporary file beside it, unique to the run, is written and then
existing)                  renamed onto the path: the target is never half-written, and a replaced
                           file keeps its permission bits (and, where allowed, its owner)
symbolic link              the file the link finally points to is the target (as above); the link
                           itself stays
FIFO, character device     opened by name and written directly, never renamed over or removed (a
(``/dev/null``)            FIFO's reader gets the data); path-based writers (HDF5, plots) build in
                           the system's temporary folder and copy the finished bytes in
refused (OutputError)      a folder, a block device, a socket, a missing or unwritable folder
=========================  ==========================================================================

Standard output, descriptors, FIFOs and character devices are *direct* targets: what was written
before an error stays written (as with any stream), and they cannot be resumed.

Temporary files beside a file target (``NAME`` is the name of the file finally written):

* ``.NAME.isoformer-partial``: the resumable partial output of a streaming writer (prediction
  tables, HDF5 journals). Its name is stable so that ``--resume`` finds what a killed run left; it
  is only touched while the target's lock is held (:mod:`isoformer_cli.formats.locks`).
* ``.NAME.PID-RANDOM.isoformer-partial`` / ``.isoformer-building``: unique to one run, for files
  built whole and then renamed. A killed run leaves its own behind; the next run that takes the
  target's lock removes them (:func:`remove_stale_temporaries`).
"""

import contextlib
import os
import re
import secrets
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass
from typing import Optional

from isoformer_cli.errors import OutputError

STDOUT = "-"
PARTIAL_SUFFIX = ".isoformer-partial"
BUILDING_SUFFIX = ".isoformer-building"

# Paths that name a descriptor of this process rather than a file.
_DESCRIPTOR_ALIASES = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}
_DESCRIPTOR_PATH = re.compile(r"^(?:/dev/fd|/proc/(self|thread-self|\d+)/fd)/(\d+)$")
_COPY_BLOCK = 1 << 20


@dataclass(frozen=True)
class OutputTarget:
    """A classified output path (see the module docstring).

    Attributes:
        path: the path as given (for messages).
        kind: ``"stdout"``, ``"descriptor"``, ``"fifo"``, ``"character device"`` or ``"file"``.
        real_path: the file written, symbolic links resolved (file, FIFO, character device).
        descriptor: the descriptor number (kind ``"descriptor"``).
    """

    path: str
    kind: str
    real_path: Optional[str] = None
    descriptor: Optional[int] = None

    @property
    def is_file(self):
        """True for a regular file target, written by atomic rename."""
        return self.kind == "file"

    @property
    def is_direct(self):
        """True for targets written directly as a stream (everything but a regular file)."""
        return self.kind != "file"

    def description(self):
        """What the target is, for messages ("a FIFO", "standard output", ...)."""
        if self.kind == "descriptor":
            return f"file descriptor {self.descriptor}"
        return {"stdout": "standard output", "fifo": "a FIFO", "character device": "a character device",
                "file": "a file"}[self.kind]


def descriptor_number(path):
    """The descriptor a path like ``/dev/stdout`` or ``/dev/fd/63`` names, or None for other paths."""
    if path in _DESCRIPTOR_ALIASES:
        return _DESCRIPTOR_ALIASES[path]
    match = _DESCRIPTOR_PATH.match(path)
    if not match or match.group(1) not in (None, "self", "thread-self", str(os.getpid())):
        return None
    return int(match.group(2))


def classify_output(path):
    """Classify the output ``path`` (an :class:`OutputTarget`); OutputError for a refused target.

    Checks, before any work: a descriptor is open; a file's folder exists and is writable; the
    path is not a folder, block device or socket.
    """
    path = os.fspath(path)
    if path == STDOUT:
        return OutputTarget(path, "stdout")
    descriptor = descriptor_number(path)
    if descriptor is not None:
        try:
            os.fstat(descriptor)
        except OSError:
            raise OutputError(f"{path}: file descriptor {descriptor} is not open in this process; "
                              "choose another output path") from None
        return OutputTarget(path, "descriptor", descriptor=descriptor)
    real = os.path.realpath(path)
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise OutputError(f"{path}: cannot check the output path: {exc.strerror}") from None
    if mode is None or stat.S_ISREG(mode):
        _check_folder(path, os.path.dirname(real))
        return OutputTarget(path, "file", real_path=real)
    if stat.S_ISDIR(mode):
        raise OutputError(f"{path}: is a folder; give a file name for the output")
    if stat.S_ISFIFO(mode):
        return OutputTarget(path, "fifo", real_path=real)
    if stat.S_ISCHR(mode):
        return OutputTarget(path, "character device", real_path=real)
    what = "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
    raise OutputError(f"{path}: is {what}; write to a file, a FIFO or a character device instead")


def _check_folder(path, folder):
    if not os.path.isdir(folder):
        raise OutputError(f"{path}: output folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{path}: output folder {folder} is not writable; choose another output path")


def resumable_partial_path(target):
    """The stable ``.NAME.isoformer-partial`` beside a file target (what ``--resume`` continues)."""
    folder, name = os.path.split(target.real_path)
    return os.path.join(folder, f".{name}{PARTIAL_SUFFIX}")


def create_temporary_file(target, suffix=PARTIAL_SUFFIX):
    """Create a new, empty temporary file unique to this run for building ``target``; its path.

    Beside a file target (so the final rename stays on one filesystem); in the system's temporary
    folder for direct targets. The file gets the mode a new file gets (0666 less the umask).
    """
    if target.is_file:
        folder, name = os.path.split(target.real_path)
    else:
        folder, name = tempfile.gettempdir(), os.path.basename(target.path) or "output"
    while True:
        path = os.path.join(folder, f".{name}.{os.getpid()}-{secrets.token_hex(4)}{suffix}")
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise OutputError(f"{target.path}: cannot create a temporary file in {folder}: {exc.strerror}") from exc
        os.close(descriptor)
        return path


def remove_stale_temporaries(target):
    """Remove the unique temporary files earlier, killed runs left for ``target`` (a file target).

    Call only with the target's lock held: then no other run is writing them.
    """
    folder, name = os.path.split(target.real_path)
    pattern = re.compile(re.escape(f".{name}.") + r"\d+-[0-9a-f]{8}(?:"
                         + re.escape(PARTIAL_SUFFIX) + "|" + re.escape(BUILDING_SUFFIX) + ")$")
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if pattern.match(entry.name) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(OSError):
                os.remove(entry.path)


@contextlib.contextmanager
def open_direct(target):
    """A binary stream writing straight to a direct target (closed afterwards, except stdout)."""
    if target.kind == "stdout":
        sys.stdout.flush()
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    if target.kind == "descriptor":
        if target.descriptor in (1, 2):
            # Text already buffered for the same descriptor must come first.
            (sys.stdout if target.descriptor == 1 else sys.stderr).flush()
        try:
            stream = os.fdopen(os.dup(target.descriptor), "wb")
        except OSError as exc:
            raise OutputError(f"{target.path}: cannot write: {exc.strerror}") from exc
    else:
        try:
            # No O_CREAT / O_TRUNC: a FIFO or device is written as it is, never created or replaced.
            stream = os.fdopen(os.open(target.real_path, os.O_WRONLY | os.O_CLOEXEC), "wb")
        except OSError as exc:
            raise OutputError(f"{target.path}: cannot open {target.description()} for writing: "
                              f"{exc.strerror}") from exc
    with stream:
        yield stream


def publish(built, target):
    """Put the finished temporary file ``built`` at ``target``; ``built`` is gone afterwards.

    File targets: ``built`` takes the replaced file's permission bits and is renamed onto the
    (resolved) path. Direct targets: its bytes are copied in. OutputError when that fails.
    """
    try:
        if target.is_file:
            keep_metadata(built, target.real_path)
            os.replace(built, target.real_path)
            return
        with open_direct(target) as stream, open(built, "rb") as source:
            shutil.copyfileobj(source, stream, _COPY_BLOCK)
        os.remove(built)
    except BrokenPipeError:
        _remove_quietly(built)
        raise
    except OSError as exc:
        _remove_quietly(built)
        raise OutputError(f"{target.path}: cannot move the finished output into place: {exc.strerror}") from exc
    except BaseException:
        # Interrupted: a copy for a direct target is useless, but a file target's ``built`` may be a
        # resumable partial output, which --resume finishes.
        if target.is_direct:
            _remove_quietly(built)
        raise


def keep_metadata(built, existing):
    """Give ``built`` the permission bits (and, where allowed, owner and group) of ``existing``.

    A new file (``existing`` missing) keeps the mode it was created with.
    """
    try:
        info = os.stat(existing)
    except FileNotFoundError:
        return
    if (info.st_uid, info.st_gid) != (os.geteuid(), os.getegid()):
        # Only root may give a file away; others keep their own ownership, as editors do.
        with contextlib.suppress(OSError):
            os.chown(built, info.st_uid, info.st_gid)
    os.chmod(built, stat.S_IMODE(info.st_mode))


def _remove_quietly(path):
    with contextlib.suppress(OSError):
        os.remove(path)
