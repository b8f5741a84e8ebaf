"""``isoformer convert``: official-format files in several layouts back into our model, exactly.

The synthetic files (tests/official_format.py) hold a small model's own tensors renamed into a layout, so a
correct conversion gives back bit-identical tensors and identical predictions. The layouts differ in
top-level names, nesting, Enformer's spelling (named, ``_trunk.N`` duplicates, both) and heads (Enformer's
species heads present or absent, ESM-2/NT-v2 masked-LM and contact heads present).
"""

import json
import logging
import os
import re
import time

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open

from isoformer_cli.cli.main import cli
from isoformer_cli.errors import CheckpointError, InputError
from isoformer_cli.models.checkpoint.load import load_checkpoint
from isoformer_cli.models.conversion.convert import convert_official, derive_config
from isoformer_cli.models.conversion.key_mapping import plan_conversion
from isoformer_cli.models.conversion.layout import detect_layout
from isoformer_cli.models.network.configuration import IsoformerConfig
from isoformer_cli.models.network.modeling import IsoformerModel

from official_format import (
    DISTINCT_WIDTHS,
    LAYOUTS,
    OFFICIAL_SPECIES_HEADS,
    example_batch,
    library_enformer_output,
    official_config_json,
    official_state,
    small_model,
    write_official,
)


@pytest.fixture(scope="module")
def tiny():
    """The tiny preset (NT-v2 and ESM-2 both 64 wide)."""
    return small_model()


@pytest.fixture(scope="module")
def distinct():
    """A tiny model whose NT-v2 (64) and ESM-2 (32) widths differ."""
    return small_model(**DISTINCT_WIDTHS)


def metadata_of(folder):
    with safe_open(str(folder / "model.safetensors"), framework="pt") as handle:
        return handle.metadata()


def predictions(model, config):
    with torch.no_grad():
        return model(**example_batch(config)).predictions


def assert_same_model(loaded, model, config):
    reference = model.state_dict()
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, reference[name]), name
    assert torch.equal(predictions(loaded, loaded.config), predictions(model, config))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_converts_to_identical_predictions(tmp_path, distinct, layout):
    config, model = distinct
    official = write_official(tmp_path / "official", official_state(model, config, layout), config)
    result = convert_official(str(official), str(tmp_path / "out"), preset="tiny")

    assert (result.plan.unmatched, result.plan.missing, result.plan.wrong_shape) == ([], [], [])
    loaded = load_checkpoint(str(tmp_path / "out"))
    assert_same_model(loaded, model, config)
    assert loaded.config.esm_hidden_size == 32 and loaded.config.nt_hidden_size == 64
    metadata = metadata_of(tmp_path / "out")
    for component in ("dna_encoder", "rna_encoder", "protein_encoder"):
        assert metadata[f"self_check_{component}"].startswith("passed: max |difference|"), component
    assert "a new Enformer built from the source's configuration" in metadata["self_check_dna_encoder"]
    assert "transformers EsmModel" in metadata["self_check_protein_encoder"]
    assert metadata["tokenizer_files_checked"] == "dna_vocab_list.txt, rna_vocab_list.txt, protein_vocab_list.txt"
    assert len(result.layout.report()) == 6


@pytest.mark.parametrize("layout", LAYOUTS)
def test_converted_enformer_computes_what_enformer_pytorch_computes(tmp_path, distinct, layout):
    """The oracle (skipped without the enformer-pytorch test extra): the library itself, loaded with the file's
    Enformer tensors in their spelling, computes what the converted DNA encoder computes."""
    config, model = distinct
    state = official_state(model, config, layout)
    result = convert_official(str(write_official(tmp_path / "official", state, config)), str(tmp_path / "out"),
                              preset="tiny")
    root = result.layout.components["dna_encoder"].root
    ids = example_batch(config)["dna_input_ids"]
    expected = library_enformer_output(state, root, config, ids)
    with torch.no_grad():
        ours = load_checkpoint(str(tmp_path / "out")).dna_encoder(ids)[0]
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


