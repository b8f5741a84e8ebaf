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

import re
from dataclasses import dataclass

import torch
from transformers import EsmConfig, EsmModel

from isoformer_cli.errors import CheckpointError
from isoformer_cli.models.network.encoders.base import (
    FoundComponent,
    LayerGroups,
    PretrainedFolder,
    ReferenceEncoder,
    SequenceEncoder,
)
from isoformer_cli.models.conversion.key_mapping import IGNORE, MappingRow
from isoformer_cli.models.network.tokenizers import PROTEIN_VOCABULARY, ProteinTokenizer
from isoformer_cli.models.checkpoint.weights import COMPUTED_BUFFER_PATTERN, name_some, transformers_renames

# (field of an ESM config.json, is it part of the architecture?) for `isoformer init`.
ESM_FOLDER_FIELDS = (
    ("hidden_size", True),
    ("num_hidden_layers", True),
    ("num_attention_heads", True),
    ("intermediate_size", True),
    ("vocab_size", True),
    ("position_embedding_type", True),
    ("emb_layer_norm_before", True),
    ("hidden_act", True),
    ("pad_token_id", True),
    ("mask_token_id", False),
    ("token_dropout", False),
    ("layer_norm_eps", False),
    ("max_position_embeddings", False),
)
# What transformers assumes when an ESM config.json leaves a field out.
ESM_FOLDER_DEFAULTS = {"emb_layer_norm_before": None}


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


def esm_style_key_rows(target_prefix: str) -> tuple:
    """Rows for an ESM-style (ESM-2 or NT-v2) masked-LM or base-model state dict saved by transformers."""
    return (
        MappingRow(r"^lm_head\.", IGNORE, "masked-LM head (not used by IsoFormer)"),
        MappingRow(r"^(?:esm\.)?pooler\.", IGNORE, "pooling layer (not used by IsoFormer)"),
        MappingRow(r"^esm\.", target_prefix),
        MappingRow(r"^", target_prefix),
    )


# ------------------------------------------------------------------------------------------------
# Finding ESM-style encoders (ESM-2, NT-v2) in a foreign state dict
# ------------------------------------------------------------------------------------------------

# The word-embedding table anchors an ESM-style encoder: "<root>[esm.]embeddings.word_embeddings.weight".
_EMBEDDINGS_KEY = re.compile(r"^(?P<root>.*?)(?P<inner>(?:esm\.)?)embeddings\.word_embeddings\.weight$")
# Sub-modules of an EsmModel (and of NT-v2, which mirrors its names) below the base prefix.
ESM_STYLE_PARTS = ("embeddings", "encoder", "contact_head", "pooler")


@dataclass
class EsmStyleEncoder:
    """An ESM-style encoder found in a state dict (see :func:`find_esm_style_encoders`).

    Attributes:
        root: prefix of the masked-LM wrapper (``lm_head.`` sits under it); base: prefix of the EsmModel
            keys (``root`` + ``"esm."`` in a masked-LM file, ``root`` for a bare EsmModel).
        keys: the state dict's keys that belong to it; gated: feed-forward input projection twice as wide
            as its output projection's input (NT-v2's gated FFN), ffn_bias: the FFN has biases.
        hidden, vocab, layers, intermediate: sizes read off the shapes; positions: rows of the absolute
            position table (None when absent); heads: from per-layer rotary ``inv_freq`` buffers (None when
            absent); layer_norm_before: an embedding LayerNorm exists; lm_head / contact_head: present.
    """

    root: str
    base: str
    keys: tuple
    gated: bool
    ffn_bias: bool
    hidden: int
    vocab: int
    layers: int
    intermediate: int
    positions: int | None
    heads: int | None
    layer_norm_before: bool
    lm_head: bool
    contact_head: bool

    def rows(self, target_prefix, lm_head_reason):
        """Mapping rows: the masked-LM head ignored, the EsmModel parts onto ``target_prefix``."""
        root, base = re.escape(self.root), re.escape(self.base)
        return (
            MappingRow(rf"^{root}lm_head\.", IGNORE, lm_head_reason),
            MappingRow(rf"^{base}(?=(?:{'|'.join(ESM_STYLE_PARTS)})\.)", target_prefix),
        )

    def sub_keys(self):
        """``{EsmModel name: key}`` of the encoder's own tensors (the masked-LM head left out)."""
        return {key[len(self.base):]: key for key in self.keys if key.startswith(self.base)
                and not key.startswith(self.root + "lm_head.")}

    def details(self, lm_head_name):
        present = ((lm_head_name, self.lm_head), ("contact head", self.contact_head))
        extras = [name for name, there in present if there]
        text = f"{self.layers} layers, hidden {self.hidden}, vocabulary {self.vocab}"
        return text + (f"; {' and '.join(extras)} ignored" if extras else "")


