"""The one opener of plain-or-gzip inputs, and the one report of a damaged compressed stream.

:func:`open_binary` / :func:`open_text` open a file that may be gzip-compressed (BGZF included: it is
gzip), recognised by its first two bytes, never by its name; a file that is missing, a folder or not
readable is an error of the caller's class naming the file and its role ("annotation file").

gzip readers signal a cut-off download with ``EOFError`` (which a command line would take for an
interrupted run), and damage with ``zlib.error`` or ``gzip.BadGzipFile``; python-isal has its own
error class. :func:`compressed_read_errors` wraps a reading loop and turns any of them, and text
that is not UTF-8, into one :class:`~isoformer_cli.errors.InputError` naming the file.
"""

import contextlib
import gzip
import io
import os
import zlib
from collections.abc import Iterator
from typing import IO, Any, cast

from isoformer_cli.errors import InputError

_igzip_threaded: Any
_IsalError: Any  # python-isal's stub types its error class as an instance
try:  # python-isal, used by the annotation reader when installed
    from isal import igzip_threaded as _igzip_threaded
    from isal.isal_zlib import error as _IsalError
except ImportError:  # pragma: no cover - without python-isal, zlib's error is the only one
    _igzip_threaded = None
    _IsalError = zlib.error

#: The first two bytes of a gzip member (RFC 1952), and so of a BGZF file.
GZIP_MAGIC = b"\x1f\x8b"

COMPRESSED_STREAM_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile, _IsalError)


def is_gzip_file(path: str) -> bool:
    """Whether ``path`` starts with the gzip magic bytes (False for a file that cannot be read)."""
    try:
        with open(path, "rb") as raw:
            return raw.read(2) == GZIP_MAGIC
    except OSError:
        return False


def _indefinite(what: str) -> str:
    return f"{'an' if what[:1] in 'aeiou' else 'a'} {what}"


def open_binary(path: str, what: str, *, error: type[InputError] = InputError, threaded: bool = False,
                buffering: int = -1) -> IO[bytes]:
    """A binary stream of ``path``, inflated when its first bytes are gzip's.

    Args:
        path: the file (plain, gzip or BGZF).
        what: its role in messages ("annotation file", "expression table").
        error: the InputError subclass raised for a file that cannot be opened.
        threaded: inflate gzip in a background thread with python-isal when it is installed (the GIL is
            released while inflating, so a whole-file pass costs little more than on the plain file).
        buffering: buffer size of a plain file (``open``'s argument).

    Raises:
        ``error``: the file is missing, a folder, not readable, or cannot be opened.
    """
    try:
        if os.path.isdir(path):
            raise error(f"{path}: is a folder, not {_indefinite(what)}")
        with open(path, "rb") as raw:
            magic = raw.read(2)
        if magic != GZIP_MAGIC:
            return open(path, "rb", buffering=buffering)
        if threaded and _igzip_threaded is not None:
            return _igzip_threaded.open(path, "rb", threads=1)
        return cast(IO[bytes], gzip.open(path, "rb"))  # a GzipFile is a binary stream
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except PermissionError:
        raise error(f"{path}: permission denied; make the {what} readable (chmod +r)") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None


def open_text(path: str, what: str, *, error: type[InputError] = InputError, threaded: bool = False,
              newline: str | None = "", errors: str = "strict", buffering: int = -1) -> io.TextIOWrapper:
    """A UTF-8 text stream of a plain or gzip file (:func:`open_binary`; ``newline`` and ``errors`` as for
    ``open``: the default ``newline=""`` keeps each line's ``\\r\\n``)."""
    return io.TextIOWrapper(open_binary(path, what, error=error, threaded=threaded, buffering=buffering),
                            encoding="utf-8", errors=errors, newline=newline)


@contextlib.contextmanager
def compressed_read_errors(path: str, what: str) -> Iterator[None]:
    """Turn a damaged compressed stream (or non-UTF-8 text) read inside the block into InputError.

    ``what`` names the file's role in the message ("triples table", "prediction table").
    """
    try:
        yield
    except COMPRESSED_STREAM_ERRORS as exc:
        raise InputError(
            f"{path}: the {what} is truncated or corrupt ({exc or type(exc).__name__}); download or write it "
            f"again (test a gzip file with `gzip -t {path}`)"
        ) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: the {what} is not UTF-8 text (byte {exc.start}: {exc.reason}); is it the "
                         "right file?") from None
