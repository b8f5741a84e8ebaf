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
may carry ``_heads.*``; :func:`enformer_state_dict_to_trunk` folds those away.

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

import contextvars
import itertools
import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from isoformer_cli.errors import CheckpointError, InputError

#: GELU approximation used by Enformer: ``gelu(x) ~= x * sigmoid(GELU_SIGMOID_SCALE * x)``.
GELU_SIGMOID_SCALE = 1.702

#: Positions of the named trunk modules inside enformer-pytorch's ``_trunk`` ``nn.Sequential``: a key
#: ``_trunk.{position}.rest`` is the same tensor as ``{name}.rest``. Positions 0, 3 and 5 (layout changes
#: and the crop) hold no tensors.
TRUNK_SEQUENTIAL_POSITIONS: dict[int, str] = {1: "stem", 2: "conv_tower", 4: "transformer", 6: "final_pointwise"}

#: Key prefix of enformer-pytorch's human/mouse output heads, which the trunk does not have.
OUTPUT_HEADS_PREFIX = "_heads."

# True while torch.utils.checkpoint recomputes a forward pass for the backward pass: BatchNorm must not
# update its running statistics a second time then.
_RECOMPUTING = contextvars.ContextVar("enformer_trunk_recomputing", default=False)

#: Positions per slice when the convolutional part runs slice by slice at inference (even, so that pooling
#: pairs never straddle two slices); see `residual_then_pool`.
INFERENCE_SLICE = 4096

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
# Relative positional features
# ---------------------------------------------------------------------------------------------------------


def relative_position_features(num_bins: int, num_features: int, device=None) -> torch.Tensor:
    """Positional basis functions of every relative distance between two of ``num_bins`` bins.

    Returns a float32 tensor (2 * num_bins - 1, num_features); row ``r`` is distance ``r - (num_bins - 1)``
    (key bin minus query bin, in bins). The features are three families of ``num_features // 6`` symmetric
    functions of ``|distance|`` (exponential decay, central mask, gamma density), then the same three
    multiplied by ``sign(distance)``.

    The float32 operations follow the order of the reference implementation the pretrained weights were
    converted with: the gamma family subtracts two large log terms, so a different order changes the
    features by about 1e-3 relative.
    """
    if num_features % 6:
        raise ValueError(f"the number of relative position features ({num_features}) must be divisible by 6")
    per_family = num_features // 6
    distances = torch.arange(-num_bins + 1, num_bins, device=device)
    symmetric = torch.cat(
        [
            _exponential_features(distances, per_family, num_bins),
            _central_mask_features(distances, per_family),
            _gamma_features(distances, per_family, num_bins),
        ],
        dim=-1,
    )
    return torch.cat([symmetric, torch.sign(distances)[:, None] * symmetric], dim=-1)


def _exponential_features(distances: torch.Tensor, count: int, num_bins: int) -> torch.Tensor:
    """exp(-ln2 * |d| / half_life) with half-lives spaced log-uniformly from 2**3 to num_bins bins."""
    max_log2_half_life = math.log(num_bins) / math.log(2.0)
    half_life = 2 ** torch.linspace(3.0, max_log2_half_life, count, device=distances.device)
    return torch.exp(-math.log(2.0) / half_life[None, :] * distances.abs()[:, None])


def _central_mask_features(distances: torch.Tensor, count: int) -> torch.Tensor:
    """1 where |d| < 2**k - 1, for k = 1..count (windows of doubling width around the query), else 0."""
    widths = 2 ** torch.arange(1, count + 1, device=distances.device).float() - 1
    return (widths[None, :] > distances.abs()[:, None]).float()


