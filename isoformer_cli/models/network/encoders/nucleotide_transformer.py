"""Nucleotide Transformer v2 as IsoFormer's RNA encoder, and as the paper's alternative DNA encoder.

RNA (always): the spliced RNA as NT-v2 6-mer tokens (``<cls>`` first, pad id 1, at most ``max_rna_tokens``
tokens after ``<cls>``), encoded by the NT-v2 network (:mod:`~isoformer_cli.models.network.encoders.nt_network`)
sized by the ``nt_*`` fields; output ``(B, L, nt_hidden_size)``, ``<cls>`` included.

DNA (``dna_encoder_type="nucleotide_transformer"``): the DNA window tokenised exactly like RNA (greedy
6-mers, single bases after an N and at the tail), right-padded when windows tokenise to different lengths
(N runs), encoded by a second NT-v2 sized by the ``dna_nt_*`` fields (vocabulary, dropout, eps and special
ids shared with ``nt_*``). Output positions are the tokens after ``<cls>`` (``<cls>`` dropped), so position
i covers bases 6i..6i+5 of a pure-ACGT window and the TSS (base L/2) falls in position N/2. At the default
12,288 bp a pure-ACGT window gives 2,048 6-mers + ``<cls>`` = 2,049 tokens (NT-v2's position table: 2,050).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from transformers import EsmConfig

from isoformer_cli.errors import InputError
from isoformer_cli.models.network.encoders.base import LayerGroups, SequenceEncoder, special
from isoformer_cli.models.network.encoders.nt_network import (  # noqa: F401 - re-exported
    NT_UNUSED_CHECKPOINT_KEYS,
    NucleotideTransformer,
    load_hf_nt_state_dict,
    nt_config,
)
from isoformer_cli.models.network.tokenizers import RNA_FIRST_KMER_ID, RnaTokenizer

# With the NT DNA encoder and no dna_length given, the window is what NT's position table holds:
# (max_position_embeddings - 2) 6-mers (one position for <cls>, one spare as in NT-v2's 2,050).
PRESET_DNA_LENGTHS = {"official": 12_288, "tiny": 1_536}


def _network_config(config, hidden_size, num_hidden_layers, num_attention_heads, intermediate_size,
                    max_positions) -> EsmConfig:
    return nt_config(
        vocab_size=config.nt_vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        hidden_dropout_prob=config.nt_hidden_dropout_prob,
        attention_probs_dropout_prob=config.nt_attention_probs_dropout_prob,
        max_position_embeddings=max_positions,
        layer_norm_eps=config.nt_layer_norm_eps,
        pad_token_id=config.nt_pad_token_id,
        mask_token_id=config.nt_mask_token_id,
        emb_layer_norm_before=config.nt_emb_layer_norm_before,
        add_bias_fnn=config.nt_add_bias_fnn,
        rope_theta=config.nt_rotary_base,
    )


def rna_network_config(config) -> EsmConfig:
    """`EsmConfig` (NT-v2 flavour) of the RNA encoder, from the ``nt_*`` fields."""
    return _network_config(config, config.nt_hidden_size, config.nt_num_hidden_layers, config.nt_num_attention_heads,
                           config.nt_intermediate_size, config.nt_max_position_embeddings)


def dna_network_config(config) -> EsmConfig:
    """`EsmConfig` of the NT DNA encoder, from the ``dna_nt_*`` fields."""
    return _network_config(config, config.dna_nt_hidden_size, config.dna_nt_num_hidden_layers,
                           config.dna_nt_num_attention_heads, config.dna_nt_intermediate_size,
                           config.dna_nt_max_position_embeddings)


class NucleotideTransformerDNAEncoder(nn.Module):
    """NT-v2 over the DNA window's 6-mer tokens (see the module docstring).

    Attributes:
        nucleotide_transformer: the `NucleotideTransformer`.
        output_size: dna_nt_hidden_size.
    """

    def __init__(self, config):
        super().__init__()
        self.nucleotide_transformer = NucleotideTransformer(dna_network_config(config))
        self.output_size = config.dna_nt_hidden_size
        self.pad_token_id = config.nt_pad_token_id

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids (B, T) NT token ids with ``<cls>`` first -> ((B, T - 1, H), mask (B, T - 1) bool)."""
        if attention_mask is None:
            attention_mask = input_ids != self.pad_token_id
        attention_mask = attention_mask.bool()
        hidden = self.nucleotide_transformer(input_ids, attention_mask)
        return hidden[:, 1:], attention_mask[:, 1:]


