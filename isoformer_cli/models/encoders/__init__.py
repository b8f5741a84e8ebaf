"""The three sequence encoders of IsoFormer, built from an `IsoformerConfig`.

- DNA: `EnformerDNAEncoder` (official; ``enformer_pytorch.Enformer`` trunk) or `NucleotideTransformerDNAEncoder`
  (the paper's alternative: NT-v2 over the 6-mer tokens of the window).
- RNA: `isoformer_cli.models.encoders.nucleotide_transformer.NucleotideTransformer` (NT-v2 250M), used directly.
- Protein: ``transformers.EsmModel`` with the ESM-2 t30 150M config and no pooling layer, used directly.

Every DNA encoder maps ``(input_ids (B, L), attention_mask (B, L) | None)`` to ``(embeddings (B, N, D), mask
(B, N) bool | None)`` where N is the number of DNA positions (bins or tokens) and a None mask means "all valid".

State-dict spelling of the Enformer trunk
-----------------------------------------
``enformer_pytorch.Enformer`` registers ``stem``, ``conv_tower``, ``transformer``, ``crop_final`` and
``final_pointwise`` and then registers the same modules again inside the ``_trunk`` ``nn.Sequential``, so a plain
``state_dict()`` names every trunk tensor twice (``stem.0.weight`` and ``_trunk.1.0.weight``, ...), which
safetensors refuses (shared storage). `EnformerDNAEncoder` keeps ``_trunk`` as a plain (unregistered) attribute:
``Enformer.forward`` still runs through it, but parameters and buffers are registered, saved and loaded once,
under the named spelling only: ``dna_encoder.enformer.{stem,conv_tower,transformer,final_pointwise}.*``.
An enformer-pytorch checkpoint (which carries both spellings, and possibly ``_heads.*``) loads after dropping its
``_trunk.*`` and ``_heads.*`` keys (`ENFORMER_DUPLICATE_KEY_PREFIXES`).

ESM-2 ``token_dropout`` at inference
------------------------------------
ESM-2 was trained with token dropout: ``EsmModel`` zeroes ``<mask>`` embeddings and multiplies all embeddings by
``(1 - 0.15 * 0.8) / (1 - fraction of <mask> tokens in the row)``, i.e. by 0.88 when no ``<mask>`` is present.
This happens in eval mode too and is part of the pretrained model's behaviour (the official config has
``esm_token_dropout=true``), so we keep it; the fraction is per row, so it does not depend on padding.
"""

from __future__ import annotations

import torch
from enformer_pytorch import Enformer
from enformer_pytorch.data import seq_indices_to_one_hot
from torch import nn
from transformers import EsmModel

from isoformer_cli.errors import InputError
from isoformer_cli.models.configuration import IsoformerConfig
from isoformer_cli.models.encoders.nucleotide_transformer import NucleotideTransformer

#: Key prefixes (relative to an ``Enformer`` module) that our checkpoints never contain: the duplicate trunk
#: spelling and the original human/mouse output heads.
ENFORMER_DUPLICATE_KEY_PREFIXES: tuple[str, ...] = ("_trunk.", "_heads.")

#: DNA token ids understood by the Enformer encoder: A0 C1 G2 T3 N4 (N -> all-zero one-hot),
#: and -1 for padding (one-hot 0.25 everywhere, enformer-pytorch's convention).
DNA_ALPHABET = "ACGTN"


class EnformerDNAEncoder(nn.Module):
    """Enformer trunk (``enformer_pytorch.Enformer``, ``return_only_embeddings=True``, no output heads).

    Attributes:
        enformer: the ``Enformer`` module; its ``_trunk`` is unregistered (see module docstring).
        output_size: 2 x enformer_dim (3072 official).
    """

    def __init__(self, config: IsoformerConfig):
        super().__init__()
        enformer = Enformer(config.enformer_config())
        trunk = enformer._modules.pop("_trunk")
        # Same module objects as stem/conv_tower/...; kept reachable for Enformer.forward, not registered.
        object.__setattr__(enformer, "_trunk", trunk)
        self.enformer = enformer
        self.output_size = 2 * config.enformer_dim

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, None]:
        """input_ids (B, L) long with A0 C1 G2 T3 N4 (or -1 padding) -> ((B, bins, 2 x dim), None).

        ``attention_mask`` is not used (Enformer has no padding mask; every window has the full length).
        """
        if input_ids.dtype != torch.long:
            raise InputError(f"DNA input ids must be torch.long, got {input_ids.dtype}")
        if input_ids.numel() and (int(input_ids.min()) < -1 or int(input_ids.max()) > 4):
            raise InputError(
                "DNA input ids must be A0 C1 G2 T3 N4 (or -1 for padding); found values outside -1..4"
            )
        # One-hot here rather than inside Enformer so it follows the model dtype (bf16 weights work too).
        dtype = self.enformer.stem[0].weight.dtype
        one_hot = seq_indices_to_one_hot(input_ids).to(dtype)
        return self.enformer(one_hot, return_only_embeddings=True), None

    def parameter_counts(self) -> dict[str, int]:
        """Parameters of the trunk's parts: stem_and_conv_tower, transformer, final_pointwise."""

        def count(*modules: nn.Module) -> int:
            return sum(p.numel() for module in modules for p in module.parameters())

        return {
            "stem_and_conv_tower": count(self.enformer.stem, self.enformer.conv_tower),
            "transformer": count(self.enformer.transformer),
            "final_pointwise": count(self.enformer.final_pointwise),
        }


class NucleotideTransformerDNAEncoder(nn.Module):
    """NT-v2 over the DNA window's 6-mer tokens (the paper's alternative DNA encoder).

    Input: the window tokenised exactly like RNA (``<cls>``, greedy 6-mers, single bases after N and at the
    tail; NT vocabulary, pad id 1), right-padded when windows tokenise to different lengths (N runs). At the
    default 12,288 bp a pure-ACGT window gives 2,048 6-mers + ``<cls>`` = 2,049 tokens (position table: 2,050).
    Output positions are the tokens after ``<cls>`` (``<cls>`` dropped), so position i covers bases
    6i..6i+5 of a pure-ACGT window and the TSS (base L/2) falls in position N/2.

    Attributes:
        nucleotide_transformer: the `NucleotideTransformer`.
        output_size: dna_nt_hidden_size.
    """

    def __init__(self, config: IsoformerConfig):
        super().__init__()
        self.nucleotide_transformer = NucleotideTransformer(config.dna_nt_config())
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


def build_dna_encoder(config: IsoformerConfig) -> nn.Module:
    """The DNA encoder selected by ``config.dna_encoder_type``."""
    if config.dna_encoder_type == "enformer":
        return EnformerDNAEncoder(config)
    return NucleotideTransformerDNAEncoder(config)


def build_rna_encoder(config: IsoformerConfig) -> NucleotideTransformer:
    """NT-v2 RNA encoder: input (B, L) token ids with ``<cls>`` first, output (B, L, nt_hidden_size)."""
    return NucleotideTransformer(config.rna_encoder_config())


def build_protein_encoder(config: IsoformerConfig) -> EsmModel:
    """ESM-2 protein encoder (``EsmModel``, no pooling layer): input (B, L) ids ``<cls>`` residues ``<eos>``,
    output ``last_hidden_state`` (B, L, esm_hidden_size)."""
    return EsmModel(config.protein_encoder_config(), add_pooling_layer=False)
