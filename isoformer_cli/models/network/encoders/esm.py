"""ESM-2 as IsoFormer's protein encoder: ``transformers.EsmModel`` (no pooling layer), used as it is.

Input: ``<cls>`` + one token per residue + ``<eos>`` in the ESM-2 alphabet (pad id 1), at most
``max_protein_residues`` residues. Output: last hidden states ``(B, L, esm_hidden_size)``.

``token_dropout`` at inference: ESM-2 was trained with token dropout, and ``EsmModel`` zeroes ``<mask>``
embeddings and scales every embedding by ``(1 - 0.15 * 0.8) / (1 - fraction of <mask> tokens in the row)``,
i.e. by 0.88 when no ``<mask>`` is present, in eval mode too. That is part of the pretrained model's
behaviour (the official configuration sets ``esm_token_dropout=true``), so it is kept; the fraction is per
row, so it does not depend on padding.
"""

from __future__ import annotations

import numpy as np
from transformers import EsmConfig, EsmModel

from isoformer_cli.errors import InputError
from isoformer_cli.models.network.encoders.base import LayerGroups, SequenceEncoder, special
from isoformer_cli.models.network.tokenizers import ProteinTokenizer

def esm_config(config) -> EsmConfig:
    """The `EsmConfig` of the protein encoder (``facebook/esm2_t30_150M_UR50D`` at official size)."""
    library = EsmConfig(
        vocab_size=config.esm_vocab_size,
        hidden_size=config.esm_hidden_size,
        num_hidden_layers=config.esm_num_hidden_layers,
        num_attention_heads=config.esm_num_attention_heads,
        intermediate_size=config.esm_intermediate_size,
        hidden_act=config.esm_hidden_act,
        hidden_dropout_prob=config.esm_hidden_dropout_prob,
        attention_probs_dropout_prob=config.esm_attention_probs_dropout_prob,
        max_position_embeddings=config.esm_max_position_embeddings,
        position_embedding_type=config.esm_position_embedding_type,
        layer_norm_eps=config.esm_layer_norm_eps,
        pad_token_id=config.esm_pad_token_id,
        mask_token_id=config.esm_mask_token_id,
        token_dropout=config.esm_token_dropout,
        emb_layer_norm_before=config.esm_emb_layer_norm_before,
        initializer_range=config.initializer_range,
    )
    # SDPA attention is 2.6x faster than the eager softmax(QK^T)V at these sizes; the fused kernel also
    # keeps padded rows finite.
    library._attn_implementation = "sdpa"
    return library


class Esm2(SequenceEncoder):
    """The ESM-2 protein encoder; reads the ``esm_*`` fields and ``max_protein_residues``."""

    name = "esm2"
    modality = "protein"
    label = "ESM-2"
    summary_type = "esm2"

    def build(self, config):
        return EsmModel(esm_config(config), add_pooling_layer=False)

    def validate(self, config):
        if config.max_protein_residues + 2 > config.esm_max_position_embeddings:
            raise InputError(
                f"invalid IsoFormer configuration: max_protein_residues={config.max_protein_residues} plus "
                f"<cls>/<eos> exceeds esm_max_position_embeddings={config.esm_max_position_embeddings}"
            )

    def width(self, config):
        return config.esm_hidden_size

    def positions(self, config):
        return config.max_protein_residues + 2

    def max_input_length(self, config):
        return config.max_protein_residues + 2

    def random_token_range(self, config):
        return 4, 24  # the 20 standard residues

    # Measured (benchmarks/memory_model.py): 20.1 B (fp32) and 12.1 B (bf16) at the official size, 24.0 B (fp32)
    # at the tiny one; the larger figure is kept.
    bytes_per_position_and_width = {"fp32": 24.0, "bf16": 14.5}
    # Fitted to the tiny (2 layers: 84.7 B, checkpointed 54.3 B) and the official size (30 layers: 741 B,
    # checkpointed 71.7 B), fp32 forward + backward.
    training_bytes_per_position_and_width = (37.8, 23.5)
    checkpointed_bytes_per_position_and_width = (53.1, 0.62)

    def training_layers(self, config):
        return config.esm_num_hidden_layers

    def memory_width(self, config):
        return max(config.esm_hidden_size, config.esm_intermediate_size)

    def tokenizer(self, config, truncation="keep_start"):
        return ProteinTokenizer(max_residues=config.max_protein_residues, truncation=truncation)

    def pad_id(self, config):
        return config.esm_pad_token_id

    def attribution_layer(self, module):
        # The word embeddings before token dropout's scaling, which is computed from the ids and so stays the
        # real input's along the whole integration path.
        return module.embeddings.word_embeddings

    def attribution_baseline(self, config, input_ids):
        baseline = np.array(input_ids, dtype=np.int64, copy=True)
        baseline[1:-1] = config.esm_mask_token_id  # <cls> residues <eos>: the residues become <mask>
        return baseline

    def input_spans(self, config, sequence, truncation="keep_start"):
        residues = self.tokenizer(config, truncation).residue_spans(sequence)
        return np.concatenate([special(1), residues, special(1)])

    def layer_groups(self, module):
        return LayerGroups(before=[module.embeddings], layers=list(module.encoder.layer),
                           after=[module.encoder.emb_layer_norm_after])

    def summary(self, config):
        return {
            "type": self.summary_type,
            "hidden_size": config.esm_hidden_size,
            "layers": config.esm_num_hidden_layers,
            "heads": config.esm_num_attention_heads,
            "ffn_size": config.esm_intermediate_size,
            "max_residues": config.max_protein_residues,
        }

    def describe(self, summary):
        return (
            f"{summary['type']} (hidden {summary['hidden_size']}, {summary['layers']} layers, {summary['heads']} "
            f"heads, FFN {summary['ffn_size']}), up to {summary['max_residues']:,} residues"
        )

ESM2 = Esm2()
