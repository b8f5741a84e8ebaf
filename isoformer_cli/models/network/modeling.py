"""IsoFormer: DNA, RNA and protein encoders, aggregation, pooling and a per-tissue regression head.

`IsoformerModel` is a Hugging Face ``PreTrainedModel`` (``save_pretrained`` / ``from_pretrained`` write and read
``config.json`` + ``model.safetensors``). Its top-level modules, and so its state-dict prefixes, are:

- ``dna_encoder``: built by the DNA encoder named in ``config.dna_encoder_type`` (Enformer:
  ``dna_encoder.enformer.*``; Nucleotide Transformer: ``dna_encoder.nucleotide_transformer.*``); None without DNA.
- ``rna_encoder``: the NT-v2 network (``rna_encoder.embeddings.*``, ``rna_encoder.encoder.*``: Hugging Face
  NT-v2 ``esm.*`` names without ``esm.``); None without RNA.
- ``protein_encoder``: ``transformers.EsmModel`` (``protein_encoder.*``: ESM-2 ``esm.*`` names without
  ``esm.``); None without protein.
- ``aggregation``: see `isoformer_cli.models.network.aggregation` (``aggregation.rna_cross_attention.*``, ...).
- ``head``: `IsoformerHead` (``head.dense``: Linear(D, head_hidden_size), activation, dropout,
  ``head.output``: Linear(head_hidden_size, n_tissues)).

The forward pass is split in two stages so a caller can encode each distinct DNA window / RNA / protein once
and share the embeddings across isoforms: `IsoformerModel.encode_dna`, `encode_rna`, `encode_protein`, then
`IsoformerModel.fuse_and_predict`. ``forward`` is exactly these calls in sequence.

Missing modalities per row: ``has_rna`` / ``has_protein`` (B,) bool (default: the row's attention mask has a
True). A row without RNA (or protein) skips that modality's fusion (identity) and gets the same prediction as a
model configured without that modality, with the same weights, would give. The query-stream modality (DNA, or
RNA / protein in DNA-free configurations) must be present in every row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from isoformer_cli.errors import InputError
from isoformer_cli.models.network.aggregation import (
    CrossAttentionAggregation,
    PerceiverAggregation,
    build_aggregation,
    window_range,
)
from isoformer_cli.models.network.configuration import CALIBRATED_FIELDS, IsoformerConfig

try:  # transformers >= 5: init functions that respect already-loaded tensors.
    from transformers import initialization as _init
except ImportError:  # transformers 4.x
    _init = nn.init

_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh, "softplus": nn.Softplus}


@dataclass
class IsoformerOutput(ModelOutput):
    """Output of `IsoformerModel`.

    Attributes:
        predictions: (B, n_tissues) predicted expression, in ``config.target_units`` (log(TPM + 1)).
        fused_dna_embeddings: (B, N, D) the query stream after fusion: DNA bins with RNA and protein attended
            in (cross-attention), the Perceiver latents (B, num_latents, D) (perceiver), or the unfused query
            stream (linear). Without DNA, the fused RNA (or protein) token stream.
        pooled_embeddings: (B, D) the vector fed to the head.
        loss: mean squared error against ``labels`` when labels are given.
        dna_embeddings / rna_embeddings / protein_embeddings: encoder outputs (B, L, width), only with
            ``output_modality_embeddings=True`` (None for absent modalities).
    """

    predictions: torch.Tensor | None = None
    fused_dna_embeddings: torch.Tensor | None = None
    pooled_embeddings: torch.Tensor | None = None
    loss: torch.Tensor | None = None
    dna_embeddings: torch.Tensor | None = None
    rna_embeddings: torch.Tensor | None = None
    protein_embeddings: torch.Tensor | None = None


def _window_of(setting: dict, length: int, config: IsoformerConfig) -> tuple[int, int]:
    """The positions a setting's pool window selects of ``length`` query positions (all without DNA)."""
    if not config.has_dna:
        return 0, length
    return window_range(length, setting["pool_window_start"], setting["pool_window_end"],
                        setting["pool_window_reference"])


