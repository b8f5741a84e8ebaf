"""The Enformer trunk (Avsec et al. 2021, Nature Methods) in plain PyTorch: one-hot DNA in, bin embeddings out.

Architecture, for a window of ``L`` bp and ``num_downsamples = D`` halvings (official: L = 196,608, D = 7):

1. Stem: Conv1d(4 -> dim/2, kernel 15), a residual pointwise conv block, attention pooling (L -> L/2).
2. Convolution tower: ``D - 1`` stages, each a conv block (kernel 5), a residual pointwise conv block and
   attention pooling; channel widths grow exponentially from dim/2 to dim (rounded to ``dim_divisible_by``).
   After it every position is one bin of ``2**D`` bp (128 bp official): ``L / 2**D`` bins (1,536 official).
3. Transformer: ``depth`` blocks of pre-LayerNorm multi-head attention with relative positional encodings,
   then a pre-LayerNorm ReLU feed-forward (width 2 x dim), each with a residual connection.
4. Centre crop to ``target_length`` bins (896 official: the central 114,688 bp).
5. Final pointwise conv block to 2 x dim channels, dropout, GELU.

A conv block is BatchNorm -> GELU -> Conv1d; GELU is the sigmoid approximation ``x * sigmoid(1.702 x)``
throughout (as the pretrained weights were trained with).

Coordinates: input position ``i`` is base ``i`` of the window; output bin ``j`` covers bases
``(s + j) * 2**D`` to ``(s + j + 1) * 2**D - 1`` where ``s = (L / 2**D - target_length) // 2`` bins are
cropped at the start. For a window centred on a TSS at base ``L / 2`` the TSS is in bin ``target_length / 2``.

Checkpoint compatibility
------------------------
Parameter and buffer names and shapes are those of the ``enformer-pytorch`` package's named modules
(``stem.*``, ``conv_tower.*``, ``transformer.*``, ``final_pointwise.*``, BatchNorm running statistics included),
so its state dicts and IsoFormer checkpoints load with ``strict=True``. That is why several modules here are
``nn.Sequential`` subclasses whose children sit at fixed positions, and why residual branches are held in an
attribute called ``fn``. ``enformer-pytorch`` also names every tensor a second time under ``_trunk.N.`` and
may carry ``_heads.*``; the key rows of :mod:`isoformer_cli.models.conversion.encoders.enformer` fold those
away. The building blocks are in :mod:`.enformer_layers`.

Faster than a literal transcription, with the same arithmetic up to float rounding:

* Attention pooling over a pair: a softmax over two logits is the sigmoid of their difference, and the
  logits are linear in the input, so one projection of ``even - odd`` replaces two projections and a softmax.
* Conv blocks fold GELU's 1.702 into the BatchNorm affine and the following convolution's weight, so the
  activation is a single ``silu`` (in place at inference).
* At inference the residual pointwise block and the pooling of each stage run on slices of the length,
  which keeps the full-length temporaries of the widest layers out of memory.
* Attention runs through ``scaled_dot_product_attention`` with the relative-position logits as an additive
  bias (read from the distance-indexed logits as a strided view, no copy); the positional basis functions are
  computed once per (bins, device, dtype) and cached.
* Optional activation checkpointing per conv-tower stage and per transformer block (training only).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from isoformer_cli.errors import InputError
from isoformer_cli.models.network.encoders.enformer_layers import (
    ConvTowerStage,
    FinalPointwise,
    Stem,
    TransformerBlock,
    checkpointed_call,
    conv_tower_widths,
    relative_position_features,
)

# How many (bins, device, dtype) entries of positional features one trunk keeps.
_POSITION_FEATURE_CACHE_SIZE = 8


# ---------------------------------------------------------------------------------------------------------
# Input encoding
# ---------------------------------------------------------------------------------------------------------

#: Rows of the one-hot table, indexed by token id + 1: padding (-1), A (0), C (1), G (2), T (3), N (4).
_ONE_HOT_TABLE = (
    (0.25, 0.25, 0.25, 0.25),
    (1.0, 0.0, 0.0, 0.0),
    (0.0, 1.0, 0.0, 0.0),
    (0.0, 0.0, 1.0, 0.0),
    (0.0, 0.0, 0.0, 1.0),
    (0.0, 0.0, 0.0, 0.0),
)


def one_hot_dna(token_ids: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One-hot DNA for the trunk: token ids (B, L) -> (B, L, 4) in ``dtype``, channels A, C, G, T.

    Ids: A 0, C 1, G 2, T 3, N 4 (all-zero row: no base is known) and -1 for padding (0.25 everywhere:
    any base equally likely). Any other value raises `InputError`.
    """
    if token_ids.dtype.is_floating_point or token_ids.dtype.is_complex or token_ids.dtype == torch.bool:
        raise InputError(f"DNA token ids must be an integer tensor, got {token_ids.dtype}")
    if token_ids.numel() and (int(token_ids.min()) < -1 or int(token_ids.max()) > 4):
        raise InputError("DNA token ids must be A0 C1 G2 T3 N4 (or -1 for padding); found values outside -1..4")
    table = torch.tensor(_ONE_HOT_TABLE, dtype=dtype, device=token_ids.device)
    return table[token_ids.long() + 1]


