"""`isoformer explain`: completeness of integrated gradients, saliency against finite differences, batching by
the memory plan, track coordinates on both strands, cross-attention weights, ISM equal to `isoformer variants`,
a planted motif, bad inputs and atomic outputs.

Engine checks use tiny random models whose biases are drawn at random too: with zero biases (a fresh model) the
all-N DNA baseline puts LayerNorms at their singular point, where the path integral needs far more steps (the
reported completeness error shows it). Command-level checks run the bundled demo checkpoint on the human example.
"""

import csv
import os
import shutil

import h5py
import numpy as np
import pytest
import torch
from cli_helpers import HUMAN_GENOME, HUMAN_GTF, invoke

from isoformer_cli.app.explain import ExplainConfig, run_explain, spread
from isoformer_cli.errors import DeviceError, InputError
from isoformer_cli.genomics.genome import Genome
from isoformer_cli.inference.explain import Explainer
from isoformer_cli.inference.memory_plan import gradient_steps_per_batch
from isoformer_cli.models.checkpoint.save import save_checkpoint
from isoformer_cli.models.network.configuration import IsoformerConfig
from isoformer_cli.models.network.modeling import IsoformerModel
from isoformer_cli.models.network.tokenizers import RnaTokenizer
from isoformer_cli.runtime.memory import MemoryBudget
from isoformer_cli.triples.source import TripleSource, iter_triples

CPU = torch.device("cpu")
BIG = MemoryBudget(bytes=8 << 30, source="test")
PLUS, MINUS, NONCODING = "NM_001176", "NM_003502", "NR_024453"
COMPLEMENT = str.maketrans("ACGT", "TGCA")


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    fields = dict(dna_length=512, enformer_target_length=32)
    fields.update(overrides)
    model = IsoformerModel(IsoformerConfig.from_preset("tiny", **fields)).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0.0, 0.1)
    return model


def tiny_inputs(config, seed=0, rna_bases=120, residues=20):
    rng = np.random.default_rng(seed)
    inputs = {"dna": config.encoder("dna").tokenizer(config).encode("".join(rng.choice(list("ACGT"), config.dna_length)))[0],
              "rna": config.encoder("rna").tokenizer(config).encode("".join(rng.choice(list("ACGTN"), rna_bases)))[0]}
    if residues:
        protein = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), residues))
        inputs["protein"] = config.encoder("protein").tokenizer(config).encode(protein)[0]
    return inputs


@pytest.fixture(scope="module")
def model():
    return tiny_model()


# ------------------------------------------------------------------------------------------- engine


@pytest.mark.parametrize("target, residues", [(None, 20), (3, 20), (None, 0)])
def test_integrated_gradients_complete_within_one_percent(model, target, residues):
    inputs = tiny_inputs(model.config, residues=residues)
    explanation = Explainer(model, CPU, "fp32", BIG).explain(inputs, target, steps=50)
    difference = explanation.prediction - explanation.baseline
    total = sum(values.sum() for values in explanation.positions.values())
    assert abs(total - difference) <= 0.01 * abs(difference)
    assert explanation.completeness_error == pytest.approx(total - difference)
    assert set(explanation.positions) == set(inputs)
    # Special tokens are the same in the baseline: they get nothing.
    assert explanation.positions["rna"][0] == 0
    if residues:
        assert explanation.positions["protein"][0] == 0 and explanation.positions["protein"][-1] == 0


def test_steps_are_batched_by_the_memory_plan_without_changing_the_result(model):
    inputs = tiny_inputs(model.config)
    lengths = {modality: len(ids) for modality, ids in inputs.items()}
    one_step = gradient_steps_per_batch(model.config, lengths, CPU, "fp32", BIG, 1)
    assert one_step == 1
    whole = Explainer(model, CPU, "fp32", BIG).explain(inputs, None, steps=12)
    assert whole.steps_per_batch == 12
    # A budget that holds about three steps per pass (the CPU batch share is half the budget).
    per_step = 1.25 * 1.25 * sum(model.config.encoder(m).training_activation_bytes(model.config, 1, n)
                                 for m, n in lengths.items())
    small = MemoryBudget(bytes=int(2 * 3.5 * per_step * 1.6), source="test")
    batched = Explainer(model, CPU, "fp32", small).explain(inputs, None, steps=12)
    assert 1 < batched.steps_per_batch < 12
    for modality in inputs:
        np.testing.assert_allclose(batched.positions[modality], whole.positions[modality], rtol=1e-4, atol=1e-9)


