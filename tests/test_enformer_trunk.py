"""Our Enformer trunk against enformer-pytorch (the implementation the pretrained weights were converted for).

The oracle is built with the same hyper-parameters and every tensor (parameters and BatchNorm statistics) set
to random values, so that no part of the computation hides behind an identity initialisation (attention
output projections start at zero, pooling at 2 x identity). Tolerances: fp32 outputs agree to 1e-5 of the
largest output magnitude; bf16 (autocast, or bf16 weights) is compared with the fp32 reference and must be
within 2e-2 relative Frobenius error (bf16 keeps 8 bits of mantissa; both implementations land near 6e-3 to
9e-3 at tiny size).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from isoformer_cli.errors import CheckpointError, InputError
from isoformer_cli.models.network.encoders import enformer_layers
from isoformer_cli.models.conversion.encoders.enformer import enformer_state_dict_to_trunk, trunk_key
from isoformer_cli.models.network.encoders.enformer_layers import (
    AttentionPool,
    conv_tower_widths,
    relative_logits_to_absolute,
    relative_position_features,
)
from isoformer_cli.models.network.encoders.enformer_trunk import EnformerTrunk, one_hot_dna

TINY = {"dim": 192, "depth": 2, "heads": 4, "attn_dim_key": 16, "target_length": 128, "num_downsamples": 3,
        "dim_divisible_by": 16}
TINY_LENGTH = 2048
OFFICIAL = {"dim": 1536, "depth": 11, "heads": 8, "attn_dim_key": 64, "target_length": 896, "num_downsamples": 7,
            "dim_divisible_by": 128}
OFFICIAL_LENGTH = 196_608
NO_DROPOUT = {"dropout_rate": 0.0, "attn_dropout": 0.0, "pos_dropout": 0.0}
FP32_RTOL = 1e-5
BF16_RELATIVE_ERROR = 2e-2


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every floating tensor of the state dict set to seeded random values (positive BatchNorm variances)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if key.startswith("_trunk.") or not tensor.is_floating_point():
                continue  # enformer-pytorch's _trunk.* are the same tensors as its named modules
            if key.endswith("running_var"):
                tensor.uniform_(0.5, 2.0, generator=generator)
            elif tensor.ndim >= 2:
                tensor.normal_(0.0, tensor[0].numel() ** -0.5, generator=generator)
            else:
                tensor.normal_(0.0, 0.5, generator=generator)
    return model.eval()


def oracle_enformer(output_heads: dict | None = None, seed: int = 0, **hyper) -> torch.nn.Module:
    """enformer-pytorch Enformer (eval mode) with random tensors; skips the test when it is not installed.

    Every oracle import here skips on any ImportError (``exc_type``), not only a missing module: an installed
    but unusable enformer-pytorch (or one blocked on purpose to check that the package runs without it) is an
    absent oracle, not a failure of ours.
    """
    enformer_pytorch = pytest.importorskip("enformer_pytorch", exc_type=ImportError)
    config = enformer_pytorch.EnformerConfig(**hyper, output_heads=output_heads or {}, use_tf_gamma=False)
    return randomise(enformer_pytorch.Enformer(config), seed)


def trunk_like(oracle: torch.nn.Module, **hyper) -> EnformerTrunk:
    trunk = EnformerTrunk(**hyper)
    trunk.load_state_dict(enformer_state_dict_to_trunk(oracle.state_dict()), strict=True)
    return trunk.eval()


def random_ids(batch: int, length: int, seed: int = 1, low: int = -1) -> torch.Tensor:
    return torch.randint(low, 5, (batch, length), generator=torch.Generator().manual_seed(seed))


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual.float() - expected.float()).norm() / expected.float().norm())


def assert_fp32_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    torch.testing.assert_close(actual, expected, rtol=FP32_RTOL, atol=FP32_RTOL * float(expected.abs().max()))


@pytest.fixture(scope="module")
def tiny_trunk():
    """Our trunk alone (for the tests that need no oracle)."""
    return randomise(EnformerTrunk(**TINY))


@pytest.fixture(scope="module")
def tiny_pair():
    oracle = oracle_enformer(output_heads={"human": 16, "mouse": 8}, **TINY)
    return oracle, trunk_like(oracle, **TINY)


# ---------------------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------------------


def test_tiny_fp32_matches_enformer_pytorch(tiny_pair):
    oracle, trunk = tiny_pair
    one_hot = one_hot_dna(random_ids(2, TINY_LENGTH))  # A C G T, N and -1 padding
    with torch.no_grad():
        expected = oracle(one_hot, return_only_embeddings=True)
        actual = trunk(one_hot)
    assert actual.shape == (2, TINY["target_length"], 2 * TINY["dim"])
    assert_fp32_close(actual, expected)


def test_longer_window_and_no_crop_match(tiny_pair):
    """The positional features depend on the number of bins: a longer window (and -1: keep every bin)."""
    oracle, trunk = tiny_pair
    one_hot = one_hot_dna(random_ids(1, 2 * TINY_LENGTH, seed=2))
    with torch.no_grad():
        assert_fp32_close(trunk(one_hot), oracle(one_hot, return_only_embeddings=True))
        uncropped = copy.deepcopy(trunk)
        uncropped.target_length = -1
        expected = oracle(one_hot, return_only_embeddings=True, target_length=-1)
        oracle.set_target_length(TINY["target_length"])
        assert_fp32_close(uncropped(one_hot), expected)
    assert expected.shape[1] == 2 * TINY_LENGTH // 8


@pytest.mark.parametrize("slice_length", [256, 384])
def test_inference_in_slices_matches(tiny_pair, monkeypatch, slice_length):
    """At inference the residual block and pooling run on slices of the length (the last one shorter when
    the length is not a multiple); at tiny size only when the slices are made small."""
    oracle, trunk = tiny_pair
    monkeypatch.setattr(enformer_layers, "INFERENCE_SLICE", slice_length)
    one_hot = one_hot_dna(random_ids(2, TINY_LENGTH, seed=13))
    with torch.inference_mode():
        expected = oracle(one_hot, return_only_embeddings=True)
        actual = trunk(one_hot)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            actual_bf16 = trunk(one_hot)
    assert_fp32_close(actual, expected)
    assert relative_error(actual_bf16, expected) < BF16_RELATIVE_ERROR


@pytest.mark.parametrize("mode", ["autocast", "weights"])
def test_bf16_close_to_the_fp32_reference(tiny_pair, mode):
    oracle, trunk = tiny_pair
    one_hot = one_hot_dna(random_ids(2, TINY_LENGTH, seed=3))
    with torch.no_grad():
        reference = oracle(one_hot, return_only_embeddings=True)
        if mode == "autocast":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                ours = trunk(one_hot)
                theirs = oracle(one_hot, return_only_embeddings=True)
        else:
            ours = copy.deepcopy(trunk).bfloat16()(one_hot)  # fp32 one-hot is cast to the weights' dtype
            theirs = copy.deepcopy(oracle).bfloat16()(one_hot.bfloat16(), return_only_embeddings=True)
    assert ours.dtype == torch.bfloat16
    ours_error, theirs_error = relative_error(ours, reference), relative_error(theirs, reference)
    assert ours_error < BF16_RELATIVE_ERROR, (ours_error, theirs_error)
    assert ours_error < 2 * theirs_error + 1e-3, (ours_error, theirs_error)


def test_eval_is_deterministic_and_batch_independent(tiny_trunk):
    trunk = tiny_trunk
    ids = random_ids(3, TINY_LENGTH, seed=4)
    with torch.inference_mode():
        first, second = trunk(one_hot_dna(ids)), trunk(one_hot_dna(ids))
        single = trunk(one_hot_dna(ids[1:2]))
    assert torch.equal(first, second)
    assert_fp32_close(first[1:2], single)


def test_position_features_are_cached_and_usable_in_training(tiny_trunk):
    trunk = tiny_trunk
    trunk = copy.deepcopy(trunk)
    one_hot = one_hot_dna(random_ids(1, TINY_LENGTH, seed=5))
    with torch.inference_mode():
        trunk(one_hot)  # fills the cache under inference mode
    cached = trunk.position_features(TINY_LENGTH // 8, torch.device("cpu"), torch.float32)
    assert cached is trunk.position_features(TINY_LENGTH // 8, torch.device("cpu"), torch.float32)
    assert not cached.is_inference() and not cached.requires_grad
    trunk.train()
    trunk(one_hot).sum().backward()  # the cached tensor can be saved for backward


# ---------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------


def forward_backward(model, one_hot, oracle_call=False):
    model.zero_grad(set_to_none=True)
    output = model(one_hot, return_only_embeddings=True) if oracle_call else model(one_hot)
    weights = torch.linspace(-1.0, 1.0, output.shape[-1])
    (output * weights).sum().backward()
    gradients = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return output.detach(), gradients


def test_train_mode_outputs_gradients_and_batchnorm_statistics_match():
    """Batch statistics in BatchNorm, running statistics updated, gradients of every parameter (dropout 0:
    the two implementations draw different random masks). Gradients are compared with an absolute tolerance
    tied to the largest gradient, since biases feeding a train-mode BatchNorm have zero gradient up to
    rounding."""
    oracle = oracle_enformer(**TINY, **NO_DROPOUT).train()
    trunk = trunk_like(oracle, **TINY, **NO_DROPOUT).train()
    one_hot = one_hot_dna(random_ids(2, TINY_LENGTH, seed=6))
    expected, expected_gradients = forward_backward(oracle, one_hot, oracle_call=True)
    actual, gradients = forward_backward(trunk, one_hot)
    assert_fp32_close(actual, expected)
    assert sorted(gradients) == sorted(name for name in expected_gradients if not name.startswith("_trunk."))
    scale = max(float(g.abs().max()) for g in expected_gradients.values())
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradient, expected_gradients[name], rtol=1e-4, atol=1e-5 * scale, msg=name)
    expected_buffers = dict(oracle.named_buffers())
    for name, buffer in trunk.named_buffers():
        torch.testing.assert_close(buffer, expected_buffers[name], rtol=1e-5, atol=1e-6, msg=name)


def test_activation_checkpointing_gives_the_same_outputs_gradients_and_statistics(tiny_trunk):
    """With dropout on (checkpointing replays the random state) and BatchNorm in training mode: the
    recomputation must not update the running statistics a second time."""
    reference = tiny_trunk
    plain = copy.deepcopy(reference).train()
    checkpointed = copy.deepcopy(reference).train()
    checkpointed.set_activation_checkpointing(True)
    one_hot = one_hot_dna(random_ids(2, TINY_LENGTH, seed=7))
    torch.manual_seed(11)
    expected, expected_gradients = forward_backward(plain, one_hot)
    torch.manual_seed(11)
    actual, gradients = forward_backward(checkpointed, one_hot)
    assert torch.equal(actual, expected)
    assert gradients.keys() == expected_gradients.keys()
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradient, expected_gradients[name], rtol=1e-6, atol=1e-7, msg=name)
    plain_buffers = dict(plain.named_buffers())
    for name, buffer in checkpointed.named_buffers():
        assert torch.equal(buffer, plain_buffers[name]), name
    assert int(checkpointed.stem[1].fn[0].num_batches_tracked) == int(reference.stem[1].fn[0].num_batches_tracked) + 1


def test_checkpointing_is_off_in_eval_mode(tiny_trunk):
    trunk = tiny_trunk
    trunk = copy.deepcopy(trunk)
    trunk.set_activation_checkpointing(True)
    one_hot = one_hot_dna(random_ids(1, TINY_LENGTH, seed=8))
    with torch.no_grad():
        checkpointed = trunk(one_hot)
    trunk.set_activation_checkpointing(False)
    with torch.no_grad():
        assert torch.equal(trunk(one_hot), checkpointed)


# ---------------------------------------------------------------------------------------------------------
# Checkpoint keys
# ---------------------------------------------------------------------------------------------------------


def test_state_dict_layout_is_enformer_pytorchs(tiny_pair):
    oracle, trunk = tiny_pair
    theirs = {k: tuple(v.shape) for k, v in oracle.state_dict().items() if not k.startswith(("_trunk.", "_heads."))}
    ours = {k: tuple(v.shape) for k, v in trunk.state_dict().items()}
    assert ours == theirs
    assert any(k.endswith("running_mean") for k in ours) and any(k.endswith("num_batches_tracked") for k in ours)


@pytest.mark.parametrize("spelling", ["named", "trunk", "both"])
@pytest.mark.parametrize("with_heads", [False, True])
def test_every_key_spelling_loads_strictly(tiny_pair, spelling, with_heads):
    oracle, trunk = tiny_pair
    full = oracle.state_dict()
    assert any(k.startswith("_heads.") for k in full) and any(k.startswith("_trunk.") for k in full)
    state = {
        k: v.clone()
        for k, v in full.items()
        if (with_heads or not k.startswith("_heads."))
        and (spelling == "both" or k.startswith("_heads.")
             or (spelling == "trunk") == k.startswith("_trunk."))
    }
    fresh = EnformerTrunk(**TINY).eval()
    fresh.load_state_dict(enformer_state_dict_to_trunk(state), strict=True)
    one_hot = one_hot_dna(random_ids(1, TINY_LENGTH, seed=9))
    with torch.no_grad():
        assert torch.equal(fresh(one_hot), trunk(one_hot))


def test_prefixed_keys_and_disagreeing_spellings(tiny_pair):
    oracle, _ = tiny_pair
    state = {f"dna_encoder.enformer.{k}": v for k, v in oracle.state_dict().items()}
    state["rna_encoder.something"] = torch.zeros(1)
    converted = enformer_state_dict_to_trunk(state, prefix="dna_encoder.enformer.")
    EnformerTrunk(**TINY).load_state_dict(converted, strict=True)

    broken = dict(oracle.state_dict())
    broken["_trunk.1.0.weight"] = broken["stem.0.weight"] + 1.0
    with pytest.raises(CheckpointError, match=r"stem\.0\.weight and _trunk\.1\.0\.weight .*different values"):
        enformer_state_dict_to_trunk(broken)
    with pytest.raises(CheckpointError, match="not an Enformer trunk tensor"):
        trunk_key("_trunk.3.weight")
    assert trunk_key("_trunk.4.0.fn.1.to_q.weight") == "transformer.0.fn.1.to_q.weight"
    assert trunk_key("_heads.human.0.weight") is None


def test_demo_checkpoint_matches_enformer_pytorch():
    """The bundled tiny checkpoint's ``dna_encoder.enformer.*`` tensors load strictly into our trunk and into
    enformer-pytorch (which the checkpoint was written with) and give the same embeddings; the encoder built by
    ``load_checkpoint`` gives them too."""
    enformer_pytorch = pytest.importorskip("enformer_pytorch", exc_type=ImportError)
    from safetensors.torch import load_file

    from isoformer_cli.models.checkpoint.load import load_checkpoint
    from isoformer_cli.models.distribution.locate import demo_checkpoint_path

    folder = Path(demo_checkpoint_path())
    config = json.loads((folder / "config.json").read_text())
    hyper = {name: config[f"enformer_{name}"] for name in
             ("dim", "depth", "heads", "attn_dim_key", "dropout_rate", "attn_dropout", "pos_dropout",
              "target_length", "num_downsamples", "dim_divisible_by", "use_tf_gamma")}
    tensors = load_file(folder / "model.safetensors")
    trunk = EnformerTrunk(**hyper).eval()
    trunk.load_state_dict(enformer_state_dict_to_trunk(tensors, prefix="dna_encoder.enformer."), strict=True)
    oracle = enformer_pytorch.Enformer(enformer_pytorch.EnformerConfig(**hyper, output_heads={})).eval()
    prefix = "dna_encoder.enformer."
    missing, unexpected = oracle.load_state_dict(
        {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=False)
    assert not unexpected and all(k.startswith("_trunk.") for k in missing)

    encoder = load_checkpoint(str(folder)).dna_encoder
    ids = random_ids(2, config["dna_length"], seed=10)
    with torch.no_grad():
        expected = oracle(one_hot_dna(ids), return_only_embeddings=True)
        assert_fp32_close(trunk(one_hot_dna(ids)), expected)
        assert_fp32_close(encoder(ids)[0], expected)


def test_test_layout_of_enformer_pytorch_files_is_the_real_one(tmp_path):
    """``tests/enformer_layout.py`` (used by the init and convert tests, which run without enformer-pytorch)
    writes the state-dict keys, shapes, shared storage and config.json fields of a real ``Enformer``."""
    enformer_pytorch = pytest.importorskip("enformer_pytorch", exc_type=ImportError)
    from enformer_layout import enformer_pytorch_module, write_enformer_pytorch_config

    from isoformer_cli.models.network.configuration import IsoformerConfig
    from isoformer_cli.models.conversion.encoders.enformer import ENFORMER_FOLDER_FIELDS, library_fields

    config = IsoformerConfig.from_preset("tiny", modalities="dna")
    heads = {"human": 5, "mouse": 3}
    fields = {key: value for key, value in library_fields(config).items() if key != "use_convnext"}
    real = enformer_pytorch.Enformer(enformer_pytorch.EnformerConfig(**{**fields, "output_heads": heads}))
    ours = enformer_pytorch_module(config, heads)

    def layout(module):
        state = module.state_dict()
        return {key: tuple(tensor.shape) for key, tensor in state.items()}, {
            key for key, tensor in state.items()
            if any(other != key and other_tensor.data_ptr() == tensor.data_ptr()
                   for other, other_tensor in state.items())}

    assert layout(ours) == layout(real)
    folder = tmp_path
    real.config.save_pretrained(str(folder))
    saved = json.loads((folder / "config.json").read_text())
    write_enformer_pytorch_config(folder, config, heads)
    written = json.loads((folder / "config.json").read_text())
    assert written["model_type"] == saved["model_type"] == "enformer"
    for name, _ in ENFORMER_FOLDER_FIELDS:
        assert written.get(name) == saved.get(name, written.get(name)), name
    assert written["output_heads"] == saved["output_heads"]


# ---------------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------------


def test_attention_pool_equals_a_softmax_over_each_pair():
    torch.manual_seed(0)
    pool = AttentionPool(6)
    with torch.no_grad():
        pool.to_attn_logits.weight.normal_()
    x = torch.randn(2, 6, 10)
    pairs = x.unflatten(-1, (5, 2))  # (B, C, L/2, 2)
    logits = torch.einsum("oc,bcnp->bonp", pool.to_attn_logits.weight[:, :, 0, 0], pairs)
    expected = (pairs * logits.softmax(dim=-1)).sum(dim=-1)
    torch.testing.assert_close(pool(x), expected, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(pool(x), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="even length"):
        pool(x[..., :9])


@pytest.mark.parametrize("n, extra_columns", [(5, 0), (5, 1), (6, 3), (1, 0)])
def test_relative_logits_are_read_at_key_minus_query(n, extra_columns):
    relative = torch.randn(2, 3, n, 2 * n - 1 + extra_columns)
    absolute = relative_logits_to_absolute(relative)
    assert absolute.shape == (2, 3, n, n)
    for i in range(n):
        for j in range(n):
            assert torch.equal(absolute[..., i, j], relative[..., i, (n - 1) + j - i])


def test_position_features_match_enformer_pytorch():
    get_positional_embed = pytest.importorskip("enformer_pytorch.modeling_enformer", exc_type=ImportError).get_positional_embed

    for bins in (16, 256, 1536):
        expected = get_positional_embed(bins, 192, torch.device("cpu"), use_tf_gamma=False)
        torch.testing.assert_close(relative_position_features(bins, 192), expected, rtol=1e-6, atol=1e-7)


def test_one_hot_convention():
    ids = torch.tensor([[0, 1, 2, 3, 4, -1]])
    expected = torch.tensor([[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0],
                              [0.25, 0.25, 0.25, 0.25]]])
    assert torch.equal(one_hot_dna(ids), expected)
    assert one_hot_dna(ids, dtype=torch.bfloat16).dtype == torch.bfloat16
    with pytest.raises(InputError, match="outside -1..4"):
        one_hot_dna(torch.tensor([[0, 5]]))
    with pytest.raises(InputError, match="integer tensor"):
        one_hot_dna(torch.zeros(1, 4))


def test_one_hot_matches_enformer_pytorch():
    seq_indices_to_one_hot = pytest.importorskip("enformer_pytorch.data", exc_type=ImportError).seq_indices_to_one_hot
    ids = random_ids(3, 100)
    assert torch.equal(one_hot_dna(ids), seq_indices_to_one_hot(ids))


def test_conv_tower_widths_and_official_parameter_counts():
    assert conv_tower_widths(1536, 7, 128) == [768, 768, 896, 1024, 1152, 1280, 1536]
    assert conv_tower_widths(192, 3, 16) == [96, 96, 192]
    with torch.device("meta"):
        trunk = EnformerTrunk(**OFFICIAL)

    def count(*modules):
        return sum(p.numel() for module in modules for p in module.parameters())

    assert count(trunk.stem, trunk.conv_tower) == 50_877_952
    assert count(trunk.transformer) == 174_242_816
    assert count(trunk.final_pointwise) == 4_724_736


@pytest.mark.parametrize(
    "one_hot, message",
    [
        (torch.zeros(1, 2048), r"shape \(batch, length, 4\)"),
        (torch.zeros(1, 2048, 5), r"shape \(batch, length, 4\)"),
        (torch.zeros(1, 2048, 4, dtype=torch.long), "floating-point"),
        (torch.zeros(1, 2044, 4), "not a positive multiple of 8"),
        (torch.zeros(1, 1016, 4), "fewer than the 128 output bins; at least 1,024 bp"),
    ],
)
def test_bad_inputs_raise_clear_errors(tiny_trunk, one_hot, message):
    trunk = tiny_trunk
    with pytest.raises(InputError, match=message):
        trunk(one_hot)


def test_unsupported_configurations_are_refused():
    with pytest.raises(ValueError, match="use_tf_gamma=True is not supported"):
        EnformerTrunk(**TINY, use_tf_gamma=True)
    with pytest.raises(ValueError, match="multiple of 6"):
        EnformerTrunk(**{**TINY, "heads": 3})


# ---------------------------------------------------------------------------------------------------------
# Official geometry (slow: two full-size forwards on CPU)
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_official_geometry_matches_enformer_pytorch():
    """One 196,608-bp window: fp32 against enformer-pytorch, bf16 autocast against the fp32 reference."""
    oracle = oracle_enformer(**OFFICIAL)
    trunk = trunk_like(oracle, **OFFICIAL)
    one_hot = one_hot_dna(random_ids(1, OFFICIAL_LENGTH, seed=12))
    with torch.inference_mode():
        expected = oracle(one_hot, return_only_embeddings=True)
        del oracle
        actual = trunk(one_hot)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            actual_bf16 = trunk(one_hot)
    assert actual.shape == (1, 896, 3072)
    assert_fp32_close(actual, expected)
    assert relative_error(actual_bf16, expected) < BF16_RELATIVE_ERROR