def test_documented_layout_details(tmp_path, tiny):
    """Both Enformer spellings (one tensor each), species heads, masked-LM and contact heads: ignored with reasons."""
    config, model = tiny
    official = write_official(tmp_path / "official", official_state(model, config, "documented"), config)
    result = convert_official(str(official), str(tmp_path / "out"), preset="tiny")
    plan = result.plan
    trunk_keys = [key for key in plan.targets if key.startswith("enformer_model._trunk.")]
    assert trunk_keys and sorted(plan.duplicates) == sorted(trunk_keys)
    reasons = {reason for _, reason in plan.ignored}
    assert {"Enformer human/mouse output heads (not used by IsoFormer)", "ESM-2 masked-LM head (not used by IsoFormer)",
            "NT-v2 masked-LM head (not used by IsoFormer)", "contact-prediction head (not used by IsoFormer)",
            "absolute position table, unused by rotary encoders"} <= reasons
    ignored = {key for key, _ in plan.ignored}
    assert {"esm_model.esm.embeddings.position_embeddings.weight", "enformer_model._heads.human.0.weight",
            "nt_model.esm.contact_head.regression.weight"} <= ignored
    assert_same_model(load_checkpoint(str(tmp_path / "out")), model, config)
    metadata = metadata_of(tmp_path / "out")
    assert metadata["key_mapping"] == "found by key signatures and shapes"
    assert "cross_attention_layer_rna" in metadata["layout"]
    sources = json.loads(metadata["configuration_sources"])
    assert sources["esm_hidden_size"] == "config.json, weights"
    assert sources["fusion_order"] == "default (tiny preset)"
    assert "pool_window_start=0 not applied" in metadata["official_config_notes"]


def test_full_size_official_layout_is_found_on_the_meta_device():
    """At full size, without memory: the documented layout maps completely, the architecture derived from the
    official config.json fields and the shapes is the official preset, and the elements are the 2.8 GB budget."""
    config = IsoformerConfig.from_preset("official")
    with torch.device("meta"):
        model = IsoformerModel(config)
    state = official_state(model, config, "documented", device="meta", species_heads=OFFICIAL_SPECIES_HEADS)
    shapes = {key: tuple(tensor.shape) for key, tensor in state.items()}
    layout = detect_layout(shapes)
    official = official_config_json(config)
    del official["nt_num_hidden_layers"], official["nt_num_attention_heads"]  # not seen in the real file
    derived, origins, _ = derive_config(official, "config.json", layout, "official")
    assert derived.to_dict() == config.to_dict()
    assert origins["nt_num_hidden_layers"] == "weights"
    assert origins["nt_num_attention_heads"] == "default (official preset)"
    plan = plan_conversion(shapes, model, layout.rows)
    assert (plan.unmatched, plan.missing, plan.wrong_shape) == ([], [], [])
    unique = {}
    for key, tensor in state.items():
        if tensor.dtype.is_floating_point and "running_" not in key and "inv_freq" not in key:
            unique.setdefault(plan.targets.get(key, key), tensor.numel())
    assert sum(unique.values()) == 700_648_912


def test_without_config_json_the_shapes_and_preset_decide(tmp_path, distinct):
    config, model = distinct
    official = write_official(tmp_path / "official", official_state(model, config, "renamed"))
    convert_official(str(official), str(tmp_path / "out"), preset="tiny")
    assert_same_model(load_checkpoint(str(tmp_path / "out")), model, config)
    # ESM-2's heads come from its per-layer rotary buffers (head width 8 at hidden 32).
    sources = json.loads(metadata_of(tmp_path / "out")["configuration_sources"])
    assert sources["esm_num_attention_heads"] == "weights"


def test_unknown_key_is_reported_with_its_shape(tmp_path, tiny, caplog):
    config, model = tiny
    state = official_state(model, config)
    state["mystery_module.weight"] = torch.zeros(7, 3)
    official = write_official(tmp_path / "official", state, config)
    with caplog.at_level(logging.WARNING, logger="isoformer_cli"):
        result = convert_official(str(official), str(tmp_path / "out"), preset="tiny")
    assert result.plan.unmatched == [("mystery_module.weight", (7, 3))]
    assert "unmatched official tensor mystery_module.weight [7, 3]" in caplog.text
    assert (tmp_path / "out" / "model.safetensors").exists()