def test_a_budget_below_one_gradient_pass_is_refused(model):
    with pytest.raises(DeviceError, match="one gradient pass of this isoform needs"):
        Explainer(model, CPU, "fp32", MemoryBudget(bytes=1 << 16, source="--max-memory 64K")).explain(
            tiny_inputs(model.config), None, steps=4)


def test_saliency_equals_finite_differences():
    model = tiny_model(seed=1).double()
    inputs = tiny_inputs(model.config, seed=1)
    explainer = Explainer(model, CPU, "fp32", BIG)
    saliency = explainer.explain(inputs, 5, method="saliency")
    assert saliency.completeness_error is None and saliency.steps == 1
    real, reference = explainer.embeddings(inputs)
    # Central differences in float64 along the input's own direction at one position (its attribution is
    # that directional derivative); the step balances truncation (h^2) against rounding.
    step = 1e-4
    for modality, positions in (("dna", (3, 250, 500)), ("rna", (1, 7, 15)), ("protein", (1, 10, 20))):
        for position in positions:
            direction = torch.zeros_like(real[modality])
            direction[position] = real[modality][position] - reference[modality][position]
            up = explainer.target_at(inputs, {modality: real[modality] + step * direction}, 5)
            down = explainer.target_at(inputs, {modality: real[modality] - step * direction}, 5)
            assert saliency.positions[modality][position] == pytest.approx((up - down) / (2 * step), rel=1e-4,
                                                                           abs=1e-10)


def test_cross_attention_weights_reproduce_the_fused_kernel(model):
    inputs = tiny_inputs(model.config)
    explainer = Explainer(model, CPU, "fp32", BIG)
    seen = {}

    def keep(name):
        def hook(module, args, output):
            seen[name] = (module, [arg.detach() for arg in args[:3]], output.detach())
        return hook

    handles = [model.aggregation.rna_cross_attention.register_forward_hook(keep("rna")),
               model.aggregation.protein_cross_attention.register_forward_hook(keep("protein"))]
    try:
        weights = explainer.cross_attention_weights(inputs)
    finally:
        for handle in handles:
            handle.remove()
    assert set(weights) == {"rna", "protein"}
    for name, (block, (hidden, context, _), output) in seen.items():
        heads, bins, keys = weights[name].shape
        assert (heads, keys) == (block.num_heads, len(inputs[name])) and bins == hidden.shape[1]
        np.testing.assert_allclose(weights[name].sum(-1), 1.0, rtol=1e-5)
        value = block._split_heads(block.value(context))[0]
        attended = torch.einsum("hnm,hmd->nhd", torch.as_tensor(weights[name]), value).reshape(bins, -1)
        np.testing.assert_allclose((block.dense(attended) + hidden[0]).numpy(), output[0].numpy(), atol=1e-5)


def test_rna_tokens_are_spread_over_their_bases():
    tokenizer = RnaTokenizer(max_tokens=3, truncation="keep_end")
    sequence = "ACGTACNGGGTTTCCA"  # 6-mer, N, 6-mer, 3 single bases: 5 tokens, the last 3 kept
    spans = tokenizer.token_spans(sequence)
    assert spans.tolist() == [[13, 14], [14, 15], [15, 16]]
    full = RnaTokenizer(max_tokens=10).token_spans(sequence)
    assert full.tolist() == [[0, 6], [6, 7], [7, 13], [13, 14], [14, 15], [15, 16]]
    values = spread(np.array([0.0, 6.0, 1.0, 3.0, 1.0, 1.0, 1.0]), np.concatenate([[[-1, -1]], full]),
                    len(sequence))
    np.testing.assert_allclose(values[:6], 1.0)
    assert values[6] == 1.0 and values[7:13].sum() == pytest.approx(3.0) and values.sum() == pytest.approx(13.0)
    assert np.isnan(spread(np.array([1.0]), np.array([[0, 1]]), 3)[1:]).all()


