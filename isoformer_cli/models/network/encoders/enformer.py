"""Enformer as IsoFormer's DNA encoder (the official choice), on our own trunk (:mod:`.enformer_trunk`).

Input: the TSS-centred DNA window as one id per base, ``A0 C1 G2 T3 N4`` (N becomes an all-zero one-hot),
``-1`` for padding (one-hot 0.25 everywhere). Every window has the model's length, so batches are stacked
without a mask. Output: ``(B, target_length, 2 * enformer_dim)`` embeddings of 2**num_downsamples-bp bins
over the centre of the window (896 bins of 128 bp = 114,688 bp at full size; the TSS in bin 448).

State-dict spelling. The trunk's tensors are saved once, under the names of enformer-pytorch's named modules:
``dna_encoder.enformer.{stem,conv_tower,transformer,final_pointwise}.*``, so every checkpoint written when
the encoder wrapped ``enformer_pytorch.Enformer`` loads unchanged. ``enformer_pytorch.Enformer`` itself names
each trunk tensor a second time inside its ``_trunk`` ``nn.Sequential`` (``_trunk.1.0.weight`` is
``stem.0.weight``) and may carry human/mouse output heads (``_heads.*``): the key rows of
:mod:`isoformer_cli.models.conversion.encoders.enformer` fold the ``_trunk.N.`` spelling onto the named one and
drop the heads when such a state dict is read (``isoformer init``, ``convert``). enformer-pytorch is not needed
at run time; the tests use it as the reference.
"""

from __future__ import annotations

import torch
from torch import nn

from isoformer_cli.errors import InputError
import numpy as np

from isoformer_cli.models.network.encoders.base import LayerGroups, SequenceEncoder
from isoformer_cli.models.network.encoders.enformer_layers import INFERENCE_SLICE
from isoformer_cli.models.network.encoders.enformer_trunk import EnformerTrunk, one_hot_dna
from isoformer_cli.models.network.tokenizers import DNA_N_ID, DnaTokenizer


def build_trunk(config) -> EnformerTrunk:
    """The (randomly initialised) `EnformerTrunk` described by the ``enformer_*`` fields of ``config``."""
    trunk = EnformerTrunk(
        dim=config.enformer_dim,
        depth=config.enformer_depth,
        heads=config.enformer_heads,
        attn_dim_key=config.enformer_attn_dim_key,
        dropout_rate=config.enformer_dropout_rate,
        attn_dropout=config.enformer_attn_dropout,
        pos_dropout=config.enformer_pos_dropout,
        target_length=config.enformer_target_length,
        num_downsamples=config.enformer_num_downsamples,
        dim_divisible_by=config.enformer_dim_divisible_by,
        use_tf_gamma=config.enformer_use_tf_gamma,
    )
    trunk.set_activation_checkpointing(config.enformer_use_checkpointing)
    return trunk


class EnformerDNAEncoder(nn.Module):
    """The Enformer trunk (no output heads) over DNA token ids.

    Attributes:
        enformer: the `EnformerTrunk` (its state-dict keys are enformer-pytorch's named-module keys).
        output_size: 2 x enformer_dim (3,072 at full size).
    """

    def __init__(self, config):
        super().__init__()
        self.enformer = build_trunk(config)
        self.output_size = 2 * config.enformer_dim
        # The one-hot input passes through this identity so that ``isoformer explain`` can hook it (no
        # parameters: the state dict is unchanged).
        self.input_one_hot = nn.Identity()

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, None]:
        """input_ids (B, L) long with A0 C1 G2 T3 N4 (or -1 padding) -> ((B, bins, 2 x dim), None).

        ``attention_mask`` is not used (Enformer has no padding mask; every window has the full length).
        """
        if input_ids.dtype != torch.long:
            raise InputError(f"DNA input ids must be torch.long, got {input_ids.dtype}")
        # One-hot in the weights' dtype (bf16 weights work too); under autocast the trunk casts as it goes.
        one_hot = one_hot_dna(input_ids, dtype=self.enformer.stem[0].weight.dtype)
        return self.enformer(self.input_one_hot(one_hot)), None


class _DnaIdTokenizer:
    """One id per base (no special tokens, never truncated: the window has the model's length)."""

    def __init__(self):
        self._tokenizer = DnaTokenizer()

    def encode(self, sequence, name="DNA window"):
        return self._tokenizer.encode(sequence), False


