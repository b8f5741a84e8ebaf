"""How a command runs the model: device, numeric precision, determinism and data-loading workers.

One validated value object, :class:`RuntimeOptions`, built once from the command line (or by a caller) and
read by every command that runs the model (``predict``, ``embed``, ``finetune``).
"""

import re
from dataclasses import dataclass
from typing import Optional

from isoformer_cli.errors import InputError, check_choice
from isoformer_cli.runtime.memory import parse_size

#: ``--precision`` values: ``auto`` is bf16 autocast on CUDA and fp32 on the CPU.
PRECISION_CHOICES = ("auto", "fp32", "bf16")
# ``--device`` spellings (case and surrounding blanks are ignored); whether the device exists is checked when
# the run starts (:func:`isoformer_cli.runtime.device.resolve_device`).
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:[0-9]+)$")


@dataclass(frozen=True)
class RuntimeOptions:
    """Where and how the model runs.

    Attributes:
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (resolved, and checked against the machine, by
            :func:`isoformer_cli.runtime.device.resolve_device`).
        precision: one of :data:`PRECISION_CHOICES`.
        deterministic: ask torch for deterministic kernels (slower on GPU).
        num_workers: DataLoader worker processes that fetch DNA windows and tokenise (0: the main process).
        max_memory: ``--max-memory`` (``4G``, ``512M``...): a cap on the process's memory on its device, or None
            for what the device has (see :mod:`isoformer_cli.runtime.memory`).
    """

    device: str = "auto"
    precision: str = "auto"
    deterministic: bool = False
    num_workers: int = 0
    max_memory: Optional[str] = None

    def __post_init__(self):
        if not _DEVICE.match((self.device or "auto").strip().lower()):
            raise InputError(f"--device {self.device}: expected auto, cpu, cuda or cuda:N (N a GPU number, e.g. "
                             "cuda:0)")
        check_choice("--precision", self.precision, PRECISION_CHOICES)
        if self.num_workers < 0:
            raise InputError(f"--num-workers must be 0 or more, not {self.num_workers}")
        self.max_memory_bytes  # noqa: B018 - the size's syntax is checked here, once

    @property
    def max_memory_bytes(self):
        """``max_memory`` in bytes, or None."""
        return None if self.max_memory in (None, "") else parse_size(self.max_memory)

    def precision_on(self, device):
        """The precision used on ``device`` (a ``torch.device``): ``auto`` is bf16 on CUDA, fp32 elsewhere."""
        if self.precision == "auto":
            return "bf16" if device.type == "cuda" else "fp32"
        return self.precision