# ---------------------------------------------------------------------------------------------------------
# Trunk
# ---------------------------------------------------------------------------------------------------------


class EnformerTrunk(nn.Module):
    """The Enformer trunk: one-hot DNA (B, L, 4) -> bin embeddings (B, target_length, 2 * dim).

    Args:
        dim: transformer width (1536 official); the stem has dim/2 channels, the output 2 * dim.
        depth: transformer blocks (11).
        heads: attention heads (8); value and positional-feature size per head is dim / heads (divisible by 6).
        attn_dim_key: query/key size per head (64).
        dropout_rate: dropout after attention and in the feed-forward (0.4); dropout_rate / 8 before the final
            GELU.
        attn_dropout: dropout on the attention weights (0.05).
        pos_dropout: dropout on the relative positional features (0.01).
        target_length: output bins kept around the centre (896); -1 keeps every bin.
        num_downsamples: halvings of the length (7: 128-bp bins).
        dim_divisible_by: rounding of the conv-tower widths (128).
        use_tf_gamma: must be False: the gamma features are computed, TensorFlow's precomputed table is not
            supported.

    Attributes:
        gradient_checkpointing: recompute each conv-tower stage and transformer block in the backward pass
            (training with gradients only); see `set_activation_checkpointing`.
        bin_size: bp per bin, ``2 ** num_downsamples``.
        output_size: 2 * dim.
    """

    def __init__(
        self,
        dim: int = 1536,
        depth: int = 11,
        heads: int = 8,
        attn_dim_key: int = 64,
        dropout_rate: float = 0.4,
        attn_dropout: float = 0.05,
        pos_dropout: float = 0.01,
        target_length: int = 896,
        num_downsamples: int = 7,
        dim_divisible_by: int = 128,
        use_tf_gamma: bool = False,
    ):
        super().__init__()
        if use_tf_gamma:
            raise ValueError(
                "use_tf_gamma=True is not supported: the trunk computes its gamma positional features "
                "(TensorFlow's precomputed table is not available); use use_tf_gamma=False"
            )
        if num_downsamples < 1:
            raise ValueError(f"num_downsamples must be at least 1, got {num_downsamples}")
        if dim % 2 or dim % heads or (dim // heads) % 6:
            raise ValueError(f"dim ({dim}) must be even and dim / heads ({dim}/{heads}) a multiple of 6")
        if target_length != -1 and target_length < 1:
            raise ValueError(f"target_length must be positive (or -1 for no crop), got {target_length}")
        self.dim = dim
        self.heads = heads
        self.target_length = target_length
        self.num_downsamples = num_downsamples
        self.bin_size = 2**num_downsamples
        self.output_size = 2 * dim
        self.num_position_features = dim // heads
        self.gradient_checkpointing = False

        widths = conv_tower_widths(dim, num_downsamples, dim_divisible_by)
        self.stem = Stem(widths[0])
        self.conv_tower = nn.ModuleList(
            ConvTowerStage(in_channels, out_channels) for in_channels, out_channels in itertools.pairwise(widths)
        )
        self.transformer = nn.ModuleList(
            TransformerBlock(dim, heads, attn_dim_key, dropout_rate, attn_dropout, pos_dropout) for _ in range(depth)
        )
        self.final_pointwise = FinalPointwise(widths[-1], 2 * dim, dropout_rate / 8)
        self._position_feature_cache: OrderedDict = OrderedDict()

    def set_activation_checkpointing(self, enabled: bool = True) -> None:
        """Recompute conv-tower stages and transformer blocks in the backward pass (saves memory in training;
        no effect in eval mode or without gradients)."""
        self.gradient_checkpointing = bool(enabled)

    def check_input(self, one_hot: torch.Tensor) -> None:
        """Raise `InputError` unless ``one_hot`` is a floating (B, L, 4) tensor with a usable length."""
        if not isinstance(one_hot, torch.Tensor) or one_hot.ndim != 3 or one_hot.shape[-1] != 4:
            shape = tuple(one_hot.shape) if isinstance(one_hot, torch.Tensor) else type(one_hot).__name__
            raise InputError(
                f"the Enformer trunk expects one-hot DNA of shape (batch, length, 4), got {shape}; "
                "token ids (batch, length) go through one_hot_dna() first"
            )
        if not one_hot.dtype.is_floating_point:
            raise InputError(
                f"the Enformer trunk expects a floating-point one-hot tensor, got {one_hot.dtype}; "
                "token ids go through one_hot_dna() first"
            )
        length = one_hot.shape[1]
        if length == 0 or length % self.bin_size:
            raise InputError(
                f"DNA length {length:,} bp is not a positive multiple of {self.bin_size} "
                f"(the trunk halves the length {self.num_downsamples} times)"
            )
        bins = length // self.bin_size
        if self.target_length != -1 and bins < self.target_length:
            raise InputError(
                f"DNA length {length:,} bp gives {bins:,} bins of {self.bin_size} bp, fewer than the "
                f"{self.target_length:,} output bins; at least {self.target_length * self.bin_size:,} bp are needed"
            )

    def position_features(self, num_bins: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Cached `relative_position_features` for ``num_bins`` bins and one zero row: (2 * num_bins, dim / heads)
        (see `RelativePositionAttention` for the extra row).

        Computed in float32, then cast to ``dtype`` (enformer-pytorch computes part of them in the weights'
        dtype, which with bf16 weights rounds distances above 256 bins; this is the more exact choice).
        """
        key = (num_bins, torch.device(device), dtype)
        features = self._position_feature_cache.get(key)
        if features is None:
            # A plain constant: usable under inference_mode and in training alike, whichever comes first.
            with torch.inference_mode(False), torch.no_grad(), torch.autocast(device.type, enabled=False):
                features = relative_position_features(num_bins, self.num_position_features, device)
                features = F.pad(features, (0, 0, 0, 1)).to(dtype)
            self._position_feature_cache[key] = features
            while len(self._position_feature_cache) > _POSITION_FEATURE_CACHE_SIZE:
                self._position_feature_cache.popitem(last=False)
        else:
            self._position_feature_cache.move_to_end(key)
        return features

    def _run(self, module: nn.Module, *args: torch.Tensor) -> torch.Tensor:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpointed_call(module, *args)
        return module(*args)

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) -> (B, target_length, C): the central bins (one more dropped at the end when the
        surplus is odd)."""
        if self.target_length == -1:
            return x
        start = (x.shape[1] - self.target_length) // 2
        return x[:, start : start + self.target_length]

    def forward(self, one_hot: torch.Tensor) -> torch.Tensor:
        """one_hot (B, L, 4), channels A C G T, L a multiple of ``bin_size`` -> (B, target_length, 2 * dim).

        Output bin j covers ``bin_size`` bp (see the module docstring for the coordinates). Runs in the
        parameters' dtype (the input is cast to it), or in bf16 under ``torch.autocast``.
        """
        self.check_input(one_hot)
        # (B, 4, L): convolutions want channels first (and a contiguous input, or PyTorch picks a slow kernel).
        x = one_hot.to(self.stem[0].weight.dtype).transpose(1, 2).contiguous()
        x = self.stem(x)
        for stage in self.conv_tower:
            x = self._run(stage, x)
        x = x.transpose(1, 2).contiguous()  # (B, bins, C): once, for the transformer
        if len(self.transformer):
            features_dtype = self.transformer[0][0].fn[1].to_rel_k.weight.dtype
            features = self.position_features(x.shape[1], x.device, features_dtype)
        for block in self.transformer:
            x = self._run(block, x, features)
        return self.final_pointwise(self.crop(x))
