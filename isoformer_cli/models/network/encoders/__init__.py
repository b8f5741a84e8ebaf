"""IsoFormer's sequence encoders, one module each behind one interface (:mod:`.base`), and their registry.

* DNA: :mod:`.enformer` (official) or the Nucleotide Transformer over the window's 6-mers
  (:mod:`.nucleotide_transformer`), chosen by ``config.dna_encoder_type``;
* RNA: Nucleotide Transformer v2 (:mod:`.nucleotide_transformer`);
* protein: ESM-2 (:mod:`.esm`).

Adding a DNA encoder is one new module with a :class:`~.base.SequenceEncoder` subclass and one line in
:data:`DNA_ENCODERS` (or a call of :func:`register_dna_encoder`, as a plug-in or a test does); converting
foreign files of it is optional, one more class in :mod:`isoformer_cli.models.conversion.encoders`.
"""

from __future__ import annotations

from isoformer_cli.errors import InputError
from isoformer_cli.models.network.encoders.base import LayerGroups, SequenceEncoder, pad_token_arrays
from isoformer_cli.models.network.encoders.enformer import ENFORMER
from isoformer_cli.models.network.encoders.esm import ESM2
from isoformer_cli.models.network.encoders.nucleotide_transformer import NT_DNA, NT_RNA

#: DNA encoders by ``dna_encoder_type``.
DNA_ENCODERS: dict[str, SequenceEncoder] = {
    ENFORMER.name: ENFORMER,
    NT_DNA.name: NT_DNA,
}
RNA_ENCODER: SequenceEncoder = NT_RNA
PROTEIN_ENCODER: SequenceEncoder = ESM2


def dna_encoder(name: str) -> SequenceEncoder:
    """The DNA encoder registered as ``name``; InputError listing the known ones otherwise."""
    try:
        return DNA_ENCODERS[name]
    except KeyError:
        raise InputError(
            f"invalid IsoFormer configuration: dna_encoder_type={name!r}; choose one of {', '.join(DNA_ENCODERS)}"
        ) from None


def encoder_for(config, modality: str) -> SequenceEncoder:
    """The encoder that fills ``modality`` (``"dna"``, ``"rna"`` or ``"protein"``) in ``config``."""
    if modality == "dna":
        return dna_encoder(config.dna_encoder_type)
    if modality == "rna":
        return RNA_ENCODER
    if modality == "protein":
        return PROTEIN_ENCODER
    raise ValueError(f"unknown modality {modality!r}")


def register_dna_encoder(encoder: SequenceEncoder) -> None:
    """Make ``encoder`` available as ``dna_encoder_type=encoder.name`` (replacing one of the same name)."""
    if encoder.modality != "dna":
        raise ValueError(f"{encoder.label} fills the {encoder.modality} role, not dna")
    DNA_ENCODERS[encoder.name] = encoder


def encoder_config_fields() -> dict:
    """Configuration fields declared by registered encoders (``SequenceEncoder.config_fields``), with defaults."""
    fields = {}
    for encoder in (*DNA_ENCODERS.values(), RNA_ENCODER, PROTEIN_ENCODER):
        fields.update(encoder.config_fields)
    return fields


__all__ = [
    "DNA_ENCODERS",
    "PROTEIN_ENCODER",
    "RNA_ENCODER",
    "LayerGroups",
    "SequenceEncoder",
    "dna_encoder",
    "encoder_config_fields",
    "encoder_for",
    "pad_token_arrays",
    "register_dna_encoder",
]