def _gamma_features(distances: torch.Tensor, count: int, num_bins: int) -> torch.Tensor:
    """Gamma densities of |d| with means spread over (0, num_bins], each row scaled to a maximum of 1."""
    stddev = num_bins / (2 * count)
    start_mean = num_bins / count
    mean = torch.linspace(start_mean, num_bins, count, device=distances.device)[None, :]
    concentration = (mean / stddev) ** 2
    rate = mean / stddev**2
    x = distances.float().abs()[:, None]
    log_unnormalized = torch.xlogy(concentration - 1.0, x) - rate * x
    log_normalization = torch.lgamma(concentration) - concentration * torch.log(rate)
    density = torch.exp(log_unnormalized - log_normalization) + 1e-8
    return density / torch.amax(density, dim=-1, keepdim=True)


def relative_logits_to_absolute(relative: torch.Tensor) -> torch.Tensor:
    """(..., N, W) logits indexed by distance -> (..., N, N) logits indexed by key, as a view (no copy).

    Column ``r`` of ``relative`` belongs to distance ``r - (N - 1)`` (key bin minus query bin); W >= 2N - 1
    and columns from 2N - 1 on are ignored. The result ``[..., i, j]`` is ``relative[..., i, (N - 1) + j - i]``:
    flattening the last two dimensions and reading rows of ``W - 1`` values from offset ``N - 1`` moves each
    successive query one column to the left.
    """
    n, width = relative.shape[-2:]
    if width < 2 * n - 1:
        raise ValueError(f"expected relative logits (..., N, W >= 2N - 1), got {tuple(relative.shape)}")
    if n == 1:
        return relative[..., :1]
    flat = relative.contiguous().flatten(-2)
    return flat[..., n - 1 : n - 1 + n * (width - 1)].unflatten(-1, (n, width - 1))[..., :n]


# ---------------------------------------------------------------------------------------------------------
# Convolutional part
# ---------------------------------------------------------------------------------------------------------


class SigmoidGELU(nn.Module):
    """``x * sigmoid(1.702 x)``, the GELU approximation Enformer was trained with; any shape."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(GELU_SIGMOID_SCALE * x)


def _add_residual(branch: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """``branch + residual``; in place when no gradient is recorded and the result dtype allows, which
    saves one activation-sized allocation (``branch`` must be a fresh tensor)."""
    if torch.is_grad_enabled() or torch.result_type(branch, residual) != branch.dtype:
        return branch + residual
    return branch.add_(residual)


def _scaled_batch_norm(norm: nn.BatchNorm1d, x: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale * norm(x)`` with one ``batch_norm`` call (the scale goes into the affine parameters).

    Follows ``nn.BatchNorm1d``'s own rules (batch statistics and running-statistic updates in training
    mode, running statistics in eval mode), except that a forward pass recomputed by activation
    checkpointing does not update the running statistics again.
    """
    if type(norm) is not nn.BatchNorm1d or not norm.affine or not norm.track_running_stats:
        # SyncBatchNorm or a custom configuration: let the module do its own work.
        return norm(x) * scale
    weight, bias = norm.weight * scale, norm.bias * scale
    if not norm.training:
        return F.batch_norm(x, norm.running_mean, norm.running_var, weight, bias, False, 0.0, norm.eps)
    if _RECOMPUTING.get():
        # Throw-away copies: the recomputation must record the same operations as the first pass.
        running_mean, running_var = norm.running_mean.clone(), norm.running_var.clone()
        return F.batch_norm(x, running_mean, running_var, weight, bias, True, 0.0, norm.eps)
    norm.num_batches_tracked.add_(1)
    momentum = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
    return F.batch_norm(x, norm.running_mean, norm.running_var, weight, bias, True, momentum, norm.eps)


class ConvBlock(nn.Sequential):
    """BatchNorm1d -> GELU -> Conv1d (same padding): (B, C_in, L) -> (B, C_out, L).

    Children (checkpoint positions): ``0`` BatchNorm1d(C_in), ``1`` `SigmoidGELU`, ``2`` Conv1d.
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, kernel_size: int = 1):
        out_channels = in_channels if out_channels is None else out_channels
        super().__init__(
            nn.BatchNorm1d(in_channels),
            SigmoidGELU(),
            nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm, _, conv = self
        # z = 1.702 * BN(x); silu(z) = z * sigmoid(z) = 1.702 * gelu(BN(x)); dividing the convolution weight
        # by 1.702 undoes the factor. One fused activation instead of a multiply, a sigmoid and a product.
        scaled = _scaled_batch_norm(norm, x, GELU_SIGMOID_SCALE)
        activated = F.silu(scaled, inplace=not torch.is_grad_enabled())
        return F.conv1d(activated, conv.weight * (1.0 / GELU_SIGMOID_SCALE), conv.bias, padding=conv.padding)


class Residual(nn.Module):
    """``x + fn(x)``; ``fn`` must return a new tensor of x's shape."""

    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _add_residual(self.fn(x), x)


