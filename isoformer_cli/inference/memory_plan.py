"""How a run keeps to the memory there is: batch sizes and chunk size from a memory budget.

Memory of the engine while it predicts one chunk (see :mod:`~isoformer_cli.inference.engine`):

* the model's weights (already loaded when the plan is made);
* the encoder outputs of the chunk's distinct inputs, held until every row of the chunk is fused: at most
  one full-length output per modality per row (``SequenceEncoder.output_bytes``);
* the working memory of the batch being encoded or fused (activations, freed after each batch): per encoder
  ``SequenceEncoder.activation_bytes`` (a measured model, bytes per input position and width), for the
  fusion :data:`FUSION_BYTES_PER_POSITION` times the query width, per position of ``query + 2 x (RNA +
  protein)`` ... counted as ``query + RNA + protein`` positions per row, the unit of the fusion batches.

The plan (:func:`plan_memory`):

1. refuses a run that cannot hold even one full-length isoform (its largest working memory plus its outputs),
   with the figures and what to change, before anything is computed;
2. gives the batches a working budget: on the CPU at most :data:`CPU_BATCH_BYTES` (larger batches do not run
   faster per input on a CPU, they only hold more activations), on CUDA a share of the free memory; never less
   than one full-length input;
3. sizes chunks so that their held outputs fit beside that working budget (at most ``chunk_size``, the
   ``--chunk-size`` given or :data:`DEFAULT_CHUNK_ROWS`).

``--max-tokens`` (an expert override) replaces the derived per-batch budgets by one number of padded input
positions for every encoder and for the fusion, as before; the refusal still applies.
"""

import logging
from dataclasses import dataclass, field

from isoformer_cli.errors import DeviceError
from isoformer_cli.runtime.memory import format_size

log = logging.getLogger(__name__)

#: Working memory of the fusion and head per fused position (query + RNA + protein positions of a row) and per
#: unit of query width, by precision (measured: 7.7 B fp32, 5.2 B bf16 at the official size, CPU).
FUSION_BYTES_PER_POSITION = {"fp32": 7.7, "bf16": 5.2}
#: On the CPU, a batch's working memory stays below this: larger batches are not faster per input.
CPU_BATCH_BYTES = 128 << 20
#: On CUDA, the share of the budget that batches may take (the rest holds the chunk's outputs).
CUDA_BATCH_SHARE = 0.5
#: Safety margin on every estimate (allocator fragmentation, Python objects, measurement spread).
MARGIN = 1.25
DEFAULT_CHUNK_ROWS = 256


@dataclass(frozen=True)
class MemoryPlan:
    """Batch limits and chunk size of one run.

    Attributes:
        positions_per_batch: padded input positions per encoder batch, by modality.
        fusion_positions: fused positions (rows x (query + RNA + protein positions)) per fusion batch.
        chunk_size: transcripts per chunk.
        one_isoform_bytes: working memory plus outputs of one full-length isoform (for messages).
        budget_bytes: the budget the plan was made for (None: ``--max-tokens`` without a budget).
    """

    positions_per_batch: dict = field(default_factory=dict)
    fusion_positions: int = 1
    chunk_size: int = DEFAULT_CHUNK_ROWS
    one_isoform_bytes: int = 0
    budget_bytes: int | None = None

    def describe(self, records_per_chunk: int | None = None):
        """One line for the log. ``records_per_chunk``: a run whose chunks are VCF records (``variants``), where
        the plan's chunk size is the isoform rows of one model call instead."""
        batches = ", ".join(f"{modality} {positions:,}" for modality, positions in self.positions_per_batch.items())
        chunks = f"chunks of {self.chunk_size} transcripts"
        if records_per_chunk is not None:
            chunks = (f"chunks of {records_per_chunk} VCF records, model calls of up to {self.chunk_size} "
                      "isoform rows")
        return f"{chunks}; padded positions per batch: {batches}, fusion {self.fusion_positions:,}"


def fusion_bytes(config, positions, precision):
    """Working memory of fusing ``positions`` positions (see the module docstring)."""
    coefficient = FUSION_BYTES_PER_POSITION.get(precision, FUSION_BYTES_PER_POSITION["fp32"])
    return int(coefficient * positions * config.query_size)


def row_positions(config):
    """Fused positions of one full-length isoform: query positions plus those of RNA and protein."""
    positions = 0
    for modality in config.modalities:
        encoder = config.encoder(modality)
        positions += encoder.output_length(config, encoder.max_input_length(config))
    return positions


def row_output_bytes(config):
    """Bytes of the encoder outputs one full-length isoform holds until it is fused."""
    return sum(config.encoder(modality).output_bytes(config, config.encoder(modality).max_input_length(config))
               for modality in config.modalities)


def one_isoform_bytes(config, precision):
    """Working memory of the largest step for one full-length isoform, plus its outputs, with the margin."""
    largest = fusion_bytes(config, row_positions(config), precision)
    for modality in config.modalities:
        encoder = config.encoder(modality)
        largest = max(largest, encoder.activation_bytes(config, 1, encoder.max_input_length(config), precision))
    return int(MARGIN * (largest + row_output_bytes(config)))


