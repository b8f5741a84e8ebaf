"""Inputs read from standard input (``-``): copied to a temporary file before the run starts.

Why a copy rather than reading the stream directly: a run reads its inputs more than once (the VCF is checked
in one pass before the model loads; a triples table is checksummed for the output's provenance, which
``--resume`` compares, and then read again), and data loader workers each open the file. The copy is hashed
while it is written (:attr:`SpooledInput.checksum`), so the provenance does not read it once more. It lives in
its own temporary folder and is removed when the run ends however it ends; an error message that names
the copy names ``standard input`` instead (``standard input (--triples -):12: ...``).

Under torchrun every rank would need the same bytes, but only one process can read a pipe: a stream input is
refused there, on every rank, so that none waits for another.
"""

import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass

from isoformer_cli.errors import InputError, IsoformerError
from isoformer_cli.runtime.distributed import launched_by_torchrun

STDIN = "-"
COPY_BLOCK_BYTES = 1 << 20


@dataclass(frozen=True)
class SpooledInput:
    """An input as a run reads it.

    Attributes:
        path: the option's value, or for ``-`` the temporary copy of standard input.
        checksum: for a copy, ``"sha256:<hex>"`` of its bytes (what
            :func:`~isoformer_cli.formats.provenance.sha256_file` would read it again to compute), taken while
            it was written; None for a named file (hashed when the provenance is built).
    """

    path: str | None
    checksum: str | None = None

    def known_checksums(self) -> dict[str, str]:
        """``{path: checksum}`` for :func:`~isoformer_cli.formats.provenance.build_provenance` (empty for a
        named file)."""
        return {self.path: self.checksum} if self.checksum is not None and self.path is not None else {}


@contextlib.contextmanager
def spooled_standard_input(path: str | None, option: str, suffix: str = ""):
    """Yield a :class:`SpooledInput`: ``path`` itself, or for ``-`` a temporary copy of standard input (removed
    afterwards) with the checksum of its bytes.

    Args:
        path: the option's value.
        option: the option's name, for messages (``--triples``).
        suffix: the copy's suffix (``.tsv``, ``.vcf``), so readers that look at it see the right format.
    """
    if path != STDIN:
        yield SpooledInput(path)
        return
    if launched_by_torchrun():
        raise InputError(f"{option} - (standard input) cannot be shared among torchrun ranks; give a file")
    folder = tempfile.mkdtemp(prefix="isoformer-stdin-")
    copy = os.path.join(folder, f"standard-input{suffix}")
    try:
        digest = hashlib.sha256()
        with open(copy, "wb") as out:
            for block in iter(lambda: sys.stdin.buffer.read(COPY_BLOCK_BYTES), b""):
                digest.update(block)
                out.write(block)
        yield SpooledInput(copy, "sha256:" + digest.hexdigest())
    except IsoformerError as exc:
        text = str(exc)
        if copy not in text:
            raise
        raise type(exc)(text.replace(copy, f"standard input ({option} -)")) from exc
    finally:
        shutil.rmtree(folder, ignore_errors=True)