# ----------------------------------------------------------------------------------- the command


def _table(path):
    with open(path, encoding="utf-8") as handle:
        return list(csv.DictReader((line for line in handle if not line.startswith("#")), delimiter="\t"))


def _track(path):
    with open(path, encoding="utf-8") as handle:
        lines = [line.split() for line in handle if not line.startswith("track")]
    return [(chrom, int(start), int(end), float(value)) for chrom, start, end, value in lines]


@pytest.fixture(scope="module")
def human(tmp_path_factory):
    folder = tmp_path_factory.mktemp("explain")
    genome = str(folder / "genome.fa")
    shutil.copy(HUMAN_GENOME, genome)
    out = folder / "out"
    result = invoke("explain", "--genome", genome, "--annotation", HUMAN_GTF, "--checkpoint", "demo",
                    "--transcripts", f"{PLUS},{MINUS},{NONCODING}", "--method", "saliency", "-o", out)
    assert result.exit_code == 0, result.output
    source = TripleSource(genome=genome, annotation=HUMAN_GTF, dna_length=2048,
                          transcripts=f"{PLUS},{MINUS},{NONCODING}")
    with Genome(genome) as opened:
        triples = {triple.transcript.transcript_id: triple for triple in iter_triples(source, opened)}
    table = folder / "triples.tsv"
    result = invoke("triples", "--genome", genome, "--annotation", HUMAN_GTF, "--dna-length", 2048,
                    "--transcripts", f"{PLUS},{MINUS},{NONCODING}", "-o", table)
    assert result.exit_code == 0, result.output
    return {"out": out, "genome": genome, "triples": triples, "table": {row["transcript_id"]: row
                                                                        for row in _table(table)}}


@pytest.mark.parametrize("transcript_id", [PLUS, MINUS, NONCODING])
def test_tracks_lie_on_the_window_and_the_exons_of_the_triples_table(human, transcript_id):
    row = human["table"][transcript_id]
    dna = _track(human["out"] / "tracks" / f"{transcript_id}.dna.bedGraph")
    with Genome(human["genome"]) as genome:
        length = genome.length(row["chrom"])
        starts = [start for _, start, _, _ in dna]
        assert starts == list(range(max(0, int(row["window_start"])), min(length, int(row["window_end"]))))
        assert all(end == start + 1 and chrom == row["chrom"] for chrom, start, end, _ in dna)
        rna = _track(human["out"] / "tracks" / f"{transcript_id}.rna.bedGraph")
        bases = "".join(genome.fetch(row["chrom"], start, end).upper() for _, start, end, _ in rna)
    assert [start for _, start, _, _ in rna] == sorted(start for _, start, _, _ in rna)
    spliced = bases if row["strand"] == "+" else bases.translate(COMPLEMENT)[::-1]
    # The RNA track covers exactly the bases the model reads: the RNA from its 5' end (the demo reads at most
    # 256 tokens, keep_start).
    assert row["rna"].startswith(spliced) and len(spliced) == min(len(row["rna"]), 256 * 6)


def test_bigwig_tracks_hold_the_bedgraph_values(human):
    pyBigWig = pytest.importorskip("pyBigWig")
    for transcript_id in (PLUS, MINUS):
        for kind in ("dna", "rna"):
            lines = _track(human["out"] / "tracks" / f"{transcript_id}.{kind}.bedGraph")
            handle = pyBigWig.open(str(human["out"] / "tracks" / f"{transcript_id}.{kind}.bw"))
            try:
                chrom = lines[0][0]
                assert handle.chroms(chrom) == 210155
                intervals = handle.intervals(chrom)
            finally:
                handle.close()
            assert [(start, end) for start, end, _ in intervals] == [(start, end) for _, start, end, _ in lines]
            np.testing.assert_allclose([value for _, _, value in intervals], [line[3] for line in lines],
                                       rtol=1e-5, atol=1e-30)