class IsoformerHead(nn.Module):
    """MLP head: ``dense`` Linear(D, hidden) -> activation -> dropout -> ``output`` Linear(hidden, n_tissues).

    Official sizes 3072 -> 6144 -> 30 (19,064,862 parameters). The official activation is unknown; the
    config's ``head_activation`` (GELU by default) is used.
    """

    def __init__(self, config: IsoformerConfig):
        super().__init__()
        self.dense = nn.Linear(config.query_size, config.head_hidden_size)
        self.activation = _ACTIVATIONS[config.head_activation]()
        self.dropout = nn.Dropout(config.head_dropout)
        self.output = nn.Linear(config.head_hidden_size, config.n_tissues)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """pooled (B, D) -> predictions (B, n_tissues)."""
        return self.output(self.dropout(self.activation(self.dense(pooled))))


class IsoformerPreTrainedModel(PreTrainedModel):
    """Hugging Face plumbing shared by IsoFormer models: config class, prefix and weight initialisation."""

    config_class = IsoformerConfig
    base_model_prefix = "isoformer"
    main_input_name = "dna_input_ids"
    supports_gradient_checkpointing = False

    def _init_weights(self, module: nn.Module) -> None:
        """Normal(0, initializer_range) for our Linear/Embedding layers, ones/zeros for LayerNorms (the
        transformers defaults), and the Perceiver latents. Enformer and ESM sub-models are initialised by
        their own ``_init_weights`` (transformers dispatches to nested ``PreTrainedModel``s)."""
        super()._init_weights(module)
        if isinstance(module, PerceiverAggregation):
            _init.normal_(module.latents, mean=0.0, std=self.config.initializer_range)


