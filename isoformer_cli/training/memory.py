"""The micro-batch of a fine-tuning run from the memory there is.

A training step holds, beyond the weights: the gradients (float32, one per trainable parameter) and AdamW's two
moments (float32 each), 12 bytes per trainable parameter; and, per example of a micro-batch, the activations
its backward pass needs (``SequenceEncoder.training_activation_bytes``: measured per input position, far less
with activation checkpointing; an encoder frozen whole keeps none and costs its inference working memory), the
fusion's (three times its inference working memory) and the encoder outputs.

:func:`micro_batch_from_memory` picks the largest micro-batch that fits and divides the per-process batch, and
refuses, naming the figures and what to change (activation checkpointing first, when it would make one example
fit), a run in which even one example does not fit.
"""

import logging

from isoformer_cli.errors import DeviceError
from isoformer_cli.inference.memory_plan import MARGIN, fusion_bytes, row_output_bytes, row_positions
from isoformer_cli.runtime.memory import format_size

log = logging.getLogger(__name__)

# Gradient (4 bytes) and AdamW's exp_avg and exp_avg_sq (4 bytes each) per trainable parameter.
OPTIMIZER_BYTES_PER_PARAMETER = 12
# A backward pass through the fusion holds its forward activations and their gradients.
FUSION_TRAINING_FACTOR = 3


def example_bytes(model, precision, checkpointing):
    """Working memory of one full-length training example (see the module docstring), without the margin."""
    config = model.config
    total = FUSION_TRAINING_FACTOR * fusion_bytes(config, row_positions(config), precision) + row_output_bytes(config)
    for modality in config.modalities:
        encoder = config.encoder(modality)
        length = encoder.max_input_length(config)
        module = getattr(model, f"{modality}_encoder")
        if any(parameter.requires_grad for parameter in module.parameters()):
            total += encoder.training_activation_bytes(config, 1, length, precision, checkpointing)
        else:
            total += encoder.activation_bytes(config, 1, length, precision)
    return total


def optimizer_bytes(model):
    """Gradients and AdamW state of the trainable parameters."""
    return OPTIMIZER_BYTES_PER_PARAMETER * sum(p.numel() for p in model.parameters() if p.requires_grad)


def micro_batch_from_memory(model, per_process, precision, checkpointing, budget, weights_to_move=0):
    """The largest micro-batch that fits ``budget`` and divides ``per_process``.

    Args:
        model: the model to train (its frozen parameters already frozen).
        per_process: rows of a step on this process (``--batch-size`` / processes).
        precision: ``"fp32"`` or ``"bf16"``.
        checkpointing: activation checkpointing is on.
        budget: :class:`~isoformer_cli.runtime.memory.MemoryBudget` of the device.
        weights_to_move: bytes of weights not on the device yet (they count against the budget).

    Raises:
        DeviceError: even one example does not fit; the message names the figures and what to change.
    """
    fixed = optimizer_bytes(model) + weights_to_move
    per_example = example_bytes(model, precision, checkpointing)
    usable = budget.bytes / MARGIN - fixed
    fits = int(usable // per_example) if usable > 0 else 0
    if fits < 1:
        advice = []
        if not checkpointing and example_bytes(model, precision, True) <= max(0, usable):
            advice.append("add --activation-checkpointing (one example then fits)")
        elif not checkpointing:
            advice.append("add --activation-checkpointing")
        advice += (["use --precision bf16"] if precision == "fp32" else []) + [
            "freeze encoders (--freeze encoders or --freeze dna:2)", "use a GPU with more memory"]
        if budget.capped():
            advice.append(budget.cap_advice(int(MARGIN * (fixed + per_example))))
        raise DeviceError(
            f"not enough memory to train: one example needs about {format_size(MARGIN * per_example)} of activations "
            f"beside {format_size(MARGIN * fixed)} of gradients, optimiser state and weights, but this run may use "
            f"{budget.describe()}; {', or '.join(advice)}"
        )
    micro = max(divisor for divisor in range(1, per_process + 1) if per_process % divisor == 0 and divisor <= fits)
    log.info("micro-batch of %d (memory for %d examples of %s each, %s)", micro, fits,
             format_size(MARGIN * per_example), budget.describe())
    return micro
