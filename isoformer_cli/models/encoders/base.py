"""The one interface every sequence encoder of IsoFormer implements.

IsoFormer reads three sequences per isoform, each with its own encoder: a DNA window (Enformer, or a
Nucleotide Transformer over the window's 6-mers), the spliced RNA (Nucleotide Transformer v2) and the
protein (ESM-2). Everything the rest of the tool needs to know about one kind of encoder lives in one
subclass of :class:`SequenceEncoder`, in its own module:

* how to build its ``nn.Module`` from an :class:`~isoformer_cli.models.configuration.IsoformerConfig`,
  and which configuration fields it reads (:meth:`validate`, :attr:`config_fields`);
* its output width and number of output positions;
* how a sequence becomes token ids (:meth:`tokenizer`) and how ids become a batch (:meth:`collate`);
* its layer groups, for freezing and activation checkpointing (:meth:`layer_groups`);
* its parameter summary for ``isoformer inspect`` (:meth:`summary`, :meth:`describe`);
* the rows that map another library's checkpoint keys onto its parameters (:meth:`key_rows`) and how
  ``isoformer init`` reads a pretrained folder of it (:meth:`pretrained_folder`);
* how to find its tensors in a foreign state dict by their key signature and shapes, whatever the top-level
  names (:meth:`find_in_checkpoint`), and an independent reference built from those tensors in their source
  layout, which the new checkpoint's encoder must reproduce (:meth:`reference_encoder`, :meth:`check_inputs`).

Nothing outside an encoder's module branches on the encoder's name: callers look the encoder up
(:func:`isoformer_cli.models.encoders.encoder_for`) and call these methods.

Module contract. The module built for the DNA role maps ``(input_ids (B, L) long, attention_mask (B, L)
bool | None)`` to ``(embeddings (B, N, D), mask (B, N) bool | None)`` (N output positions, a None mask
meaning "all real"). The RNA and protein modules map ``(input_ids, attention_mask)`` to hidden states
``(B, L, D)`` (see ``IsoformerModel.encode_rna`` / ``encode_protein``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn


@dataclass
class LayerGroups:
    """An encoder's modules in three groups, in forward order.

    Attributes:
        before: what runs before the layer stack (embeddings; Enformer's stem and convolution tower).
        layers: the stack of repeated layers (transformer blocks).
        after: what follows the stack (final LayerNorm; Enformer's final pointwise block).
    """

    before: list = field(default_factory=list)
    layers: list = field(default_factory=list)
    after: list = field(default_factory=list)


@dataclass(frozen=True)
class PretrainedFolder:
    """How ``isoformer init`` reads an encoder folder saved by the encoder's own library.

    Attributes:
        label: the encoder in messages, e.g. ``"DNA (enformer-pytorch)"``.
        model_type: the ``model_type`` its ``config.json`` must declare.
        fields: ``(field name, is it part of the architecture?)`` pairs compared with the preset:
            architecture fields must agree, the others may differ (the preset's value is used).
        reference: the preset's values of those fields, in the library's spelling.
        defaults: values the library assumes when its ``config.json`` leaves a field out.
        rows: key-mapping rows from the folder's tensor names to the model's.
        prefix: the model's state-dict prefix of this encoder (``"dna_encoder.enformer."``).
    """

    label: str
    model_type: str
    fields: tuple
    reference: dict
    defaults: dict
    rows: tuple
    prefix: str


@dataclass
class FoundComponent:
    """One component of a foreign checkpoint, found by its key signature and shapes.

    Attributes:
        kind: our module it fills: ``"dna_encoder"``, ``"rna_encoder"``, ``"protein_encoder"``,
            ``"rna_cross_attention"``, ``"protein_cross_attention"`` or ``"head"``.
        label: what was found, for messages (``"ESM-2"``).
        root: the literal prefix of its keys in the file (``"esm_model."``; may be empty).
        keys: the file's keys that belong to it (ignored extras such as masked-LM heads included).
        rows: key-mapping rows (:class:`~isoformer_cli.models.key_mapping.MappingRow`) onto our keys.
        fields: configuration fields read off its shapes (``{"esm_hidden_size": 640, ...}``).
        width: the width of its output (encoders) or of its input (aggregation blocks, head).
        sub_keys: ``{name in the component's own library layout: key in the file}``, what a reference
            implementation is loaded from (encoders only).
        details: a short description of what was found (``"30 layers, hidden 640; masked-LM head ignored"``).
        encoder: the :class:`SequenceEncoder` (encoders only).
    """

    kind: str
    label: str
    root: str
    keys: tuple
    rows: tuple
    fields: dict = field(default_factory=dict)
    width: int = 0
    sub_keys: dict = field(default_factory=dict)
    details: str = ""
    encoder: object = None


@dataclass
class ReferenceEncoder:
    """An independent implementation of an encoder, loaded from the source tensors
    (see :meth:`SequenceEncoder.reference_encoder`).

    Attributes:
        run: ``(input_ids (B, L) long, attention_mask (B, L) bool | None) -> (B, N, D)`` output states.
        description: what the reference is, for the checkpoint's provenance.
    """

    run: object
    description: str


class SequenceEncoder:
    """One kind of sequence encoder (see the module docstring); subclasses override every method.

    Attributes:
        name: the encoder's identifier (for DNA encoders, the value of ``config.dna_encoder_type``).
        modality: ``"dna"``, ``"rna"`` or ``"protein"``: the role this encoder fills.
        label: human-readable name for messages and summaries.
        inner_prefix: where the encoder's own tensors sit inside the model's ``<modality>_encoder``
            module (``"enformer."``; empty when that module is the encoder itself).
        config_fields: configuration fields this encoder adds to ``IsoformerConfig``, with defaults
            (encoders whose fields are not constructor arguments of the config declare them here).
        fixed_length: every input of a batch has the same length (no padding mask is needed).
    """

    name: str = ""
    modality: str = ""
    label: str = ""
    inner_prefix: str = ""
    config_fields: dict = {}
    fixed_length: bool = False

    # -- building ---------------------------------------------------------------------------------
    def build(self, config) -> nn.Module:
        """The encoder module for ``config`` (randomly initialised)."""
        raise NotImplementedError

    def validate(self, config) -> None:
        """Raise ``InputError`` when ``config`` describes an encoder that cannot be built or fed."""

    def preset_overrides(self, preset: str) -> dict:
        """Configuration values this encoder changes in the named preset when it is chosen (e.g. a window
        length its position table can hold); applied unless the caller overrides them."""
        return {}

    def width(self, config) -> int:
        """D, the width of each output position."""
        raise NotImplementedError

    def positions(self, config) -> int:
        """N, the number of output positions for a full-length input of plain A/C/G/T."""
        raise NotImplementedError

    # -- inputs -------------------------------------------------------------------------------------
    def tokenizer(self, config, truncation: str = "keep_start"):
        """An object whose ``encode(sequence, name) -> (ids (L,) int64, truncated bool)`` tokenises one
        sequence for this encoder (``truncation``: policy for inputs longer than the model maximum)."""
        raise NotImplementedError

    def pad_id(self, config) -> int:
        """The token id that pads a batch."""
        raise NotImplementedError

    def collate(self, arrays: list[np.ndarray], config) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(input_ids (B, L) long, attention_mask (B, L) bool or None)`` from 1-D token arrays.

        Fixed-length encoders stack the arrays and return no mask; the others right-pad them with
        :meth:`pad_id` and return the mask of real tokens.
        """
        if self.fixed_length:
            lengths = {len(array) for array in arrays}
            if len(lengths) != 1:
                raise ValueError(f"{self.label} inputs of one batch must have one length, got {sorted(lengths)}")
            return torch.from_numpy(np.stack(arrays)), None
        return pad_token_arrays(arrays, self.pad_id(config))

    # -- training -----------------------------------------------------------------------------------
    def layer_groups(self, module: nn.Module) -> LayerGroups:
        """The built ``module``'s parts: before the layer stack, the layers, after them."""
        raise NotImplementedError

    # -- description --------------------------------------------------------------------------------
    def summary(self, config) -> dict:
        """JSON-ready facts for ``isoformer inspect`` (must include ``"type": self.summary_type``)."""
        raise NotImplementedError

    summary_type: str = ""

    def describe(self, summary: dict) -> str:
        """One line of text from :meth:`summary`'s dictionary."""
        raise NotImplementedError

    def parameter_groups(self, module: nn.Module) -> dict:
        """Parameters per named part of the module, for detailed counts (empty: no breakdown)."""
        return {}

    # -- foreign checkpoints ------------------------------------------------------------------------
    def key_rows(self, source_prefix: str, target_prefix: str) -> tuple:
        """Key-mapping rows (:class:`~isoformer_cli.models.key_mapping.MappingRow`) from this encoder's
        tensors saved by its own library under ``source_prefix`` (a regular expression) to the model's
        keys under ``target_prefix``."""
        raise NotImplementedError

    def pretrained_folder(self, config) -> PretrainedFolder:
        """How ``isoformer init`` reads a folder of this encoder saved by its own library."""
        raise NotImplementedError

    def find_in_checkpoint(self, shapes: dict) -> list:
        """Every :class:`FoundComponent` of this encoder in a foreign state dict ``{key: shape}``, found by key
        signature and shapes under any top-level name (empty: none, or this encoder does not search)."""
        return []

    # -- self-checks --------------------------------------------------------------------------------
    def reference_encoder(self, config, tensors: dict):
        """A :class:`ReferenceEncoder` built from ``tensors`` (this encoder's tensors named as its own library
        names them, e.g. ``FoundComponent.sub_keys`` resolved), independent of our key mapping; None when no
        reference exists. Raises ``CheckpointError`` when the tensors do not load into it."""
        return None

    def check_inputs(self, config, generator: torch.Generator) -> tuple:
        """A fixed random batch ``(input_ids (B, L) long, attention_mask (B, L) bool | None)`` for the self-check,
        as short as the encoder allows."""
        raise NotImplementedError


def pad_token_arrays(arrays: list[np.ndarray], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D int64 arrays into ``(input_ids (B, L) long, attention_mask (B, L) bool)``."""
    width = max(len(array) for array in arrays)
    input_ids = np.full((len(arrays), width), pad_id, dtype=np.int64)
    for row, array in enumerate(arrays):
        input_ids[row, : len(array)] = array
    lengths = np.fromiter((len(array) for array in arrays), dtype=np.int64, count=len(arrays))
    mask = np.arange(width)[None, :] < lengths[:, None]
    return torch.from_numpy(input_ids), torch.from_numpy(mask)
