"""Reading compressed tables: a truncated or corrupt stream is bad input, reported as such.

gzip readers signal a cut-off download with ``EOFError`` (which a command line would take for an
interrupted run), and damage with ``zlib.error`` or ``gzip.BadGzipFile``; python-isal has its own
error class. :func:`compressed_read_errors` wraps a reading loop and turns any of them, and text
that is not UTF-8, into one :class:`~isoformer_cli.errors.InputError` naming the file.
"""

import contextlib
import gzip
import zlib

from isoformer_cli.errors import InputError

try:  # python-isal, used by the annotation reader when installed
    from isal.isal_zlib import error as _IsalError
except ImportError:  # pragma: no cover - without python-isal, zlib's error is the only one
    _IsalError = zlib.error

COMPRESSED_STREAM_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile, _IsalError)


@contextlib.contextmanager
def compressed_read_errors(path, what):
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
