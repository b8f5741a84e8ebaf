"""Synthetic files in the official InstaDeepAI/isoformer format (and the pretrained encoders' formats), small.

The tensors are a small model's own, renamed into a layout; official-only extras (ESM-2 and NT-v2 masked-LM
heads and contact heads, per-layer rotary buffers, absolute position tables, Enformer's species heads) are
random. Nothing here needs enformer-pytorch, except the oracle :func:`library_enformer_output`. Layouts (:data:`LAYOUTS`) differ in top-level names, nesting, Enformer's spelling (named modules,
``_trunk.N`` duplicates, or both) and whether the species heads are there:

* ``documented``: ``esm_model.esm.*`` / ``nt_model.esm.*`` masked-LM wrappers, ``enformer_model.*`` as
  enformer-pytorch's ``Enformer`` names it (both spellings sharing storage, with species heads),
  ``cross_attention_layer_{rna,protein}.*``, ``head_layer_{1,2}.*``;
* ``renamed``: a bare ``EsmModel`` under ``protein_model.`` (its masked-LM head beside it), NT-v2 under
  ``rna_lm.esm.``, Enformer under ``dna_trunk.`` in the ``_trunk.N`` spelling only, no species heads,
  cross-attention blocks named ``fusion.0.`` / ``fusion.1.`` (told apart by their widths), an
  ``nn.Sequential`` head ``regressor.0`` / ``regressor.2``;
* ``nested``: ESM-2 at the top level (``esm.*`` and ``lm_head.*``), the rest under ``model.``: NT-v2 at
  ``model.encoders.rna.``, Enformer named spelling only with species heads at ``model.encoders.dna.``,
  ``model.omics_attention.{rna,protein}.``, ``model.head.{hidden,out}.``.
"""

import json

import torch

from isoformer_cli.models.network.configuration import IsoformerConfig
from isoformer_cli.models.network.modeling import IsoformerModel
from isoformer_cli.models.network.tokenizers import DNA_VOCABULARY, PROTEIN_VOCABULARY, RnaTokenizer

EXTRA_TENSOR_SEED = 123
TINY_SPECIES_HEADS = {"human": 5, "mouse": 3}
OFFICIAL_SPECIES_HEADS = {"human": 5313, "mouse": 1643}
LAYOUTS = ("documented", "renamed", "nested")
# A small model whose NT-v2 and ESM-2 widths differ (64 and 32), so cross-attention blocks are told apart by width.
DISTINCT_WIDTHS = {"esm_hidden_size": 32, "esm_intermediate_size": 64}


# Where enformer-pytorch's _trunk Sequential holds its named modules (stated here, from the library, not taken
# from the code under test).
LIBRARY_TRUNK_POSITIONS = {"stem": 1, "conv_tower": 2, "transformer": 4, "final_pointwise": 6}


def library_enformer_output(state, root, config, input_ids):
    """The oracle: enformer-pytorch's own ``Enformer`` loaded (strictly) with the Enformer tensors under ``root``
    of an official-format ``state``, whatever their spelling, run on ``input_ids`` (embeddings, float32).
    Skips the calling test when enformer-pytorch (a test extra) is not installed."""
    import pytest

    enformer_pytorch = pytest.importorskip("enformer_pytorch", exc_type=ImportError)
    from enformer_pytorch.data import seq_indices_to_one_hot

    own = {key[len(root):]: tensor for key, tensor in state.items() if key.startswith(root)
           and key[len(root):].startswith(("stem.", "conv_tower.", "transformer.", "final_pointwise.", "_trunk.",
                                           "_heads."))}
    named = {}
    for key, tensor in own.items():
        for name, position in LIBRARY_TRUNK_POSITIONS.items():
            if key.startswith(f"_trunk.{position}."):
                key = f"{name}.{key[len(f'_trunk.{position}.'):]}"
        named[key] = tensor
    complete = dict(named)
    for key, tensor in named.items():  # the library's state dict names every trunk tensor in both spellings
        name = key.split(".", 1)[0]
        if name in LIBRARY_TRUNK_POSITIONS:
            complete[f"_trunk.{LIBRARY_TRUNK_POSITIONS[name]}.{key[len(name) + 1:]}"] = tensor
    heads = {key.split(".")[1]: tensor.shape[0] for key, tensor in named.items()
             if key.startswith("_heads.") and key.endswith(".0.weight")}
    library_config = enformer_pytorch.EnformerConfig(
        dim=config.enformer_dim, depth=config.enformer_depth, heads=config.enformer_heads, output_heads=heads,
        target_length=config.enformer_target_length, attn_dim_key=config.enformer_attn_dim_key,
        num_downsamples=config.enformer_num_downsamples, dim_divisible_by=config.enformer_dim_divisible_by,
        use_tf_gamma=False,
    )
    library = enformer_pytorch.Enformer(library_config).eval()
    library.load_state_dict(complete, strict=True)
    with torch.no_grad():
        return library(seq_indices_to_one_hot(input_ids), return_only_embeddings=True)


