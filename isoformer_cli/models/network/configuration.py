"""Configuration of the IsoFormer model (`IsoformerConfig`) and its named presets.

One flat, JSON-serialisable `transformers.PretrainedConfig`. Field names of the three encoders follow the
official IsoFormer ``config.json`` where they are known (``enformer_*``, ``nt_*``, ``esm_*``), so a reader can
compare the two files line by line.

Presets (`IsoformerConfig.from_preset(name, **overrides)`, names listed in `PRESETS`):

- ``official``: every figure of the published model. Enformer trunk 1536/11 layers on 196,608 bp
  (output 896 bins x 3072), NT-v2 250M as RNA encoder (768 wide, 24 layers, 16 heads, gated FFN 3072),
  ESM-2 t30 150M as protein encoder (640 wide, 30 layers, 20 heads), two cross-attention blocks with 8 heads,
  mean pooling over all 896 bins, head 3072 -> 6144 -> 30.
- ``tiny``: the same architecture at toy width for tests and demos (about 2.1M parameters; a batch of 8
  isoforms at maximum lengths runs forward + backward in about 0.6 s on 2 CPU cores): Enformer dim 192,
  depth 2, 4 heads, 3 downsamples (8-bp bins) on a 2,048-bp window (256 bins, cropped to the central 128,
  output width 384), a 2-layer NT-v2 and a 2-layer ESM-2 of width 64, at most 256 RNA tokens and 126
  residues, head 384 -> 384 -> 30. With the NT DNA encoder the tiny window is 1,536 bp (256 6-mers).

Modalities and the query stream
-------------------------------
``modalities`` is a subset of ``("dna", "rna", "protein")``. The *query stream* is the sequence of
embeddings that the other modalities are fused into and that is pooled for the head:

- with ``dna``: the DNA encoder output (Enformer bins, or NT 6-mer tokens), as in the official model;
- without ``dna`` but with ``rna``: the RNA token embeddings (protein, if present, is fused into them);
- ``protein`` alone: the protein residue embeddings.

Pooling window
--------------
``pool_window_start`` / ``pool_window_end`` select the query-stream positions that the mean pools over
(half-open ``[start, end)``). Both ``None`` (default) means all positions (global average pooling, as the
paper describes). ``pool_window_reference="tss"`` (default) counts them relative to the TSS position, which is
position ``n // 2`` of the ``n`` DNA positions for a TSS-centred window (bin 448 of 896 at full size; a
``None`` side then means "to that end of the sequence"); ``"absolute"`` counts from position 0;
``"fraction"`` reads them as fractions of the ``n`` positions, ``[floor(start n), ceil(end n))`` with
``0 <= start < end <= 1`` (``0``..``1`` = every position; one reading of the official ``pool_window_start=0,
pool_window_end=1``, which ``isoformer models calibrate`` tests against the others). Positions counted with
``tss`` or ``absolute`` are whole numbers. Without DNA the window is ignored and the mean runs over the
non-padding tokens (including ``<cls>`` and ``<eos>``).

Fusion order
------------
``fusion_order`` says how the two cross-attention blocks combine (``aggregation="cross-attention"``): the
official code is not public, so this is a configuration field rather than a fact of the code.

- ``"rna,protein"`` (default, the best reconstruction): DNA attends to RNA, then the result attends to protein;
- ``"protein,rna"``: the other way round;
- ``"parallel"``: both blocks attend from the same DNA stream and their residual updates are added:
  ``dna + update_rna(dna) + update_protein(dna)``.

Head
----
Linear(D -> head_hidden_size), activation, dropout, Linear(head_hidden_size -> n_tissues). The official
activation is not published: we use GELU by default (``head_activation``; "relu", "silu", "gelu", "tanh",
"softplus" accepted). Sizes 3072 -> 6144 -> 30 reproduce the checkpoint's parameter budget.

These three unknowns of the official architecture (fusion order, head activation, pooled DNA bins) are plain
fields: ``isoformer convert --set head_activation=softplus`` (or ``models pull official --set ...``) fixes them
when the answer is learnt, without a code change.
"""

from __future__ import annotations

import copy

from transformers import PretrainedConfig

from isoformer_cli.errors import InputError
from isoformer_cli.models.network.encoders import dna_encoder, encoder_config_fields, encoder_for