class AttentionPool(nn.Module):
    """Halves the length: each output is a softmax-weighted sum of two neighbouring positions.

    (B, C, L) -> (B, C, L / 2), L even. Per channel c the weights are ``softmax(W x_even, W x_odd)[c]``
    with W a learnt C x C matrix (initialised to 2 x identity). A softmax over two logits is the sigmoid of
    their difference and W is linear, so the output is computed as
    ``odd + sigmoid(W (even - odd)) * (even - odd)``: one matrix product on half the positions.
    The weight keeps the original 1x1 Conv2d layout (C, C, 1, 1) under ``to_attn_logits.weight``.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.to_attn_logits = nn.Conv2d(dim, dim, 1, bias=False)
        with torch.no_grad():
            nn.init.dirac_(self.to_attn_logits.weight)
            self.to_attn_logits.weight.mul_(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2:
            raise ValueError(f"attention pooling needs an even length, got {x.shape[-1]}")
        even, odd = x[..., 0::2], x[..., 1::2]
        difference = even - odd
        # Per channel, the logit of the even position minus that of the odd one: (B, C, L/2).
        logit_gap = F.conv1d(difference, self.to_attn_logits.weight.flatten(2))
        if torch.is_grad_enabled():
            return odd + torch.sigmoid(logit_gap) * difference
        return torch.addcmul(odd, logit_gap.sigmoid_(), difference)


def residual_then_pool(residual: Residual, pool: AttentionPool, x: torch.Tensor) -> torch.Tensor:
    """``pool(residual(x))`` for a residual pointwise conv block: (B, C, L) -> (B, C, L / 2).

    At inference (no gradients recorded, BatchNorm on running statistics) every output position depends only
    on its own pair of input positions, so the work runs on slices of `INFERENCE_SLICE` positions: the
    full-length temporaries (BatchNorm output, convolution output, pair difference, gate) would otherwise
    triple the memory of the widest layers, and the slices stay in cache between steps. In training,
    BatchNorm needs statistics over the whole tensor: one pass.
    """
    length = x.shape[-1]
    if torch.is_grad_enabled() or residual.fn[0].training or length <= INFERENCE_SLICE:
        return pool(residual(x))
    pooled = None
    for start in range(0, length, INFERENCE_SLICE):
        piece = pool(residual(x[..., start : start + INFERENCE_SLICE]))
        if pooled is None:  # allocated here: the dtype follows autocast
            pooled = piece.new_empty(*piece.shape[:-1], length // 2)
        pooled[..., start // 2 : start // 2 + piece.shape[-1]] = piece
    return pooled


class Stem(nn.Sequential):
    """One-hot (B, 4, L) -> (B, dim/2, L/2): Conv1d kernel 15, residual pointwise conv block, pooling.

    Children (checkpoint positions): ``0`` Conv1d, ``1`` Residual(ConvBlock), ``2`` AttentionPool.
    """

    def __init__(self, channels: int):
        super().__init__(
            nn.Conv1d(4, channels, 15, padding=7),
            Residual(ConvBlock(channels)),
            AttentionPool(channels),
        )

    def forward(self, one_hot: torch.Tensor) -> torch.Tensor:
        conv, residual, pool = self
        return residual_then_pool(residual, pool, conv(one_hot))


class ConvTowerStage(nn.Sequential):
    """(B, C_in, L) -> (B, C_out, L/2): conv block kernel 5, residual pointwise conv block, pooling.

    Children (checkpoint positions): ``0`` ConvBlock, ``1`` Residual(ConvBlock), ``2`` AttentionPool.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            ConvBlock(in_channels, out_channels, kernel_size=5),
            Residual(ConvBlock(out_channels, out_channels, 1)),
            AttentionPool(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv_block, residual, pool = self
        return residual_then_pool(residual, pool, conv_block(x))


def conv_tower_widths(dim: int, num_downsamples: int, divisible_by: int) -> list[int]:
    """Channel widths from the stem to the end of the tower: ``num_downsamples`` numbers, dim/2 .. dim.

    The ``num_downsamples - 1`` tower outputs grow geometrically from dim/2 to dim, each rounded to the
    nearest multiple of ``divisible_by`` (official: 768, 768, 896, 1024, 1152, 1280, 1536).
    """
    start, end, count = dim // 2, dim, num_downsamples - 1
    if count == 0:
        return [start]
    if count == 1:
        return [start, int(round(end / divisible_by) * divisible_by)]
    growth = math.exp(math.log(end / start) / (count - 1))
    return [start] + [int(round(start * growth**i / divisible_by) * divisible_by) for i in range(count)]


# ---------------------------------------------------------------------------------------------------------
# Transformer
# ---------------------------------------------------------------------------------------------------------


class RelativePositionAttention(nn.Module):
    """Multi-head self-attention with relative positional logits (Transformer-XL style).

    For query bin i and key bin j, per head: ``logit = (s q_i + u) . k_j + (s q_i + v) . R r_{j - i}``,
    where ``s = key_dim ** -0.5``, ``u`` / ``v`` are the learnt content / position biases
    (``rel_content_bias`` / ``rel_pos_bias``, (1, heads, 1, key_dim)), ``r_d`` are the positional features of
    distance d (`relative_position_features`) and R is ``to_rel_k``. Queries and keys have ``key_dim`` per
    head, values ``value_dim``.

    Shapes: hidden (B, N, dim), position_features (W, num_position_features) -> (B, N, dim), where row r of
    the features is distance r - (N - 1) and W >= 2N - 1 (rows from 2N - 1 on are ignored: `EnformerTrunk`
    passes W = 2N, one zero row more, because rows of 2N - 1 logits, an odd count, leave the matrix
    product's output misaligned in memory, which makes it about 1.5 times slower on CPU).
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        key_dim: int,
        value_dim: int,
        num_position_features: int,
        attn_dropout: float = 0.0,
        pos_dropout: float = 0.0,
    ):
        super().__init__()
        self.heads = heads
        self.key_dim = key_dim
        self.value_dim = value_dim
        self.scale = key_dim**-0.5
        # Dropout modules (not plain rates) so that whatever switches a model's nn.Dropout layers off or on
        # (eval mode, or code setting ``p``) reaches these too, as it does in enformer-pytorch.
        self.attn_dropout = nn.Dropout(attn_dropout)
        self.pos_dropout = nn.Dropout(pos_dropout)

        self.to_q = nn.Linear(dim, key_dim * heads, bias=False)
        self.to_k = nn.Linear(dim, key_dim * heads, bias=False)
        self.to_v = nn.Linear(dim, value_dim * heads, bias=False)
        self.to_out = nn.Linear(value_dim * heads, dim)
        self.to_rel_k = nn.Linear(num_position_features, key_dim * heads, bias=False)
        self.rel_content_bias = nn.Parameter(torch.randn(1, heads, 1, key_dim))
        self.rel_pos_bias = nn.Parameter(torch.randn(1, heads, 1, key_dim))
        # A new block starts as the identity: its residual branch outputs zero.
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def forward(self, hidden: torch.Tensor, position_features: torch.Tensor) -> torch.Tensor:
        batch, n, _ = hidden.shape
        # (B, N, heads * d) -> (B, heads, N, d)
        q = self.to_q(hidden).unflatten(-1, (self.heads, self.key_dim)).transpose(1, 2)
        k = self.to_k(hidden).unflatten(-1, (self.heads, self.key_dim)).transpose(1, 2)
        v = self.to_v(hidden).unflatten(-1, (self.heads, self.value_dim)).transpose(1, 2)
        compute_dtype = v.dtype  # the projections' dtype (bf16 under autocast)

        features = self.pos_dropout(position_features)
        rel_k = self.to_rel_k(features).unflatten(-1, (self.heads, self.key_dim)).permute(1, 2, 0)  # (h, d, W)
        position_query = torch.add(self.rel_pos_bias, q, alpha=self.scale).to(compute_dtype)  # s q + v
        relative_logits = torch.matmul(position_query, rel_k)  # (B, h, N, W)
        position_logits = relative_logits_to_absolute(relative_logits).to(compute_dtype)  # (B, h, N, N)

        content_query = torch.add(self.rel_content_bias, q, alpha=self.scale).to(compute_dtype)  # s q + u
        if content_query.device.type == "cpu" and self.key_dim < self.value_dim:
            # PyTorch's fused CPU kernel needs one head size for queries, keys and values (otherwise it
            # falls back to unfused math); zero columns leave every q . k unchanged.
            padding = (0, self.value_dim - self.key_dim)
            content_query, k = F.pad(content_query, padding), F.pad(k, padding)
        out = F.scaled_dot_product_attention(
            content_query,
            k,
            v,
            attn_mask=position_logits,
            dropout_p=self.attn_dropout.p if self.attn_dropout.training else 0.0,
            scale=1.0,  # q is already scaled; the biases u and v are not
        )
        return self.to_out(out.transpose(1, 2).reshape(batch, n, self.heads * self.value_dim))


class AttentionSublayer(nn.Module):
    """``x + dropout(attention(LayerNorm(x)))``: (B, N, dim), position features (W, F) -> (B, N, dim).

    ``fn`` children (checkpoint positions): ``0`` LayerNorm, ``1`` `RelativePositionAttention`, ``2`` Dropout.
    """

    def __init__(self, dim: int, attention: RelativePositionAttention, dropout: float):
        super().__init__()
        self.fn = nn.Sequential(nn.LayerNorm(dim), attention, nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, position_features: torch.Tensor) -> torch.Tensor:
        norm, attention, dropout = self.fn
        return _add_residual(dropout(attention(norm(x), position_features)), x)


def feed_forward_sublayer(dim: int, dropout: float) -> Residual:
    """``x + FFN(LayerNorm(x))`` with FFN = Linear(dim, 2 dim), Dropout, ReLU, Linear(2 dim, dim), Dropout.

    ``fn`` children (checkpoint positions): ``0`` LayerNorm, ``1`` and ``4`` Linear.
    """
    return Residual(
        nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, dim * 2),
            nn.Dropout(dropout),
            nn.ReLU(),
            nn.Linear(dim * 2, dim),
            nn.Dropout(dropout),
        )
    )


class TransformerBlock(nn.Sequential):
    """Attention sublayer then feed-forward sublayer: (B, N, dim), position features (W, F) -> (B, N, dim).

    Children (checkpoint positions): ``0`` `AttentionSublayer`, ``1`` feed-forward `Residual`.
    """

    def __init__(self, dim: int, heads: int, attn_dim_key: int, dropout_rate: float, attn_dropout: float,
                 pos_dropout: float):
        attention = RelativePositionAttention(
            dim,
            heads=heads,
            key_dim=attn_dim_key,
            value_dim=dim // heads,
            num_position_features=dim // heads,
            attn_dropout=attn_dropout,
            pos_dropout=pos_dropout,
        )
        super().__init__(AttentionSublayer(dim, attention, dropout_rate), feed_forward_sublayer(dim, dropout_rate))

    def forward(self, x: torch.Tensor, position_features: torch.Tensor) -> torch.Tensor:
        attention, feed_forward = self
        return feed_forward(attention(x, position_features))


# ---------------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------------


class Transpose(nn.Module):
    """Swaps the last two dimensions (a view): (B, N, C) <-> (B, C, N)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


class FinalPointwise(nn.Sequential):
    """(B, N, dim) -> (B, N, 2 dim): pointwise conv block, dropout, GELU.

    Children (checkpoint positions): ``0`` / ``2`` layout changes, ``1`` ConvBlock, ``3`` Dropout, ``4`` GELU.
    """

    def __init__(self, in_channels: int, out_channels: int, dropout: float):
        super().__init__(
            Transpose(), ConvBlock(in_channels, out_channels, 1), Transpose(), nn.Dropout(dropout), SigmoidGELU()
        )


# ---------------------------------------------------------------------------------------------------------
# Trunk
# ---------------------------------------------------------------------------------------------------------


def _checkpointed_call(module: nn.Module, *args: torch.Tensor) -> torch.Tensor:
    """``module(*args)`` under non-reentrant activation checkpointing; the recomputation in the backward pass
    runs with `_RECOMPUTING` set so that BatchNorm does not update its running statistics twice."""
    calls = 0

    def run(*inputs):
        nonlocal calls
        calls += 1
        if calls == 1:
            return module(*inputs)
        token = _RECOMPUTING.set(True)
        try:
            return module(*inputs)
        finally:
            _RECOMPUTING.reset(token)

    return checkpoint(run, *args, use_reentrant=False)


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
            return _checkpointed_call(module, *args)
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


# ---------------------------------------------------------------------------------------------------------
# Checkpoint keys
# ---------------------------------------------------------------------------------------------------------


def trunk_key(key: str) -> str | None:
    """The `EnformerTrunk` key of one enformer-pytorch ``Enformer`` state-dict key.

    ``_trunk.{1,2,4,6}.rest`` -> ``{stem,conv_tower,transformer,final_pointwise}.rest``; ``_heads.*`` -> None
    (no counterpart); any other key is returned unchanged. Raises `CheckpointError` for a ``_trunk.N`` key
    at a position that holds no tensors.
    """
    if key.startswith(OUTPUT_HEADS_PREFIX):
        return None
    if key.startswith("_trunk."):
        position, _, rest = key[len("_trunk.") :].partition(".")
        name = TRUNK_SEQUENTIAL_POSITIONS.get(int(position)) if position.isdigit() else None
        if name is None or not rest:
            raise CheckpointError(
                f"{key}: not an Enformer trunk tensor (expected _trunk.N. with N in "
                f"{sorted(TRUNK_SEQUENTIAL_POSITIONS)})"
            )
        return f"{name}.{rest}"
    return key


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.device == b.device and a.data_ptr() == b.data_ptr() and a.stride() == b.stride():
        return True
    return torch.equal(a, b.to(a.device))


def enformer_state_dict_to_trunk(state_dict, prefix: str = "") -> dict[str, torch.Tensor]:
    """The `EnformerTrunk` state dict inside an enformer-pytorch (or IsoFormer) state dict.

    Keys that do not start with ``prefix`` are skipped (``prefix="dna_encoder.enformer."`` selects the trunk
    of an IsoFormer checkpoint); the rest lose the prefix, output heads (``_heads.*``) are dropped and
    ``_trunk.N.`` spellings are renamed with `trunk_key`. When a tensor is spelled both ways the two must be
    equal, else `CheckpointError`. The result loads with ``EnformerTrunk.load_state_dict(..., strict=True)``.
    """
    converted: dict[str, torch.Tensor] = {}
    source_key: dict[str, str] = {}
    for key, tensor in state_dict.items():
        if not key.startswith(prefix):
            continue
        ours = trunk_key(key[len(prefix) :])
        if ours is None:
            continue
        if ours in converted:
            if not _same_tensor(converted[ours], tensor):
                raise CheckpointError(
                    f"{source_key[ours]} and {key} are two spellings of the Enformer tensor {ours} "
                    "but hold different values; the checkpoint is inconsistent"
                )
            continue
        converted[ours] = tensor
        source_key[ours] = key
    return converted