class IsoformerModel(IsoformerPreTrainedModel):
    """IsoFormer: predicts transcript-isoform expression in ``config.n_tissues`` tissues.

    Inputs (all right-padded; masks True at real tokens):
        dna_input_ids: (B, L_dna) long. Enformer: A0 C1 G2 T3 N4, L_dna = config.dna_length (196,608).
            NT DNA encoder: NT token ids with ``<cls>`` (pad 1).
        dna_attention_mask: (B, L_dna) bool, only for the NT DNA encoder (default: ids != pad).
        rna_input_ids / rna_attention_mask: (B, L_rna) NT-v2 ids, ``<cls>`` + <= config.max_rna_tokens tokens.
        protein_input_ids / protein_attention_mask: (B, L_prot) ESM ids, ``<cls>`` residues ``<eos>``.
        has_rna / has_protein: (B,) bool, optional; False marks a row without that modality.
    """

    def __init__(self, config: IsoformerConfig):
        super().__init__(config)
        self.dna_encoder = config.encoder("dna").build(config) if config.has_dna else None
        self.rna_encoder = config.encoder("rna").build(config) if config.has_rna else None
        self.protein_encoder = config.encoder("protein").build(config) if config.has_protein else None
        self.aggregation = build_aggregation(config)
        self.head = IsoformerHead(config)
        self.post_init()

    # -------------------------------------------------------------------------------------------
    # Encoder stage
    def encode_dna(
        self, dna_input_ids: torch.Tensor, dna_attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """DNA window(s) -> (embeddings (B, N, D_dna), mask (B, N) bool or None when every position is real).

        Enformer: N = 896 bins of 128 bp, D_dna = 3072 at full size.
        """
        if self.dna_encoder is None:
            raise InputError("this model has no DNA encoder (modalities: " + ",".join(self.config.modalities) + ")")
        return self.dna_encoder(dna_input_ids, dna_attention_mask)

    def encode_rna(self, rna_input_ids: torch.Tensor, rna_attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """RNA token ids (B, L) -> NT-v2 last hidden states (B, L, nt_hidden_size).

        Rows without any real token give finite, meaningless states (mark them with ``has_rna=False``).
        """
        if self.rna_encoder is None:
            raise InputError("this model has no RNA encoder (modalities: " + ",".join(self.config.modalities) + ")")
        if rna_attention_mask is None:
            rna_attention_mask = rna_input_ids != self.config.encoder("rna").pad_id(self.config)
        return self.rna_encoder(rna_input_ids, rna_attention_mask.bool())

    def encode_protein(
        self, protein_input_ids: torch.Tensor, protein_attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Protein token ids (B, L) -> ESM-2 last hidden states (B, L, esm_hidden_size).

        Rows without any real token are run with an all-True mask so that ESM's token-dropout scaling and the
        attention stay finite; their states are meaningless (mark them with ``has_protein=False``).
        """
        if self.protein_encoder is None:
            raise InputError(
                "this model has no protein encoder (modalities: " + ",".join(self.config.modalities) + ")"
            )
        if protein_attention_mask is None:
            protein_attention_mask = protein_input_ids != self.config.encoder("protein").pad_id(self.config)
        mask = protein_attention_mask.bool()
        mask = mask | ~mask.any(dim=-1, keepdim=True)
        return self.protein_encoder(input_ids=protein_input_ids, attention_mask=mask.long()).last_hidden_state

    # -------------------------------------------------------------------------------------------
    # Fusion stage
    @staticmethod
    def _modality_mask(
        name: str, embeddings: torch.Tensor | None, mask: torch.Tensor | None, present: torch.Tensor | None
    ) -> torch.Tensor | None:
        """Key mask (B, L) bool of one modality: attention mask AND the row's presence flag."""
        if embeddings is None:
            return None
        if mask is None:
            mask = torch.ones(embeddings.shape[:2], dtype=torch.bool, device=embeddings.device)
        if mask.shape != embeddings.shape[:2]:
            raise InputError(
                f"{name} attention mask has shape {tuple(mask.shape)}, embeddings have {tuple(embeddings.shape[:2])}"
            )
        mask = mask.bool()
        if present is not None:
            mask = mask & present.bool().to(mask.device)[:, None]
        return mask

    def _fusion_inputs(self, dna_embeddings, dna_mask, rna_embeddings, rna_attention_mask, protein_embeddings,
                       protein_attention_mask, has_rna, has_protein):
        """``(query, query_mask, rna, rna_mask, protein, protein_mask)`` for the aggregation: the query stream
        chosen, modality masks combined with the rows' presence flags (see :meth:`fuse_and_predict`)."""
        config = self.config
        rna_mask = self._modality_mask("RNA", rna_embeddings, rna_attention_mask, has_rna) if config.has_rna else None
        protein_mask = (
            self._modality_mask("protein", protein_embeddings, protein_attention_mask, has_protein)
            if config.has_protein
            else None
        )
        if not config.has_rna:
            rna_embeddings = None
        if not config.has_protein:
            protein_embeddings = None

        query_modality = config.query_modality
        if query_modality == "dna":
            if dna_embeddings is None:
                raise InputError("DNA embeddings are required: DNA is the query stream of this model")
            query, query_mask = dna_embeddings, dna_mask
        elif query_modality == "rna":
            query, query_mask = rna_embeddings, rna_mask
            rna_embeddings, rna_mask = None, None
        else:
            query, query_mask = protein_embeddings, protein_mask
            protein_embeddings, protein_mask = None, None
        if query is None:
            raise InputError(f"{query_modality} input is required: it is the query stream of this model")
        if query_mask is not None and not bool(query_mask.any(dim=-1).all()):
            missing = (~query_mask.any(dim=-1)).nonzero().flatten().tolist()
            raise InputError(
                f"rows {missing} have no {query_modality}, but {query_modality} is the query stream of this model"
            )

        return query, query_mask, rna_embeddings, rna_mask, protein_embeddings, protein_mask

    def predict_under_settings(
        self,
        settings: list[dict],
        dna_embeddings: torch.Tensor | None = None,
        dna_mask: torch.Tensor | None = None,
        rna_embeddings: torch.Tensor | None = None,
        rna_attention_mask: torch.Tensor | None = None,
        protein_embeddings: torch.Tensor | None = None,
        protein_attention_mask: torch.Tensor | None = None,
        has_rna: torch.Tensor | None = None,
        has_protein: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predictions (S, B, n_tissues) of the same encoder outputs under each of S alternative settings.

        ``settings``: dicts of the fields of ``CALIBRATED_FIELDS`` (fusion_order, head_activation,
        pool_window_start / end / reference); the inputs are those of :meth:`fuse_and_predict`. Entry ``s``
        equals what :meth:`fuse_and_predict` returns for a model configured with ``settings[s]`` (the weights
        do not depend on these fields). Each cross-attention block output is computed once (the three orders
        take four block passes, one order two), the pooling once per distinct (order, window), and each head
        layer runs once over all of them, so trying many settings costs little more than one.
        Only for the cross-attention aggregation (the official one, whose settings are unknown).
        """
        if not isinstance(self.aggregation, CrossAttentionAggregation):
            raise InputError(f"alternative settings apply to the cross-attention aggregation, not to "
                             f"{self.config.aggregation!r}")
        query, query_mask, rna, rna_mask, protein, protein_mask = self._fusion_inputs(
            dna_embeddings, dna_mask, rna_embeddings, rna_attention_mask, protein_embeddings,
            protein_attention_mask, has_rna, has_protein)
        length = query.shape[1]
        orders = list(dict.fromkeys(setting["fusion_order"] for setting in settings))
        fused = self.aggregation.fuse_orders(query, rna, rna_mask, protein, protein_mask, orders)
        # One pooled vector per distinct (order, window), one activation per distinct (pooled vector, activation);
        # each of the head's two layers then runs once on all of them.
        pooled_of, pairs_of, pooled, pairs, index = {}, {}, [], [], []
        for setting in settings:
            key = (setting["fusion_order"], _window_of(setting, length, self.config))
            if key not in pooled_of:
                pooled_of[key] = len(pooled)
                pooled.append(self.aggregation.pooling(fused[key[0]], query_mask, window=key[1]))
            pair = (pooled_of[key], setting["head_activation"])
            if pair not in pairs_of:
                pairs_of[pair] = len(pairs)
                pairs.append(pair)
            index.append(pairs_of[pair])
        hidden = self.head.dense(torch.cat(pooled)).unflatten(0, (len(pooled), -1))  # (pooled, B, hidden)
        activated = torch.stack([_ACTIVATIONS[activation]()(hidden[row]) for row, activation in pairs])
        outputs = self.head.output(self.head.dropout(activated))  # (pairs, B, n_tissues)
        return outputs[torch.tensor(index, device=outputs.device)]

    def fuse_and_predict(
        self,
        dna_embeddings: torch.Tensor | None = None,
        dna_mask: torch.Tensor | None = None,
        rna_embeddings: torch.Tensor | None = None,
        rna_attention_mask: torch.Tensor | None = None,
        protein_embeddings: torch.Tensor | None = None,
        protein_attention_mask: torch.Tensor | None = None,
        has_rna: torch.Tensor | None = None,
        has_protein: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> IsoformerOutput:
        """Fuse encoder outputs and predict.

        Args:
            dna_embeddings: (B, N, D) from `encode_dna` (required when the model has DNA); dna_mask (B, N) or None.
            rna_embeddings / protein_embeddings: (B, L, E) from `encode_rna` / `encode_protein`, or None when no
                row of the batch has that modality; masks (B, L) bool.
            has_rna / has_protein: (B,) bool, optional row presence flags.
            labels: (B, n_tissues) optional targets; gives ``loss`` (MSE).

        Returns:
            `IsoformerOutput` with predictions (B, n_tissues), fused_dna_embeddings, pooled_embeddings, loss.
        """
        query, query_mask, rna_embeddings, rna_mask, protein_embeddings, protein_mask = self._fusion_inputs(
            dna_embeddings, dna_mask, rna_embeddings, rna_attention_mask, protein_embeddings,
            protein_attention_mask, has_rna, has_protein)
        fused, pooled = self.aggregation(query, query_mask, rna_embeddings, rna_mask, protein_embeddings, protein_mask)
        predictions = self.head(pooled)
        loss = None
        if labels is not None:
            loss = F.mse_loss(predictions, labels.to(predictions.dtype))
        return IsoformerOutput(
            predictions=predictions, fused_dna_embeddings=fused, pooled_embeddings=pooled, loss=loss
        )

    # -------------------------------------------------------------------------------------------
    def forward(
        self,
        dna_input_ids: torch.Tensor | None = None,
        rna_input_ids: torch.Tensor | None = None,
        rna_attention_mask: torch.Tensor | None = None,
        protein_input_ids: torch.Tensor | None = None,
        protein_attention_mask: torch.Tensor | None = None,
        has_rna: torch.Tensor | None = None,
        has_protein: torch.Tensor | None = None,
        dna_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_modality_embeddings: bool = False,
    ) -> IsoformerOutput:
        """Encode every given modality, fuse and predict (see the class docstring for shapes).

        An input left as None means "no row of the batch has this modality" (a configured DNA query stream is
        always required). Returns an `IsoformerOutput`.
        """
        config = self.config
        dna = dna_mask = rna = protein = None
        if config.has_dna and dna_input_ids is not None:
            dna, dna_mask = self.encode_dna(dna_input_ids, dna_attention_mask)
        if config.has_rna and rna_input_ids is not None:
            if rna_attention_mask is None:
                rna_attention_mask = rna_input_ids != config.encoder("rna").pad_id(config)
            rna = self.encode_rna(rna_input_ids, rna_attention_mask)
        if config.has_protein and protein_input_ids is not None:
            if protein_attention_mask is None:
                protein_attention_mask = protein_input_ids != config.encoder("protein").pad_id(config)
            protein = self.encode_protein(protein_input_ids, protein_attention_mask)
        output = self.fuse_and_predict(
            dna_embeddings=dna,
            dna_mask=dna_mask,
            rna_embeddings=rna,
            rna_attention_mask=rna_attention_mask,
            protein_embeddings=protein,
            protein_attention_mask=protein_attention_mask,
            has_rna=has_rna,
            has_protein=has_protein,
            labels=labels,
        )
        if output_modality_embeddings:
            output.dna_embeddings = dna
            output.rna_embeddings = rna
            output.protein_embeddings = protein
        return output

    # -------------------------------------------------------------------------------------------
    def apply_settings(self, settings: dict) -> None:
        """Switch this model to other values of the ``CALIBRATED_FIELDS`` (fusion order, head activation, pool
        window): the configuration and the parameter-free parts they shape; the weights stay as they are.
        InputError (and nothing changed) for an invalid combination."""
        unknown = sorted(set(settings) - set(CALIBRATED_FIELDS))
        if unknown:
            raise InputError(f"not a calibrated setting: {', '.join(unknown)}")
        previous = {key: getattr(self.config, key) for key in CALIBRATED_FIELDS}
        try:
            for key, value in settings.items():
                setattr(self.config, key, value)
            self.config.validate()
        except InputError:
            for key, value in previous.items():
                setattr(self.config, key, value)
            raise
        if isinstance(self.aggregation, CrossAttentionAggregation):
            self.aggregation.fusion_order = self.config.fusion_order
        if hasattr(self.aggregation, "pooling"):
            self.aggregation.pooling = type(self.aggregation.pooling)(self.config)
        self.head.activation = _ACTIVATIONS[self.config.head_activation]()

    # -------------------------------------------------------------------------------------------
    def parameter_counts(self, detailed: bool = False) -> dict[str, int]:
        """Parameters per component: dna_encoder, rna_encoder, protein_encoder, aggregation, head, total.

        Each parameter is counted once (``nn.Module.parameters`` de-duplicates shared tensors); buffers (BatchNorm
        statistics, rotary frequencies) are not parameters. Absent modalities count 0. Works on the ``meta``
        device. ``detailed=True`` adds dotted sub-entries: Enformer parts (``dna_encoder.stem_and_conv_tower``,
        ``dna_encoder.transformer``, ``dna_encoder.final_pointwise``) and each aggregation child.
        """

        def count(module: nn.Module | None) -> int:
            return 0 if module is None else sum(p.numel() for p in module.parameters())

        counts = {
            "dna_encoder": count(self.dna_encoder),
            "rna_encoder": count(self.rna_encoder),
            "protein_encoder": count(self.protein_encoder),
            "aggregation": count(self.aggregation),
            "head": count(self.head),
        }
        counts["total"] = count(self)
        if detailed:
            if self.dna_encoder is not None:
                for name, value in self.config.encoder("dna").parameter_groups(self.dna_encoder).items():
                    counts[f"dna_encoder.{name}"] = value
            for name, child in self.aggregation.named_children():
                if child is not None and count(child):
                    counts[f"aggregation.{name}"] = count(child)
            if isinstance(self.aggregation, PerceiverAggregation):
                counts["aggregation.latents"] = self.aggregation.latents.numel()
        return counts