def test_shape_mismatch_is_refused_and_nothing_written(tmp_path, tiny):
    config, model = tiny
    state = official_state(model, config)
    state["esm_model.esm.encoder.layer.1.attention.self.query.weight"] = torch.zeros(64, 65)
    official = write_official(tmp_path / "official", state, config)
    with pytest.raises(CheckpointError) as error:
        convert_official(str(official), str(tmp_path / "out"), preset="tiny")
    message = str(error.value)
    assert ("esm_model.esm.encoder.layer.1.attention.self.query.weight -> protein_encoder.encoder.layer.1.attention."
            "self.query.weight is [64, 65] in the file but [64, 64] in the model") in message
    assert message.endswith("; nothing was written")
    assert sorted(os.listdir(tmp_path)) == ["official"]


def test_missing_tensor_or_component_is_refused(tmp_path, tiny):
    config, model = tiny
    state = official_state(model, config)
    del state["esm_model.esm.encoder.layer.1.attention.self.value.bias"]
    official = write_official(tmp_path / "official", state, config)
    expected = (r"1 tensors of the model would stay uninitialised "
                r"\(protein_encoder\.encoder\.layer\.1\.attention\.self\.value\.bias\)")
    with pytest.raises(CheckpointError, match=expected):
        convert_official(str(official), str(tmp_path / "out"), preset="tiny")

    state = official_state(model, config)
    del state["cross_attention_layer_protein.value.bias"]
    official = write_official(tmp_path / "official2", state, config)
    with pytest.raises(CheckpointError, match=r"found no protein_cross_attention \(the file's top-level groups: "
                                              r"esm_model \(46 tensors\)"):
        convert_official(str(official), str(tmp_path / "out"), preset="tiny")
    assert sorted(os.listdir(tmp_path)) == ["official", "official2"]


def test_duplicate_spellings_with_different_values_are_refused(tmp_path, tiny):
    config, model = tiny
    state = official_state(model, config)
    state["enformer_model._trunk.1.0.weight"] = state["enformer_model.stem.0.weight"].clone() + 1
    official = write_official(tmp_path / "official", state, config)
    expected = (r"1 spelled twice with different values "
                r"\(enformer_model\.stem\.0\.weight / enformer_model\._trunk\.1\.0\.weight\)")
    with pytest.raises(CheckpointError, match=expected):
        convert_official(str(official), str(tmp_path / "out"), preset="tiny")


def test_mapping_rows_settle_what_the_shapes_cannot(tmp_path, tiny):
    """Equal NT-v2/ESM-2 widths and neutral names: the blocks cannot be told apart until a --mapping file says."""
    config, model = tiny
    official = write_official(tmp_path / "official", official_state(model, config, "renamed"), config)
    with pytest.raises(CheckpointError, match=r"cannot tell whether the cross-attention block 'fusion\.0\.' attends "
                                              r"to the RNA or to the protein: both encoders are 64 wide.*--mapping"):
        convert_official(str(official), str(tmp_path / "out"), preset="tiny")
    mapping = tmp_path / "mapping.tsv"
    mapping.write_text("# our correction\n^fusion\\.0\\.\taggregation.protein_cross_attention.\n"
                       "^fusion\\.1\\.\taggregation.rna_cross_attention.\n")
    result = convert_official(str(official), str(tmp_path / "out"), preset="tiny", mapping_file=str(mapping))
    assert result.plan.unmatched == [] and result.plan.missing == []
    assert result.layout.user_filled == ("protein_cross_attention", "rna_cross_attention")
    assert_same_model(load_checkpoint(str(tmp_path / "out")), model, config)
    assert metadata_of(tmp_path / "out")["key_mapping"].endswith(f"with the rows of {mapping}")
    mapping.write_text("^broken(\taggregation.\n")
    with pytest.raises(CheckpointError, match=r"mapping\.tsv:1: invalid regular expression"):
        convert_official(str(official), str(tmp_path / "out2"), preset="tiny", mapping_file=str(mapping))


