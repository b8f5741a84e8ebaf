"""How much memory a run may use: read from the device, capped by ``--max-memory``.

* CUDA: the device's free memory (``torch.cuda.mem_get_info``), what the CUDA caching allocator may still
  take.
* CPU: the memory the process may still use, the smallest of what the kernel reports as available
  (``MemAvailable`` in ``/proc/meminfo``) and what the process's cgroup allows beyond its current usage
  (cgroup v2 ``memory.max`` − ``memory.current``, or v1 ``memory.limit_in_bytes`` −
  ``memory.usage_in_bytes``): the limit a container, a SLURM allocation or a systemd scope sets. A job
  that exceeds its cgroup limit is killed by the kernel with no message, so the cgroup counts first.

``--max-memory SIZE`` caps the whole process: the bytes it already holds (the model's weights, the
libraries) count against it. :class:`MemoryBudget` is what is left for a run's working memory (activations
and the encoder outputs of a chunk).

The cgroup files are read under :data:`CGROUP_ROOT` and the meminfo file is :data:`MEMINFO`; tests point them
at a folder of their own to simulate a lowered limit.
"""

import logging
import os
import re
from dataclasses import dataclass

from isoformer_cli.errors import InputError

log = logging.getLogger(__name__)

CGROUP_ROOT = "/sys/fs/cgroup"
MEMINFO = "/proc/meminfo"
PROC_SELF_CGROUP = "/proc/self/cgroup"
PROC_SELF_STATUS = "/proc/self/status"

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(I?B)?\s*$", re.IGNORECASE)


def parse_size(text):
    """Bytes of a size such as ``4G``, ``512M``, ``1.5GB``, ``4GiB`` or ``1073741824`` (powers of 1,024);
    InputError for anything else."""
    match = _SIZE.match(str(text))
    if not match:
        raise InputError(f"--max-memory {text!r}: expected a size such as 4G, 512M or 16GB")
    value = float(match.group(1)) * _UNITS[match.group(2).upper()]
    if value < 1:
        raise InputError(f"--max-memory {text!r}: the size must be positive")
    return int(value)


def format_size(size):
    """``1.5 GB`` style (powers of 1,024), for messages."""
    for unit, scale in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} B"


def _read_int(path):
    """The integer in a cgroup file, or None (absent, unreadable, or ``max``: no limit)."""
    try:
        with open(path) as handle:
            text = handle.read().strip()
    except OSError:
        return None
    if not text or text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    # cgroup v1 writes "no limit" as a huge page-aligned number.
    return None if value >= 1 << 60 else value


def _cgroup_paths():
    """The cgroup folders of this process that may hold memory files (v2 unified, then v1 memory)."""
    paths = []
    try:
        with open(PROC_SELF_CGROUP) as handle:
            entries = [line.rstrip("\n").split(":", 2) for line in handle if line.count(":") >= 2]
    except OSError:
        entries = []
    for _, controllers, path in entries:
        relative = path.lstrip("/")
        if controllers == "":
            paths.append(os.path.join(CGROUP_ROOT, relative))
        elif "memory" in controllers.split(","):
            paths.append(os.path.join(CGROUP_ROOT, "memory", relative))
    # Inside a container the process sees its own cgroup at the root.
    paths += [CGROUP_ROOT, os.path.join(CGROUP_ROOT, "memory")]
    return paths


def cgroup_headroom():
    """Bytes the cgroup still allows this process (limit − usage), or None without a memory limit."""
    for folder in _cgroup_paths():
        for limit_name, usage_name in (("memory.max", "memory.current"),
                                       ("memory.limit_in_bytes", "memory.usage_in_bytes")):
            limit = _read_int(os.path.join(folder, limit_name))
            if limit is None:
                continue
            usage = _read_int(os.path.join(folder, usage_name)) or 0
            return max(0, limit - usage)
    return None


def _kernel_kib_field(path, name):
    """The ``name: N kB`` field of a ``/proc`` file in bytes, or None when it cannot be read."""
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(name + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def meminfo_available():
    """``MemAvailable`` of the kernel in bytes, or None when it cannot be read."""
    return _kernel_kib_field(MEMINFO, "MemAvailable")


def process_resident_bytes():
    """Resident memory of this process now (``VmRSS``), 0 when unknown."""
    return _kernel_kib_field(PROC_SELF_STATUS, "VmRSS") or 0
    return 0


def free_memory(device):
    """Bytes this process may still allocate on ``device`` (see the module docstring), or None if unknown."""
    if device.type == "cuda":
        import torch  # on use (start-up cost): --max-memory is parsed by commands that never load torch

        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    known = [value for value in (meminfo_available(), cgroup_headroom()) if value is not None]
    return min(known) if known else None


@dataclass(frozen=True)
class MemoryBudget:
    """Working memory of a run on one device.

    Attributes:
        bytes: what the run may still allocate for activations and held outputs.
        source: where the figure comes from, for messages (``"free CUDA memory"``, ``"--max-memory 4G"``...).
        held: when ``--max-memory`` is the binding limit, the bytes the process already held when the budget
            was taken (the libraries, the inputs read so far; they count against the cap), else 0.
    """

    bytes: int
    source: str
    held: int = 0

    def describe(self):
        if self.held:
            return (f"{format_size(self.bytes)} ({self.source}, less the {format_size(self.held)} the process "
                    "already holds)")
        return f"{format_size(self.bytes)} ({self.source})"

    def capped(self):
        """True when ``--max-memory`` is what limits the budget."""
        return self.source.startswith("--max-memory")

    def cap_advice(self, need):
        """What to say when ``need`` more bytes do not fit: with ``--max-memory`` binding, the smallest cap that
        leaves ``need`` bytes (rounded up to 64 MB) beside what the process holds; else the generic hint."""
        if not self.capped():
            return "raise --max-memory"
        step = 64 << 20
        smallest = -(-(self.held + need) // step) * step
        text = f"{smallest >> 30}G" if smallest % (1 << 30) == 0 else f"{smallest >> 20}M"
        return f"use --max-memory {text} or more"


def memory_budget(device, max_memory=None, held=None):
    """The :class:`MemoryBudget` of a run on ``device`` once the model is loaded.

    Args:
        device: ``torch.device``.
        max_memory: ``--max-memory`` in bytes (caps the process's whole footprint on that device), or None.
        held: bytes the process holds on the device already (default: resident memory on CPU, the CUDA
            allocator's reserved bytes on CUDA); they count against ``max_memory``.
    """
    free = free_memory(device)
    if held is None:
        if device.type == "cuda":
            import torch  # on use (start-up cost): --max-memory is parsed by commands that never load torch

            held = torch.cuda.memory_reserved(device)
        else:
            held = process_resident_bytes()
    candidates, capped_held = [], 0
    if free is not None:
        candidates.append((free, "free CUDA memory" if device.type == "cuda" else "memory available to the process"))
    if max_memory is not None:
        candidates.append((max(0, max_memory - held), f"--max-memory {format_size(max_memory)}"))
        capped_held = held
    if not candidates:
        # Neither the kernel nor the user says: assume 8 GB, the smallest machine the official preset is run on.
        candidates.append((8 << 30, "assumed: the machine's memory could not be read"))
    size, source = min(candidates)
    return MemoryBudget(bytes=size, source=source, held=capped_held if source.startswith("--max-memory") else 0)
