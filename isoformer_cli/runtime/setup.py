"""Starting and ending a model run: the device, the torchrun process group, determinism, progress bars.

Every command that runs the model (``predict``, ``embed``, ``variants``, ``finetune``) runs inside one block::

    with model_run(RuntimeOptions(device="auto")) as context:   # device, process group, precision
        ...

Under ``torchrun`` each process joins the process group (NCCL on GPU, gloo on CPU), takes the GPU of its
local rank, and only rank 0 draws progress bars.
"""

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from isoformer_cli.runtime import distributed
from isoformer_cli.runtime.determinism import make_deterministic
from isoformer_cli.runtime.device import resolve_device
from isoformer_cli.runtime.options import RuntimeOptions
from isoformer_cli.runtime.progress import configure_progress


@dataclass
class RunContext:
    """Where this process runs: ``device`` (``torch.device``), ``group`` (its place among torchrun ranks), the
    resolved ``precision`` (``"fp32"`` or ``"bf16"``) and ``max_memory`` (bytes, or None: see
    :mod:`isoformer_cli.runtime.memory`)."""

    device: torch.device
    group: distributed.ProcessGroup
    precision: str
    max_memory: int | None = None


def start_run(runtime: RuntimeOptions, seed: int = 0) -> RunContext:
    """Resolve the device, join the process group, set determinism; returns a :class:`RunContext`.

    Args:
        runtime: :class:`~isoformer_cli.runtime.options.RuntimeOptions`.
        seed: seed of every generator when ``runtime.deterministic`` is set.

    Raises:
        DeviceError: CUDA asked for but absent, or more ranks than GPUs.
    """
    device = resolve_device(runtime.device)
    group = distributed.init_process_group(device.type)
    if not group.is_main:
        configure_progress(False)  # one progress bar per run, drawn by rank 0
    if group.is_distributed and device.type == "cuda":
        device = torch.device("cuda", group.local_rank)
    if runtime.deterministic:
        make_deterministic(seed)
    precision = runtime.precision_on(device)
    if device.type == "cuda" and precision == "fp32":
        # fp32 asked for on a GPU means fp32: cuDNN convolutions (Enformer's) default to TF32, whose 10-bit
        # mantissa would make a GPU run differ from the CPU's by about 1e-3 instead of float rounding.
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
    return RunContext(device=device, group=group, precision=precision, max_memory=runtime.max_memory_bytes)


def end_run(context: RunContext, completed: bool) -> None:
    """Leave the process group (after a barrier when the run completed)."""
    distributed.shutdown(context.group, completed)


@contextlib.contextmanager
def model_run(runtime: RuntimeOptions, seed: int = 0) -> Iterator[RunContext]:
    """:func:`start_run`, the block, then :func:`end_run`: the barrier only when the block completed (an error or
    Ctrl-C on one rank must not leave the others waiting at it)."""
    context = start_run(runtime, seed)
    completed = False
    try:
        yield context
        completed = True
    finally:
        end_run(context, completed)
