"""Multi-process runs under ``torchrun``: rank discovery, process group, and result exchange.

``torchrun --nproc-per-node N -m isoformer_cli predict ...`` starts N copies of the command with
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set. Each rank prepares and predicts its own chunks
(see :mod:`isoformer_cli.inference.prepare`); after every round of one chunk per rank, the ranks
exchange their results with ``all_gather_object`` and rank 0 writes them in chunk order, so the
merged output is identical to a single-process run. Every rank sees every round's results, so an
error on one rank stops all of them together instead of leaving the others waiting.
"""

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from isoformer_cli.errors import DeviceError, IsoformerError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place in the run: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_distributed(self):
        return self.world_size > 1

    @property
    def is_main(self):
        return self.rank == 0


def launched_by_torchrun():
    """True when the environment carries torchrun's variables for more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process():
    """True unless this process is a torchrun rank other than 0 (ranks other than 0 compute, never write);
    known before the process group is joined."""
    return int(os.environ.get("RANK", "0")) == 0


def init_process_group(device_type):
    """Join the torchrun process group (gloo on CPU, NCCL on CUDA); single process otherwise."""
    if not launched_by_torchrun():
        return ProcessGroup()
    rank = int(os.environ["RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise DeviceError(
                f"rank {rank}: LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s) "
                "visible; use --nproc-per-node at most the GPU count"
            )
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    log.debug("rank %d of %d joined the %s process group", rank, world_size, backend)
    return ProcessGroup(rank=rank, world_size=world_size, local_rank=local_rank)


def all_gather(group, value):
    """Every rank's ``value`` (a picklable object), in rank order; ``[value]`` when not distributed."""
    if not group.is_distributed:
        return [value]
    gathered = [None] * group.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_from_main(group, value):
    """Rank 0's ``value`` on every rank."""
    if not group.is_distributed:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def run_on_main(group, action):
    """``action()`` run on rank 0 only, its result on every rank; an IsoformerError raised there is raised on
    every rank, so no rank waits forever for a rank that failed."""
    outcome = None
    if group.is_main:
        try:
            outcome = ("ok", action())
        except IsoformerError as error:
            outcome = ("error", error)
    outcome = broadcast_from_main(group, outcome)
    if outcome[0] == "error":
        raise outcome[1]
    return outcome[1]


def raise_if_any(group, error):
    """Raise the first rank's error on every rank (``error``: this rank's, or None)."""
    for found in all_gather(group, error):
        if found is not None:
            raise found


def shutdown(group, completed=True):
    """Leave the process group; after a completed run, wait first so no rank exits mid-exchange."""
    if group.is_distributed and dist.is_initialized():
        if completed:
            dist.barrier()
        dist.destroy_process_group()
