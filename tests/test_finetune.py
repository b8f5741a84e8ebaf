"""`isoformer finetune`: splits, batch plan, training machinery, the run folder, resume, torchrun, bad inputs."""

import gzip
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from cli_helpers import run_torchrun
from isoformer_cli.cli.main import cli
from isoformer_cli.errors import InputError
from isoformer_cli.formats.metrics_table import read_metrics_table
from isoformer_cli.formats.predictions import read_predictions
from isoformer_cli.genomics.genome import Genome
from isoformer_cli.models.checkpoint.check import checkpoint_metadata
from isoformer_cli.models.checkpoint.load import load_checkpoint
from isoformer_cli.models.distribution.locate import demo_checkpoint_path
from isoformer_cli.models.network.build import build_model
from isoformer_cli.models.network.configuration import IsoformerConfig
from isoformer_cli.training.batches import BatchPlan
from isoformer_cli.training.freezing import enable_activation_checkpointing, freeze, parse_freeze, plain_batchnorm
from isoformer_cli.training.model_setup import adapt_modalities, fit_head
from isoformer_cli.training.optim import build_optimizer, fill_missing_gradients, learning_rate, trainable_parameters
from isoformer_cli.training.splits import SplitMember, SplitSpec, assign_splits, gene_fraction, read_split
from isoformer_cli.training.state import load_optimizer_state, optimizer_state_tensors
from isoformer_cli.triples.source import TripleSource, iter_triples

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "example_data"
HUMAN_GENOME = str(EXAMPLES / "hg38_chr16_186964-397118.fa")
HUMAN_GTF = str(EXAMPLES / "hg38_chr16_186964-397118.refGene.gtf")
MOUSE_GENOME = str(EXAMPLES / "chr9.4M.fa.gz")
MOUSE_GTF = str(EXAMPLES / "chr9.4M.gtf.gz")


def transcript_ids(gtf):
    opener = gzip.open if gtf.endswith(".gz") else open
    ids = []
    with opener(gtf, "rt") as stream:
        for line in stream:
            if 'transcript_id "' in line:
                ids.append(line.split('transcript_id "')[1].split('"')[0])
    return list(dict.fromkeys(ids))


def write_expression(path, ids, tissues=("Liver", "Brain"), seed=0, strip_versions=False):
    rng = np.random.default_rng(seed)
    with open(path, "w") as stream:
        stream.write("transcript_id\t" + "\t".join(tissues) + "\n")
        for transcript in ids:
            name = transcript.split(".")[0] if strip_versions else transcript
            stream.write(name + "\t" + "\t".join(f"{rng.exponential(10):.4f}" for _ in tissues) + "\n")
    return str(path)


def finetune(*args, expect=0):
    result = CliRunner().invoke(cli, ["-q", "finetune", *args])
    assert result.exit_code == expect, result.output
    return result


def human_args(run_dir, expression, *extra):
    return ["-o", str(run_dir), "--genome", HUMAN_GENOME, "--annotation", HUMAN_GTF, "--expression", expression,
            "--checkpoint", "demo", "--batch-size", "4", "--micro-batch-size", "2", "--val-fraction", "0.2",
            "--test-fraction", "0.2", "--lr", "1e-3", "--patience", "0", *extra]


@pytest.fixture(scope="module")
def human_expression(tmp_path_factory):
    return write_expression(tmp_path_factory.mktemp("expr") / "expr.tsv", transcript_ids(HUMAN_GTF))


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, human_expression):
    """An uninterrupted 3-epoch run on the human example (9 train / 4 validation / 4 test transcripts)."""
    run_dir = tmp_path_factory.mktemp("runs") / "reference"
    finetune(*human_args(run_dir, human_expression, "--epochs", "3"))
    return run_dir


# ----------------------------------------------------------------------------------------- splits


def mouse_members():
    source = TripleSource(genome=MOUSE_GENOME, annotation=MOUSE_GTF, dna_length=2048)
    with Genome(MOUSE_GENOME) as genome:
        return [SplitMember(t.transcript.transcript_id, t.transcript.gene_id, t.transcript.chrom, t.genome_chrom)
                for t in iter_triples(source, genome)]


