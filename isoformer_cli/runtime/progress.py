"""Progress bars: shown only on an interactive stderr, and never with ``--quiet``.

Library code calls :func:`progress` instead of ``tqdm`` directly; the command-line layer decides
once, through :func:`configure_progress`, whether bars are drawn at all.
"""

import sys

from tqdm.auto import tqdm

_progress_enabled = False


def configure_progress(enabled):
    """Turn progress bars on or off for the whole process (the CLI calls this once)."""
    global _progress_enabled
    _progress_enabled = bool(enabled)


def progress_enabled():
    """True when bars should be drawn: enabled by the CLI and stderr is a terminal."""
    return _progress_enabled and sys.stderr.isatty()


def progress(iterable=None, **tqdm_kwargs):
    """Wrap ``iterable`` in a tqdm bar on stderr, or a disabled one when bars are off."""
    tqdm_kwargs.setdefault("file", sys.stderr)
    tqdm_kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, disable=not progress_enabled(), **tqdm_kwargs)
