"""Fusion of the modalities into the query stream, and pooling to one vector per isoform.

Three aggregations (``config.aggregation``), all with the same call::

    aggregation(query (B, N, D), query_mask (B, N) bool | None,
                rna (B, Lr, Er) | None, rna_mask (B, Lr) bool | None,
                protein (B, Lp, Ep) | None, protein_mask (B, Lp) bool | None)
        -> (fused (B, N', D), pooled (B, D))

Masks are True at real tokens. A row whose RNA (or protein) mask is all False has no such modality: the
aggregation then behaves, for that row, exactly as an aggregation built without that modality (identity for a
cross-attention block, no term for the linear sum, no keys for the Perceiver), and never produces NaN.

- ``cross-attention`` (official): DNA queries attend to RNA (`CrossAttention` ``rna_cross_attention``), then the
  result attends to protein (``protein_cross_attention``); each block is q/k/v/dense linears with bias,
  scaled dot-product attention with a key padding mask and a residual, no LayerNorm (reconstructed from two
  independent third-party copies of the official code). ``config.fusion_order`` can put protein first, or run
  both blocks from the same DNA stream and add their updates ("parallel"), since the official order is unknown.
  Pooled = mean over the pool window of the fused stream.
- ``perceiver`` (paper ablation): a Perceiver resampler (Flamingo style): ``perceiver_num_latents`` learned
  latents attend, in ``perceiver_depth`` layers, to the concatenation of the query stream, the RNA and the
  protein tokens (each projected to width D) and to themselves; fused = the latents (B, num_latents, D);
  pooled = their mean. The pool window is not used.
- ``linear`` (paper ablation): every modality is mean-pooled (the query stream over the pool window, RNA and
  protein over their real tokens), projected by a Linear to width D, and the projections are summed. fused =
  the query stream unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from isoformer_cli.models.network.configuration import IsoformerConfig


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of x (B, N, D) over positions where mask (B, N) is True -> (B, D). All-False rows give zeros."""
    if mask is None:
        return x.mean(dim=1)
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def window_range(length: int, start, end, reference: str) -> tuple[int, int]:
    """The half-open position range ``[start, end)`` a pool window selects of ``length`` query positions.

    ``reference``: "tss" (bounds relative to position ``length // 2``), "absolute" (relative to 0) or
    "fraction" (``[floor(start length), ceil(end length))``); a None bound means that end of the sequence.
    Clipped to ``[0, length)``; ValueError when nothing is left.
    """
    if start is None and end is None:
        return 0, length
    if reference == "fraction":
        first = 0 if start is None else math.floor(start * length)
        last = length if end is None else math.ceil(end * length)
    else:
        origin = length // 2 if reference == "tss" else 0
        first = 0 if start is None else origin + start
        last = length if end is None else origin + end
    first, last = max(0, first), min(length, last)
    if first >= last:
        raise ValueError(
            f"pool window [{start}, {end}) relative to {reference} selects no position of a "
            f"{length}-position query stream"
        )
    return first, last


class WindowMeanPooling(nn.Module):
    """Mean over a window of query-stream positions (see `IsoformerConfig` "Pooling window").

    With a DNA query stream the window is :func:`window_range` of the config's ``pool_window_*`` fields; both
    None is the mean over every position. Without DNA the window is ignored (masked mean over real tokens).
    """

    def __init__(self, config: IsoformerConfig):
        super().__init__()
        self.start = config.pool_window_start
        self.end = config.pool_window_end
        self.reference = config.pool_window_reference
        self.use_window = config.has_dna

    def window(self, length: int) -> tuple[int, int]:
        """The half-open position range [start, end) pooled for a query stream of ``length`` positions."""
        if not self.use_window:
            return 0, length
        return window_range(length, self.start, self.end, self.reference)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, window: tuple[int, int] | None = None) -> torch.Tensor:
        """x (B, N, D), mask (B, N) bool or None -> (B, D); ``window`` (start, end) overrides the configured one
        (for ``isoformer models calibrate``, which tries several on one fused stream)."""
        start, end = self.window(x.shape[1]) if window is None else window
        return masked_mean(x[:, start:end], None if mask is None else mask[:, start:end])


class CrossAttention(nn.Module):
    """One omics cross-attention block: ``hidden + dense(MHA(query(hidden), key(context), value(context)))``.

    Args:
        query_size: D, width of the query stream (3072 for Enformer).
        context_size: E, width of the keys/values source (768 RNA, 640 protein).
        num_heads: attention heads (8); head width D / num_heads.
    """

    def __init__(self, query_size: int, context_size: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if query_size % num_heads:
            raise ValueError(f"query width {query_size} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = query_size // num_heads
        self.query = nn.Linear(query_size, query_size)
        self.key = nn.Linear(context_size, query_size)
        self.value = nn.Linear(context_size, query_size)
        self.dense = nn.Linear(query_size, query_size)
        self.dropout = dropout

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, hidden: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor) -> torch.Tensor:
        """hidden (B, N, D), context (B, M, E), context_mask (B, M) bool -> (B, N, D).

        Rows whose context_mask is all False are returned unchanged (the block is skipped for them). Their
        attention runs over an all-True mask and the result is discarded: a fully masked softmax is NaN in
        older torch releases and some GPU kernels (torch 2.13's CPU kernels return zeros), and a NaN in a
        discarded branch would still poison gradients.
        """
        present = context_mask.any(dim=-1)
        safe_mask = context_mask | ~present[:, None]
        query = self._split_heads(self.query(hidden))
        key = self._split_heads(self.key(context))
        value = self._split_heads(self.value(context))
        attended = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=safe_mask[:, None, None, :],
            dropout_p=self.dropout if self.training else 0.0,
        )
        batch, _, length, _ = attended.shape
        attended = attended.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim)
        updated = self.dense(attended) + hidden
        return torch.where(present[:, None, None], updated, hidden)