def test_gene_split_keeps_isoforms_together_and_ignores_order():
    members = mouse_members()
    spec = SplitSpec(val_fraction=0.3, test_fraction=0.3, seed=5)
    splits = assign_splits(members, spec)
    by_gene = {}
    for member, split in zip(members, splits):
        by_gene.setdefault(member.gene_id, set()).add(split)
    assert all(len(found) == 1 for found in by_gene.values())
    assert len(set(splits)) == 3
    assert any(len([m for m in members if m.gene_id == gene]) >= 3 for gene in by_gene)  # real multi-isoform genes
    reordered = assign_splits(members[::-1], spec)[::-1]
    assert reordered == splits
    assert assign_splits(members, SplitSpec(0.3, 0.3, seed=6)) != splits
    # The hash decides: fraction thresholds are applied to sha256("<seed>:<gene>").
    member = members[0]
    position = gene_fraction(member.gene_id, 5)
    assert splits[0] == ("test" if position < 0.3 else "val" if position < 0.6 else "train")


def test_chromosome_split_uses_contig_aliases():
    members = [SplitMember("a", "g1", "chr1"), SplitMember("b", "g2", "2", "chr2"), SplitMember("c", "g3", "chrX")]
    assert assign_splits(members, SplitSpec(val_chroms=("1",), test_chroms=("chr2",))) == ["val", "test", "train"]
    with pytest.raises(InputError, match="--test-chroms chr7: no selected transcript lies on this contig"):
        assign_splits(members, SplitSpec(test_chroms=("chr7",)))
    with pytest.raises(InputError, match="in both"):
        SplitSpec(val_chroms=("1",), test_chroms=("1",)).check()
    with pytest.raises(InputError, match="must be below 1"):
        SplitSpec(val_fraction=0.6, test_fraction=0.5).check()


# ------------------------------------------------------------------------------------- batch plan


def test_batch_plan_is_the_same_for_any_process_count():
    rows = tuple(range(3, 40))
    single = BatchPlan(rows, batch_size=8, micro_batch_size=2, world_size=1, seed=1)
    double = BatchPlan(rows, batch_size=8, micro_batch_size=2, world_size=2, seed=1)
    assert single.steps_per_epoch == 4 and single.accumulation == 4 and double.accumulation == 2
    one = {(step, index): list(batch) for step, index, batch in single.micro_batches(epoch=2, rank=0)}
    two = {(step, index): list(batch) for rank in (0, 1) for step, index, batch in double.micro_batches(2, rank)}
    assert one == two
    seen = [row for batch in one.values() for row in batch]
    assert len(seen) == len(set(seen)) == 32 and set(seen) <= set(rows)
    assert single.epoch_order(0).tolist() != single.epoch_order(1).tolist()
    assert [s for s, _, _ in single.micro_batches(0, 0, first_step=3)] == [3] * 4
    with pytest.raises(InputError, match="fewer than --batch-size"):
        BatchPlan(rows[:5], batch_size=8, micro_batch_size=2, world_size=1, seed=0)
    with pytest.raises(InputError, match="not a multiple of --micro-batch-size 3"):
        BatchPlan(rows, batch_size=8, micro_batch_size=3, world_size=1, seed=0)


def test_learning_rate_warms_up_then_decays_to_zero():
    rates = [learning_rate(step, 1.0, warmup_steps=4, total_steps=20) for step in range(20)]
    assert rates[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in zip(rates[3:], rates[4:]))
    assert learning_rate(20, 1.0, 4, 20) == pytest.approx(0.0)
    assert learning_rate(12, 1.0, 4, 20) == pytest.approx(0.5)


# ------------------------------------------------------------------------------ model preparation


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return build_model(IsoformerConfig.from_preset("tiny"))