def test_summary_regions_and_arrays_agree(human):
    summary = {row["transcript_id"]: row for row in _table(human["out"] / "summary.tsv")}
    regions = _table(human["out"] / "regions.tsv")
    assert set(summary) == {PLUS, MINUS, NONCODING}
    assert summary[NONCODING]["protein_attribution"] == "." and summary[PLUS]["protein_attribution"] != "."
    assert summary[PLUS]["completeness_error"] == "."  # saliency claims no completeness
    with h5py.File(human["out"] / "attributions.h5") as handle:
        assert "protein" not in handle["transcripts"][NONCODING]
        for transcript_id, row in summary.items():
            group = handle["transcripts"][transcript_id]
            for modality in ("dna", "rna"):
                total = sum(float(region["attribution"]) for region in regions
                            if region["transcript_id"] == transcript_id and region["modality"] == modality)
                assert float(row[f"{modality}_attribution"]) == pytest.approx(total, rel=1e-4, abs=1e-9)
                assert np.nansum(group[modality][()]) == pytest.approx(total, rel=1e-4, abs=1e-9)
            assert group.attrs["prediction"] == pytest.approx(float(row["prediction"]), rel=1e-5)
    plus_regions = {region["region"] for region in regions if region["transcript_id"] == PLUS}
    assert {"upstream", "5utr", "cds", "3utr", "intron", "protein"} <= plus_regions
    assert {region["region"] for region in regions if region["transcript_id"] == NONCODING
            and region["modality"] == "rna"} == {"exon"}
    attention = _table(human["out"] / "attention.tsv")
    assert {row["block"] for row in attention if row["transcript_id"] == PLUS} == {"rna", "protein"}
    assert {row["block"] for row in attention if row["transcript_id"] == NONCODING} == {"rna"}
    head = [row for row in attention if row["transcript_id"] == PLUS and row["block"] == "rna" and row["head"] == "0"]
    parts = sum(float(row["weight"]) for row in head if row["region"] in ("5utr", "cds", "3utr", "special_tokens"))
    exons = sum(float(row["weight"]) for row in head if row["region"].startswith("exon_"))
    special = next(float(row["weight"]) for row in head if row["region"] == "special_tokens")
    assert parts == pytest.approx(1.0, abs=1e-4) and exons + special == pytest.approx(1.0, abs=1e-4)


def _explain(tmp_path, **fields):
    source = TripleSource(genome=HUMAN_GENOME, annotation=HUMAN_GTF, transcripts=fields.pop("transcripts", PLUS))
    return run_explain(ExplainConfig(source=source, checkpoint="demo", output=str(tmp_path / "out"), **fields))