def small_model(seed=0, **overrides):
    """``(config, model)``: the tiny preset (with ``overrides``) in eval mode, BatchNorm statistics randomised."""
    torch.manual_seed(seed)
    config = IsoformerConfig.from_preset("tiny", **overrides)
    model = IsoformerModel(config).eval()
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if "running_" in name:
                buffer.uniform_(0.5, 1.5)
            elif name.endswith("num_batches_tracked"):
                buffer.fill_(1234)
    return config, model


class _Extra:
    def __init__(self, device):
        self.device = device
        self.generator = torch.Generator().manual_seed(EXTRA_TENSOR_SEED)

    def __call__(self, *shape):
        if self.device == "meta":
            return torch.empty(*shape, device="meta")
        return torch.randn(*shape, generator=self.generator)


def _esm_parts(model, config, extra, inner):
    """ESM-2 keys below its root: ``inner`` + EsmModel keys (old per-layer inv_freq, position table), lm_head."""
    state = {}
    for key, tensor in model.protein_encoder.state_dict().items():
        if key != "rotary_embeddings.inv_freq":
            state[f"{inner}{key}"] = tensor
    head_dim = config.esm_hidden_size // config.esm_num_attention_heads
    for layer in range(config.esm_num_hidden_layers):
        state[f"{inner}encoder.layer.{layer}.attention.self.rotary_embeddings.inv_freq"] = extra(head_dim // 2)
    state[f"{inner}embeddings.position_embeddings.weight"] = extra(config.esm_max_position_embeddings,
                                                                   config.esm_hidden_size)
    hidden, vocab = config.esm_hidden_size, config.esm_vocab_size
    state.update({
        "lm_head.dense.weight": extra(hidden, hidden), "lm_head.dense.bias": extra(hidden),
        "lm_head.layer_norm.weight": extra(hidden), "lm_head.layer_norm.bias": extra(hidden),
        "lm_head.decoder.weight": extra(vocab, hidden), "lm_head.bias": extra(vocab),
    })
    return state


def _nt_parts(model, config, extra):
    """NT-v2 keys below its root, in its masked-LM wrapper (``esm.*``, contact head, ``lm_head.*``)."""
    state = {f"esm.{key}": tensor for key, tensor in model.rna_encoder.state_dict().items()}
    hidden, vocab = config.nt_hidden_size, config.nt_vocab_size
    state.update({
        "esm.embeddings.position_embeddings.weight": extra(config.nt_max_position_embeddings, hidden),
        "esm.contact_head.regression.weight": extra(1, config.nt_num_hidden_layers * config.nt_num_attention_heads),
        "esm.contact_head.regression.bias": extra(1),
        "lm_head.dense.weight": extra(hidden, hidden), "lm_head.dense.bias": extra(hidden),
        "lm_head.layer_norm.weight": extra(hidden), "lm_head.layer_norm.bias": extra(hidden),
        "lm_head.decoder.weight": extra(vocab, hidden), "lm_head.bias": extra(vocab),
    })
    return state


def _enformer_parts(model, config, extra, spelling, species_heads):
    """Enformer keys below its root, as enformer-pytorch's ``Enformer.state_dict()`` names our trunk's tensors:
    the named modules and/or the ``_trunk.N.`` duplicates (the same tensors), and random species heads
    (``Linear(2 dim, n)`` at ``_heads.<species>.0``)."""
    named = model.dna_encoder.enformer.state_dict()
    state = {}
    if spelling in ("named", "both"):
        state.update(named)
    if spelling in ("trunk", "both"):
        for key, tensor in named.items():
            module, rest = key.split(".", 1)
            state[f"_trunk.{LIBRARY_TRUNK_POSITIONS[module]}.{rest}"] = tensor
    for species, outputs in (species_heads or {}).items():
        state[f"_heads.{species}.0.weight"] = extra(outputs, 2 * config.enformer_dim)
        state[f"_heads.{species}.0.bias"] = extra(outputs)
    return state


def _block(module, prefix):
    return {f"{prefix}{key}": tensor for key, tensor in module.state_dict().items()}


def _prefixed(prefix, state):
    return {f"{prefix}{key}": tensor for key, tensor in state.items()}


def official_state(model, config, layout="documented", device="cpu", species_heads=TINY_SPECIES_HEADS):
    """The state dict of ``model`` in the official format, laid out as ``layout`` (see the module docstring)."""
    extra = _Extra(device)
    aggregation = model.aggregation
    if layout == "documented":
        state = _prefixed("esm_model.", _esm_parts(model, config, extra, "esm."))
        state.update(_prefixed("nt_model.", _nt_parts(model, config, extra)))
        state.update(_prefixed("enformer_model.", _enformer_parts(model, config, extra, "both", species_heads)))
        state.update(_block(aggregation.rna_cross_attention, "cross_attention_layer_rna."))
        state.update(_block(aggregation.protein_cross_attention, "cross_attention_layer_protein."))
        state.update(_block(model.head.dense, "head_layer_1."))
        state.update(_block(model.head.output, "head_layer_2."))
    elif layout == "renamed":
        state = _prefixed("protein_model.", _esm_parts(model, config, extra, ""))
        state.update(_prefixed("rna_lm.", _nt_parts(model, config, extra)))
        state.update(_prefixed("dna_trunk.", _enformer_parts(model, config, extra, "trunk", None)))
        state.update(_block(aggregation.protein_cross_attention, "fusion.0."))
        state.update(_block(aggregation.rna_cross_attention, "fusion.1."))
        state.update(_block(model.head.dense, "regressor.0."))
        state.update(_block(model.head.output, "regressor.2."))
    elif layout == "nested":
        state = _esm_parts(model, config, extra, "esm.")
        state.update(_prefixed("model.encoders.rna.", _nt_parts(model, config, extra)))
        state.update(_prefixed("model.encoders.dna.", _enformer_parts(model, config, extra, "named",
                                                                      species_heads)))
        state.update(_block(aggregation.rna_cross_attention, "model.omics_attention.rna."))
        state.update(_block(aggregation.protein_cross_attention, "model.omics_attention.protein."))
        state.update(_block(model.head.dense, "model.head.hidden."))
        state.update(_block(model.head.output, "model.head.out."))
    else:
        raise ValueError(layout)
    return state


def official_config_json(config):
    """The official config.json's fields for ``config`` (names as the official file's; values of ``config``)."""
    fields = {
        "architectures": ["Isoformer"], "model_type": "isoformer", "transformers_version": "4.41.2",
        "auto_map": {"AutoConfig": "isoformer_config.IsoformerConfig",
                     "AutoModelForMaskedLM": "modeling_isoformer.Isoformer"},
        "esm_add_bias_fnn": True, "esm_tie_word_embeddings": False, "esm_use_cache": False,
        "enformer_output_heads": 0, "enformer_use_convnext": False,
        "num_tokens_per_seq_nuctf": 2048, "num_tokens_per_seq_nuctf_rna": 2048, "num_protein_tokens_per_seq": 2048,
        "pool_window_start": 0, "pool_window_end": 1,
    }
    for name in ("enformer_dim", "enformer_depth", "enformer_heads", "enformer_attn_dim_key", "enformer_dropout_rate",
                 "enformer_attn_dropout", "enformer_pos_dropout", "enformer_target_length", "enformer_num_downsamples",
                 "enformer_dim_divisible_by", "enformer_use_checkpointing", "enformer_use_tf_gamma",
                 "nt_hidden_size", "nt_intermediate_size", "nt_add_bias_fnn", "nt_attention_probs_dropout_prob",
                 "nt_hidden_dropout_prob", "nt_emb_layer_norm_before", "nt_mask_token_id", "nt_max_position_embeddings",
                 "nt_num_hidden_layers", "nt_num_attention_heads",
                 "esm_hidden_size", "esm_num_hidden_layers", "esm_num_attention_heads", "esm_intermediate_size",
                 "esm_vocab_size", "esm_mask_token_id", "esm_pad_token_id", "esm_max_position_embeddings",
                 "esm_position_embedding_type", "esm_token_dropout", "esm_emb_layer_norm_before",
                 "esm_hidden_dropout_prob", "esm_attention_probs_dropout_prob", "num_heads_omics_cross_attention"):
        fields[name] = getattr(config, name)
    return fields


def vocabulary_files():
    """``{file name: bytes}`` of the official tokenizer files (vocabularies in their published order)."""
    return {
        "dna_vocab_list.txt": "\n".join([*DNA_VOCABULARY, "<unk>"]).encode(),
        "rna_vocab_list.txt": "\n".join(RnaTokenizer.vocabulary()).encode(),
        "protein_vocab_list.txt": "\n".join([*PROTEIN_VOCABULARY, "<bos>"]).encode(),
        "tokenizer_config.json": json.dumps({"tokenizer_class": "IsoformerTokenizer",
                                             "auto_map": {"AutoTokenizer": ["isoformer_tokenizer.IsoformerTokenizer",
                                                                            None]}}).encode(),
        "special_tokens_map.json": b"{}",
    }


def write_official(folder, state, config=None, with_tokenizer=True):
    """Write the official-format folder: ``pytorch_model.bin`` (+ config.json for ``config``, tokenizer files)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, str(folder / "pytorch_model.bin"))
    if config is not None:
        (folder / "config.json").write_text(json.dumps(official_config_json(config), indent=2))
    if with_tokenizer:
        for name, content in vocabulary_files().items():
            (folder / name).write_bytes(content)
    return folder


def example_batch(config, seed=7):
    """A fixed batch of model inputs for ``config`` (2 rows: full and shorter RNA/protein)."""
    generator = torch.Generator().manual_seed(seed)
    dna = torch.randint(0, 5, (2, config.dna_length), generator=generator)
    rna = torch.randint(6, 4102, (2, 21), generator=generator)
    rna[:, 0] = 3
    rna[1, 12:] = 1
    protein = torch.randint(4, 24, (2, 17), generator=generator)
    protein[:, 0] = 0
    protein[0, -1] = 2
    protein[1, 9] = 2
    protein[1, 10:] = 1
    return {"dna_input_ids": dna, "rna_input_ids": rna, "protein_input_ids": protein}