def test_config_json_that_contradicts_the_weights_is_refused(tmp_path, tiny):
    config, model = tiny
    official = write_official(tmp_path / "official", official_state(model, config), config)
    fields = json.loads((official / "config.json").read_text())
    fields["esm_num_hidden_layers"] = 3
    (official / "config.json").write_text(json.dumps(fields))
    with pytest.raises(CheckpointError, match=r"config\.json: esm_num_hidden_layers is 3 there, but the weights have "
                                              r"2; .*--set esm_num_hidden_layers=2"):
        convert_official(str(official), str(tmp_path / "out"), preset="tiny")
    fields["esm_num_hidden_layers"], fields["nt_position_embedding_type"] = 2, "absolute"
    (official / "config.json").write_text(json.dumps(fields))
    with pytest.raises(CheckpointError, match=r"nt_position_embedding_type is 'absolute'; this tool implements only "
                                              r"'rotary'"):
        convert_official(str(official), str(tmp_path / "out"), preset="tiny")
    assert sorted(os.listdir(tmp_path)) == ["official"]


def test_self_check_failure_writes_nothing(tmp_path, tiny):
    """A --set that changes the computation, or rows that swap two layers: shapes fit, the self-check does not."""
    config, model = tiny
    official = write_official(tmp_path / "official", official_state(model, config), config)
    # config.json says ESM-2 uses token dropout; the reference keeps what the source says.
    with pytest.raises(CheckpointError, match=r"self-check failed: protein_encoder FAILED: max \|difference\| .* "
                                              r"against transformers EsmModel.*nothing was written$"):
        convert_official(str(official), str(tmp_path / "out"), preset="tiny", settings={"esm_token_dropout": False})
    mapping = tmp_path / "swap.tsv"
    mapping.write_text("^nt_model\\.esm\\.encoder\\.layer\\.0\\.\trna_encoder.encoder.layer.1.\n"
                       "^nt_model\\.esm\\.encoder\\.layer\\.1\\.\trna_encoder.encoder.layer.0.\n")
    with pytest.raises(CheckpointError, match=r"self-check failed: rna_encoder FAILED"):
        convert_official(str(official), str(tmp_path / "out"), preset="tiny", mapping_file=str(mapping))
    # Enformer's two transformer blocks swapped (named spelling only, so no second spelling contradicts the rows).
    nested = write_official(tmp_path / "nested", official_state(model, config, "nested"), config)
    swap = tmp_path / "swap-dna.tsv"
    swap.write_text("^model\\.encoders\\.dna\\.transformer\\.0\\.\tdna_encoder.enformer.transformer.1.\n"
                    "^model\\.encoders\\.dna\\.transformer\\.1\\.\tdna_encoder.enformer.transformer.0.\n")
    with pytest.raises(CheckpointError, match=r"self-check failed: dna_encoder FAILED: max \|difference\| .* against "
                                              r"a new Enformer built from the source's configuration"):
        convert_official(str(nested), str(tmp_path / "out"), preset="tiny", mapping_file=str(swap))
    assert sorted(os.listdir(tmp_path)) == ["nested", "official", "swap-dna.tsv", "swap.tsv"]


@pytest.mark.parametrize("settings", [{"head_activation": "softplus"}, {"fusion_order": "parallel"},
                                      {"fusion_order": "protein,rna", "pool_window_start": -4,
                                       "pool_window_end": 4}])
def test_architecture_unknowns_are_settable(tmp_path, tiny, settings):
    config, model = tiny
    official = write_official(tmp_path / "official", official_state(model, config), config)
    convert_official(str(official), str(tmp_path / "out"), preset="tiny", settings=settings)
    loaded = load_checkpoint(str(tmp_path / "out"))
    for key, value in settings.items():
        assert getattr(loaded.config, key) == value
    expected = IsoformerModel(IsoformerConfig.from_preset("tiny", **settings)).eval()
    expected.load_state_dict(model.state_dict())
    assert torch.equal(predictions(loaded, loaded.config), predictions(expected, expected.config))
    assert not torch.equal(predictions(loaded, loaded.config), predictions(model, config))
    sources = json.loads(metadata_of(tmp_path / "out")["configuration_sources"])
    assert all(sources[key] == "--set" for key in settings)


