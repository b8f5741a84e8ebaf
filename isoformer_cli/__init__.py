"""isoformer: isoform-level expression prediction with IsoFormer from a genome and an annotation."""

__version__ = "0.1.0"
