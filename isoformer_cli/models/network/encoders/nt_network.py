"""Nucleotide Transformer v2 (NT-v2) encoder, written for this project.

transformers' own ESM classes cannot express NT-v2 (its feed-forward block is gated and has no biases), and the
official NT-v2 code is remote code we do not run. This module re-implements the encoder with parameter names that
mirror Hugging Face ``EsmModel``, so the ``esm.*`` tensors of a Hugging Face NT-v2 checkpoint (e.g.
``InstaDeepAI/nucleotide-transformer-v2-250m-multi-species``, ``EsmForMaskedLM`` layout) load after stripping
the ``esm.`` prefix (`load_hf_nt_state_dict`).

Architecture (per layer, pre-LayerNorm, as in ESM-2 / NT-v2)::

    x = x + attention.output.dense( SDPA( rotary(q), rotary(k), v ) )   with q, k, v from attention.LayerNorm(x)
    x = x + output.dense( silu(a) * b )   where [a | b] = intermediate.dense( LayerNorm(x) )   (no biases)

then ``encoder.emb_layer_norm_after`` on the last layer's output. Rotary position embeddings (base 10,000, on
the full head dimension, positions 0..L-1) rotate queries and keys; there is no absolute position table. Queries
are scaled by head_dim^-0.5 (inside SDPA). ``token_dropout`` is off in NT-v2, so word embeddings are used as is,
only zeroed at padding positions (as Hugging Face ESM does).

Keys of a Hugging Face NT-v2 checkpoint that this module does not have, on purpose:
``embeddings.position_embeddings.weight`` (an unused absolute table that old ESM code always created),
``embeddings.position_ids``, ``encoder.layer.N.attention.self.rotary_embeddings.inv_freq`` (recomputed here),
``contact_head.*`` and the ``lm_head.*`` of the masked-LM wrapper. `NT_UNUSED_CHECKPOINT_KEYS` lists them as
patterns.

Configuration: a `transformers.EsmConfig` (the class NT-v2's own ``config.json`` instantiates; ``model_type``
"esm") with the extra NT-v2 field ``add_bias_fnn`` (False). Fields read: vocab_size, hidden_size,
num_hidden_layers, num_attention_heads, intermediate_size, hidden_dropout_prob, attention_probs_dropout_prob,
layer_norm_eps, pad_token_id, emb_layer_norm_before, add_bias_fnn, rope_theta (default 10,000).
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn
from transformers import EsmConfig

#: Patterns (regular expressions on keys without the ``esm.`` prefix) of Hugging Face NT-v2 checkpoint tensors
#: that this module deliberately does not hold; `load_hf_nt_state_dict` drops them and reports them.
NT_UNUSED_CHECKPOINT_KEYS: tuple[str, ...] = (
    r"^embeddings\.position_embeddings\.weight$",
    r"^embeddings\.position_ids$",
    r"^encoder\.layer\.\d+\.attention\.self\.rotary_embeddings\.inv_freq$",
    r"^rotary_embeddings\.inv_freq$",
    r"^contact_head\.",
    r"^pooler\.",
)


def nt_config(
    *,
    vocab_size: int = 4107,
    hidden_size: int = 768,
    num_hidden_layers: int = 24,
    num_attention_heads: int = 16,
    intermediate_size: int = 3072,
    hidden_dropout_prob: float = 0.0,
    attention_probs_dropout_prob: float = 0.0,
    max_position_embeddings: int = 2050,
    layer_norm_eps: float = 1e-12,
    pad_token_id: int = 1,
    mask_token_id: int = 2,
    emb_layer_norm_before: bool = False,
    add_bias_fnn: bool = False,
    rope_theta: float = 10_000.0,
) -> EsmConfig:
    """An `EsmConfig` describing an NT-v2 encoder; defaults are NT-v2 250M multi-species."""
    return EsmConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        hidden_dropout_prob=hidden_dropout_prob,
        attention_probs_dropout_prob=attention_probs_dropout_prob,
        max_position_embeddings=max_position_embeddings,
        layer_norm_eps=layer_norm_eps,
        pad_token_id=pad_token_id,
        mask_token_id=mask_token_id,
        emb_layer_norm_before=emb_layer_norm_before,
        position_embedding_type="rotary",
        token_dropout=False,
        add_bias_fnn=add_bias_fnn,
        rope_theta=rope_theta,
    )


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def rotary_cos_sin(length: int, head_dim: int, base: float, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary tables for positions 0..length-1: cos and sin of shape (length, head_dim).

    Frequencies are computed in float32 (as ESM does) and cast to the activations' dtype at the end.
    """
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(length, device=device, dtype=torch.float32), inv_freq)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