def test_fusion_orders_compute_what_they_say(tiny):
    config, model = tiny
    aggregation = model.aggregation
    generator = torch.Generator().manual_seed(3)
    dna = torch.randn(2, 8, config.query_size, generator=generator)
    rna = torch.randn(2, 5, config.nt_hidden_size, generator=generator)
    protein = torch.randn(2, 4, config.esm_hidden_size, generator=generator)
    rna_mask, protein_mask = torch.ones(2, 5, dtype=torch.bool), torch.ones(2, 4, dtype=torch.bool)
    rna_block, protein_block = aggregation.rna_cross_attention, aggregation.protein_cross_attention
    with torch.no_grad():
        expected = {
            "rna,protein": protein_block(rna_block(dna, rna, rna_mask), protein, protein_mask),
            "protein,rna": rna_block(protein_block(dna, protein, protein_mask), rna, rna_mask),
            "parallel": dna + (rna_block(dna, rna, rna_mask) - dna) + (protein_block(dna, protein, protein_mask) - dna),
        }
        for order, value in expected.items():
            aggregation.fusion_order = order
            fused, _ = aggregation(dna, None, rna, rna_mask, protein, protein_mask)
            assert torch.equal(fused, value), order
    aggregation.fusion_order = "rna,protein"
    with pytest.raises(InputError, match="fusion_order='sideways'; choose one of rna,protein, protein,rna, parallel"):
        IsoformerConfig.from_preset("tiny", fusion_order="sideways")


def test_tissues_follow_the_head(tmp_path):
    config, model = small_model(tissues=["Liver", "Lung", "Brain"])
    official = write_official(tmp_path / "official", official_state(model, config), config)
    with pytest.raises(CheckpointError, match=r"the head predicts 3 outputs, not the 30 GTEx tissues; name them in "
                                              r"order with --set tissues=NAME1,NAME2"):
        convert_official(str(official), str(tmp_path / "out"), preset="tiny")
    convert_official(str(official), str(tmp_path / "out"), preset="tiny",
                     settings={"tissues": ["Liver", "Lung", "Brain"]})
    assert load_checkpoint(str(tmp_path / "out")).config.tissues == ["Liver", "Lung", "Brain"]


def test_a_different_vocabulary_is_refused(tmp_path, tiny):
    config, model = tiny
    official = write_official(tmp_path / "official", official_state(model, config), config)
    tokens = (official / "protein_vocab_list.txt").read_text().split("\n")
    tokens[4], tokens[5] = tokens[5], tokens[4]
    (official / "protein_vocab_list.txt").write_text("\n".join(tokens))
    with pytest.raises(CheckpointError, match=r"protein_vocab_list\.txt: token 4 is 'A', this tool's tokenizer has "
                                              r"'L' there"):
        convert_official(str(official), str(tmp_path / "out"), preset="tiny")


# ------------------------------------------------------------------------------------ command line


