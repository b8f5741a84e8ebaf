"""What converting foreign files needs of one kind of encoder, apart from its network.

Every sequence encoder (:class:`~isoformer_cli.models.network.encoders.base.SequenceEncoder`) may have one
:class:`EncoderConversion`, registered under the encoder's name in :mod:`isoformer_cli.models.conversion.encoders`:

* how ``isoformer init`` reads a folder of the encoder saved by its own library (:meth:`~EncoderConversion.pretrained_folder`);
* how to find its tensors in a foreign state dict by their key signature and shapes, whatever the top-level
  names (:meth:`~EncoderConversion.find_in_checkpoint`);
* an independent reference built from those tensors in their source layout, which the new checkpoint's encoder
  must reproduce (:meth:`~EncoderConversion.reference_encoder`, :meth:`~EncoderConversion.check_inputs`).

An encoder without one (a plug-in, a test's) runs, trains and saves as usual; it is simply never found in a
foreign file, and ``isoformer init`` refuses a pretrained folder for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from isoformer_cli.errors import CheckpointError


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
        rows: key-mapping rows (:class:`~isoformer_cli.models.conversion.key_mapping.MappingRow`) onto our keys.
        fields: configuration fields read off its shapes (``{"esm_hidden_size": 640, ...}``).
        width: the width of its output (encoders) or of its input (aggregation blocks, head).
        sub_keys: ``{name in the component's own library layout: key in the file}``, what a reference
            implementation is loaded from (encoders only).
        details: a short description of what was found (``"30 layers, hidden 640; masked-LM head ignored"``).
        encoder: the :class:`~isoformer_cli.models.network.encoders.base.SequenceEncoder` (encoders only).
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
    (see :meth:`EncoderConversion.reference_encoder`).

    Attributes:
        run: ``(input_ids (B, L) long, attention_mask (B, L) bool | None) -> (B, N, D)`` output states.
        description: what the reference is, for the checkpoint's provenance.
    """

    run: object
    description: str


class EncoderConversion:
    """The conversion side of one encoder (see the module docstring); subclasses override what they support.

    Attributes:
        encoder: the :class:`~isoformer_cli.models.network.encoders.base.SequenceEncoder` it serves (its
            ``name`` is the registry key).
    """

    def __init__(self, encoder):
        self.encoder = encoder

    def pretrained_folder(self, config) -> PretrainedFolder:
        """How ``isoformer init`` reads a folder of this encoder saved by its own library."""
        raise CheckpointError(
            f"isoformer init cannot read a pretrained folder for the {self.encoder.label} encoder "
            f"({self.encoder.name!r} registers no conversion); build it randomly (leave its folder out)"
        )

    def find_in_checkpoint(self, shapes: dict) -> list:
        """Every :class:`FoundComponent` of this encoder in a foreign state dict ``{key: shape}``, found by key
        signature and shapes under any top-level name (empty: none, or this encoder does not search)."""
        return []

    def reference_encoder(self, config, tensors: dict) -> ReferenceEncoder | None:
        """A :class:`ReferenceEncoder` built from ``tensors`` (this encoder's tensors named as its own library
        names them, e.g. ``FoundComponent.sub_keys`` resolved), independent of our key mapping; None when no
        reference exists. Raises ``CheckpointError`` when the tensors do not load into it."""
        return None

    def check_inputs(self, config, generator: torch.Generator) -> tuple:
        """A fixed random batch ``(input_ids (B, L) long, attention_mask (B, L) bool | None)`` for the self-check,
        as short as the encoder allows."""
        raise NotImplementedError(f"{type(self).__name__} must define check_inputs()")