def test_freeze_whole_and_all_but_last_layers(tiny_model):
    specs = parse_freeze(["dna", "rna:1,protein"])
    assert [str(spec) for spec in specs] == ["dna", "rna:1", "protein"]
    frozen = freeze(tiny_model, specs)
    trainable = {name for name, _ in trainable_parameters(tiny_model)}
    assert not any(name.startswith(("dna_encoder.", "protein_encoder.")) for name in trainable)
    assert "rna_encoder.encoder.layer.1.attention.self.query.weight" in trainable
    assert "rna_encoder.encoder.emb_layer_norm_after.weight" in trainable
    assert "rna_encoder.encoder.layer.0.attention.self.query.weight" not in trainable
    assert "rna_encoder.embeddings.word_embeddings.weight" not in trainable
    assert "head.output.weight" in trainable and frozen
    assert [str(spec) for spec in parse_freeze(["encoders:2"])] == ["dna:2", "rna:2", "protein:2"]
    for values, message in ((["dna:x"], "whole number"), (["head"], "unknown encoder"), (["dna", "encoders"], "twice")):
        with pytest.raises(InputError, match=message):
            parse_freeze(values)
    with pytest.raises(InputError, match="has only 2 layers"):
        freeze(build_model(IsoformerConfig.from_preset("tiny")), parse_freeze(["protein:3"]))


def test_official_layer_stacks_are_found_for_freezing_and_checkpointing():
    # Enformer: its 6 convolution-tower stages and 11 transformer blocks are checkpointed; NT and ESM: their layers.
    for overrides, layers in (({}, [6 + 11, 24, 30]), ({"dna_encoder_type": "nucleotide_transformer"}, [24, 24, 30])):
        model = build_model(IsoformerConfig.from_preset("official", **overrides), device="meta")
        assert enable_activation_checkpointing(model) == sum(layers)
        freeze(model, parse_freeze(["encoders:1"]))
        trainable = {name.split(".")[0] for name, _ in trainable_parameters(model)}
        assert trainable == {"dna_encoder", "rna_encoder", "protein_encoder", "aggregation", "head"}


def test_contact_head_never_trains(tiny_model):
    freeze(tiny_model, [])
    assert not any(name.startswith("protein_encoder.contact_head") for name, _ in trainable_parameters(tiny_model))


def test_activation_checkpointing_gives_the_same_gradients(tiny_model):
    config = tiny_model.config
    generator = torch.Generator().manual_seed(1)
    inputs = dict(
        dna_input_ids=torch.randint(0, 4, (2, config.dna_length), generator=generator),
        rna_input_ids=torch.randint(6, 4102, (2, 40), generator=generator),
        protein_input_ids=torch.randint(4, 24, (2, 30), generator=generator),
    )

    def gradients(model):
        model.train()
        plain_batchnorm(model)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.eval()
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        model.zero_grad()
        model(**inputs).predictions.square().sum().backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    reference = gradients(tiny_model)
    # Enformer: 2 conv-tower stages + 2 transformer blocks; 2 NT and 2 ESM layers.
    assert enable_activation_checkpointing(tiny_model) == 8
    checkpointed = gradients(tiny_model)
    assert reference.keys() == checkpointed.keys()
    for name in reference:
        torch.testing.assert_close(checkpointed[name], reference[name], rtol=1e-4, atol=1e-6)


def test_modality_subset_keeps_the_checkpoint_weights(tiny_model):
    reduced = adapt_modalities(tiny_model, "rna,dna", "tiny")
    assert reduced.config.modalities == ["dna", "rna"] and reduced.protein_encoder is None
    assert reduced.aggregation.protein_cross_attention is None
    full = tiny_model.state_dict()
    for name, tensor in reduced.state_dict().items():
        assert torch.equal(tensor, full[name]), name
    assert adapt_modalities(tiny_model, None, "tiny") is tiny_model
    with pytest.raises(InputError, match="fused stream becomes rna"):
        adapt_modalities(tiny_model, "rna,protein", "tiny")
    with pytest.raises(InputError, match="has no protein encoder"):
        adapt_modalities(reduced, "dna,protein", "reduced")


def test_fit_head_maps_tissues_or_builds_a_new_output(tiny_model):
    assert fit_head(tiny_model, ["Liver", "Adipose Tissue"]) == [13, 0]
    with pytest.raises(InputError, match="did you mean 'Liver'"):
        fit_head(tiny_model, ["liver"])
    columns = fit_head(tiny_model, ["A", "B", "C"], new_head=True, bias=[1.0, 2.0, 3.0])
    assert columns == [0, 1, 2] and tiny_model.config.tissues == ["A", "B", "C"]
    assert tiny_model.head.output.weight.shape == (3, tiny_model.config.head_hidden_size)
    assert tiny_model.head.output.bias.tolist() == [1.0, 2.0, 3.0]