def _network_groups(network):
    return LayerGroups(before=[network.embeddings], layers=list(network.encoder.layer),
                       after=[network.encoder.emb_layer_norm_after])


def _network_summary(summary_type, hidden_size, layers, heads, ffn_size):
    return {"type": summary_type, "hidden_size": hidden_size, "layers": layers, "heads": heads, "ffn_size": ffn_size}


def _describe_network(summary):
    return (
        f"{summary['type']} (hidden {summary['hidden_size']}, {summary['layers']} layers, {summary['heads']} heads, "
        f"FFN {summary['ffn_size']})"
    )


def _nt_baseline(config, input_ids):
    """Every sequence token (6-mers, single bases, N) replaced by ``<mask>``; ``<cls>`` kept."""
    baseline = np.array(input_ids, dtype=np.int64, copy=True)
    baseline[baseline >= RNA_FIRST_KMER_ID] = config.nt_mask_token_id
    return baseline


class NucleotideTransformerRNA(SequenceEncoder):
    """NT-v2 over the spliced RNA; reads the ``nt_*`` fields and ``max_rna_tokens``."""

    name = "nucleotide_transformer_v2"
    modality = "rna"
    label = "Nucleotide Transformer v2"
    summary_type = "nucleotide_transformer_v2"

    def build(self, config):
        return NucleotideTransformer(rna_network_config(config))

    def validate(self, config):
        if config.max_rna_tokens + 1 > config.nt_max_position_embeddings:
            raise InputError(
                f"invalid IsoFormer configuration: max_rna_tokens={config.max_rna_tokens} plus <cls> exceeds "
                f"nt_max_position_embeddings={config.nt_max_position_embeddings}"
            )

    def width(self, config):
        return config.nt_hidden_size

    def positions(self, config):
        return config.max_rna_tokens + 1

    def max_input_length(self, config):
        return config.max_rna_tokens + 1

    def random_token_range(self, config):
        return 6, 4102  # the 6-mers

    # Measured on the RNA encoder (benchmarks/memory_model.py): 10.1 B (fp32) and 6.1 B (bf16) at the official size
    # (61.9 kB per token for a gated width of 6,144), 12.0 B (fp32) at the tiny one; the larger figure is kept.
    bytes_per_position_and_width = {"fp32": 12.0, "bf16": 7.3}
    # Fitted to the tiny (2 layers: 38.2 B, checkpointed 23.2 B) and the official size (24 layers: 298 B,
    # checkpointed 33.1 B), fp32 forward + backward.
    training_bytes_per_position_and_width = (14.5, 11.8)
    checkpointed_bytes_per_position_and_width = (22.3, 0.45)

    def training_layers(self, config):
        return config.nt_num_hidden_layers

    def memory_width(self, config):
        # The gated feed-forward projects each position to twice the intermediate size.
        return 2 * config.nt_intermediate_size

    def tokenizer(self, config, truncation="keep_start"):
        return RnaTokenizer(max_tokens=config.max_rna_tokens, truncation=truncation)

    def attribution_layer(self, module):
        return module.embeddings.word_embeddings

    def attribution_baseline(self, config, input_ids):
        return _nt_baseline(config, input_ids)

    def input_spans(self, config, sequence, truncation="keep_start"):
        return np.concatenate([special(1), self.tokenizer(config, truncation).token_spans(sequence)])

    def pad_id(self, config):
        return config.nt_pad_token_id

    def layer_groups(self, module):
        return _network_groups(module)

    def summary(self, config):
        summary = _network_summary(self.summary_type, config.nt_hidden_size, config.nt_num_hidden_layers,
                                   config.nt_num_attention_heads, config.nt_intermediate_size)
        summary["max_tokens"] = config.max_rna_tokens
        return summary

    def describe(self, summary):
        return _describe_network(summary) + f", up to {summary['max_tokens']:,} tokens after <cls>"
