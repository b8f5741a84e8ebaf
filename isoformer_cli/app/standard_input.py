"""Inputs read from standard input (``-``): copied to a temporary file before the run starts.

Why a copy rather than reading the stream directly: a run reads its inputs more than once (the VCF is checked
in one pass before the model loads; a triples table is checksummed for the output's provenance, which
``--resume`` compares, and then read again), and data loader workers each open the file. The copy lives in
its own temporary folder and is removed when the run ends however it ends; an error message that names
the copy names ``standard input`` instead (``standard input (--triples -):12: ...``).

Under torchrun every rank would need the same bytes, but only one process can read a pipe: a stream input is
refused there, on every rank, so that none waits for another.
"""

import contextlib
import os
import shutil
import sys
import tempfile

from isoformer_cli.errors import InputError, IsoformerError
from isoformer_cli.runtime.distributed import launched_by_torchrun

STDIN = "-"
COPY_BLOCK_BYTES = 1 << 20


@contextlib.contextmanager
def spooled_standard_input(path: str | None, option: str, suffix: str = ""):
    """Yield ``path``, or for ``-`` the path of a temporary copy of standard input (removed afterwards).

    Args:
        path: the option's value.
        option: the option's name, for messages (``--triples``).
        suffix: the copy's suffix (``.tsv``, ``.vcf``), so readers that look at it see the right format.
    """
    if path != STDIN:
        yield path
        return
    if launched_by_torchrun():
        raise InputError(f"{option} - (standard input) cannot be shared among torchrun ranks; give a file")
    folder = tempfile.mkdtemp(prefix="isoformer-stdin-")
    copy = os.path.join(folder, f"standard-input{suffix}")
    try:
        with open(copy, "wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out, COPY_BLOCK_BYTES)
        yield copy
    except IsoformerError as exc:
        text = str(exc)
        if copy not in text:
            raise
        raise type(exc)(text.replace(copy, f"standard input ({option} -)")) from exc
    finally:
        shutil.rmtree(folder, ignore_errors=True)
