"""IsoFormer architecture at tiny size: every modality subset, aggregation and DNA encoder; batch invariance;
missing modalities; save/load; and the official parameter budget counted on the meta device."""

from __future__ import annotations

import json

import pytest
import torch

from isoformer_cli.errors import InputError
from isoformer_cli.models.network.configuration import GTEX_TISSUES, PRESETS, IsoformerConfig
from isoformer_cli.models.network.modeling import IsoformerModel

MODALITY_SUBSETS = ["dna", "dna,rna", "dna,protein", "dna,rna,protein", "rna", "protein", "rna,protein"]
AGGREGATIONS = ["cross-attention", "perceiver", "linear"]
DNA_ENCODERS = ["enformer", "nucleotide_transformer"]

NT_CLS, NT_PAD = 3, 1
ESM_CLS, ESM_PAD, ESM_EOS = 0, 1, 2


def tiny_model(seed: int = 0, **overrides) -> IsoformerModel:
    torch.manual_seed(seed)
    return IsoformerModel(IsoformerConfig.from_preset("tiny", **overrides))


def make_dna(config: IsoformerConfig, batch: int, generator: torch.Generator) -> torch.Tensor:
    """(batch, L) ids: Enformer A0..N4 over dna_length; NT <cls> + pure 6-mer tokens (ids 6..4101)."""
    if config.dna_encoder_type == "enformer":
        return torch.randint(0, 5, (batch, config.dna_length), generator=generator)
    tokens = torch.randint(6, 4102, (batch, 1 + config.dna_length // 6), generator=generator)
    tokens[:, 0] = NT_CLS
    return tokens


def make_rna(lengths: list[int], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """<cls> + random NT tokens, right-padded with pad id 1; length 0 gives an all-pad row."""
    width = max(max(lengths) + 1, 2)
    ids = torch.full((len(lengths), width), NT_PAD)
    for row, length in enumerate(lengths):
        if length:
            ids[row, 0] = NT_CLS
            ids[row, 1 : 1 + length] = torch.randint(6, 4107, (length,), generator=generator)
    return ids, ids != NT_PAD


def make_protein(lengths: list[int], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """<cls> residues <eos>, right-padded with pad id 1; length 0 gives an all-pad row."""
    width = max(max(lengths) + 2, 3)
    ids = torch.full((len(lengths), width), ESM_PAD)
    for row, length in enumerate(lengths):
        if length:
            ids[row, 0] = ESM_CLS
            ids[row, 1 : 1 + length] = torch.randint(4, 24, (length,), generator=generator)
            ids[row, 1 + length] = ESM_EOS
    return ids, ids != ESM_PAD


def make_batch(config, rna_lengths, protein_lengths, seed=1):
    generator = torch.Generator().manual_seed(seed)
    batch = len(rna_lengths)
    inputs = {}
    if config.has_dna:
        inputs["dna_input_ids"] = make_dna(config, batch, generator)
    if config.has_rna:
        inputs["rna_input_ids"], inputs["rna_attention_mask"] = make_rna(rna_lengths, generator)
    if config.has_protein:
        inputs["protein_input_ids"], inputs["protein_attention_mask"] = make_protein(protein_lengths, generator)
    return inputs


def row(inputs: dict, index: int) -> dict:
    """One isoform of a batch, with its padding trimmed away (as it would come alone)."""
    single = {}
    for name, tensor in inputs.items():
        single[name] = tensor[index : index + 1]
    for ids, mask in (("rna_input_ids", "rna_attention_mask"), ("protein_input_ids", "protein_attention_mask")):
        if ids in single:
            length = int(single[mask].sum())
            single[ids], single[mask] = single[ids][:, :length], single[mask][:, :length]
    return single


# ------------------------------------------------------------------------------------------------
# Every configuration trains: forward and backward, gradients reach every used parameter.
CONFIGURATIONS = [
    (modalities, aggregation, dna_encoder)
    for modalities in MODALITY_SUBSETS
    for aggregation in AGGREGATIONS
    for dna_encoder in (DNA_ENCODERS if "dna" in modalities else ["enformer"])
]


@pytest.mark.parametrize("modalities,aggregation,dna_encoder", CONFIGURATIONS)
def test_forward_and_backward(modalities, aggregation, dna_encoder):
    model = tiny_model(modalities=modalities, aggregation=aggregation, dna_encoder_type=dna_encoder)
    config = model.config
    inputs = make_batch(config, rna_lengths=[30, 12], protein_lengths=[20, 7])
    labels = torch.randn(2, config.n_tissues)
    output = model(**inputs, labels=labels, output_modality_embeddings=True)

    assert output.predictions.shape == (2, len(GTEX_TISSUES))
    assert output.pooled_embeddings.shape == (2, config.query_size)
    assert output.fused_dna_embeddings.shape[0] == 2 and output.fused_dna_embeddings.shape[2] == config.query_size
    if config.has_dna:
        assert output.dna_embeddings.shape == (2, config.dna_bins, config.dna_embedding_size)
    if config.has_rna:
        assert output.rna_embeddings.shape == (2, 31, config.nt_hidden_size)
    if config.has_protein:
        assert output.protein_embeddings.shape == (2, 22, config.esm_hidden_size)
    assert torch.isfinite(output.predictions).all()

    output.loss.backward()
    for name, parameter in model.named_parameters():
        if ".contact_head." in name:  # ESM's contact head is part of EsmModel but unused here
            continue
        assert parameter.grad is not None, f"no gradient reaches {name}"
        assert torch.isfinite(parameter.grad).all(), f"non-finite gradient in {name}"
    assert any(float(p.grad.abs().sum()) > 0 for p in model.head.parameters())


def test_enformer_output_geometry_of_tiny_preset():
    model = tiny_model(modalities="dna")
    config = model.config
    assert config.dna_bins == 128 and config.dna_embedding_size == 384
    dna, mask = model.encode_dna(make_dna(config, 1, torch.Generator().manual_seed(0)))
    assert dna.shape == (1, 128, 384) and mask is None


# ------------------------------------------------------------------------------------------------
# Batch invariance and missing modalities.
@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_isoform_alone_equals_isoform_inside_a_padded_batch(aggregation):
    model = tiny_model(aggregation=aggregation).eval()
    inputs = make_batch(model.config, rna_lengths=[40, 9, 25, 0], protein_lengths=[6, 30, 0, 18])
    with torch.no_grad():
        batched = model(**inputs).predictions
        for index in (0, 1):
            alone = model(**row(inputs, index)).predictions
            torch.testing.assert_close(alone[0], batched[index], rtol=0, atol=1e-5)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize(
    "dropped,reduced_modalities",
    [("protein", "dna,rna"), ("rna", "dna,protein"), ("both", "dna")],
)
def test_row_without_a_modality_equals_a_model_without_it(aggregation, dropped, reduced_modalities):
    full = tiny_model(aggregation=aggregation).eval()
    reduced = IsoformerModel(IsoformerConfig.from_preset("tiny", aggregation=aggregation, modalities=reduced_modalities))
    result = reduced.load_state_dict(full.state_dict(), strict=False)
    assert result.missing_keys == []  # every weight of the reduced model comes from the full one
    reduced.eval()

    # Row 0 lacks the dropped modality (all-pad ids); row 1 has everything.
    rna_lengths = [0 if dropped in ("rna", "both") else 20, 15]
    protein_lengths = [0 if dropped in ("protein", "both") else 11, 9]
    inputs = make_batch(full.config, rna_lengths=rna_lengths, protein_lengths=protein_lengths)
    alone_inputs = {key: value for key, value in row(inputs, 0).items() if _kept(key, reduced.config)}
    with torch.no_grad():
        with_gap = full(**inputs)
        alone = reduced(**alone_inputs)
    assert torch.isfinite(with_gap.predictions).all()
    torch.testing.assert_close(with_gap.predictions[0], alone.predictions[0], rtol=0, atol=1e-5)


def _kept(key: str, config: IsoformerConfig) -> bool:
    """Whether an input of the full model is also an input of the reduced model."""
    modality = key.split("_")[0]
    return modality in config.modalities


def test_presence_flags_equal_absent_tokens_and_none_inputs():
    model = tiny_model().eval()
    inputs = make_batch(model.config, rna_lengths=[20, 15], protein_lengths=[11, 9])
    with torch.no_grad():
        flagged = model(**inputs, has_protein=torch.tensor([False, False])).predictions
        omitted = model(
            **{key: value for key, value in inputs.items() if not key.startswith("protein")}
        ).predictions
    torch.testing.assert_close(flagged, omitted, rtol=0, atol=1e-6)


def test_no_nan_in_outputs_or_gradients_when_rows_lack_modalities():
    model = tiny_model()
    inputs = make_batch(model.config, rna_lengths=[0, 12, 0], protein_lengths=[0, 0, 5])
    output = model(**inputs, labels=torch.zeros(3, model.config.n_tissues))
    assert torch.isfinite(output.predictions).all()
    assert torch.isfinite(output.fused_dna_embeddings).all()
    output.loss.backward()
    for name, parameter in model.named_parameters():
        if parameter.grad is not None:
            assert torch.isfinite(parameter.grad).all(), name


@pytest.mark.parametrize("modalities,missing", [("rna,protein", "rna"), ("protein", "protein")])
def test_query_modality_must_be_present_in_every_row(modalities, missing):
    model = tiny_model(modalities=modalities).eval()
    inputs = make_batch(model.config, rna_lengths=[0, 5], protein_lengths=[0, 5])
    with pytest.raises(InputError, match=f"no {missing}"):
        model(**inputs)


def test_dna_free_rna_query_fuses_protein_and_skips_it_per_row():
    full = tiny_model(modalities="rna,protein").eval()
    rna_only = IsoformerModel(IsoformerConfig.from_preset("tiny", modalities="rna"))
    assert rna_only.load_state_dict(full.state_dict(), strict=False).missing_keys == []
    rna_only.eval()
    inputs = make_batch(full.config, rna_lengths=[14, 14], protein_lengths=[0, 8])
    with torch.no_grad():
        both = full(**inputs).predictions
        reference = rna_only(rna_input_ids=inputs["rna_input_ids"], rna_attention_mask=inputs["rna_attention_mask"])
    torch.testing.assert_close(both[0], reference.predictions[0], rtol=0, atol=1e-5)
    assert not torch.allclose(both[1], reference.predictions[1], atol=1e-4)  # protein does change row 1


# ------------------------------------------------------------------------------------------------
# Staged API used by the predict engine.
def test_encode_once_then_fuse_equals_plain_forward():
    model = tiny_model().eval()
    config = model.config
    generator = torch.Generator().manual_seed(5)
    # Two distinct DNA windows shared by four isoforms; isoform 2 is non-coding.
    windows = make_dna(config, 2, generator)
    window_of_isoform = torch.tensor([0, 0, 1, 1])
    rna_ids, rna_mask = make_rna([30, 18, 25, 9], generator)
    protein_ids, protein_mask = make_protein([12, 7, 0, 20], generator)
    with torch.no_grad():
        plain = model(
            dna_input_ids=windows[window_of_isoform],
            rna_input_ids=rna_ids,
            rna_attention_mask=rna_mask,
            protein_input_ids=protein_ids,
            protein_attention_mask=protein_mask,
        )
        dna, dna_mask = model.encode_dna(windows)
        staged = model.fuse_and_predict(
            dna_embeddings=dna[window_of_isoform],
            dna_mask=dna_mask,
            rna_embeddings=model.encode_rna(rna_ids, rna_mask),
            rna_attention_mask=rna_mask,
            protein_embeddings=model.encode_protein(protein_ids, protein_mask),
            protein_attention_mask=protein_mask,
            has_protein=torch.tensor([True, True, False, True]),
        )
    torch.testing.assert_close(staged.predictions, plain.predictions, rtol=0, atol=1e-6)
    torch.testing.assert_close(staged.fused_dna_embeddings, plain.fused_dna_embeddings, rtol=0, atol=1e-6)


def test_pool_window_relative_to_tss_averages_the_chosen_bins():
    model = tiny_model(pool_window_start=-4, pool_window_end=6).eval()
    inputs = make_batch(model.config, rna_lengths=[10], protein_lengths=[10])
    with torch.no_grad():
        output = model(**inputs)
    tss = model.config.dna_bins // 2
    expected = output.fused_dna_embeddings[:, tss - 4 : tss + 6].mean(dim=1)
    torch.testing.assert_close(output.pooled_embeddings, expected)


def test_bfloat16_weights_run_every_encoder():
    model = tiny_model().to(torch.bfloat16).eval()
    inputs = make_batch(model.config, rna_lengths=[10, 4], protein_lengths=[0, 6])
    with torch.no_grad():
        output = model(**inputs)
    assert output.predictions.dtype == torch.bfloat16 and torch.isfinite(output.predictions).all()


def test_invalid_dna_ids_are_refused():
    model = tiny_model(modalities="dna")
    dna = make_dna(model.config, 1, torch.Generator().manual_seed(0))
    dna[0, 10] = 5
    with pytest.raises(InputError, match="A0 C1 G2 T3 N4"):
        model(dna_input_ids=dna)


# ------------------------------------------------------------------------------------------------
# Configuration and checkpoints.
@pytest.mark.parametrize("aggregation", ["cross-attention", "perceiver"])
def test_save_and_load_round_trip_is_bit_exact(tmp_path, aggregation):
    model = tiny_model(seed=3, aggregation=aggregation).eval()
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "isoformer" and saved["tissues"] == list(GTEX_TISSUES)

    loaded = IsoformerModel.from_pretrained(tmp_path, use_safetensors=True).eval()
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert torch.equal(original[key], restored[key]), key
    assert not any(key.split(".")[2] == "_trunk" for key in original if key.startswith("dna_encoder."))
    inputs = make_batch(model.config, rna_lengths=[17, 4], protein_lengths=[3, 25])
    with torch.no_grad():
        assert torch.equal(model(**inputs).predictions, loaded(**inputs).predictions)


def test_config_presets_modalities_and_errors():
    assert set(PRESETS) == {"official", "tiny"}
    config = IsoformerConfig.from_preset("official")
    assert config.modalities == ["dna", "rna", "protein"] and config.n_tissues == 30
    assert (config.dna_length, config.max_rna_tokens, config.max_protein_residues) == (196_608, 2048, 1022)
    assert config.dna_bins == 896 and config.query_size == 3072 and config.target_units == "log1p_tpm"
    assert IsoformerConfig.from_preset("tiny", modalities="protein,dna").modalities == ["dna", "protein"]
    nt_dna = IsoformerConfig.from_preset("official", dna_encoder_type="nucleotide_transformer")
    assert nt_dna.dna_length == 12_288 and nt_dna.dna_bins == 2048 and nt_dna.query_size == 768
    with pytest.raises(InputError, match="unknown model preset"):
        IsoformerConfig.from_preset("huge")
    with pytest.raises(InputError, match="unknown modality"):
        IsoformerConfig.from_preset("tiny", modalities="dna,atac")
    with pytest.raises(InputError, match="aggregation"):
        IsoformerConfig.from_preset("tiny", aggregation="concat")
    with pytest.raises(InputError, match="max_rna_tokens"):
        IsoformerConfig.from_preset("tiny", max_rna_tokens=4096)


def test_official_parameter_counts_on_meta_device():
    with torch.device("meta"):
        model = IsoformerModel(IsoformerConfig.from_preset("official"))
    counts = model.parameter_counts(detailed=True)
    assert counts["dna_encoder.stem_and_conv_tower"] == 50_877_952
    assert counts["dna_encoder.transformer"] == 174_242_816
    assert counts["dna_encoder.final_pointwise"] == 4_724_736
    assert counts["dna_encoder"] == 229_845_504
    assert counts["aggregation.rna_cross_attention"] == 23_605_248
    assert counts["aggregation.protein_cross_attention"] == 22_818_816
    assert counts["aggregation"] == 23_605_248 + 22_818_816
    assert counts["head"] == 19_064_862
    # ESM-2 150M EsmForMaskedLM has 148,817,914 parameters; without its LM head (432,673) and the unused
    # absolute position table (1,026 x 640) that remains 147,728,601 (contact head, 601, included).
    assert counts["protein_encoder"] == 148_817_914 - 432_673 - 1026 * 640
    # NT-v2 250M NTForMaskedLM: 235,120,780; minus LM head (3,750,411), unused position table (2,050 x 768)
    # and contact head (385) leaves 229,795,584.
    assert counts["rna_encoder"] == 235_120_780 - 3_750_411 - 2050 * 768 - 385
    assert counts["total"] == sum(counts[key] for key in
                                  ("dna_encoder", "rna_encoder", "protein_encoder", "aggregation", "head"))
    # Plus Enformer's species heads (21,375,788) and the above extras, the official file's 700,648,912.
    extras = 21_375_788 + 432_673 + 1026 * 640 + 3_750_411 + 2050 * 768 + 385
    assert counts["total"] + extras == 700_648_912


def test_tiny_preset_size():
    counts = tiny_model().parameter_counts()
    assert 1_000_000 < counts["total"] < 5_000_000


@pytest.mark.slow
def test_official_preset_forward_at_full_lengths():
    """One isoform at 196,608 bp, 2,048 RNA tokens and 1,000 residues (about 5 GB RAM, a minute or more)."""
    torch.manual_seed(0)
    model = IsoformerModel(IsoformerConfig.from_preset("official")).eval()
    generator = torch.Generator().manual_seed(0)
    rna_ids, rna_mask = make_rna([2048], generator)
    protein_ids, protein_mask = make_protein([1000], generator)
    with torch.inference_mode():
        output = model(
            dna_input_ids=torch.randint(0, 5, (1, 196_608), generator=generator),
            rna_input_ids=rna_ids,
            rna_attention_mask=rna_mask,
            protein_input_ids=protein_ids,
            protein_attention_mask=protein_mask,
        )
    assert output.predictions.shape == (1, 30) and torch.isfinite(output.predictions).all()
    assert output.fused_dna_embeddings.shape == (1, 896, 3072)
