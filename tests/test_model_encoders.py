"""The encoders against the libraries they mirror: our NT-v2 module vs transformers' ESM layers, Hugging Face
NT-v2 checkpoint layout, and the Enformer encoder vs a plain enformer-pytorch Enformer (skipped without it)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import EsmModel

from isoformer_cli.errors import InputError
from isoformer_cli.models.network.configuration import IsoformerConfig
from isoformer_cli.models.network.encoders.enformer import (
    ENFORMER,
    EnformerDNAEncoder,
)
from isoformer_cli.models.conversion.encoders.enformer import ENFORMER_DUPLICATE_KEY_PREFIXES, library_fields
from isoformer_cli.models.network.encoders.nucleotide_transformer import (
    NucleotideTransformer,
    load_hf_nt_state_dict,
    nt_config,
)

TINY_NT = dict(vocab_size=4107, hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96)


def padded_tokens(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.full((len(lengths), max(lengths)), 1)
    for row, length in enumerate(lengths):
        ids[row, 0] = 3
        ids[row, 1:length] = torch.randint(6, 4107, (length - 1,), generator=generator)
    return ids, ids != 1


def test_nt_layers_match_transformers_esm_when_given_the_same_feed_forward():
    """Everything but the gated FFN (embeddings, rotary, SDPA attention with padding, pre-LayerNorms, final
    LayerNorm) is checked against transformers' own ESM implementation: swap ESM's (non-gated) FFN modules
    into our layers, load ESM's weights by name, and the outputs must agree."""
    torch.manual_seed(0)
    config = nt_config(**TINY_NT, add_bias_fnn=True)
    reference = EsmModel(config, add_pooling_layer=False).eval()
    ours = NucleotideTransformer(config).eval()
    for our_layer, esm_layer in zip(ours.encoder.layer, reference.encoder.layer):
        our_layer.intermediate = esm_layer.intermediate
    report = load_hf_nt_state_dict(ours, reference.state_dict(), prefix="")
    assert "rotary_embeddings.inv_freq" in report["ignored"]

    ids, mask = padded_tokens([23, 9, 17])
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        actual = ours(ids, mask)
    torch.testing.assert_close(actual[mask], expected[mask], rtol=1e-5, atol=1e-5)


def test_nt_feed_forward_is_gated_silu_without_bias():
    torch.manual_seed(0)
    layer = NucleotideTransformer(nt_config(**TINY_NT)).encoder.layer[0]
    assert layer.intermediate.dense.bias is None and layer.output.dense.bias is None
    assert tuple(layer.intermediate.dense.weight.shape) == (2 * 96, 48)
    assert tuple(layer.output.dense.weight.shape) == (48, 96)
    x = torch.randn(2, 5, 48)
    weight = layer.intermediate.dense.weight
    expected = F.silu(x @ weight[:96].T) * (x @ weight[96:].T)
    torch.testing.assert_close(layer.intermediate(x), expected)