class CrossAttentionAggregation(nn.Module):
    """Official fusion: query stream <- RNA (``rna_cross_attention``), then <- protein (``protein_cross_attention``).

    A block exists only for a modality that is configured and is not the query stream itself; absent blocks
    are None. ``config.fusion_order``: "rna,protein" (sequential, RNA first), "protein,rna", or "parallel"
    (each block reads the unfused stream; the updates ``block(x) - x`` are added to it).
    """

    def __init__(self, config: IsoformerConfig):
        super().__init__()
        query = config.query_modality
        heads = config.num_heads_omics_cross_attention
        dropout = config.cross_attention_dropout
        self.rna_cross_attention = (
            CrossAttention(config.query_size, config.encoder("rna").width(config), heads, dropout)
            if config.has_rna and query != "rna"
            else None
        )
        self.protein_cross_attention = (
            CrossAttention(config.query_size, config.encoder("protein").width(config), heads, dropout)
            if config.has_protein and query != "protein"
            else None
        )
        self.pooling = WindowMeanPooling(config)
        self.fusion_order = config.fusion_order

    @property
    def orders_differ(self) -> bool:
        """Whether ``fusion_order`` changes anything: only with both blocks."""
        return self.rna_cross_attention is not None and self.protein_cross_attention is not None

    def forward(self, query, query_mask, rna, rna_mask, protein, protein_mask):
        fused = self.fuse(query, rna, rna_mask, protein, protein_mask)
        return fused, self.pooling(fused, query_mask)

    def fuse(self, query, rna, rna_mask, protein, protein_mask, fusion_order: str | None = None):
        """The fused query stream (B, N, D) under ``fusion_order`` (None: the configured one)."""
        order = self.fusion_order if fusion_order is None else fusion_order
        return self.fuse_orders(query, rna, rna_mask, protein, protein_mask, (order,))[order]

    def fuse_orders(self, query, rna, rna_mask, protein, protein_mask, orders) -> dict:
        """``{order: fused stream (B, N, D)}`` for each of ``orders``, every block output computed once: the
        first block of a sequential order is also a term of "parallel", so three orders cost four block
        passes, not five."""
        steps = {}
        if self.rna_cross_attention is not None and rna is not None:
            steps["rna"] = (self.rna_cross_attention, rna, rna_mask)
        if self.protein_cross_attention is not None and protein is not None:
            steps["protein"] = (self.protein_cross_attention, protein, protein_mask)
        applied = {(): query}

        def run(sequence):
            """The stream after the blocks of ``sequence`` one after the other (memoised)."""
            if sequence not in applied:
                block, context, mask = steps[sequence[-1]]
                applied[sequence] = block(run(sequence[:-1]), context, mask)
            return applied[sequence]

        fused = {}
        for order in orders:
            names = [name for name in ("rna", "protein") if name in steps]
            if order == "protein,rna":
                names.reverse()
            if order == "parallel" and len(names) > 1:
                # Each block adds its own residual update to the same input stream.
                stream = query
                for name in names:
                    stream = stream + (run((name,)) - query)
                fused[order] = stream
            else:
                fused[order] = run(tuple(names))
        return fused