def test_optimizer_state_round_trips_through_named_tensors(tiny_model):
    named = trainable_parameters(tiny_model)
    optimizer = build_optimizer(named, lr=1e-3, weight_decay=0.01)
    for parameter in tiny_model.parameters():
        parameter.grad = torch.randn_like(parameter)
    optimizer.step()
    tensors = optimizer_state_tensors(optimizer, named)
    assert set(key.rsplit("/", 1)[1] for key in tensors) == {"step", "exp_avg", "exp_avg_sq"}
    fresh = build_optimizer(named, lr=1e-3, weight_decay=0.01)
    load_optimizer_state(fresh, named, tensors, "state")
    for parameter in tiny_model.parameters():
        for key, value in optimizer.state[parameter].items():
            assert torch.equal(fresh.state[parameter][key], value)
    with pytest.raises(InputError, match="another configuration"):
        load_optimizer_state(fresh, named[:-1], tensors, "state")


def test_missing_gradients_become_zeros():
    parameter = torch.nn.Parameter(torch.ones(3))
    fill_missing_gradients([parameter])
    assert torch.equal(parameter.grad, torch.zeros(3))


def mouse_dataset(settings_overrides=None):
    from isoformer_cli.training.batches import MicroBatches
    from isoformer_cli.inference.prepare import TokenizerSettings

    config = load_checkpoint(demo_checkpoint_path()).config
    source = TripleSource(genome=MOUSE_GENOME, annotation=MOUSE_GTF, dna_length=config.dna_length)
    with Genome(MOUSE_GENOME) as genome:
        triples = list(iter_triples(source, genome))
    settings = TokenizerSettings.for_model_config(config, **(settings_overrides or {}))
    return MicroBatches(triples, np.zeros((len(triples), 2), np.float32), Genome(MOUSE_GENOME), settings, config), triples


def test_micro_batches_fetch_windows_and_mark_absent_modalities():
    dataset, triples = mouse_dataset()
    noncoding = [i for i, t in enumerate(triples) if not t.protein][:3]
    batch = dataset[noncoding]
    assert batch.error is None and batch.rows.tolist() == noncoding
    assert batch.inputs["dna_input_ids"].shape == (3, 2048)
    assert batch.inputs["has_protein"].tolist() == [False] * 3
    assert batch.inputs["protein_input_ids"].tolist() == [[0, 2]] * 3  # <cls><eos> placeholders
    # The model ignores a placeholder: same predictions as with no protein input at all.
    model = load_checkpoint(demo_checkpoint_path())
    with torch.no_grad():
        with_placeholder = model(**batch.inputs).predictions
        without = model(**{k: v for k, v in batch.inputs.items() if not k.startswith("protein")}).predictions
    torch.testing.assert_close(with_placeholder, without)


def test_micro_batch_errors_come_back_as_values():
    dataset, triples = mouse_dataset({"rna_truncation": "error"})
    longest = max(range(len(triples)), key=lambda i: len(triples[i].rna))
    batch = dataset[[longest]]
    assert isinstance(batch.error, InputError) and "more than the model maximum" in str(batch.error)


# ------------------------------------------------------------------------------------ whole runs


