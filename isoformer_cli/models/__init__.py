"""The IsoFormer model: configuration, encoders, aggregation and the Hugging Face-shaped model class.

This package never imports pysam, gffutils, h5py or click.

Main entry points:
    IsoformerConfig.from_preset("official" | "tiny", **overrides)   (names in PRESETS)
    IsoformerModel(config) / IsoformerModel.from_pretrained(directory)
    IsoformerModel.encode_dna / encode_rna / encode_protein / fuse_and_predict / forward
    IsoformerModel.parameter_counts()
"""

from isoformer_cli.models.aggregation import (
    CrossAttention,
    CrossAttentionAggregation,
    LinearAggregation,
    PerceiverAggregation,
)
from isoformer_cli.models.configuration import GTEX_TISSUES, PRESETS, IsoformerConfig
from isoformer_cli.models.encoders import DNA_ENCODERS, SequenceEncoder, encoder_for, register_dna_encoder
from isoformer_cli.models.modeling import (
    IsoformerHead,
    IsoformerModel,
    IsoformerOutput,
    IsoformerPreTrainedModel,
)
from isoformer_cli.models.encoders.nucleotide_transformer import (
    NT_UNUSED_CHECKPOINT_KEYS,
    NucleotideTransformer,
    load_hf_nt_state_dict,
    nt_config,
)

__all__ = [
    "CrossAttention",
    "CrossAttentionAggregation",
    "DNA_ENCODERS",
    "GTEX_TISSUES",
    "IsoformerConfig",
    "IsoformerHead",
    "IsoformerModel",
    "IsoformerOutput",
    "IsoformerPreTrainedModel",
    "LinearAggregation",
    "NT_UNUSED_CHECKPOINT_KEYS",
    "NucleotideTransformer",
    "PRESETS",
    "PerceiverAggregation",
    "SequenceEncoder",
    "encoder_for",
    "load_hf_nt_state_dict",
    "nt_config",
    "register_dna_encoder",
]
