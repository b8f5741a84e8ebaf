"""The outputs of a model run (``predict``, ``embed``, ``variants``): checked before anything is read, locked for
the whole run, and written through a writer that finishes, keeps (for ``--resume``) or removes its file.

Rank 0 is the only process that writes: on other torchrun ranks the lock and the writer are no-ops.
"""

import contextlib
from collections.abc import Mapping
from typing import Any, ContextManager

from isoformer_cli.errors import OutputError
from isoformer_cli.formats.atomic import STDOUT, check_writable
from isoformer_cli.formats.collisions import refuse_shared_files
from isoformer_cli.formats.locks import lock_outputs
from isoformer_cli.formats.streaming import refuse_resume_of_direct
from isoformer_cli.formats.targets import classify_output
from isoformer_cli.models.checkpoint.check import CheckedCheckpoint
from isoformer_cli.runtime.distributed import is_main_process


def check_outputs(config: Any, outputs: Mapping[str, str | None], checked: CheckedCheckpoint) -> None:
    """Before anything is read: no output is an input or another output, and each can be written.

    Args:
        config: a :class:`~isoformer_cli.app.predict.ModelRunConfig` (its source, ``output`` and ``resume``).
        outputs: option -> path of every output (None: not asked for).
        checked: the located checkpoint, whose files are inputs too.

    Raises:
        OutputError: an output is an input or another output, cannot be written, or ``--resume`` is asked of
            an output that cannot be resumed (standard output, a FIFO, a device).
    """
    inputs = config.source.input_files() + checked.files()
    refuse_shared_files(inputs, outputs)
    for path in outputs.values():
        if path:
            check_writable(path)
    if config.resume and config.output == STDOUT:
        raise OutputError("--resume needs an output file (-o FILE): standard output cannot be resumed")
    if config.resume:
        refuse_resume_of_direct(classify_output(config.output), resume=True)


def locked(*outputs: str | None) -> ContextManager[Any]:
    """The outputs locked for the whole run (on rank 0, the only one that writes)."""
    return lock_outputs(*outputs) if is_main_process() else contextlib.nullcontext()


def writing(writer: ContextManager[Any] | None) -> ContextManager[Any]:
    """The writer as a context manager (finish / keep for --resume / remove), or nothing on other ranks."""
    return writer if writer is not None else contextlib.nullcontext()
