"""The networks of IsoFormer: configuration, the Hugging Face-shaped model class, aggregation, tokenizers, and
one module per sequence encoder behind one interface (:mod:`.encoders`). Nothing here reads or writes files
beyond what transformers' ``save_pretrained`` / ``from_pretrained`` do; conversion of foreign checkpoints lives in
:mod:`isoformer_cli.models.conversion`.

Imports flow one way: build -> modeling -> aggregation -> configuration -> encoders -> tokenizers.
"""