#: The 30 GTEx tissues the official model predicts, in output order.
GTEX_TISSUES: tuple[str, ...] = (
    "Adipose Tissue", "Adrenal Gland", "Bladder", "Blood", "Blood Vessel", "Brain", "Breast",
    "Cervix Uteri", "Colon", "Esophagus", "Fallopian Tube", "Heart", "Kidney", "Liver", "Lung", "Muscle",
    "Nerve", "Ovary", "Pancreas", "Pituitary", "Prostate", "Salivary Gland", "Skin", "Small Intestine",
    "Spleen", "Stomach", "Testis", "Thyroid", "Uterus", "Vagina",
)

ALL_MODALITIES: tuple[str, ...] = ("dna", "rna", "protein")
AGGREGATIONS: tuple[str, ...] = ("cross-attention", "perceiver", "linear")
HEAD_ACTIVATIONS: tuple[str, ...] = ("gelu", "relu", "silu", "tanh", "softplus")
FUSION_ORDERS: tuple[str, ...] = ("rna,protein", "protein,rna", "parallel")
POOL_WINDOW_REFERENCES: tuple[str, ...] = ("tss", "absolute", "fraction")
#: The fields whose official values are not published, which ``isoformer models calibrate`` finds from data.
CALIBRATED_FIELDS: tuple[str, ...] = (
    "fusion_order", "head_activation", "pool_window_start", "pool_window_end", "pool_window_reference",
)

# Field values of each preset that differ from the constructor defaults (which are the official model).
_PRESET_OVERRIDES: dict[str, dict] = {
    "official": {},
    "tiny": dict(
        dna_length=2048,
        enformer_dim=192,
        enformer_depth=2,
        enformer_heads=4,
        enformer_attn_dim_key=16,
        enformer_target_length=128,
        enformer_num_downsamples=3,
        enformer_dim_divisible_by=16,
        nt_hidden_size=64,
        nt_num_hidden_layers=2,
        nt_num_attention_heads=4,
        nt_intermediate_size=128,
        nt_max_position_embeddings=258,
        dna_nt_hidden_size=64,
        dna_nt_num_hidden_layers=2,
        dna_nt_num_attention_heads=4,
        dna_nt_intermediate_size=128,
        dna_nt_max_position_embeddings=258,
        esm_hidden_size=64,
        esm_num_hidden_layers=2,
        esm_num_attention_heads=4,
        esm_intermediate_size=128,
        esm_max_position_embeddings=130,
        max_rna_tokens=256,
        max_protein_residues=126,
        perceiver_num_latents=8,
        perceiver_depth=1,
        perceiver_num_heads=4,
        head_hidden_size=384,
    ),
}

#: Preset names accepted by `IsoformerConfig.from_preset`.
PRESETS: tuple[str, ...] = tuple(_PRESET_OVERRIDES)