def check_fits(config, precision, budget, weights_bytes=0):
    """DeviceError saying how much one isoform needs when ``budget`` cannot hold it (``weights_bytes``: weights
    not loaded yet, counted against the budget too)."""
    need = one_isoform_bytes(config, precision)
    if need + weights_bytes > budget.bytes:
        weights = f"{format_size(weights_bytes)} of weights and " if weights_bytes else ""
        hint = "use --precision bf16, " if precision == "fp32" else ""
        raise DeviceError(
            f"not enough memory: one full-length isoform needs about {weights}{format_size(need)} of working memory, "
            f"but this run may use {budget.describe()}; {hint}run on a machine or GPU with more memory, or "
            f"{budget.cap_advice(need + weights_bytes)}"
        )
    return need


def plan_memory(config, device, precision, budget, chunk_size=None, max_tokens=None):
    """The :class:`MemoryPlan` of a run of ``config`` on ``device`` within ``budget`` (a ``MemoryBudget``).

    Args:
        chunk_size: the ``--chunk-size`` given, or None for :data:`DEFAULT_CHUNK_ROWS`; a chunk whose outputs
            would not fit is made smaller (with a log line).
        max_tokens: the ``--max-tokens`` override, or None to derive the batch budgets.

    Raises:
        DeviceError: the budget cannot hold one full-length isoform.
    """
    need = check_fits(config, precision, budget)
    available = int(budget.bytes / MARGIN)
    largest_input = max(config.encoder(modality).activation_bytes(config, 1, config.encoder(modality).max_input_length(
        config), precision) for modality in config.modalities)
    largest_step = max(largest_input, fusion_bytes(config, row_positions(config), precision))
    if device.type == "cuda":
        batch_bytes = max(largest_step, int(available * CUDA_BATCH_SHARE))
    else:
        batch_bytes = max(largest_step, min(CPU_BATCH_BYTES, available // 2))
    if max_tokens is not None:
        positions = {modality: max_tokens for modality in config.modalities}
        fusion = max_tokens
    else:
        positions = {}
        for modality in config.modalities:
            encoder = config.encoder(modality)
            per_position = max(1, encoder.activation_bytes(config, 1, 1, precision))
            positions[modality] = max(encoder.max_input_length(config), batch_bytes // per_position)
        per_fused = max(1, fusion_bytes(config, 1, precision))
        fusion = max(row_positions(config), batch_bytes // per_fused)
    requested = chunk_size or DEFAULT_CHUNK_ROWS
    rows = max(1, (available - batch_bytes) // max(1, row_output_bytes(config)))
    chunk = min(requested, rows)
    if chunk < requested and chunk_size is not None:
        log.warning("--chunk-size %d does not fit in %s: using chunks of %d transcripts", chunk_size,
                    budget.describe(), chunk)
    plan = MemoryPlan(positions_per_batch=positions, fusion_positions=fusion, chunk_size=chunk,
                      one_isoform_bytes=need, budget_bytes=budget.bytes)
    log.debug("memory plan for %s: %s", budget.describe(), plan.describe())
    return plan


#: A backward pass through the fusion and head holds about this many times the forward pass's working memory.
FUSION_BACKWARD_FACTOR = 3


def gradient_steps_per_batch(config, lengths, device, precision, budget, requested):
    """How many integration steps of one isoform ``isoformer explain`` runs per forward + backward pass.

    Args:
        lengths: ``{modality: input positions}`` of the isoform (its own lengths, not the model maximum).
        budget: the run's ``MemoryBudget``; a batch gets the same working share as :func:`plan_memory` gives
            (on the CPU at most :data:`CPU_BATCH_BYTES`, on CUDA :data:`CUDA_BATCH_SHARE` of the budget).
        requested: the steps wanted (``--steps``); the result is at most that.

    One step costs each encoder's forward + backward working memory over its input
    (``SequenceEncoder.training_activation_bytes``) plus the fusion's forward working memory times
    :data:`FUSION_BACKWARD_FACTOR`, with :data:`MARGIN`.

    Raises:
        DeviceError: not even one step fits the budget (with the figures).
    """
    step = 0
    fused = 0
    for modality, length in lengths.items():
        encoder = config.encoder(modality)
        step += encoder.training_activation_bytes(config, 1, length, precision)
        fused += encoder.output_length(config, length)
    step += FUSION_BACKWARD_FACTOR * fusion_bytes(config, fused, precision)
    step = int(MARGIN * step)
    available = int(budget.bytes / MARGIN)
    if step > available:
        raise DeviceError(
            f"not enough memory: one gradient pass of this isoform needs about {format_size(step)}, but this run "
            f"may use {budget.describe()}; use --precision bf16, a device with more memory, or "
            f"{budget.cap_advice(step)}"
        )
    share = int(available * CUDA_BATCH_SHARE) if device.type == "cuda" else min(CPU_BATCH_BYTES, available // 2)
    return max(1, min(requested, share // max(1, step)))
