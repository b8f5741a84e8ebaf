"""The conversion side of each sequence encoder, registered by the encoder's name (see :mod:`.base`).

:func:`conversion_for` is how the rest of the conversion code reaches it, so nothing branches on an encoder's
name: an encoder without a registered conversion (a plug-in, a test's) gets :class:`~.base.EncoderConversion`,
which finds nothing in foreign files and has no self-check reference.
"""

from __future__ import annotations

from isoformer_cli.models.conversion.encoders.base import EncoderConversion
from isoformer_cli.models.conversion.encoders.enformer import EnformerConversion
from isoformer_cli.models.conversion.encoders.esm import Esm2Conversion
from isoformer_cli.models.conversion.encoders.nucleotide_transformer import (
    NucleotideTransformerDNAConversion,
    NucleotideTransformerRNAConversion,
)
from isoformer_cli.models.network.encoders.enformer import ENFORMER
from isoformer_cli.models.network.encoders.esm import ESM2
from isoformer_cli.models.network.encoders.nucleotide_transformer import NT_DNA, NT_RNA

#: Conversions by encoder name (``SequenceEncoder.name``).
CONVERSIONS: dict[str, EncoderConversion] = {
    conversion.encoder.name: conversion
    for conversion in (EnformerConversion(ENFORMER), Esm2Conversion(ESM2),
                       NucleotideTransformerRNAConversion(NT_RNA), NucleotideTransformerDNAConversion(NT_DNA))
}


def conversion_for(encoder) -> EncoderConversion:
    """The conversion registered for ``encoder`` (by its name), or the default one that converts nothing."""
    return CONVERSIONS.get(encoder.name) or EncoderConversion(encoder)


def register_conversion(conversion: EncoderConversion) -> None:
    """Make ``conversion`` the one of its encoder (replacing one registered under the same name)."""
    CONVERSIONS[conversion.encoder.name] = conversion