class IsoformerConfig(PretrainedConfig):
    """Every hyper-parameter of IsoFormer; defaults are the ``official`` preset.

    Args (main ones; every ``enformer_*`` / ``nt_*`` / ``esm_*`` field is the same-named hyper-parameter of
    that encoder):
        modalities: subset of ("dna", "rna", "protein"), in any order; stored in canonical order.
        dna_encoder_type: "enformer" (official) or "nucleotide_transformer" (the paper's alternative: an NT-v2
            over the 6-mer tokens of the DNA window, sized by the ``dna_nt_*`` fields).
        aggregation: "cross-attention" (official), "perceiver" or "linear" (paper ablations).
        dna_length: DNA window in bp (196,608 official; 12,288 for the NT DNA encoder).
        max_rna_tokens: RNA tokens after ``<cls>`` (2,048 official; NT position table holds 2 more).
        max_protein_residues: residues between ``<cls>`` and ``<eos>`` (1,022; ESM position table 1,026).
        num_heads_omics_cross_attention: heads of each cross-attention block (8).
        fusion_order: "rna,protein", "protein,rna" or "parallel" (see the module docstring).
        perceiver_num_latents / perceiver_depth / perceiver_num_heads / perceiver_ff_mult: Perceiver resampler.
        pool_window_start / pool_window_end / pool_window_reference: see the module docstring.
        head_hidden_size / head_activation / head_dropout: the MLP head.
        tissues: output names, in order; ``n_tissues`` is their count.
        target_units: what the outputs mean ("log1p_tpm": log(TPM + 1) averaged over donors).
    """

    model_type = "isoformer"

    def __init__(
        self,
        modalities=ALL_MODALITIES,
        dna_encoder_type: str = "enformer",
        aggregation: str = "cross-attention",
        dna_length: int = 196_608,
        max_rna_tokens: int = 2048,
        max_protein_residues: int = 1022,
        # Enformer trunk (models/encoders/enformer_trunk.py); names as in the official config.json.
        enformer_dim: int = 1536,
        enformer_depth: int = 11,
        enformer_heads: int = 8,
        enformer_attn_dim_key: int = 64,
        enformer_dropout_rate: float = 0.4,
        enformer_attn_dropout: float = 0.05,
        enformer_pos_dropout: float = 0.01,
        enformer_target_length: int = 896,
        enformer_num_downsamples: int = 7,
        enformer_dim_divisible_by: int = 128,
        enformer_use_checkpointing: bool = False,
        enformer_use_tf_gamma: bool = False,
        # Nucleotide Transformer v2 250M, the RNA encoder.
        nt_vocab_size: int = 4107,
        nt_hidden_size: int = 768,
        nt_num_hidden_layers: int = 24,
        nt_num_attention_heads: int = 16,
        nt_intermediate_size: int = 3072,
        nt_add_bias_fnn: bool = False,
        nt_hidden_dropout_prob: float = 0.0,
        nt_attention_probs_dropout_prob: float = 0.0,
        nt_max_position_embeddings: int = 2050,
        nt_layer_norm_eps: float = 1e-12,
        nt_pad_token_id: int = 1,
        nt_mask_token_id: int = 2,
        nt_emb_layer_norm_before: bool = False,
        nt_rotary_base: float = 10_000.0,
        # Nucleotide Transformer used as DNA encoder (only with dna_encoder_type="nucleotide_transformer");
        # vocabulary, dropout, eps and special ids are shared with the nt_* fields above.
        dna_nt_hidden_size: int = 768,
        dna_nt_num_hidden_layers: int = 24,
        dna_nt_num_attention_heads: int = 16,
        dna_nt_intermediate_size: int = 3072,
        dna_nt_max_position_embeddings: int = 2050,
        # ESM-2 t30 150M, the protein encoder (transformers.EsmModel).
        esm_vocab_size: int = 33,
        esm_hidden_size: int = 640,
        esm_num_hidden_layers: int = 30,
        esm_num_attention_heads: int = 20,
        esm_intermediate_size: int = 2560,
        esm_hidden_act: str = "gelu",
        esm_hidden_dropout_prob: float = 0.0,
        esm_attention_probs_dropout_prob: float = 0.0,
        esm_max_position_embeddings: int = 1026,
        esm_position_embedding_type: str = "rotary",
        esm_layer_norm_eps: float = 1e-5,
        esm_pad_token_id: int = 1,
        esm_mask_token_id: int = 32,
        esm_token_dropout: bool = True,
        esm_emb_layer_norm_before: bool = False,
        # Aggregation.
        num_heads_omics_cross_attention: int = 8,
        cross_attention_dropout: float = 0.0,
        fusion_order: str = "rna,protein",
        perceiver_num_latents: int = 64,
        perceiver_depth: int = 2,
        perceiver_num_heads: int = 8,
        perceiver_ff_mult: int = 2,
        # Pooling and head.
        pool_window_start: int | float | None = None,
        pool_window_end: int | float | None = None,
        pool_window_reference: str = "tss",
        head_hidden_size: int = 6144,
        head_activation: str = "gelu",
        head_dropout: float = 0.0,
        tissues=GTEX_TISSUES,
        target_units: str = "log1p_tpm",
        initializer_range: float = 0.02,
        **kwargs,
    ):
        self.modalities = _canonical_modalities(modalities)
        self.dna_encoder_type = dna_encoder_type
        self.aggregation = aggregation
        self.dna_length = int(dna_length)
        self.max_rna_tokens = int(max_rna_tokens)
        self.max_protein_residues = int(max_protein_residues)

        self.enformer_dim = enformer_dim
        self.enformer_depth = enformer_depth
        self.enformer_heads = enformer_heads
        self.enformer_attn_dim_key = enformer_attn_dim_key
        self.enformer_dropout_rate = enformer_dropout_rate
        self.enformer_attn_dropout = enformer_attn_dropout
        self.enformer_pos_dropout = enformer_pos_dropout
        self.enformer_target_length = enformer_target_length
        self.enformer_num_downsamples = enformer_num_downsamples
        self.enformer_dim_divisible_by = enformer_dim_divisible_by
        self.enformer_use_checkpointing = enformer_use_checkpointing
        self.enformer_use_tf_gamma = enformer_use_tf_gamma

        self.nt_vocab_size = nt_vocab_size
        self.nt_hidden_size = nt_hidden_size
        self.nt_num_hidden_layers = nt_num_hidden_layers
        self.nt_num_attention_heads = nt_num_attention_heads
        self.nt_intermediate_size = nt_intermediate_size
        self.nt_add_bias_fnn = nt_add_bias_fnn
        self.nt_hidden_dropout_prob = nt_hidden_dropout_prob
        self.nt_attention_probs_dropout_prob = nt_attention_probs_dropout_prob
        self.nt_max_position_embeddings = nt_max_position_embeddings
        self.nt_layer_norm_eps = nt_layer_norm_eps
        self.nt_pad_token_id = nt_pad_token_id
        self.nt_mask_token_id = nt_mask_token_id
        self.nt_emb_layer_norm_before = nt_emb_layer_norm_before
        self.nt_rotary_base = nt_rotary_base

        self.dna_nt_hidden_size = dna_nt_hidden_size
        self.dna_nt_num_hidden_layers = dna_nt_num_hidden_layers
        self.dna_nt_num_attention_heads = dna_nt_num_attention_heads
        self.dna_nt_intermediate_size = dna_nt_intermediate_size
        self.dna_nt_max_position_embeddings = dna_nt_max_position_embeddings

        self.esm_vocab_size = esm_vocab_size
        self.esm_hidden_size = esm_hidden_size
        self.esm_num_hidden_layers = esm_num_hidden_layers
        self.esm_num_attention_heads = esm_num_attention_heads
        self.esm_intermediate_size = esm_intermediate_size
        self.esm_hidden_act = esm_hidden_act
        self.esm_hidden_dropout_prob = esm_hidden_dropout_prob
        self.esm_attention_probs_dropout_prob = esm_attention_probs_dropout_prob
        self.esm_max_position_embeddings = esm_max_position_embeddings
        self.esm_position_embedding_type = esm_position_embedding_type
        self.esm_layer_norm_eps = esm_layer_norm_eps
        self.esm_pad_token_id = esm_pad_token_id
        self.esm_mask_token_id = esm_mask_token_id
        self.esm_token_dropout = esm_token_dropout
        self.esm_emb_layer_norm_before = esm_emb_layer_norm_before

        self.num_heads_omics_cross_attention = num_heads_omics_cross_attention
        self.cross_attention_dropout = cross_attention_dropout
        self.fusion_order = fusion_order
        self.perceiver_num_latents = perceiver_num_latents
        self.perceiver_depth = perceiver_depth
        self.perceiver_num_heads = perceiver_num_heads
        self.perceiver_ff_mult = perceiver_ff_mult

        self.pool_window_reference = pool_window_reference
        self.pool_window_start = _window_bound(pool_window_start, pool_window_reference)
        self.pool_window_end = _window_bound(pool_window_end, pool_window_reference)
        self.head_hidden_size = head_hidden_size
        self.head_activation = head_activation
        self.head_dropout = head_dropout
        self.tissues = list(tissues)
        self.target_units = target_units
        self.initializer_range = initializer_range
        for name, default in encoder_config_fields().items():
            kwargs.setdefault(name, copy.deepcopy(default))
        super().__init__(**kwargs)
        self.validate()

    # ----------------------------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str, **overrides) -> "IsoformerConfig":
        """Build the named preset (see `PRESETS`), then apply ``overrides`` (any constructor field).

        A ``dna_encoder_type`` override also applies that encoder's own preset values (for the Nucleotide
        Transformer DNA encoder, the longest window its position table holds: 12,288 bp official, 1,536 bp
        tiny), unless they are overridden too.
        """
        if name not in _PRESET_OVERRIDES:
            raise InputError(f"unknown model preset {name!r}; choose one of: {', '.join(PRESETS)}")
        fields = copy.deepcopy(_PRESET_OVERRIDES[name])
        if "dna_encoder_type" in overrides:
            fields.update(dna_encoder(overrides["dna_encoder_type"]).preset_overrides(name))
        fields.update(overrides)
        return cls(**fields)

    # ----------------------------------------------------------------------------------------------
    @property
    def n_tissues(self) -> int:
        """Number of outputs of the head (30 for the official model)."""
        return len(self.tissues)

    @property
    def has_dna(self) -> bool:
        return "dna" in self.modalities

    @property
    def has_rna(self) -> bool:
        return "rna" in self.modalities

    @property
    def has_protein(self) -> bool:
        return "protein" in self.modalities

    @property
    def query_modality(self) -> str:
        """The modality whose embeddings form the query stream: dna, else rna, else protein."""
        return next(m for m in ALL_MODALITIES if m in self.modalities)

    def encoder(self, modality: str):
        """The :class:`~isoformer_cli.models.network.encoders.base.SequenceEncoder` that fills ``modality`` here."""
        return encoder_for(self, modality)

    @property
    def dna_embedding_size(self) -> int:
        """Width of the DNA encoder output (3,072 for the official Enformer)."""
        return self.encoder("dna").width(self)

    @property
    def query_size(self) -> int:
        """Width D of the query stream, of the pooled embedding and of the head input."""
        return self.encoder(self.query_modality).width(self)

    @property
    def dna_bins(self) -> int | None:
        """Number of DNA positions the encoder returns for a pure-ACGT window (896 Enformer bins at full size).
        None without DNA."""
        if not self.has_dna:
            return None
        return self.encoder("dna").positions(self)

    # ----------------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Check that the fields describe a buildable model; raise InputError naming the field."""

        def fail(message: str) -> None:
            raise InputError(f"invalid IsoFormer configuration: {message}")

        dna_encoder(self.dna_encoder_type)  # an unknown type is an error even in a DNA-free configuration
        if self.aggregation not in AGGREGATIONS:
            fail(f"aggregation={self.aggregation!r}; choose one of {', '.join(AGGREGATIONS)}")
        if self.head_activation not in HEAD_ACTIVATIONS:
            fail(f"head_activation={self.head_activation!r}; choose one of {', '.join(HEAD_ACTIVATIONS)}")
        if self.fusion_order not in FUSION_ORDERS:
            fail(f"fusion_order={self.fusion_order!r}; choose one of {', '.join(FUSION_ORDERS)}")
        if self.pool_window_reference not in POOL_WINDOW_REFERENCES:
            fail(f"pool_window_reference={self.pool_window_reference!r}; choose one of "
                 f"{', '.join(POOL_WINDOW_REFERENCES)}")
        start, end = self.pool_window_start, self.pool_window_end
        if self.pool_window_reference == "fraction":
            for name, value in (("pool_window_start", start), ("pool_window_end", end)):
                if value is not None and not 0.0 <= value <= 1.0:
                    fail(f"{name}={value!r} with pool_window_reference=fraction; a fraction is between 0 and 1")
        else:
            for name, value in (("pool_window_start", start), ("pool_window_end", end)):
                if value is not None and not isinstance(value, int):
                    fail(f"{name}={value!r} with pool_window_reference={self.pool_window_reference}: positions are "
                         "whole numbers (fractions need pool_window_reference=fraction)")
        if start is not None and end is not None and start >= end:
            fail(f"pool_window_start={start!r} is not below pool_window_end={end!r}: the window would be empty")
        if not self.tissues:
            fail("tissues is empty; the head needs at least one output")
        if len(set(self.tissues)) != len(self.tissues):
            fail("tissues contains duplicate names")
        for modality in self.modalities:
            self.encoder(modality).validate(self)
        if self.query_size % self.num_heads_omics_cross_attention:
            fail(
                f"query width {self.query_size} is not divisible by num_heads_omics_cross_attention="
                f"{self.num_heads_omics_cross_attention}"
            )
        if self.aggregation == "perceiver" and self.query_size % self.perceiver_num_heads:
            fail(f"query width {self.query_size} is not divisible by perceiver_num_heads={self.perceiver_num_heads}")


def _window_bound(value, reference):
    """A pool window bound as stored: None, a float for ``fraction``, an int otherwise where it is whole (JSON
    may write ``2`` as ``2.0``); other values are kept for :meth:`IsoformerConfig.validate` to refuse."""
    if value is None or isinstance(value, bool):
        return value
    if reference == "fraction":
        return float(value) if isinstance(value, (int, float)) else value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _canonical_modalities(modalities) -> list[str]:
    """Accept "dna,rna", ["rna", "dna"], ... and return the canonical ordered list, e.g. ["dna", "rna"]."""
    if isinstance(modalities, str):
        modalities = [part.strip() for part in modalities.split(",") if part.strip()]
    chosen = set(modalities)
    unknown = chosen - set(ALL_MODALITIES)
    if unknown:
        raise InputError(
            f"unknown modality {', '.join(sorted(unknown))}; choose a subset of {', '.join(ALL_MODALITIES)}"
        )
    if not chosen:
        raise InputError(f"modalities is empty; choose a subset of {', '.join(ALL_MODALITIES)}")
    return [m for m in ALL_MODALITIES if m in chosen]