def hf_nt_v2_state_dict(module: NucleotideTransformer) -> dict[str, torch.Tensor]:
    """``module``'s weights in the Hugging Face NT-v2 ``EsmForMaskedLM`` layout, with the tensors that layout
    carries and we do not use (absolute position table, per-layer rotary frequencies, contact and LM heads)."""
    config = module.config
    state = {f"esm.{key}": value.clone() for key, value in module.state_dict().items()}
    state["esm.embeddings.position_embeddings.weight"] = torch.randn(config.max_position_embeddings, config.hidden_size)
    head_dim = config.hidden_size // config.num_attention_heads
    for index in range(config.num_hidden_layers):
        state[f"esm.encoder.layer.{index}.attention.self.rotary_embeddings.inv_freq"] = torch.ones(head_dim // 2)
    state["esm.contact_head.regression.weight"] = torch.randn(1, config.num_hidden_layers * config.num_attention_heads)
    state["esm.contact_head.regression.bias"] = torch.randn(1)
    state["lm_head.dense.weight"] = torch.randn(config.hidden_size, config.hidden_size)
    state["lm_head.decoder.weight"] = torch.randn(config.vocab_size, config.hidden_size)
    return state


def test_hugging_face_nt_v2_layout_loads_by_stripping_esm_prefix():
    torch.manual_seed(1)
    source = NucleotideTransformer(nt_config(**TINY_NT)).eval()
    target = NucleotideTransformer(nt_config(**TINY_NT)).eval()
    checkpoint = hf_nt_v2_state_dict(source)
    assert "esm.encoder.layer.1.attention.self.query.weight" in checkpoint
    assert "esm.encoder.layer.1.intermediate.dense.weight" in checkpoint
    assert "esm.encoder.emb_layer_norm_after.weight" in checkpoint
    report = load_hf_nt_state_dict(target, checkpoint)
    assert len(report["loaded"]) == len(source.state_dict())
    assert "lm_head.decoder.weight" in report["ignored"]
    assert "esm.embeddings.position_embeddings.weight" in report["ignored"]
    ids, mask = padded_tokens([12, 30])
    with torch.no_grad():
        assert torch.equal(source(ids, mask), target(ids, mask))


def test_hugging_face_nt_v2_layout_errors_name_the_tensor():
    module = NucleotideTransformer(nt_config(**TINY_NT))
    checkpoint = hf_nt_v2_state_dict(module)
    del checkpoint["esm.encoder.layer.0.output.dense.weight"]
    with pytest.raises(KeyError, match="encoder.layer.0.output.dense.weight"):
        load_hf_nt_state_dict(module, checkpoint)
    checkpoint = hf_nt_v2_state_dict(module)
    checkpoint["esm.encoder.layer.0.intermediate.dense.weight"] = torch.zeros(96, 48)
    with pytest.raises(ValueError, match=r"intermediate\.dense\.weight has shape \(96, 48\)"):
        load_hf_nt_state_dict(module, checkpoint)


def test_nt_row_without_tokens_stays_finite():
    module = NucleotideTransformer(nt_config(**TINY_NT)).eval()
    ids = torch.ones(2, 6, dtype=torch.long)
    ids[1, :4] = torch.tensor([3, 10, 11, 12])
    with torch.no_grad():
        out = module(ids, ids != 1)
    assert torch.isfinite(out).all()


# ------------------------------------------------------------------------------------------------
def test_enformer_encoder_equals_plain_enformer_pytorch_and_saves_each_tensor_once():
    """Our encoder loads a plain enformer-pytorch Enformer's named tensors strictly and gives its embeddings."""
    enformer_pytorch = pytest.importorskip("enformer_pytorch", exc_type=ImportError)
    config = IsoformerConfig.from_preset("tiny", modalities="dna")
    torch.manual_seed(2)
    fields = {key: value for key, value in library_fields(config).items() if key != "use_convnext"}
    plain = enformer_pytorch.Enformer(enformer_pytorch.EnformerConfig(**fields)).eval()
    plain_state = plain.state_dict()
    assert any(key.startswith("_trunk.") for key in plain_state)  # the duplicate spelling we avoid

    encoder = EnformerDNAEncoder(config).eval()
    ours = encoder.enformer.state_dict()
    assert not any(key.startswith(ENFORMER_DUPLICATE_KEY_PREFIXES) for key in ours)
    kept = {key: value for key, value in plain_state.items() if not key.startswith(ENFORMER_DUPLICATE_KEY_PREFIXES)}
    assert kept.keys() == ours.keys()
    encoder.enformer.load_state_dict(kept, strict=True)

    ids = torch.randint(-1, 5, (2, config.dna_length), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = plain(ids, return_only_embeddings=True)
        actual, mask = encoder(ids)
    assert mask is None and actual.shape == (2, 128, 384)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))
    with torch.no_grad():
        encoder.enformer.final_pointwise[1][2].bias.add_(1.0)
        assert not torch.equal(encoder(ids)[0], actual)


def test_enformer_encoder_checks_its_input_and_configuration():
    config = IsoformerConfig.from_preset("tiny", modalities="dna")
    encoder = EnformerDNAEncoder(config).eval()
    with pytest.raises(InputError, match="must be torch.long"):
        encoder(torch.zeros(1, config.dna_length, dtype=torch.int32))
    with pytest.raises(InputError, match="outside -1..4"):
        encoder(torch.full((1, config.dna_length), 5))
    config.enformer_use_tf_gamma = True
    with pytest.raises(InputError, match="enformer_use_tf_gamma=true is not supported"):
        ENFORMER.validate(config)
    config.enformer_use_tf_gamma, config.enformer_heads = False, 5
    with pytest.raises(InputError, match="enformer_heads=5"):
        ENFORMER.validate(config)


def test_enformer_activation_checkpointing_covers_conv_stages_and_blocks_and_keeps_keys():
    config = IsoformerConfig.from_preset("tiny", modalities="dna")
    encoder = EnformerDNAEncoder(config)
    keys = list(encoder.state_dict())
    wrapped = ENFORMER.enable_activation_checkpointing(encoder)
    assert wrapped == len(encoder.enformer.conv_tower) + len(encoder.enformer.transformer) == 4
    assert encoder.enformer.gradient_checkpointing and list(encoder.state_dict()) == keys