def test_ism_equals_isoformer_variants_on_the_same_snvs(human, tmp_path):
    triple = human["triples"][MINUS]
    tss = triple.tss + 1
    region = f"chr16:{tss - 1}-{tss + 1}"
    result = invoke("explain", "--genome", human["genome"], "--annotation", HUMAN_GTF, "--checkpoint", "demo",
                    "--transcripts", MINUS, "--method", "ism", "--region", region, "-o", tmp_path / "ism")
    assert result.exit_code == 0, result.output
    ism = _table(tmp_path / "ism" / "ism.tsv")
    with Genome(human["genome"]) as genome:
        reference = genome.fetch("chr16", tss - 2, tss + 1).upper()
    vcf = tmp_path / "snvs.vcf"
    with open(vcf, "w") as out:
        out.write("##fileformat=VCFv4.2\n##contig=<ID=chr16,length=210155>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\t"
                  "FILTER\tINFO\n")
        for offset, ref in enumerate(reference):
            for alt in "ACGT".replace(ref, ""):
                out.write(f"chr16\t{tss - 1 + offset}\t.\t{ref}\t{alt}\t.\t.\t.\n")
    result = invoke("variants", "--genome", human["genome"], "--annotation", HUMAN_GTF, "--checkpoint", "demo",
                    "--transcripts", MINUS, "-I", vcf, "-O", tmp_path / "out.vcf", "--table", tmp_path / "v.tsv")
    assert result.exit_code == 0, result.output
    variants = _table(tmp_path / "v.tsv")
    assert len(ism) == len(variants) == 9
    tissues = [name[len("delta:"):] for name in ism[0] if name.startswith("delta:")]
    by_key = {(row["pos"], row["alt"], row["transcript_id"]): row for row in variants}
    for row in ism:
        other = by_key[(row["pos"], row["alt"], row["transcript_id"])]
        assert list(row) == list(other)
        for tissue in tissues:
            assert float(row[f"delta:{tissue}"]) == pytest.approx(float(other[f"delta:{tissue}"]), abs=1e-5)
    track = _track(tmp_path / "ism" / "tracks" / f"{MINUS}.ism.bedGraph")
    assert [start for _, start, _, _ in track] == [tss - 2, tss - 1, tss]
    for _, start, _, value in track:
        changes = [abs(np.mean([float(row[f"delta:{t}"]) for t in tissues])) for row in ism
                   if int(row["pos"]) == start + 1]
        assert value == pytest.approx(max(changes), rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("fields, message", [
    (dict(target="Brainn"), "--target 'Brainn' is not a tissue of this checkpoint"),
    (dict(method="ism", region="chr16:1-100"), "outside the DNA window of every selected transcript"),
    (dict(method="ism", region="chr16:1-210000", max_positions=100), "more than --max-positions 100"),
    (dict(transcripts=f"{PLUS},{MINUS}", max_transcripts=1), "more than --max-transcripts 1"),
    (dict(transcripts="NM_nothing"), "none of the 1 requested transcript ids"),
])
def test_bad_inputs_are_refused_before_any_output(tmp_path, fields, message):
    with pytest.raises(InputError, match=message):
        _explain(tmp_path, **fields)
    assert not os.path.exists(tmp_path / "out" / "summary.tsv")
    assert not [name for name in os.listdir(tmp_path / "out") if name.startswith(".explain-partial")] \
        if os.path.exists(tmp_path / "out") else True


@pytest.mark.parametrize("args, message", [
    (["--method", "ism"], "--method ism needs --region"),
    (["--region", "chr16:1-10"], "--region is the region of --method ism"),
    (["--steps", "0"], "--steps must be at least 1"),
])
def test_bad_options_are_usage_errors(tmp_path, args, message):
    result = invoke("explain", "--genome", HUMAN_GENOME, "--annotation", HUMAN_GTF, "--checkpoint", "demo",
                    "--transcripts", PLUS, "-o", tmp_path / "out", *args)
    assert result.exit_code == 2 and message in result.output


def test_a_failed_run_leaves_nothing_in_the_folder(tmp_path, monkeypatch):
    calls = []

    def fail(self, *args, **kwargs):
        if calls:
            raise InputError("stop")
        calls.append(1)
        return original(self, *args, **kwargs)

    original = Explainer.explain
    monkeypatch.setattr(Explainer, "explain", fail)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="stop"):
        _explain(tmp_path, transcripts=f"{PLUS},{MINUS}", steps=2)
    assert os.listdir(tmp_path / "out") == ["keep.txt"]


