"""The building blocks of the Enformer trunk (:mod:`.enformer_trunk`): relative positional features, the
sigmoid GELU, conv blocks, attention pooling, the stem and conv-tower stages, relative-position attention, the
transformer block and the final pointwise block, each under enformer-pytorch's tensor names (see the trunk's
module docstring for the architecture and the speed-ups, which are implemented here).
"""

from __future__ import annotations

import contextvars
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

#: GELU approximation used by Enformer: ``gelu(x) ~= x * sigmoid(GELU_SIGMOID_SCALE * x)``.
GELU_SIGMOID_SCALE = 1.702

# True while torch.utils.checkpoint recomputes a forward pass for the backward pass: BatchNorm must not
# update its running statistics a second time then.
_RECOMPUTING = contextvars.ContextVar("enformer_trunk_recomputing", default=False)

#: Positions per slice when the convolutional part runs slice by slice at inference (even, so that pooling
#: pairs never straddle two slices); see `residual_then_pool`.
INFERENCE_SLICE = 4096


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


def checkpointed_call(module: nn.Module, *args: torch.Tensor) -> torch.Tensor:
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