class PerceiverAttention(nn.Module):
    """Latents attend to [inputs ; latents] (Flamingo Perceiver resampler attention), pre-LayerNorm.

    Attributes: ``norm_inputs``, ``norm_latents`` (LayerNorm D), ``query`` Linear(D, D), ``key_value``
    Linear(D, 2 D), ``dense`` Linear(D, D).
    """

    def __init__(self, size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = size // num_heads
        self.norm_inputs = nn.LayerNorm(size)
        self.norm_latents = nn.LayerNorm(size)
        self.query = nn.Linear(size, size)
        self.key_value = nn.Linear(size, 2 * size)
        self.dense = nn.Linear(size, size)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, inputs: torch.Tensor, inputs_mask: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """inputs (B, M, D), inputs_mask (B, M) bool, latents (B, K, D) -> latent update (B, K, D)."""
        latents_normed = self.norm_latents(latents)
        sources = torch.cat((self.norm_inputs(inputs), latents_normed), dim=1)
        # Latents are always valid keys, so no row is fully masked.
        mask = torch.cat((inputs_mask, inputs_mask.new_ones(latents.shape[:2])), dim=1)
        key, value = self.key_value(sources).chunk(2, dim=-1)
        attended = F.scaled_dot_product_attention(
            self._split_heads(self.query(latents_normed)),
            self._split_heads(key),
            self._split_heads(value),
            attn_mask=mask[:, None, None, :],
        )
        batch, _, length, _ = attended.shape
        return self.dense(attended.transpose(1, 2).reshape(batch, length, -1))


class PerceiverLayer(nn.Module):
    """``attention`` (`PerceiverAttention`) and ``feed_forward`` (LayerNorm, Linear D->mD, GELU, Linear mD->D),
    each with a residual on the latents."""

    def __init__(self, size: int, num_heads: int, ff_mult: int):
        super().__init__()
        self.attention = PerceiverAttention(size, num_heads)
        self.feed_forward = nn.Sequential(
            nn.LayerNorm(size), nn.Linear(size, ff_mult * size), nn.GELU(), nn.Linear(ff_mult * size, size)
        )

    def forward(self, inputs, inputs_mask, latents):
        latents = latents + self.attention(inputs, inputs_mask, latents)
        return latents + self.feed_forward(latents)


class PerceiverAggregation(nn.Module):
    """Perceiver resampler over all modalities (paper ablation).

    Attributes:
        latents: (num_latents, D) learned parameter.
        rna_projection / protein_projection: Linear(E -> D) for modalities that are not the query stream (or None).
        layers: ModuleList of `PerceiverLayer`; norm: final LayerNorm(D).
    """

    def __init__(self, config: IsoformerConfig):
        super().__init__()
        size = config.query_size
        query = config.query_modality
        self.latents = nn.Parameter(torch.empty(config.perceiver_num_latents, size))
        nn.init.normal_(self.latents, std=config.initializer_range)
        self.rna_projection = (
            nn.Linear(config.encoder("rna").width(config), size) if config.has_rna and query != "rna" else None
        )
        self.protein_projection = (
            nn.Linear(config.encoder("protein").width(config), size) if config.has_protein and query != "protein" else None
        )
        self.layers = nn.ModuleList(
            PerceiverLayer(size, config.perceiver_num_heads, config.perceiver_ff_mult)
            for _ in range(config.perceiver_depth)
        )
        self.norm = nn.LayerNorm(size)

    def forward(self, query, query_mask, rna, rna_mask, protein, protein_mask):
        batch = query.shape[0]
        inputs = [query]
        masks = [query_mask if query_mask is not None else query.new_ones(query.shape[:2], dtype=torch.bool)]
        if self.rna_projection is not None and rna is not None:
            inputs.append(self.rna_projection(rna))
            masks.append(rna_mask)
        if self.protein_projection is not None and protein is not None:
            inputs.append(self.protein_projection(protein))
            masks.append(protein_mask)
        inputs = torch.cat(inputs, dim=1)
        inputs_mask = torch.cat(masks, dim=1)
        latents = self.latents.unsqueeze(0).expand(batch, -1, -1)
        for layer in self.layers:
            latents = layer(inputs, inputs_mask, latents)
        latents = self.norm(latents)
        return latents, latents.mean(dim=1)


class LinearAggregation(nn.Module):
    """Pooled embeddings projected to width D and summed (paper ablation).

    Attributes:
        query_projection: Linear(D -> D) on the pooled query stream.
        rna_projection / protein_projection: Linear(E -> D) on masked-mean RNA / protein (or None).
    """

    def __init__(self, config: IsoformerConfig):
        super().__init__()
        size = config.query_size
        query = config.query_modality
        self.query_projection = nn.Linear(size, size)
        self.rna_projection = (
            nn.Linear(config.encoder("rna").width(config), size) if config.has_rna and query != "rna" else None
        )
        self.protein_projection = (
            nn.Linear(config.encoder("protein").width(config), size) if config.has_protein and query != "protein" else None
        )
        self.pooling = WindowMeanPooling(config)

    @staticmethod
    def _term(projection: nn.Linear, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Projected masked mean, zero for rows without the modality (so the row sees no term at all)."""
        present = mask.any(dim=-1, keepdim=True)
        return torch.where(present, projection(masked_mean(x, mask)), 0.0)

    def forward(self, query, query_mask, rna, rna_mask, protein, protein_mask):
        pooled = self.query_projection(self.pooling(query, query_mask))
        if self.rna_projection is not None and rna is not None:
            pooled = pooled + self._term(self.rna_projection, rna, rna_mask)
        if self.protein_projection is not None and protein is not None:
            pooled = pooled + self._term(self.protein_projection, protein, protein_mask)
        return query, pooled


def build_aggregation(config: IsoformerConfig) -> nn.Module:
    """The aggregation module selected by ``config.aggregation``."""
    return {
        "cross-attention": CrossAttentionAggregation,
        "perceiver": PerceiverAggregation,
        "linear": LinearAggregation,
    }[config.aggregation](config)