def test_plot_writes_one_png_per_transcript(tmp_path):
    pytest.importorskip("matplotlib")
    _explain(tmp_path, method="saliency", plot=True)
    with open(tmp_path / "out" / "plots" / f"{PLUS}.png", "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_is_a_clear_error(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    with pytest.raises(InputError, match="--plot needs matplotlib"):
        _explain(tmp_path, plot=True)


# --------------------------------------------------------------------------------------- planted motif

MOTIF = "GATTAC"


def _train_motif_model(seed=0):
    """An RNA-only tiny model trained to predict 1 when the RNA holds MOTIF (as one 6-mer token), else 0."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    config = IsoformerConfig.from_preset("tiny", modalities="rna", dna_length=512, enformer_target_length=32,
                                         max_rna_tokens=64, nt_max_position_embeddings=66)
    model = IsoformerModel(config)
    tokenizer = RnaTokenizer(max_tokens=64)

    def sample(has):
        bases = list(rng.choice(list("ACGT"), 240))
        if has:
            start = int(rng.integers(0, 40)) * 6
            bases[start:start + 6] = MOTIF
        text = "".join(bases)
        return text if has else text.replace(MOTIF, "CCCCCC")

    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(80):
        has = rng.random(16) < 0.5
        ids = torch.as_tensor(np.stack([tokenizer.encode(sample(flag))[0] for flag in has]))
        labels = torch.as_tensor(has, dtype=torch.float32)[:, None].expand(-1, config.n_tissues)
        loss = model(rna_input_ids=ids, labels=labels).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


def test_a_planted_three_prime_utr_motif_gets_the_top_rna_attributions(tmp_path):
    rng = np.random.default_rng(7)
    stops = {"TAA", "TAG", "TGA"}
    codons = [a + b + c for a in "ACGT" for b in "ACGT" for c in "ACGT" if a + b + c not in stops]
    # A minus-strand transcript of two exons, genomic [800, 920) then [600, 700) in RNA order: RNA 220 bases,
    # CDS [30, 120) with its stop codon, 3' UTR [120, 220), MOTIF at RNA [150, 156) (a token boundary).
    rna = list("".join(rng.choice(list("ACGT"), 30)) + "ATG" + "".join(rng.choice(codons, 28)) + "TAA"
               + "".join(rng.choice(list("ACGT"), 100)))
    rna[150:156] = MOTIF
    rna = "".join(rna).replace(MOTIF, "CCCCCC", 1) if "".join(rna).find(MOTIF) < 150 else "".join(rna)
    assert rna.find(MOTIF) == 150 and rna.count(MOTIF) == 1
    genome = list(rng.choice(list("ACGT"), 2000))
    for position, base in enumerate(rna):
        genomic = 919 - position if position < 120 else 699 - (position - 120)
        genome[genomic] = base.translate(COMPLEMENT)
    (tmp_path / "g.fa").write_text(">c\n" + "".join(genome) + "\n")
    attributes = 'gene_id "G"; transcript_id "T";'
    lines = [("exon", 601, 700), ("exon", 801, 920), ("CDS", 804, 890), ("stop_codon", 801, 803)]
    (tmp_path / "a.gtf").write_text("".join(f"c\ttest\t{kind}\t{start}\t{end}\t.\t-\t{0 if kind == 'CDS' else '.'}\t"
                                            f"{attributes}\n" for kind, start, end in lines))
    save_checkpoint(_train_motif_model(), str(tmp_path / "model"))
    source = TripleSource(genome=str(tmp_path / "g.fa"), annotation=str(tmp_path / "a.gtf"))
    run_explain(ExplainConfig(source=source, checkpoint=str(tmp_path / "model"), output=str(tmp_path / "out"),
                              steps=32))
    track = _track(tmp_path / "out" / "tracks" / "T.rna.bedGraph")
    assert len(track) == 220
    top = sorted(track, key=lambda line: -line[3])[:6]
    assert sorted(start for _, start, _, _ in top) == list(range(664, 670))  # RNA [150, 156) on the minus strand
    regions = {row["region"]: float(row["attribution"]) for row in _table(tmp_path / "out" / "regions.tsv")
               if row["modality"] == "rna"}
    assert set(regions) == {"5utr", "cds", "3utr"}
    summary = _table(tmp_path / "out" / "summary.tsv")[0]
    assert summary["dna_attribution"] == "." and summary["protein_attribution"] == "."
    assert abs(float(summary["completeness_error"])) <= 0.01 * abs(float(summary["prediction"])
                                                                    - float(summary["baseline"]))