def test_cli_list_keys_and_show_mapping(tmp_path, tiny):
    config, model = tiny
    state = official_state(model, config)
    state["mystery_module.weight"] = torch.zeros(7, 3)
    official = write_official(tmp_path / "official", state, config)
    result = CliRunner().invoke(cli, ["convert", str(official), "--list-keys", "--preset", "tiny"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    esm_count = sum(1 for key in state if key.startswith("esm_model."))
    esm_elements = sum(t.numel() for key, t in state.items() if key.startswith("esm_model."))
    assert f"# group esm_model: {esm_count:,} tensors, {esm_elements:,} elements" in lines
    assert "# found protein_encoder: ESM-2 at 'esm_model.' (2 layers, hidden 64, vocabulary 33; masked-LM head and " \
           "contact head ignored)" in lines
    assert "# group mystery_module: 1 tensors, 21 elements" in lines
    assert "mystery_module.weight\t[7, 3]\tUNMATCHED" in lines
    assert "head_layer_1.bias\t[" + str(config.head_hidden_size) + "]\thead.dense.bias" in lines
    assert any(line.startswith("enformer_model._heads.human.0.weight\t") and "ignored: Enformer" in line for line in lines)

    # The rows found, written out, edited by nobody and passed back, give the same checkpoint.
    shown = CliRunner().invoke(cli, ["convert", str(official), "--show-mapping"])
    assert shown.exit_code == 0, shown.output
    assert "^esm_model\\.lm_head\\.\t-" in shown.output.splitlines()
    (tmp_path / "rows.tsv").write_text(shown.output)
    result = CliRunner().invoke(cli, ["convert", str(official), "-o", str(tmp_path / "out"), "--preset", "tiny",
                                      "--mapping", str(tmp_path / "rows.tsv")])
    assert result.exit_code == 0, result.output
    assert_same_model(load_checkpoint(str(tmp_path / "out")), model, config)


def test_cli_refusal_is_one_line_and_leaves_nothing(tmp_path, tiny):
    config, model = tiny
    state = official_state(model, config)
    del state["head_layer_1.weight"]
    official = write_official(tmp_path / "official", state, config)
    result = CliRunner().invoke(cli, ["convert", str(official), "-o", str(tmp_path / "out"), "--preset", "tiny"])
    assert result.exit_code == 1
    assert result.output.startswith("isoformer: error: ")
    assert "found no head" in result.output
    assert result.output.count("\n") == 1
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_cli_missing_source_missing_output_and_bad_setting(tmp_path):
    result = CliRunner().invoke(cli, ["convert", str(tmp_path / "nowhere"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    expected = "no such file or folder (give the downloaded InstaDeepAI/isoformer folder)"
    assert result.output == f"isoformer: error: {tmp_path / 'nowhere'}: {expected}\n"
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(cli, ["convert", str(tmp_path / "empty"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "no pytorch_model.bin or model.safetensors in this folder" in result.output
    result = CliRunner().invoke(cli, ["convert", str(tmp_path / "empty")])
    assert result.exit_code == 2
    assert "missing -o/--output" in result.output
    for setting, message in (("head_activation", "expected KEY=VALUE"),
                             ("head_actvation=relu", "'head_actvation' is not a configuration field"),
                             ("esm_num_attention_heads=many", "'esm_num_attention_heads' must be an integer")):
        result = CliRunner().invoke(cli, ["convert", str(tmp_path / "empty"), "-o", str(tmp_path / "out"),
                                          "--set", setting])
        assert result.exit_code == 2, result.output
        assert message in result.output


def test_cli_converts_with_settings(tmp_path, tiny):
    config, model = tiny
    official = write_official(tmp_path / "official", official_state(model, config), config)
    arguments = ["convert", str(official / "pytorch_model.bin"), "-o", str(tmp_path / "out"), "--preset", "tiny",
                 "--set", "head_activation=relu", "--set", "tissues=" + ",".join(config.tissues)]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 0, result.output
    loaded = load_checkpoint(str(tmp_path / "out"))
    assert loaded.config.head_activation == "relu"
    assert torch.equal(loaded.head.output.weight, model.head.output.weight)


@pytest.mark.slow
def test_full_size_conversion_round_trip(tmp_path, capsys):
    """The official preset at full size: synthetic official file -> convert (self-checks included) -> load,
    bit-identical (minutes, ~10 GB)."""
    import resource

    config = IsoformerConfig.from_preset("official")
    torch.manual_seed(0)
    model = IsoformerModel(config).eval()
    state = official_state(model, config, species_heads=OFFICIAL_SPECIES_HEADS)
    official = write_official(tmp_path / "official", state, config)
    del state
    start = time.perf_counter()
    result = convert_official(str(official), str(tmp_path / "out"))
    converted = time.perf_counter()
    loaded = load_checkpoint(str(tmp_path / "out"))
    loaded_at = time.perf_counter()
    assert (result.plan.unmatched, result.plan.missing, result.plan.wrong_shape) == ([], [], [])
    assert all(check.passed for check in result.checks) and len(result.checks) == 3
    reference = model.state_dict()
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, reference[name]), name
    with capsys.disabled():
        print(
            f"\nfull-size convert {converted - start:.1f} s (self-checks included), load_checkpoint "
            f"{loaded_at - converted:.1f} s, file {os.path.getsize(official / 'pytorch_model.bin') / 1e9:.2f} GB, "
            f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.1f} GB; "
            + "; ".join(f"{c.component} {c.max_difference:.1e}" for c in result.checks)
        )


def test_rows_are_regular_expressions_on_literal_prefixes(tiny):
    """Each row's prefix is escaped: a '.' in a name never matches another character."""
    config, model = tiny
    state = official_state(model, config, "nested")
    layout = detect_layout({key: tuple(t.shape) for key, t in state.items()})
    for row in layout.rows:
        assert row.pattern.startswith("^")
        assert re.compile(row.pattern)
    assert layout.components["protein_encoder"].root == ""
