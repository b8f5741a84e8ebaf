"""Token-budget batching of length-sorted work, with halving on out-of-memory.

A batch's cost is ``len(batch) * longest item`` tokens, because padded tensors are rectangular;
sorting by length first keeps padding (wasted compute) small. :func:`same_shape_batches` and
:func:`padded_length` go further: the engine pads every input to a length that depends on the input alone
and batches only inputs of one padded shape, so an item's numbers do not depend on which other items
share its chunk (see :mod:`isoformer_cli.inference.engine`). When the device runs out of memory
the batch is split in two and retried, and the budget for later batches is halved too, so one
oversized batch does not fail a run that smaller batches can finish.
"""

import logging

from isoformer_cli.errors import DeviceError

log = logging.getLogger(__name__)

# Padded input positions per batch: five 196,608-bp windows, or 512 full-length RNAs.
DEFAULT_MAX_TOKENS = 1 << 20


def token_budget_batches(lengths, max_tokens, max_batch_size=None):
    """Split item indices into batches whose padded size fits ``max_tokens``.

    Args:
        lengths: per-item token counts (any sequence of ints >= 1).
        max_tokens: budget for ``len(batch) * max(length in batch)``; an item longer than the
            budget still gets a batch of its own.
        max_batch_size: optional cap on items per batch.

    Returns:
        A list of batches, each a list of indices into ``lengths``, longest items first; every
        index appears exactly once.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    order = sorted(range(len(lengths)), key=lambda index: (-lengths[index], index))
    batches = []
    current = []
    current_longest = 0
    for index in order:
        longest = max(current_longest, lengths[index])
        too_many = max_batch_size is not None and len(current) >= max_batch_size
        if current and (too_many or longest * (len(current) + 1) > max_tokens):
            batches.append(current)
            current, longest = [], lengths[index]
        current.append(index)
        current_longest = longest
    if current:
        batches.append(current)
    return batches


# Variable-length inputs are padded to the next multiple of this many positions (capped at the encoder's
# longest input): the padded length depends on the input alone, so inputs of one multiple can share a batch
# without changing each other's numbers, at most 63 positions of padding each.
PADDING_MULTIPLE = 64


def padded_length(length, longest):
    """The length an input of ``length`` positions is padded to: the next multiple of PADDING_MULTIPLE, at most
    ``longest`` (the model's longest input) and at least ``length``."""
    return max(length, min(-(-length // PADDING_MULTIPLE) * PADDING_MULTIPLE, longest))


def same_shape_batches(shapes, sizes, max_tokens):
    """Batches of items of one shape only, each under the token budget.

    Args:
        shapes: per-item shape key (any hashable: a length, a tuple of lengths); items of one batch
            share it, so the batch needs no padding.
        sizes: per-item token count (>= 1), the cost :func:`token_budget_batches` budgets.
        max_tokens: budget for ``len(batch) * size``.

    Returns:
        A list of batches of indices: shapes in order of their largest size (then first appearance),
        indices ascending inside a shape; every index appears exactly once.
    """
    groups = {}
    for index, shape in enumerate(shapes):
        groups.setdefault(shape, []).append(index)
    ordered = sorted(groups.values(), key=lambda members: (-max(sizes[index] for index in members), members[0]))
    batches = []
    for members in ordered:
        for batch in token_budget_batches([sizes[index] for index in members], max_tokens):
            batches.append(sorted(members[position] for position in batch))
    return batches


class OutOfMemoryRetry:
    """Run a function over index batches, halving batches (and the budget) on out-of-memory.

    ``run(batch)`` must either return a result for every index of ``batch`` or raise; results
    are returned in the same flattened order as the input batches.
    """

    def __init__(self, is_out_of_memory, release_memory=lambda: None):
        self.is_out_of_memory = is_out_of_memory
        self.release_memory = release_memory
        self.halvings = 0

    def map(self, run, batch):
        """Apply ``run`` to ``batch``; on out-of-memory split it in two halves, recursively."""
        try:
            return [run(batch)]
        except Exception as error:  # noqa: BLE001 - only out-of-memory errors are retried
            if not self.is_out_of_memory(error):
                raise
            self.release_memory()
            if len(batch) == 1:
                raise DeviceError(
                    "out of memory on a single item even at batch size 1; use --precision bf16, "
                    "a device with more memory, or shorter inputs"
                ) from error
            self.halvings += 1
            middle = len(batch) // 2
            log.warning("out of memory on a batch of %d; retrying as two batches of %d and %d",
                        len(batch), middle, len(batch) - middle)
            return self.map(run, batch[:middle]) + self.map(run, batch[middle:])