class NucleotideTransformerDNA(SequenceEncoder):
    """NT-v2 over the DNA window (``dna_encoder_type="nucleotide_transformer"``); reads ``dna_nt_*``."""

    name = "nucleotide_transformer"
    modality = "dna"
    label = "Nucleotide Transformer (DNA)"
    inner_prefix = "nucleotide_transformer."
    summary_type = "nucleotide_transformer"

    def build(self, config):
        return NucleotideTransformerDNAEncoder(config)

    def validate(self, config):
        # A pure-ACGT window must fit the position table NT-v2 was trained with; N runs tokenise to more
        # (single-base) tokens and then show as longer inputs.
        longest = 1 + self.positions(config)
        if longest > config.dna_nt_max_position_embeddings:
            raise InputError(
                f"invalid IsoFormer configuration: dna_length={config.dna_length} gives {longest} NT tokens with "
                f"<cls>, more than dna_nt_max_position_embeddings={config.dna_nt_max_position_embeddings}; use a "
                f"window of at most {6 * (config.dna_nt_max_position_embeddings - 2)} bp"
            )

    def preset_overrides(self, preset):
        return {"dna_length": PRESET_DNA_LENGTHS[preset]} if preset in PRESET_DNA_LENGTHS else {}

    def width(self, config):
        return config.dna_nt_hidden_size

    def positions(self, config):
        return config.dna_length // 6 + config.dna_length % 6

    def max_input_length(self, config):
        return 1 + self.positions(config)

    def output_length(self, config, input_length):
        return input_length - 1  # <cls> is dropped

    def random_token_range(self, config):
        return 6, 4102

    # The same network as the RNA encoder: its measurements apply.
    bytes_per_position_and_width = NucleotideTransformerRNA.bytes_per_position_and_width
    training_bytes_per_position_and_width = NucleotideTransformerRNA.training_bytes_per_position_and_width
    checkpointed_bytes_per_position_and_width = NucleotideTransformerRNA.checkpointed_bytes_per_position_and_width

    def training_layers(self, config):
        return config.dna_nt_num_hidden_layers

    def memory_width(self, config):
        return 2 * config.dna_nt_intermediate_size

    def tokenizer(self, config, truncation="keep_start"):
        # No length cap: the window length is set by the configuration (checked in validate()).
        return RnaTokenizer(max_tokens=1 << 30, truncation="error")

    def attribution_layer(self, module):
        return module.nucleotide_transformer.embeddings.word_embeddings

    def attribution_baseline(self, config, input_ids):
        return _nt_baseline(config, input_ids)

    def input_spans(self, config, sequence, truncation="keep_start"):
        return np.concatenate([special(1), self.tokenizer(config).token_spans(sequence)])

    def pad_id(self, config):
        return config.nt_pad_token_id

    def layer_groups(self, module):
        return _network_groups(module.nucleotide_transformer)

    def summary(self, config):
        summary = _network_summary(self.summary_type, config.dna_nt_hidden_size, config.dna_nt_num_hidden_layers,
                                   config.dna_nt_num_attention_heads, config.dna_nt_intermediate_size)
        summary.update(window_bp=config.dna_length, positions=self.positions(config), output_width=self.width(config))
        return summary

    def describe(self, summary):
        return _describe_network(summary) + f", {summary['window_bp']:,} bp -> {summary['positions']} positions"

NT_RNA = NucleotideTransformerRNA()
NT_DNA = NucleotideTransformerDNA()