class NTEmbeddings(nn.Module):
    """Token embeddings: ``word_embeddings`` (vocab, H), optional ``layer_norm`` (NT-v2: absent)."""

    def __init__(self, config: EsmConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.layer_norm = (
            nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.emb_layer_norm_before else None
        )
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids (B, L) long, attention_mask (B, L) bool -> (B, L, H); padding positions zeroed."""
        embeddings = self.word_embeddings(input_ids)
        if self.layer_norm is not None:
            embeddings = self.layer_norm(embeddings)
        embeddings = embeddings * attention_mask.unsqueeze(-1).to(embeddings.dtype)
        return self.dropout(embeddings)


class NTSelfAttention(nn.Module):
    """Rotary multi-head self-attention: ``query``, ``key``, ``value`` Linear(H, H) with bias."""

    def __init__(self, config: EsmConfig):
        super().__init__()
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(
                f"hidden_size {config.hidden_size} is not divisible by num_attention_heads {config.num_attention_heads}"
            )
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_prob = config.attention_probs_dropout_prob

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self, hidden_states: torch.Tensor, key_mask: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> torch.Tensor:
        """hidden_states (B, L, H); key_mask (B, 1, 1, L) bool (True = attend); cos/sin (L, head_dim).
        Returns the attention context (B, L, H) before the output projection."""
        query = self._split_heads(self.query(hidden_states))
        key = self._split_heads(self.key(hidden_states))
        value = self._split_heads(self.value(hidden_states))
        query = query * cos + _rotate_half(query) * sin
        key = key * cos + _rotate_half(key) * sin
        context = F.scaled_dot_product_attention(
            query, key, value, attn_mask=key_mask, dropout_p=self.dropout_prob if self.training else 0.0
        )
        batch, _, length, _ = context.shape
        return context.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim)


class NTSelfOutput(nn.Module):
    """``dense`` Linear(H, H) after attention, dropout, residual add."""

    def __init__(self, config: EsmConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, context: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return residual + self.dropout(self.dense(context))


class NTAttention(nn.Module):
    """Pre-LayerNorm attention sub-block: ``LayerNorm`` -> ``self`` -> ``output`` (+ residual)."""

    def __init__(self, config: EsmConfig):
        super().__init__()
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self = NTSelfAttention(config)
        self.output = NTSelfOutput(config)

    def forward(self, hidden_states, key_mask, cos, sin):
        context = self.self(self.LayerNorm(hidden_states), key_mask, cos, sin)
        return self.output(context, hidden_states)


class NTIntermediate(nn.Module):
    """Gated FFN input: ``dense`` Linear(H, 2 I) split into halves a | b, returns silu(a) * b of shape (..., I)."""

    def __init__(self, config: EsmConfig):
        super().__init__()
        bias = bool(getattr(config, "add_bias_fnn", False))
        self.dense = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        gate, value = self.dense(hidden_states).chunk(2, dim=-1)
        return F.silu(gate) * value


class NTOutput(nn.Module):
    """Gated FFN output: ``dense`` Linear(I, H), dropout, residual add."""

    def __init__(self, config: EsmConfig):
        super().__init__()
        bias = bool(getattr(config, "add_bias_fnn", False))
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size, bias=bias)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return residual + self.dropout(self.dense(hidden_states))


class NTLayer(nn.Module):
    """One pre-LayerNorm transformer layer: ``attention``, then ``LayerNorm`` -> ``intermediate`` -> ``output``."""

    def __init__(self, config: EsmConfig):
        super().__init__()
        self.attention = NTAttention(config)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.intermediate = NTIntermediate(config)
        self.output = NTOutput(config)

    def forward(self, hidden_states, key_mask, cos, sin):
        hidden_states = self.attention(hidden_states, key_mask, cos, sin)
        return self.output(self.intermediate(self.LayerNorm(hidden_states)), hidden_states)


class NTEncoder(nn.Module):
    """``layer`` (a ModuleList of `NTLayer`) and the final ``emb_layer_norm_after``."""

    def __init__(self, config: EsmConfig):
        super().__init__()
        self.layer = nn.ModuleList(NTLayer(config) for _ in range(config.num_hidden_layers))
        self.emb_layer_norm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.gradient_checkpointing = False

    def forward(self, hidden_states, key_mask, cos, sin):
        for layer in self.layer:
            if self.gradient_checkpointing and self.training:
                hidden_states = torch.utils.checkpoint.checkpoint(
                    layer, hidden_states, key_mask, cos, sin, use_reentrant=False
                )
            else:
                hidden_states = layer(hidden_states, key_mask, cos, sin)
        return self.emb_layer_norm_after(hidden_states)


class NucleotideTransformer(nn.Module):
    """NT-v2 encoder: ``embeddings`` + ``encoder``; parameter names as Hugging Face ``EsmModel``.

    Args:
        config: an `EsmConfig` from `nt_config` (or a Hugging Face NT-v2 ``config.json``).
    """

    def __init__(self, config: EsmConfig):
        super().__init__()
        self.config = config
        self.embeddings = NTEmbeddings(config)
        self.encoder = NTEncoder(config)

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encode token ids.

        Args:
            input_ids: (B, L) long, ``<cls>`` first, right-padded with ``pad_token_id``.
            attention_mask: (B, L) bool or 0/1, True at real tokens. Default: ``input_ids != pad_token_id``.
                A row with no real token is treated as all-real so attention stays finite; its output is
                meaningless and callers must discard it.

        Returns:
            (B, L, H) last hidden states after ``emb_layer_norm_after``.
        """
        if attention_mask is None:
            attention_mask = input_ids != self.config.pad_token_id
        attention_mask = attention_mask.bool()
        empty_rows = ~attention_mask.any(dim=-1, keepdim=True)
        attention_mask = attention_mask | empty_rows
        hidden_states = self.embeddings(input_ids, attention_mask)
        head_dim = self.config.hidden_size // self.config.num_attention_heads
        cos, sin = rotary_cos_sin(
            input_ids.shape[1],
            head_dim,
            float(getattr(self.config, "rope_theta", None) or 10_000.0),
            hidden_states.device,
            hidden_states.dtype,
        )
        key_mask = attention_mask[:, None, None, :]
        return self.encoder(hidden_states, key_mask, cos, sin)


def load_hf_nt_state_dict(
    module: NucleotideTransformer, state_dict: dict[str, torch.Tensor], prefix: str = "esm."
) -> dict[str, list[str]]:
    """Load a Hugging Face NT-v2 state dict (``EsmForMaskedLM`` or ``EsmModel`` layout) into ``module``.

    Keys starting with ``prefix`` are stripped of it; keys outside it (``lm_head.*``) and keys matching
    `NT_UNUSED_CHECKPOINT_KEYS` are ignored. Every parameter of ``module`` must be present with its shape.

    Returns:
        {"loaded": [...], "ignored": [...]} (key names as in ``state_dict``).

    Raises:
        KeyError: a parameter of ``module`` is missing, or the file has an unexpected tensor (named).
        ValueError: a tensor has the wrong shape (named, both shapes given).
    """
    own = module.state_dict()
    selected: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    unexpected: list[str] = []
    for key, tensor in state_dict.items():
        if prefix and not key.startswith(prefix):
            ignored.append(key)
            continue
        name = key[len(prefix):] if prefix else key
        if any(re.search(pattern, name) for pattern in NT_UNUSED_CHECKPOINT_KEYS):
            ignored.append(key)
        elif name in own:
            if tuple(tensor.shape) != tuple(own[name].shape):
                raise ValueError(
                    f"NT-v2 tensor {key} has shape {tuple(tensor.shape)}, the model expects {tuple(own[name].shape)}"
                )
            selected[name] = tensor
        else:
            unexpected.append(key)
    missing = sorted(set(own) - set(selected))
    if missing or unexpected:
        raise KeyError(
            f"NT-v2 state dict does not match the encoder: missing {missing[:5]}{'...' if len(missing) > 5 else ''}"
            f" ({len(missing)}), unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''} ({len(unexpected)})"
        )
    module.load_state_dict(selected, strict=True)
    return {"loaded": [prefix + name for name in selected], "ignored": ignored}
