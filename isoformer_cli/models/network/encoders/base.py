"""The one interface every sequence encoder of IsoFormer implements.

IsoFormer reads three sequences per isoform, each with its own encoder: a DNA window (Enformer, or a
Nucleotide Transformer over the window's 6-mers), the spliced RNA (Nucleotide Transformer v2) and the
protein (ESM-2). Everything the rest of the tool needs to know about one kind of encoder lives in one
subclass of :class:`SequenceEncoder`, in its own module:

* how to build its ``nn.Module`` from an :class:`~isoformer_cli.models.network.configuration.IsoformerConfig`,
  and which configuration fields it reads (:meth:`validate`, :attr:`config_fields`);
* its output width and number of output positions;
* how a sequence becomes token ids (:meth:`tokenizer`) and how ids become a batch (:meth:`collate`);
* its layer groups, for freezing and activation checkpointing (:meth:`layer_groups`);
* its parameter summary for ``isoformer inspect`` (:meth:`summary`, :meth:`describe`);
* where ``isoformer explain`` takes attributions (:meth:`attribution_layer`, :meth:`attribution_embedding`,
  :meth:`attribution_baseline`, :meth:`input_spans`).

What converting foreign files needs of an encoder (its key rows, how ``isoformer init`` reads a pretrained
folder of it, its key signature in a foreign state dict, the reference of its self-check) is not part of the
network: it is registered under the encoder's name in :mod:`isoformer_cli.models.conversion.encoders`.

Nothing outside an encoder's module branches on the encoder's name: callers look the encoder up
(:func:`isoformer_cli.models.network.encoders.encoder_for`) and call these methods.

Module contract. The module built for the DNA role maps ``(input_ids (B, L) long, attention_mask (B, L)
bool | None)`` to ``(embeddings (B, N, D), mask (B, N) bool | None)`` (N output positions, a None mask
meaning "all real"). The RNA and protein modules map ``(input_ids, attention_mask)`` to hidden states
``(B, L, D)`` (see ``IsoformerModel.encode_rna`` / ``encode_protein``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.utils.checkpoint
from torch import nn


@dataclass
class LayerGroups:
    """An encoder's modules in three groups, in forward order.

    Attributes:
        before: what runs before the layer stack (embeddings; Enformer's stem and convolution tower).
        layers: the stack of repeated layers (transformer blocks).
        after: what follows the stack (final LayerNorm; Enformer's final pointwise block).
    """

    before: list = field(default_factory=list)
    layers: list = field(default_factory=list)
    after: list = field(default_factory=list)


#: bf16 autocast holds about this share of a float32 pass's activations (measured in inference: 0.6).
BF16_TRAINING_SHARE = 0.65


class SequenceEncoder:
    """One kind of sequence encoder (see the module docstring); subclasses override every method.

    Attributes:
        name: the encoder's identifier (for DNA encoders, the value of ``config.dna_encoder_type``).
        modality: ``"dna"``, ``"rna"`` or ``"protein"``: the role this encoder fills.
        label: human-readable name for messages and summaries.
        inner_prefix: where the encoder's own tensors sit inside the model's ``<modality>_encoder``
            module (``"enformer."``; empty when that module is the encoder itself).
        config_fields: configuration fields this encoder adds to ``IsoformerConfig``, with defaults
            (encoders whose fields are not constructor arguments of the config declare them here).
        fixed_length: every input of a batch has the same length (no padding mask is needed).
    """

    name: str = ""
    modality: str = ""
    label: str = ""
    inner_prefix: str = ""
    config_fields: dict = {}
    fixed_length: bool = False

    # -- building ---------------------------------------------------------------------------------
    def build(self, config) -> nn.Module:
        """The encoder module for ``config`` (randomly initialised)."""
        raise NotImplementedError(f"{type(self).__name__} must define build()")

    def validate(self, config) -> None:
        """Raise ``InputError`` when ``config`` describes an encoder that cannot be built or fed."""

    def preset_overrides(self, preset: str) -> dict:
        """Configuration values this encoder changes in the named preset when it is chosen (e.g. a window
        length its position table can hold); applied unless the caller overrides them."""
        return {}

    def width(self, config) -> int:
        """D, the width of each output position."""
        raise NotImplementedError(f"{type(self).__name__} must define width()")

    def positions(self, config) -> int:
        """N, the number of output positions for a full-length input of plain A/C/G/T."""
        raise NotImplementedError(f"{type(self).__name__} must define positions()")

    def max_input_length(self, config) -> int:
        """The longest input in tokens (special tokens included) that the model takes."""
        raise NotImplementedError(f"{type(self).__name__} must define max_input_length()")

    def output_length(self, config, input_length: int) -> int:
        """Output positions for an input of ``input_length`` tokens (default: one per token)."""
        return input_length

    def random_token_range(self, config) -> tuple[int, int]:
        """``(low, high)``: token ids in ``[low, high)`` make a valid input, for measurements and tests."""
        raise NotImplementedError(f"{type(self).__name__} must define random_token_range()")

    # -- memory -------------------------------------------------------------------------------------
    #: Working memory of one forward pass in inference mode, in bytes per input position and per unit of
    #: :meth:`memory_width`, by precision: measured on the CPU with ``benchmarks/memory_model.py``. An encoder
    #: that has not been measured gets a generous default (about twice the largest measured encoder's), so a
    #: plan made for it errs on the side of smaller batches rather than an out-of-memory kill.
    bytes_per_position_and_width: dict = {"fp32": 48.0, "bf16": 29.0}

    def memory_width(self, config) -> int:
        """The width that the encoder's working memory per position grows with (its widest layer; default:
        the output width)."""
        return self.width(config)

    def activation_bytes(self, config, batch: int, length: int, precision: str = "fp32") -> int:
        """Working memory (bytes) of one forward pass over ``batch`` inputs of ``length`` tokens, in inference
        mode: the model measured per position, times the positions and the width (a linear model: the
        attention kernels used never hold a length x length matrix)."""
        coefficient = self.bytes_per_position_and_width.get(precision, self.bytes_per_position_and_width["fp32"])
        return int(coefficient * batch * length * self.memory_width(config))

    def output_bytes(self, config, length: int) -> int:
        """Bytes the engine holds for one input's output (float32 states of every output position)."""
        return 4 * self.output_length(config, length) * self.width(config)

    # -- inputs -------------------------------------------------------------------------------------
    def tokenizer(self, config, truncation: str = "keep_start"):
        """An object whose ``encode(sequence, name) -> (ids (L,) int64, truncated bool)`` tokenises one
        sequence for this encoder (``truncation``: policy for inputs longer than the model maximum)."""
        raise NotImplementedError(f"{type(self).__name__} must define tokenizer()")

    def pad_id(self, config) -> int:
        """The token id that pads a batch."""
        raise NotImplementedError(f"{type(self).__name__} must define pad_id()")

    def collate(self, arrays: list[np.ndarray], config, length: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(input_ids (B, L) long, attention_mask (B, L) bool or None)`` from 1-D token arrays.

        Fixed-length encoders stack the arrays and return no mask; the others right-pad them with
        :meth:`pad_id` to ``length`` (default: the longest array) and return the mask of real tokens.
        """
        if self.fixed_length:
            lengths = {len(array) for array in arrays}
            if len(lengths) != 1:
                raise ValueError(f"{self.label} inputs of one batch must have one length, got {sorted(lengths)}")
            return torch.from_numpy(np.stack(arrays)), None
        return pad_token_arrays(arrays, self.pad_id(config), length)

    # -- training -----------------------------------------------------------------------------------
    def layer_groups(self, module: nn.Module) -> LayerGroups:
        """The built ``module``'s parts: before the layer stack, the layers, after them."""
        raise NotImplementedError(f"{type(self).__name__} must define layer_groups()")

    def enable_activation_checkpointing(self, module: nn.Module) -> int:
        """Recompute the activations of ``module``'s layers in the backward pass instead of storing them;
        returns how many modules were wrapped. The modules keep their names, so checkpoints are unchanged."""
        layers = self.layer_groups(module).layers
        for layer in layers:
            layer.forward = checkpointed(layer.forward)
        return len(layers)

    #: Working memory of a forward + backward pass in float32, per input position and unit of
    #: :meth:`memory_width`, as ``(base, per layer)`` with :meth:`training_layers` layers: without and with
    #: activation checkpointing; measured like ``bytes_per_position_and_width``. bf16 autocast takes
    #: :data:`BF16_TRAINING_SHARE` of it.
    training_bytes_per_position_and_width: tuple = (0.0, 0.0)
    checkpointed_bytes_per_position_and_width: tuple = (0.0, 0.0)

    def training_layers(self, config) -> int:
        """The layers whose activations a backward pass keeps, each at the per-layer cost (default 1)."""
        return 1

    def training_activation_bytes(self, config, batch: int, length: int, precision: str = "fp32",
                                  checkpointing: bool = False) -> int:
        """Working memory (bytes) of a training step's forward and backward pass over ``batch`` inputs of
        ``length`` tokens (activations kept for the backward pass and the gradients of the activations)."""
        base, per_layer = (self.checkpointed_bytes_per_position_and_width if checkpointing
                           else self.training_bytes_per_position_and_width)
        coefficient = base + per_layer * self.training_layers(config)
        if precision == "bf16":
            coefficient *= BF16_TRAINING_SHARE
        return int(coefficient * batch * length * self.memory_width(config))

    # -- attribution (isoformer explain) -------------------------------------------------------------
    def attribution_layer(self, module: nn.Module) -> nn.Module:
        """The submodule of the built ``module`` whose output ``(B, L, C)`` represents each input position (the
        one-hot DNA, a token embedding): ``isoformer explain`` replaces that output by a forward hook and takes
        the gradient there."""
        raise NotImplementedError(f"{type(self).__name__} must define attribution_layer()")

    def attribution_embedding(self, module: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
        """What :meth:`attribution_layer` outputs for ``input_ids`` (B, L): ``(B, L, C)`` (default: the layer
        applied to the ids, as for an embedding table)."""
        return self.attribution_layer(module)(input_ids)

    def attribution_baseline(self, config, input_ids: np.ndarray) -> np.ndarray:
        """The reference input of integrated gradients for ``input_ids`` (1-D, as :meth:`tokenizer` writes them):
        the same length and special tokens, every sequence token replaced by the encoder's "unknown" token, so
        only the sequence content is attributed."""
        raise NotImplementedError(f"{type(self).__name__} must define attribution_baseline()")

    def input_spans(self, config, sequence: str, truncation: str = "keep_start") -> np.ndarray:
        """``(L, 2)`` int64: for each position of the ids :meth:`tokenizer` writes for ``sequence``, the half-open
        span ``[start, end)`` of ``sequence`` (0-based, in the order the model reads it) that position reads;
        ``(-1, -1)`` for special tokens."""
        raise NotImplementedError(f"{type(self).__name__} must define input_spans()")

    # -- description --------------------------------------------------------------------------------
    def summary(self, config) -> dict:
        """JSON-ready facts for ``isoformer inspect`` (must include ``"type": self.summary_type``)."""
        raise NotImplementedError(f"{type(self).__name__} must define summary()")

    summary_type: str = ""

    def describe(self, summary: dict) -> str:
        """One line of text from :meth:`summary`'s dictionary."""
        raise NotImplementedError(f"{type(self).__name__} must define describe()")

    def parameter_groups(self, module: nn.Module) -> dict:
        """Parameters per named part of the module, for detailed counts (empty: no breakdown)."""
        return {}


def special(count: int) -> np.ndarray:
    """``count`` spans ``(-1, -1)``: positions of special tokens, which read no part of the sequence."""
    return np.full((count, 2), -1, dtype=np.int64)


def checkpointed(forward):
    """``forward`` recomputed in the backward pass when gradients are on (``torch.utils.checkpoint``,
    non-reentrant); called as is otherwise."""

    def run(*args, **kwargs):
        if torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(forward, *args, use_reentrant=False, **kwargs)
        return forward(*args, **kwargs)

    return run


def pad_token_arrays(arrays: list[np.ndarray], pad_id: int, length: int | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D int64 arrays into ``(input_ids (B, L) long, attention_mask (B, L) bool)``; ``L`` is
    ``length`` (at least the longest array) or the longest array's length."""
    width = max(len(array) for array in arrays)
    if length is not None:
        if length < width:
            raise ValueError(f"cannot pad arrays of up to {width} tokens to {length}")
        width = length
    input_ids = np.full((len(arrays), width), pad_id, dtype=np.int64)
    for row, array in enumerate(arrays):
        input_ids[row, : len(array)] = array
    lengths = np.fromiter((len(array) for array in arrays), dtype=np.int64, count=len(arrays))
    mask = np.arange(width)[None, :] < lengths[:, None]
    return torch.from_numpy(input_ids), torch.from_numpy(mask)