class Enformer(SequenceEncoder):
    """The Enformer DNA encoder (``dna_encoder_type="enformer"``); reads the ``enformer_*`` fields."""

    name = "enformer"
    modality = "dna"
    label = "Enformer"
    inner_prefix = "enformer."
    fixed_length = True
    summary_type = "enformer"

    def build(self, config):
        return EnformerDNAEncoder(config)

    def attribution_layer(self, module):
        return module.input_one_hot

    def attribution_embedding(self, module, input_ids):
        # The one-hot channels A, C, G, T: an N (and the all-N baseline) is the zero vector.
        return one_hot_dna(input_ids, dtype=module.enformer.stem[0].weight.dtype)

    def attribution_baseline(self, config, input_ids):
        return np.full_like(input_ids, DNA_N_ID)

    def input_spans(self, config, sequence, truncation="keep_start"):
        positions = np.arange(len(sequence), dtype=np.int64)
        return np.stack([positions, positions + 1], axis=1)

    def validate(self, config):
        if config.enformer_use_tf_gamma:
            raise InputError(
                "invalid IsoFormer configuration: enformer_use_tf_gamma=true is not supported (the trunk computes "
                "its gamma positional features; TensorFlow's precomputed table is not available); set it to false"
            )
        dim, heads = config.enformer_dim, config.enformer_heads
        if dim % 2 or heads < 1 or dim % heads or (dim // heads) % 6:
            raise InputError(
                f"invalid IsoFormer configuration: enformer_dim={dim} must be even and divisible by "
                f"enformer_heads={heads} into heads whose width is a multiple of 6 (positional features)"
            )
        if config.enformer_num_downsamples < 1:
            raise InputError(
                f"invalid IsoFormer configuration: enformer_num_downsamples={config.enformer_num_downsamples} "
                "must be at least 1"
            )
        downsample = 2**config.enformer_num_downsamples
        if config.dna_length % downsample:
            raise InputError(
                f"invalid IsoFormer configuration: dna_length={config.dna_length} is not a multiple of "
                f"2**enformer_num_downsamples={downsample}"
            )
        if config.enformer_target_length > config.dna_length // downsample:
            raise InputError(
                f"invalid IsoFormer configuration: enformer_target_length={config.enformer_target_length} exceeds "
                f"the {config.dna_length // downsample} bins of a {config.dna_length}-bp window"
            )

    def width(self, config):
        return 2 * config.enformer_dim

    def positions(self, config):
        if config.enformer_target_length == -1:
            return config.dna_length // 2**config.enformer_num_downsamples
        return config.enformer_target_length

    def max_input_length(self, config):
        return config.dna_length

    def output_length(self, config, input_length):
        return self.positions(config)

    def random_token_range(self, config):
        return 0, 4

    # Working memory in inference, measured with benchmarks/memory_model.py (CPU, batches of 1 and 2). It has two
    # regimes: windows longer than INFERENCE_SLICE run the residual block and pooling of each conv stage in slices
    # (official: 6.2 kB per base fp32, 3.2 kB bf16, for a width of 1,536), shorter ones in one pass with every
    # full-length temporary (tiny: 1.9 kB fp32, 0.95 kB bf16, width 192). Every window has the model's length,
    # so the regime follows from the configuration.
    bytes_per_position_and_width = {"fp32": 4.1, "bf16": 2.1}
    unsliced_bytes_per_position_and_width = {"fp32": 10.0, "bf16": 5.1}
    # Training: the convolution tower at full resolution dominates, not the transformer's depth: one "layer".
    # Measured fp32 forward + backward at tiny size, batches of 1, 2 and 8 (the largest kept): 60.6 B, and
    # 46.4 B with each conv stage and transformer block checkpointed. The official size, measured for
    # enformer-pytorch (41.4 B), was below its tiny figure (67.2 B); the tiny figures are kept as the bound.
    training_bytes_per_position_and_width = (0.0, 60.6)
    checkpointed_bytes_per_position_and_width = (0.0, 46.4)

    def activation_bytes(self, config, batch, length, precision="fp32"):
        """As `SequenceEncoder.activation_bytes`, with the coefficients of the window's regime (sliced or not)."""
        sliced = self.max_input_length(config) > INFERENCE_SLICE
        table = self.bytes_per_position_and_width if sliced else self.unsliced_bytes_per_position_and_width
        coefficient = table.get(precision, table["fp32"])
        return int(coefficient * batch * length * self.memory_width(config))

    def memory_width(self, config):
        return config.enformer_dim

    def tokenizer(self, config, truncation="keep_start"):
        return _DnaIdTokenizer()

    def pad_id(self, config):
        return -1

    def layer_groups(self, module):
        enformer = module.enformer
        return LayerGroups(before=[enformer.stem, enformer.conv_tower], layers=list(enformer.transformer),
                           after=[enformer.final_pointwise])

    def enable_activation_checkpointing(self, module):
        """Each conv-tower stage and each transformer block recomputes its activations in the backward pass
        (the full-resolution conv stages hold most of the memory, not the transformer); returns how many.

        The trunk does it itself (`EnformerTrunk.set_activation_checkpointing`) so that BatchNorm, when it
        trains, does not update its running statistics a second time in the recomputation. Nothing is
        renamed: checkpoints are unchanged.
        """
        trunk = module.enformer
        trunk.set_activation_checkpointing(True)
        return len(trunk.conv_tower) + len(trunk.transformer)

    def parameter_groups(self, module):
        def count(*modules):
            return sum(p.numel() for part in modules for p in part.parameters())

        enformer = module.enformer
        return {
            "stem_and_conv_tower": count(enformer.stem, enformer.conv_tower),
            "transformer": count(enformer.transformer),
            "final_pointwise": count(enformer.final_pointwise),
        }

    def summary(self, config):
        return {
            "type": self.summary_type,
            "dim": config.enformer_dim,
            "depth": config.enformer_depth,
            "heads": config.enformer_heads,
            "downsamples": config.enformer_num_downsamples,
            "bin_bp": 2**config.enformer_num_downsamples,
            "window_bp": config.dna_length,
            "positions": self.positions(config),
            "output_width": self.width(config),
        }

    def describe(self, summary):
        return (
            f"enformer (dim {summary['dim']}, depth {summary['depth']}, {summary['heads']} heads), "
            f"{summary['window_bp']:,} bp -> {summary['positions']} bins of {summary['bin_bp']} bp "
            f"x {summary['output_width']}"
        )

ENFORMER = Enformer()