def test_run_folder_holds_settings_split_metrics_checkpoints_and_predictions(reference_run, human_expression):
    run = reference_run
    assert sorted(os.listdir(run)) == ["best", "last", "metrics.tsv", "predictions", "run.json", "split.tsv",
                                       "summary.json", "test_metrics.tsv"]
    settings = json.loads((run / "run.json").read_text())
    assert settings["training"]["steps_per_epoch"] == 2 and settings["model"]["output_columns"] == [13, 5]
    assert settings["inputs"]["expression"]["sha256"].startswith("sha256:")
    split = dict(read_split(run / "split.tsv"))
    assert sorted(split.values()).count("train") == 9 and len(split) == 17
    metrics = (run / "metrics.tsv").read_text().splitlines()
    assert metrics[0].split("\t")[:5] == ["epoch", "step", "lr", "train_loss", "val_loss"] and len(metrics) == 4
    assert [line.split("\t")[1] for line in metrics[1:]] == ["2", "4", "6"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] and summary["stop_reason"] == "epochs" and summary["global_step"] == 6
    test = read_predictions(str(run / "predictions" / "test.tsv"))
    assert sorted(row["transcript_id"] for row in test.obs) == sorted(t for t, s in split.items() if s == "test")
    # Run checkpoints are named by their run, and a run from the demo keeps its warning (random encoders).
    assert len(test.tissues) == 30 and test.provenance["checkpoint_id"].startswith("reference/best@")
    assert test.provenance["demo"] is True and test.provenance["demo_derived"] is True
    assert "# WARNING: checkpoint reference/best@sha256:" in (run / "predictions" / "test.tsv").read_text()
    assert (run / "best" / "DEMO_DERIVED").exists() and (run / "last" / "DEMO_DERIVED").exists()
    # Epoch numbers agree (1-based) across metrics.tsv, summary.json and the checkpoints' headers.
    epochs = [int(line.split("\t")[0]) for line in metrics[1:]]
    assert epochs == [1, 2, 3]
    assert checkpoint_metadata(str(run / "best" / "model.safetensors"))["finetune_epoch"] == str(summary["best_epoch"])
    assert checkpoint_metadata(str(run / "last" / "model.safetensors"))["finetune_epoch"] == "3"
    # The best model's test predictions, evaluated by `isoformer evaluate`, give test_metrics.tsv.
    evaluated = run / "evaluated.tsv"
    result = CliRunner().invoke(cli, ["-q", "evaluate", "--predictions", str(run / "predictions" / "test.tsv"),
                                      "--expression", human_expression, "-o", str(evaluated)])
    assert result.exit_code == 0, result.output
    for found, saved in zip(read_metrics_table(evaluated), read_metrics_table(run / "test_metrics.tsv"), strict=True):
        assert (found["scope"], found["tissue"]) == (saved["scope"], saved["tissue"])
        for key in ("r2", "pearson", "spearman"):
            assert found[key] == pytest.approx(saved[key], abs=1e-4)
    evaluated.unlink()
    model = load_checkpoint(run / "best")
    assert model.config.tissues[13] == "Liver"


