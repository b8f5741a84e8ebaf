"""The IsoFormer model, in four subpackages of one concern each; imports flow one way between them
(``.importlinter``: distribution | conversion -> checkpoint -> network):

* :mod:`.network`: the networks, Hugging Face-shaped: configuration, the model class, aggregation, tokenizers
  and one module per encoder (Enformer, Nucleotide Transformer v2, ESM-2) behind one interface;
* :mod:`.checkpoint`: our checkpoint folder format (schema, check, load, save, weight files, summary);
* :mod:`.conversion`: foreign files into our format (layout detection, key mapping, the official release,
  pretrained encoder folders, self-checks, and each encoder's key signature and reference);
* :mod:`.distribution`: downloadable models (registry, Hugging Face downloads, the model folder and its
  manifests, resolving ``--checkpoint NAME``).

This package never imports pysam, gffutils, h5py or click. It re-exports nothing, so importing one module of it
loads only what that module needs (``isoformer --help`` does not load torch).

Main entry points:
    IsoformerConfig.from_preset("official" | "tiny", **overrides)   (network.configuration)
    IsoformerModel(config) / IsoformerModel.from_pretrained(directory)   (network.modeling)
    locate_checkpoint(name, model_dir) -> load_checked(checked)   (distribution.locate, checkpoint.load)
"""
