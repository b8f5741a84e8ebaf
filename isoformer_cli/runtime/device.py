"""Compute device, numeric precision and determinism for model runs.

``--device auto`` picks the first CUDA device when one is usable and the CPU otherwise; naming
``cuda`` or ``cuda:N`` when CUDA is absent is an error rather than a silent fall-back, because a
user who asked for a GPU on a cluster node wants to know the job landed on the wrong node.
"""

import contextlib
import logging

import torch

from isoformer_cli.errors import DeviceError

log = logging.getLogger(__name__)

def resolve_device(requested="auto"):
    """Turn a ``--device`` value into a ``torch.device``; raise DeviceError when unavailable."""
    requested = (requested or "auto").strip().lower()
    if requested == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if requested == "cpu":
        return torch.device("cpu")
    if requested == "cuda" or requested.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"--device {requested}: CUDA is not available on this machine "
                f"(torch {torch.__version__}, built with CUDA {torch.version.cuda or 'none'}); "
                "use --device cpu, or run on a GPU node with a CUDA build of torch"
            )
        index = 0 if requested == "cuda" else _parse_cuda_index(requested)
        if index >= torch.cuda.device_count():
            raise DeviceError(
                f"--device {requested}: only {torch.cuda.device_count()} CUDA device(s) visible "
                "(check CUDA_VISIBLE_DEVICES)"
            )
        return torch.device("cuda", index)
    raise DeviceError(f"--device {requested}: expected auto, cpu, cuda or cuda:N")


def _parse_cuda_index(requested):
    try:
        index = int(requested.split(":", 1)[1])
    except ValueError:
        raise DeviceError(f"--device {requested}: expected cuda:N with N a GPU number, e.g. cuda:0") from None
    if index < 0:
        raise DeviceError(f"--device {requested}: GPU number must be 0 or more")
    return index


def autocast_context(device, precision):
    """Context manager for the forward pass: bf16 autocast for ``"bf16"`` (CUDA or CPU), nothing for ``"fp32"``.

    ``precision`` is already resolved (see :meth:`isoformer_cli.runtime.options.RuntimeOptions.precision_on`).
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def is_out_of_memory(error):
    """True for a CUDA (or CPU allocator) out-of-memory error that a smaller batch may avoid."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()
