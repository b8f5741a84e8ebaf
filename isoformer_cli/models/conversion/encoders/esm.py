"""Converting ESM-2, and what it shares with NT-v2 (which mirrors ESM's names): the rows of a transformers
state dict, finding ESM-style encoders in a foreign file by their key signature, loading a reference
``EsmModel`` from source tensors, and :class:`Esm2Conversion` (registered as ``"esm2"``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from transformers import EsmModel

from isoformer_cli.errors import CheckpointError
from isoformer_cli.models.checkpoint.weights import COMPUTED_BUFFER_PATTERN, name_some, transformers_renames
from isoformer_cli.models.conversion.encoders.base import (
    EncoderConversion,
    FoundComponent,
    PretrainedFolder,
    ReferenceEncoder,
)
from isoformer_cli.models.conversion.key_mapping import IGNORE, MappingRow
from isoformer_cli.models.network.build import skip_weight_initialisation
from isoformer_cli.models.network.encoders.esm import esm_config
from isoformer_cli.models.network.tokenizers import PROTEIN_VOCABULARY

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


class Esm2Conversion(EncoderConversion):
    """ESM-2's conversion: transformers folders, its signature in a foreign file, an eager ``EsmModel`` reference."""

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
                kind="protein_encoder", label=self.encoder.label, root=encoder.root, keys=encoder.keys,
                rows=encoder.rows("protein_encoder.", "ESM-2 masked-LM head (not used by IsoFormer)"),
                fields=fields, width=encoder.hidden, sub_keys=encoder.sub_keys(),
                details=encoder.details("masked-LM head"), encoder=self.encoder,
            ))
        return found

    def reference_encoder(self, config, tensors):
        library = esm_config(config)
        # The straightforward softmax(QK^T)V path, not the fused kernel the model itself uses.
        library._attn_implementation = "eager"
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