def find_esm_style_encoders(shapes):
    """Every ESM-style encoder in ``shapes`` (``{key: shape}``), anchored on its word-embedding table.

    An anchor counts only when ``encoder.layer.0 .. N-1`` follow it with the attention and feed-forward
    tensors of an ESM layer; sizes are read off the first layer.
    """
    found = []
    for key, shape in shapes.items():
        match = _EMBEDDINGS_KEY.match(key)
        if match is None or len(shape) != 2:
            continue
        root, base = match["root"], match["root"] + match["inner"]
        part = re.compile(rf"^{re.escape(base)}(?:{'|'.join(ESM_STYLE_PARTS)})\.")
        keys = tuple(k for k in shapes if part.match(k) or k.startswith(root + "lm_head."))
        layer_key = re.compile(rf"^{re.escape(base)}encoder\.layer\.(\d+)\.")
        layers = sorted({int(m.group(1)) for k in keys if (m := layer_key.match(k))})
        first = f"{base}encoder.layer.0."
        needed = ("attention.self.query.weight", "intermediate.dense.weight", "output.dense.weight")
        if not layers or layers != list(range(len(layers))) or any(first + n not in shapes for n in needed):
            continue
        intermediate_in = shapes[first + "intermediate.dense.weight"]
        output = shapes[first + "output.dense.weight"]
        if len(intermediate_in) != 2 or len(output) != 2:
            continue
        inv_freq = shapes.get(first + "attention.self.rotary_embeddings.inv_freq")
        hidden = shape[1]
        positions = shapes.get(base + "embeddings.position_embeddings.weight")
        found.append(EsmStyleEncoder(
            root=root, base=base, keys=keys,
            gated=intermediate_in[0] == 2 * output[1],
            ffn_bias=first + "intermediate.dense.bias" in shapes,
            hidden=hidden, vocab=shape[0], layers=len(layers), intermediate=output[1],
            positions=positions[0] if positions else None,
            heads=hidden // (2 * inv_freq[0]) if inv_freq and inv_freq[0] else None,
            layer_norm_before=base + "embeddings.layer_norm.weight" in shapes,
            lm_head=any(k.startswith(root + "lm_head.") for k in keys),
            contact_head=any(k.startswith(base + "contact_head.") for k in keys),
        ))
    return found


def load_reference_state(module, tensors, label, unused=(r"(^|\.)position_embeddings\.", r"^contact_head\.",
                                                          r"^pooler\.")):
    """Load ``tensors`` (named as ``module`` names them, up to transformers' gamma/beta spelling) into ``module``.

    Recomputed buffers may be absent; tensors matching ``unused`` that the module does not hold (an absolute
    position table, a contact head of an older version) are skipped. Anything else missing or unexpected is a
    CheckpointError naming the tensors.
    """
    own = module.state_dict()
    renames = transformers_renames(set(tensors), own)
    selected, unexpected = {}, []
    for key, tensor in tensors.items():
        name = renames[key]
        if name is None:
            continue
        if name not in own:
            if not any(re.search(pattern, key) for pattern in unused):
                unexpected.append(key)
        elif tuple(tensor.shape) != tuple(own[name].shape):
            raise CheckpointError(f"{label}: {key} has shape {list(tensor.shape)}, the reference expects "
                                  f"{list(own[name].shape)}")
        else:
            selected[name] = tensor
    missing = [name for name in own if name not in selected and not COMPUTED_BUFFER_PATTERN.search(name)]
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f"{len(missing)} tensors missing ({name_some(missing)})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected ({name_some(unexpected)})")
        raise CheckpointError(f"{label}: the source tensors do not load into the reference: {'; '.join(problems)}")
    module.load_state_dict(selected, strict=False)
    return module


