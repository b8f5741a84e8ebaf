"""One writer per output: an exclusive lock beside every output file or folder, held for the whole run.

Lock file: ``.NAME.isoformer-lock`` in the folder that holds the output ``NAME`` (for a symbolic
link, beside the file it points to), locked with ``flock(LOCK_EX | LOCK_NB)`` and holding the
writer's process id. Consequences:

* a second run on the same output fails at once, naming the process that holds it; it never
  writes the first run's partial output or its finished file;
* the kernel releases the lock when the process ends, however it ends: after ``kill -9`` the lock
  file stays behind unlocked, and the next run (``--resume`` included) simply takes it;
* a run that finishes removes the lock file while still holding it. A run that opened the file
  just before checks, once locked, that the path still names the file it locked, and starts over
  otherwise, so two runs can never both hold the lock of one output.

Locks are re-entrant within one process: a command locks all its outputs up front (so a second run
fails before any work), and the writers lock again. Only the process that took a lock releases it:
forked worker processes inherit it but never remove it. Standard output, descriptors, FIFOs and
character devices keep no partial state and are not locked. On a filesystem without ``flock``
the run goes on unlocked.
"""

import contextlib
import errno
import fcntl
import logging
import os

from isoformer_cli.errors import OutputError
from isoformer_cli.formats.targets import STDOUT, classify_output, remove_stale_temporaries

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".isoformer-lock"

# lock file path -> _HeldLock, for the locks this process holds.
_HELD: dict[str, "_HeldLock"] = {}


def lock_path_for(path):
    """The lock file of an output file or folder at ``path`` (resolved: the file actually written)."""
    folder, name = os.path.split(os.path.realpath(path))
    return os.path.join(folder, f".{name}{LOCK_SUFFIX}")


class _HeldLock:
    """A lock this process holds: its file, locked descriptor, owner process and re-entry count."""

    def __init__(self, path, descriptor):
        self.path = path
        self.descriptor = descriptor
        self.owner = os.getpid()
        self.count = 1


class OutputLock:
    """A taken lock (see :func:`acquire_output_lock`); ``release()`` gives it back once."""

    def __init__(self, held, new):
        self._held = held
        self.new = new  # False when this process already held it (a re-entrant acquisition)

    def release(self):
        held, self._held = self._held, None
        if held is None or held.owner != os.getpid():
            return
        held.count -= 1
        if held.count:
            return
        _HELD.pop(held.path, None)
        if held.descriptor is not None:
            # Removed while still locked: see the module docstring.
            with contextlib.suppress(OSError):
                os.remove(held.path)
            os.close(held.descriptor)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.release()

    def __del__(self):
        # A writer dropped without finishing (as a test simulates a kill) no longer writes.
        with contextlib.suppress(Exception):
            self.release()


def acquire_output_lock(path, shown=None):
    """Lock the output file or folder at ``path`` for this process; returns an :class:`OutputLock`.

    Raises OutputError at once when another process holds it. ``shown`` is the name used in
    messages (default ``path``).
    """
    lock_path = lock_path_for(path)
    held = _HELD.get(lock_path)
    if held is not None and held.owner == os.getpid():
        held.count += 1
        return OutputLock(held, new=False)
    descriptor = _take(lock_path, shown or path)
    held = _HeldLock(lock_path, descriptor)
    _HELD[lock_path] = held
    return OutputLock(held, new=True)


def lock_target(target):
    """Lock a file :class:`~isoformer_cli.formats.targets.OutputTarget`; None for a direct target.

    Taking the lock (not re-entering it) also removes the temporary files killed runs left.
    """
    if not target.is_file:
        return None
    lock = acquire_output_lock(target.real_path, shown=target.path)
    if lock.new:
        remove_stale_temporaries(target)
    return lock


def _take(lock_path, shown):
    """The locked descriptor of ``lock_path`` (None where the filesystem has no flock)."""
    while True:
        try:
            descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise OutputError(f"{shown}: cannot create the lock file {lock_path}: {exc.strerror}") from exc
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(descriptor)
            os.close(descriptor)
            raise OutputError(
                f"{shown}: another isoformer run{f' (process {owner})' if owner else ''} is writing this "
                "output; wait for it to finish, or choose another output path"
            ) from None
        except OSError as exc:
            os.close(descriptor)
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                log.debug("%s: no file locking on this filesystem (%s); writing unlocked", shown, exc.strerror)
                return None
            raise OutputError(f"{shown}: cannot lock {lock_path}: {exc.strerror}") from exc
        try:
            same = os.path.samestat(os.fstat(descriptor), os.stat(lock_path))
        except FileNotFoundError:
            same = False
        if not same:
            # The previous holder removed the file between our open and our lock: take the new one.
            os.close(descriptor)
            continue
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode("ascii"))
        return descriptor


def _read_owner(descriptor):
    try:
        text = os.pread(descriptor, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""


def lock_outputs(*paths, folders=()):
    """Lock every output file in ``paths`` and output folder in ``folders``; an ExitStack releasing them.

    ``None``, ``-`` and direct targets (descriptors, FIFOs, character devices) are skipped. Taking
    a file's lock also removes the temporary files killed runs left for it.
    """
    stack = contextlib.ExitStack()
    try:
        for path in paths:
            if not path or path == STDOUT:
                continue
            lock = lock_target(classify_output(path))
            if lock is not None:
                stack.enter_context(lock)
        for folder in folders:
            # A folder whose parent is missing or unwritable is refused by its writer, with the fix.
            parent = os.path.dirname(os.path.realpath(folder)) if folder else None
            if parent and os.path.isdir(parent) and os.access(parent, os.W_OK):
                stack.enter_context(acquire_output_lock(folder))
    except BaseException:
        stack.close()
        raise
    return stack