def test_predictions_of_a_checkpoint_fine_tuned_from_the_demo_warn(reference_run, tmp_path):
    out = tmp_path / "p.tsv"
    result = CliRunner().invoke(cli, ["-q", "predict", "--genome", HUMAN_GENOME, "--annotation", HUMAN_GTF,
                                      "--checkpoint", str(reference_run / "best"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output == (f"isoformer: WARNING: {reference_run / 'best'} was fine-tuned from the bundled DEMO "
                             "checkpoint: its encoders have random weights, its numbers are NOT biological "
                             "predictions\n")
    header = [line for line in out.read_text().splitlines() if line.startswith("# WARNING")]
    assert len(header) == 1 and "was fine-tuned from the DEMO checkpoint, whose encoders have random weights" \
        in header[0] and "reference/best@sha256:" in header[0]
    assert read_predictions(str(out)).provenance["demo_derived"] is True


def same_weights(run_a, run_b, name="model.safetensors"):
    expected, found = load_file(run_a / "last" / name), load_file(run_b / "last" / name)
    assert expected.keys() == found.keys()
    for key in expected:
        if not key.startswith("rng/"):  # generator states: not part of the claim
            assert torch.equal(found[key], expected[key]), key


def test_triples_table_and_gct_input_train_exactly_like_annotation_and_matrix(tmp_path, reference_run,
                                                                            human_expression):
    triples = tmp_path / "triples.tsv"
    result = CliRunner().invoke(cli, ["-q", "triples", "--genome", HUMAN_GENOME, "--annotation", HUMAN_GTF,
                                      "-o", str(triples)])
    assert result.exit_code == 0, result.output
    # The same values as GTEx-style TPM per sample: two samples per tissue, both holding the matrix value.
    lines = [line.split("\t") for line in open(human_expression).read().splitlines()]
    samples = ["L1", "L2", "B1", "B2"]
    gct = ["#1.2", f"{len(lines) - 1}\t4", "Name\tDescription\t" + "\t".join(samples)]
    gct += [f"{row[0]}\tgene\t{row[1]}\t{row[1]}\t{row[2]}\t{row[2]}" for row in lines[1:]]
    (tmp_path / "tpm.gct").write_text("\n".join(gct) + "\n")
    (tmp_path / "samples.tsv").write_text("SAMPID\tSMTS\nL1\tLiver\nL2\tLiver\nB1\tBrain\nB2\tBrain\n")
    run = tmp_path / "run"
    args = human_args(run, str(tmp_path / "tpm.gct"), "--epochs", "3", "--samples", str(tmp_path / "samples.tsv"))
    args[args.index("--annotation"):args.index("--annotation") + 2] = ["--triples", str(triples)]
    finetune(*args)
    assert (run / "split.tsv").read_text() == (reference_run / "split.tsv").read_text()
    same_weights(reference_run, run)


def sheet_of(matrix, folder, tissue_names=None):
    """A sample sheet meaning ``matrix``: per tissue a salmon and a kallisto sample, both holding its values
    as they are written (so their mean is the matrix value exactly)."""
    lines = [line.split("\t") for line in open(matrix).read().splitlines()]
    tissues = lines[0][1:]
    rows = ["sample\tpath\ttissue"]
    for column, tissue in enumerate(tissues, start=1):
        name = (tissue_names or {}).get(tissue, tissue)
        salmon = ["Name\tLength\tEffectiveLength\tTPM\tNumReads"] + [
            f"{row[0]}\t1000\t850.0\t{row[column]}\t10" for row in lines[1:]]
        kallisto = ["target_id\tlength\teff_length\test_counts\ttpm"] + [
            f"{row[0]}\t1000\t850.0\t10\t{row[column]}" for row in lines[1:]]
        (folder / f"{tissue}_quant.sf").write_text("\n".join(salmon) + "\n")
        (folder / f"{tissue}_abundance.tsv").write_text("\n".join(kallisto) + "\n")
        rows += [f"{tissue}_1\t{tissue}_quant.sf\t{name}", f"{tissue}_2\t{tissue}_abundance.tsv\t{name}"]
    (folder / "samples.tsv").write_text("\n".join(rows) + "\n")
    return str(folder / "samples.tsv")


def test_sample_sheet_trains_exactly_like_the_matrix_it_means(tmp_path, human_expression):
    runs = {}
    for name, expression in (("matrix", human_expression), ("sheet", sheet_of(human_expression, tmp_path))):
        runs[name] = tmp_path / name
        finetune(*human_args(runs[name], expression, "--epochs", "2", "--max-steps", "1"))
    assert (runs["sheet"] / "split.tsv").read_text() == (runs["matrix"] / "split.tsv").read_text()
    same_weights(runs["matrix"], runs["sheet"])
    inputs = json.loads((runs["sheet"] / "run.json").read_text())["inputs"]
    assert {"expression", "expression_sample:Liver_1", "expression_sample:Brain_2"} <= set(inputs)


def test_sample_sheet_conditions_outside_the_checkpoint_need_new_head(tmp_path, human_expression):
    expression = sheet_of(human_expression, tmp_path, {"Liver": "Retina", "Brain": "Cornea"})
    result = finetune(*human_args(tmp_path / "run", expression, "--epochs", "1"), expect=1)
    assert "not outputs of the checkpoint" in result.output and "--new-head" in result.output
    finetune(*human_args(tmp_path / "run", expression, "--epochs", "1", "--max-steps", "1", "--new-head"))
    assert json.loads((tmp_path / "run" / "run.json").read_text())["expression"]["tissues"] == ["Retina", "Cornea"]


def test_stop_and_resume_gives_the_same_weights(tmp_path, reference_run, human_expression):
    run = tmp_path / "resumed"
    args = human_args(run, human_expression, "--epochs", "3")
    finetune(*args, "--max-steps", "3")  # stops in the middle of epoch 2
    state = json.loads((run / "last" / "training_state.json").read_text())
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 1, 3)
    assert not (run / "summary.json").exists()
    # Resumed with DataLoader workers (each opens its own genome handle) and extra mid-epoch saves.
    finetune(*args, "--resume", "--save-every", "1", "--num-workers", "1")
    same_weights(reference_run, run)
    same_weights(reference_run, run, "training_state.safetensors")  # AdamW moments and step counts
    strip = lambda path: [line.rsplit("\t", 1)[0] for line in path.read_text().splitlines()]  # noqa: E731
    assert strip(run / "metrics.tsv") == strip(reference_run / "metrics.tsv")
    finetune(*args, "--resume", expect=1)  # finished: nothing to resume


def test_resume_refuses_changed_settings(tmp_path, human_expression):
    run = tmp_path / "run"
    args = human_args(run, human_expression, "--epochs", "2")
    finetune(*args, "--max-steps", "1")
    result = finetune(*[a if a != "1e-3" else "2e-3" for a in args], "--resume", expect=1)
    assert "cannot resume: training.lr is 0.002 now but was 0.001" in result.output
    assert json.loads((run / "last" / "training_state.json").read_text())["global_step"] == 1


def test_ablation_options_modalities_freeze_new_head_early_stopping(tmp_path):
    expression = write_expression(tmp_path / "e.tsv", transcript_ids(HUMAN_GTF), tissues=("Retina", "Cornea", "Lens"))
    run = tmp_path / "ablation"
    finetune(*human_args(run, expression, "--epochs", "4", "--modalities", "dna,rna", "--freeze", "dna:1",
                         "--new-head", "--activation-checkpointing", "--patience", "1", "--lr", "1e-12"))
    summary = json.loads((run / "summary.json").read_text())
    # A learning rate of 1e-12 changes no ranking: the validation Spearman never improves after epoch 1.
    assert summary["stop_reason"] == "early_stopping" and summary["epochs_completed"] == 2
    best = load_checkpoint(run / "best")
    assert best.config.modalities == ["dna", "rna"] and best.config.tissues == ["Retina", "Cornea", "Lens"]
    assert best.protein_encoder is None
    demo = load_checkpoint(demo_checkpoint_path()).state_dict()
    state = load_checkpoint(run / "last").state_dict()
    # Frozen: the DNA stem and first transformer layer. Trainable: its last layer.
    assert torch.equal(state["dna_encoder.enformer.stem.0.weight"], demo["dna_encoder.enformer.stem.0.weight"])
    assert torch.equal(state["dna_encoder.enformer.transformer.0.1.fn.1.weight"],
                       demo["dna_encoder.enformer.transformer.0.1.fn.1.weight"])
    assert not torch.equal(state["dna_encoder.enformer.transformer.1.1.fn.1.weight"],
                           demo["dna_encoder.enformer.transformer.1.1.fn.1.weight"])
    test = read_predictions(str(run / "predictions" / "test.tsv"))
    assert test.tissues == ["Retina", "Cornea", "Lens"]


# --------------------------------------------------------------------------------------- torchrun


def test_torchrun_two_processes_equal_one(tmp_path):
    pytest.importorskip("torch.distributed")
    # The mouse example: many non-coding transcripts, so some micro-batches have no protein at all.
    expression = write_expression(tmp_path / "e.tsv", transcript_ids(MOUSE_GTF), strip_versions=True)
    common = ["-q", "finetune", "--genome", MOUSE_GENOME, "--annotation", MOUSE_GTF, "--expression", expression,
              "--checkpoint", "demo", "--epochs", "1", "--batch-size", "8", "--micro-batch-size", "2",
              "--val-fraction", "0.2", "--test-fraction", "0.2", "--lr", "1e-3"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    single = subprocess.run([sys.executable, "-m", "isoformer_cli", *common, "-o", str(tmp_path / "one")],
                            env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    run_torchrun([*common, "-o", tmp_path / "two"], env, timeout=300)
    one, two = load_file(tmp_path / "one" / "last" / "model.safetensors"), load_file(
        tmp_path / "two" / "last" / "model.safetensors")
    start = load_checkpoint(demo_checkpoint_path()).state_dict()
    assert any(not torch.equal(one[key], start[key]) for key in one)  # it trained
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5, msg=key)
    rows = lambda name: read_metrics_table(tmp_path / name / "test_metrics.tsv")  # noqa: E731
    for a, b in zip(rows("one"), rows("two")):
        assert a["spearman"] == pytest.approx(b["spearman"], abs=1e-3)


# ------------------------------------------------------------------------------------- bad inputs


@pytest.fixture
def bad_inputs(tmp_path):
    ids = transcript_ids(HUMAN_GTF)
    files = {}
    for name, header, row in (
        ("nan", "transcript_id\tLiver", lambda t: f"{t}\tNA"),
        ("negative", "transcript_id\tLiver", lambda t: f"{t}\t-3"),
        ("other_ids", "transcript_id\tLiver", lambda t: f"ENST{t}\t1"),
        ("unknown_tissue", "transcript_id\tLiverr", lambda t: f"{t}\t1"),
        ("good", "transcript_id\tLiver", lambda t: f"{t}\t{ids.index(t) + 1}"),  # values differ: a Spearman
    ):
        path = tmp_path / f"{name}.tsv"
        path.write_text(header + "\n" + "\n".join(row(t) for t in ids) + "\n")
        files[name] = str(path)
    (tmp_path / "not_a_run").mkdir()
    (tmp_path / "not_a_run" / "keep.txt").write_text("mine")
    return files


@pytest.mark.parametrize("expression, extra, message", [
    ("nan", [], "nan.tsv:2: missing value"),
    ("negative", [], "negative TPM -3"),
    ("other_ids", [], "no transcript of"),
    ("unknown_tissue", [], "did you mean 'Liver'"),
    ("good", ["--batch-size", "16"], "fewer than --batch-size 16"),
    ("good", ["--val-chroms", "chr5"], "--val-chroms chr5: no selected transcript"),
    ("good", ["--freeze", "protein:5"], "has only 2 layers"),
    ("good", ["--modalities", "rna,protein"], "fused stream becomes rna"),
    ("good", ["--checkpoint", "/nonexistent/model"], "checkpoint folder not found"),
    ("good", ["--resume"], "no fine-tuning run to resume"),
    ("good", ["--samples", "good.tsv"], "--samples only goes with a GCT file"),
    ("good", ["--rna-truncation", "error"], "more than the model maximum of 256"),
])
def test_bad_inputs_fail_with_one_line_and_write_nothing(tmp_path, bad_inputs, expression, extra, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))
    args = human_args("run", bad_inputs[expression])
    if "--checkpoint" in extra:
        args[args.index("--checkpoint") + 1] = extra[extra.index("--checkpoint") + 1]
        extra = []
    if "--val-chroms" in extra:  # a chromosome split takes no fractions
        for option in ("--val-fraction", "--test-fraction"):
            del args[args.index(option):args.index(option) + 2]
    result = finetune(*args, *extra, expect=1)
    assert message in result.output, result.output
    assert "Traceback" not in result.output and result.output.count("error:") == 1
    assert sorted(os.listdir(tmp_path)) == before


def test_existing_folders_are_protected(tmp_path, bad_inputs):
    result = finetune(*human_args(tmp_path / "not_a_run", bad_inputs["good"]), expect=1)
    assert "folder exists and is not empty" in result.output
    result = finetune(*human_args(tmp_path / "not_a_run", bad_inputs["good"]), "--force", expect=1)
    assert "holds no run.json" in result.output
    assert (tmp_path / "not_a_run" / "keep.txt").read_text() == "mine"


def test_cuda_request_without_cuda_is_an_error(tmp_path, bad_inputs):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    result = finetune(*human_args(tmp_path / "run", bad_inputs["good"]), "--device", "cuda", expect=1)
    assert "CUDA is not available" in result.output and not (tmp_path / "run").exists()


@pytest.mark.parametrize("extra, message", [
    (["--triples", "t.tsv"], "exactly one of --annotation and --triples"),
    (["--resume", "--force"], "give one of them"),
    (["--val-chroms", "chr16", "--val-fraction", "0.1"], "--val-fraction is for the gene split"),
    (["--batch-size", "5"], "not a multiple of --micro-batch-size 2"),
    (["--freeze", "liver"], "unknown encoder"),
    (["--values", "log2"], "Invalid value for '--values'"),
    (["--region", "chr16:5-1"], "--region"),
])
def test_bad_option_combinations_are_usage_errors(tmp_path, bad_inputs, extra, message):
    result = finetune(*human_args(tmp_path / "run", bad_inputs["good"]), *extra, expect=2)
    assert message in result.output
    assert not (tmp_path / "run").exists()