class Esm2(SequenceEncoder):
    """The ESM-2 protein encoder; reads the ``esm_*`` fields and ``max_protein_residues``."""

    name = "esm2"
    modality = "protein"
    label = "ESM-2"
    summary_type = "esm2"

    def build(self, config):
        return EsmModel(esm_config(config), add_pooling_layer=False)

    def validate(self, config):
        from isoformer_cli.errors import InputError

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

    def key_rows(self, source_prefix, target_prefix):
        return (
            MappingRow(rf"^{source_prefix}lm_head\.", IGNORE, "ESM-2 masked-LM head (not used by IsoFormer)"),
            MappingRow(rf"^{source_prefix}esm\.", target_prefix),
        )

    def find_in_checkpoint(self, shapes):
        # ESM-2's feed-forward block is a plain Linear with bias; NT-v2's is gated (see nucleotide_transformer).
        found = []
        for encoder in find_esm_style_encoders(shapes):
            if encoder.gated:
                continue
            fields = {
                "esm_vocab_size": encoder.vocab,
                "esm_hidden_size": encoder.hidden,
                "esm_num_hidden_layers": encoder.layers,
                "esm_intermediate_size": encoder.intermediate,
                "esm_emb_layer_norm_before": encoder.layer_norm_before,
            }
            if encoder.positions is not None:
                fields["esm_max_position_embeddings"] = encoder.positions
            if encoder.heads is not None:
                fields["esm_num_attention_heads"] = encoder.heads
            found.append(FoundComponent(
                kind="protein_encoder", label=self.label, root=encoder.root, keys=encoder.keys,
                rows=encoder.rows("protein_encoder.", "ESM-2 masked-LM head (not used by IsoFormer)"),
                fields=fields, width=encoder.hidden, sub_keys=encoder.sub_keys(),
                details=encoder.details("masked-LM head"), encoder=self,
            ))
        return found

    def reference_encoder(self, config, tensors):
        library = esm_config(config)
        # The straightforward softmax(QK^T)V path, not the fused kernel the model itself uses.
        library._attn_implementation = "eager"
        from isoformer_cli.models.network.build import skip_weight_initialisation

        with skip_weight_initialisation():  # every tensor is loaded next
            module = EsmModel(library, add_pooling_layer=False).eval()
        load_reference_state(module, tensors, "ESM-2 reference (transformers EsmModel)")

        def run(input_ids, attention_mask):
            return module(input_ids=input_ids, attention_mask=attention_mask.long()).last_hidden_state

        return ReferenceEncoder(run, "transformers EsmModel (eager attention) loaded from the source tensors")

    def check_inputs(self, config, generator):
        residues = min(config.max_protein_residues, 24)
        lengths = (residues, max(1, residues // 2))
        first, last = PROTEIN_VOCABULARY.index("L"), PROTEIN_VOCABULARY.index("C")
        ids = torch.full((len(lengths), residues + 2), config.esm_pad_token_id, dtype=torch.long)
        for row, length in enumerate(lengths):
            ids[row, 0] = PROTEIN_VOCABULARY.index("<cls>")
            ids[row, 1 : length + 1] = torch.randint(first, last + 1, (length,), generator=generator)
            ids[row, length + 1] = PROTEIN_VOCABULARY.index("<eos>")
        return ids, ids != config.esm_pad_token_id

    def pretrained_folder(self, config):
        return PretrainedFolder(
            label="protein (ESM-2)", model_type="esm", fields=ESM_FOLDER_FIELDS, reference=esm_config(config).to_dict(),
            defaults=ESM_FOLDER_DEFAULTS, rows=esm_style_key_rows("protein_encoder."), prefix="protein_encoder.",
        )


ESM2 = Esm2()
