"""How a command runs the model: device, numeric precision, determinism and data-loading workers.

One validated value object, :class:`RuntimeOptions`, built once from the command line (or by a caller) and
read by every command that runs the model (``predict``, ``embed``, ``finetune``).
"""

from dataclasses import dataclass

from isoformer_cli.errors import InputError

#: ``--precision`` values: ``auto`` is bf16 autocast on CUDA and fp32 on the CPU.
PRECISION_CHOICES = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class RuntimeOptions:
    """Where and how the model runs.

    Attributes:
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (resolved, and checked against the machine, by
            :func:`isoformer_cli.runtime.device.resolve_device`).
        precision: one of :data:`PRECISION_CHOICES`.
        deterministic: ask torch for deterministic kernels (slower on GPU).
        num_workers: DataLoader worker processes that fetch DNA windows and tokenise (0: the main process).
    """

    device: str = "auto"
    precision: str = "auto"
    deterministic: bool = False
    num_workers: int = 0

    def __post_init__(self):
        if self.precision not in PRECISION_CHOICES:
            raise InputError(f"--precision must be one of {', '.join(PRECISION_CHOICES)}, not {self.precision!r}")
        if self.num_workers < 0:
            raise InputError(f"--num-workers must be 0 or more, not {self.num_workers}")

    def precision_on(self, device):
        """The precision used on ``device`` (a ``torch.device``): ``auto`` is bf16 on CUDA, fp32 elsewhere."""
        if self.precision == "auto":
            return "bf16" if device.type == "cuda" else "fp32"
        return self.precision
