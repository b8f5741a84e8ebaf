"""Cost of ``isoformer explain``: integrated gradients per transcript and in-silico mutagenesis per base, each
against a naive loop measured in the same run.

    python benchmarks/explain.py                                   # tiny preset (the bundled demo checkpoint), CPU
    python benchmarks/explain.py --transcripts 2 --steps 16 --ism-bases 10
    python benchmarks/explain.py --preset official --transcripts 1 --steps 4 --skip-ism    # minutes on a CPU
    python benchmarks/explain.py --preset official --device cuda --precision bf16 --transcripts 2

Two tables, on the first ``--transcripts`` isoforms of the human example (chr16 slice, refGene):

1. Integrated gradients, seconds per transcript: the explain engine
   (:class:`~isoformer_cli.inference.explain.Explainer`: Gauss-Legendre steps batched by the memory plan, one
   forward + backward pass per batch) against a naive loop written here from the encoders' attribution API:
   one forward + backward pass per integration step, batch of one, the same nodes and weights, the same
   all-N / ``<mask>`` baseline. Both get the same token ids, model and device, loaded once and outside the
   timing; both include the forward passes at the input and at the baseline. The naive attributions must
   equal the engine's (largest difference relative to the largest attribution, printed, within
   ``--tolerance``), so the two compute the same thing.
2. In-silico mutagenesis, bases per second: ``isoformer explain --method ism`` end to end (``run_explain``:
   checkpoint check, model load, annotation, the variants engine over a VCF of the region's SNVs, the outputs)
   over ``--ism-bases`` bases from the first transcript's TSS, against a naive loop over the same SNVs and the
   same affected transcripts: each transcript's reference predicted once, then one forward pass per mutated
   isoform (its alternative window, RNA and protein built by ``triples.variants``), batch of one, model loaded
   once and outside the timing. Every delta of the naive loop must equal the ``ism.tsv`` delta of the same
   (SNV, transcript, tissue) within ``--tolerance`` (absolute; deltas are log-scale).

Each figure is the best of ``--repeat`` runs, the engine and the naive loop interleaved (per transcript for
IG) so that a change of the machine's load falls on both; ``CPU s`` is this process's CPU time (all threads),
steadier than the wall time on a shared machine. ``ratio`` is the naive loop's seconds over the row's seconds
(the naive row is 1.00x). The official preset
(``--preset official``) runs with random weights (the IG check still holds: both sides run the same model);
its ISM needs a checkpoint folder, so the random model is saved to a temporary folder first (about 1.5 GB).
"""

import argparse
import csv
import os
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from isoformer_cli.app.explain import ExplainConfig, ism_records, isoform_inputs, run_explain  # noqa: E402
from isoformer_cli.errors import DeviceError  # noqa: E402
from isoformer_cli.genomics.genome import Genome  # noqa: E402
from isoformer_cli.inference.explain import Explainer, quadrature, target_of  # noqa: E402
from isoformer_cli.inference.prepare import TokenizerSettings, model_tokens  # noqa: E402
from isoformer_cli.runtime.device import autocast_context  # noqa: E402
from isoformer_cli.runtime.memory import memory_budget  # noqa: E402
from isoformer_cli.runtime.options import RuntimeOptions  # noqa: E402
from isoformer_cli.triples.source import TripleSource, iter_triples  # noqa: E402

GENOME = os.path.join(ROOT, "example_data", "hg38_chr16_186964-397118.fa")
GTF = os.path.join(ROOT, "example_data", "hg38_chr16_186964-397118.refGene.gtf")


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_model(preset, device, folder):
    """``(model, checkpoint)``: the demo checkpoint for ``tiny``; for ``official`` a random-weight model (seed 0),
    saved into ``folder`` only when ISM needs a checkpoint to load (``checkpoint`` is then filled in later)."""
    from isoformer_cli.models.checkpoint.load import load_checkpoint
    from isoformer_cli.models.distribution.locate import demo_checkpoint_path
    from isoformer_cli.models.network.build import build_model
    from isoformer_cli.models.network.configuration import IsoformerConfig

    if preset == "tiny":
        return load_checkpoint(demo_checkpoint_path(), device=device).eval(), "demo"
    torch.manual_seed(0)
    return build_model(IsoformerConfig.from_preset("official")).to(device).eval(), None


def best_of(function, repeat, device):
    """``(wall seconds, CPU seconds, result)``: the least of each over ``repeat`` calls of ``function`` (the CPU
    time of this process, all threads: steadier than the wall time on a shared machine)."""
    wall, cpu, result = float("inf"), float("inf"), None
    for _ in range(repeat):
        synchronize(device)
        began, began_cpu = time.perf_counter(), time.process_time()
        result = function()
        synchronize(device)
        wall = min(wall, time.perf_counter() - began)
        cpu = min(cpu, time.process_time() - began_cpu)
    return wall, cpu, result


def selected_triples(model, count):
    source = TripleSource(genome=GENOME, annotation=GTF, dna_length=model.config.dna_length)
    with Genome(GENOME) as genome:
        triples = []
        for triple in iter_triples(source, genome):
            triples.append(triple)
            if len(triples) == count:
                break
    return triples


# ------------------------------------------------------------------------------------ integrated gradients


class _SetOutput:
    """Forward hook returning ``value`` in place of the layer's output (the naive loop's own)."""

    def __init__(self):
        self.value = None

    def __call__(self, module, inputs, output):
        return None if self.value is None else self.value.to(output.dtype)


def naive_integrated_gradients(model, inputs, steps, tissue_index, device, precision):
    """``(positions, prediction, baseline)`` of one isoform by one forward + backward pass per step.

    ``positions``: ``{modality: (L,) float64}``, ``A_i = sum_c (x_ic - b_ic) sum_k w_k df/de_ic(b + a_k (x - b))``
    with the Gauss-Legendre nodes ``a_k`` and weights ``w_k`` of the engine; ``e`` is each encoder's
    attribution layer, ``b`` its attribution baseline."""
    config = model.config
    ids, real, reference, hooks = {}, {}, {}, {}
    handles = []
    try:
        for modality, tokens in inputs.items():
            encoder, module = config.encoder(modality), getattr(model, f"{modality}_encoder")
            ids[f"{modality}_input_ids"] = torch.as_tensor(tokens, dtype=torch.long, device=device)[None]
            baseline = torch.as_tensor(encoder.attribution_baseline(config, np.asarray(tokens)), dtype=torch.long,
                                       device=device)[None]
            with torch.no_grad():
                real[modality] = encoder.attribution_embedding(module, ids[f"{modality}_input_ids"])[0].float()
                reference[modality] = encoder.attribution_embedding(module, baseline)[0].float()
            hooks[modality] = _SetOutput()
            handles.append(encoder.attribution_layer(module).register_forward_hook(hooks[modality]))

        def target(points):
            for modality, point in points.items():
                hooks[modality].value = point[None]
            with autocast_context(device, precision):
                return target_of(model(**ids).predictions, tissue_index)[0]

        with torch.no_grad():
            prediction, baseline = float(target(real)), float(target(reference))
        alphas, weights = quadrature(steps)
        totals = {modality: torch.zeros_like(value, dtype=torch.float64) for modality, value in real.items()}
        for alpha, weight in zip(alphas.tolist(), weights.tolist()):
            points = {m: (reference[m] + alpha * (real[m] - reference[m])).requires_grad_(True) for m in real}
            with torch.enable_grad():
                target(points).backward()
            for modality, point in points.items():
                totals[modality] += weight * point.grad.double()
        positions = {m: ((real[m] - reference[m]).double() * totals[m]).sum(-1).cpu().numpy() for m in real}
        return positions, prediction, baseline
    finally:
        for handle in handles:
            handle.remove()


def integrated_gradients_table(model, triples, args, device):
    settings = TokenizerSettings.for_model_config(model.config)
    with Genome(GENOME) as genome:
        inputs = [isoform_inputs(triple, genome, settings, model.config)[0] for triple in triples]
    model.requires_grad_(False)
    explainer = Explainer(model, device, args.precision, memory_budget(device, None))
    explainer.explain(inputs[0], None, steps=1)  # warm-up: lazy initialisation outside both timings
    # Interleaved per transcript, best of --repeat each, so that a change of the machine's load falls on both.
    engine_seconds = engine_cpu = naive_seconds = naive_cpu = 0.0
    batched, naive = [], []
    for one in inputs:
        wall, cpu, explanation = best_of(lambda: explainer.explain(one, None, steps=args.steps), args.repeat, device)
        engine_seconds, engine_cpu = engine_seconds + wall, engine_cpu + cpu
        batched.append(explanation)
        wall, cpu, result = best_of(lambda: naive_integrated_gradients(model, one, args.steps, None, device,
                                                                       args.precision), args.repeat, device)
        naive_seconds, naive_cpu = naive_seconds + wall, naive_cpu + cpu
        naive.append(result)
    worst = 0.0
    for explanation, (positions, prediction, baseline) in zip(batched, naive):
        scale = max(float(np.abs(values).max()) for values in explanation.positions.values())
        for modality, values in explanation.positions.items():
            worst = max(worst, float(np.abs(positions[modality] - values).max()) / max(scale, 1e-30))
        worst = max(worst, abs(prediction - explanation.prediction) / max(abs(prediction), 1e-30),
                    abs(baseline - explanation.baseline) / max(abs(baseline), 1e-30))
    n = len(triples)
    print(f"1. Integrated gradients, {args.preset} preset, {args.precision}, {device.type}, {args.steps} steps, "
          f"target mean, {n} transcripts")
    print(f"{'method':<46} {'rows':>5} {'steps/pass':>10} {'seconds':>8} {'s/transcript':>13} {'ratio':>7} "
          f"{'CPU s':>8} {'CPU ratio':>9}")
    per_pass = sorted({explanation.steps_per_batch for explanation in batched})
    print(f"{'naive loop (one forward+backward per step)':<46} {n:>5} {1:>10} {naive_seconds:>8.2f} "
          f"{naive_seconds / n:>13.3f} {1.0:>6.2f}x {naive_cpu:>8.2f} {1.0:>8.2f}x")
    print(f"{'explain engine (steps batched by memory plan)':<46} {n:>5} "
          f"{'/'.join(map(str, per_pass)):>10} {engine_seconds:>8.2f} {engine_seconds / n:>13.3f} "
          f"{naive_seconds / engine_seconds:>6.2f}x {engine_cpu:>8.2f} {naive_cpu / engine_cpu:>8.2f}x")
    errors = [abs(e.completeness_error) / max(abs(e.prediction - e.baseline), 1e-30) for e in batched]
    agree = worst <= args.tolerance
    print(f"naive vs engine: largest difference {worst:.2e} of the largest attribution (tolerance "
          f"{args.tolerance:.0e}): {'equal' if agree else 'NOT equal'}; completeness error, largest: "
          f"{max(errors):.2%} of f(x) - f(b)\n")
    return agree


# ------------------------------------------------------------------------------------------------------ ISM


def naive_ism(model, triples, contig, records, device, precision):
    """``{(pos, alt, transcript_id): (n_tissues,) delta}``: each affected transcript's reference predicted once,
    then one forward pass per mutated isoform."""
    from isoformer_cli.triples.affected import affects
    from isoformer_cli.triples.variants import Allele, alternative_triple, alternative_window

    settings = TokenizerSettings.for_model_config(model.config)

    def predict(window, rna, protein, name):
        arguments = {}
        if model.config.has_dna:
            arguments["dna_input_ids"] = settings.dna.encode(window, name)[0]
        for modality, sequence, tokenizer in (("rna", rna, settings.rna), ("protein", protein, settings.protein)):
            ids, _ = model_tokens(sequence, tokenizer, name)
            if ids is not None:
                arguments[f"{modality}_input_ids"] = ids
        arguments = {key: torch.as_tensor(value, dtype=torch.long, device=device)[None]
                     for key, value in arguments.items()}
        with torch.inference_mode(), autocast_context(device, precision):
            return model(**arguments).predictions[0].double().cpu().numpy()

    deltas = {}
    with Genome(GENOME) as genome:
        references = {}
        for pos, ref, alt in records:
            allele = Allele(contig, pos - 1, ref, alt)
            for triple in triples:
                if triple.genome_chrom != contig or not affects(triple, allele):
                    continue
                name = triple.transcript.transcript_id
                if name not in references:
                    window = isoform_inputs(triple, genome, settings, model.config)[1].get("dna")
                    references[name] = predict(window, triple.rna, triple.protein, name)
                alternative = alternative_triple(triple, allele, genome, model.config.dna_length)
                window = alternative_window(genome, allele, alternative, triple.transcript.strand)
                deltas[(pos, alt, name)] = predict(window, alternative.rna, alternative.protein, name) \
                    - references[name]
    return deltas


def ism_table(model, checkpoint, triples, args, device, folder):
    first = triples[0]
    start = max(first.window_start, first.tss - args.ism_bases // 2) + 1  # 1-based, inclusive
    region = f"{first.genome_chrom}:{start}-{start + args.ism_bases - 1}"
    with Genome(GENOME) as genome:
        contig, records = ism_records(triples, genome, region, args.ism_bases)
    ids = ",".join(triple.transcript.transcript_id for triple in triples)
    runs = iter(range(args.repeat))

    def engine():
        output = os.path.join(folder, f"ism{next(runs)}")
        run_explain(ExplainConfig(source=TripleSource(genome=GENOME, annotation=GTF, transcripts=ids),
                                  checkpoint=checkpoint, output=output, method="ism", region=region,
                                  max_transcripts=len(triples), max_positions=args.ism_bases,
                                  runtime=RuntimeOptions(device=args.device, precision=args.precision),
                                  command_args=("benchmark",)))
        return output

    engine_seconds = naive_seconds = engine_cpu = naive_cpu = float("inf")
    for _ in range(args.repeat):  # interleaved, best of --repeat each
        wall, cpu, output = best_of(engine, 1, device)
        engine_seconds, engine_cpu = min(engine_seconds, wall), min(engine_cpu, cpu)
        wall, cpu, naive = best_of(lambda: naive_ism(model, triples, contig, records, device, args.precision), 1,
                                   device)
        naive_seconds, naive_cpu = min(naive_seconds, wall), min(naive_cpu, cpu)
    with open(os.path.join(output, "ism.tsv"), encoding="utf-8") as handle:
        rows = list(csv.DictReader((line for line in handle if not line.startswith("#")), delimiter="\t"))
    tissues = [name[len("delta:"):] for name in rows[0] if name.startswith("delta:")]
    worst, compared = 0.0, 0
    for row in rows:
        expected = naive.get((int(row["pos"]), row["alt"], row["transcript_id"]))
        values = np.array([float(row[f"delta:{tissue}"]) for tissue in tissues])
        if expected is None:
            worst = np.inf  # a row the naive loop did not score
            continue
        finite = np.isfinite(values)
        worst = max(worst, float(np.abs(values[finite] - expected[finite]).max(initial=0.0)))
        compared += 1
    agree = worst <= args.tolerance and compared == len(naive) == len(rows)
    bases = len({pos for pos, _, _ in records})
    print(f"2. In-silico mutagenesis, {args.preset} preset, {args.precision}, {device.type}: {region}, {bases} "
          f"bases, {len(records)} SNVs, {len(rows)} SNV x transcript rows over {len(triples)} transcripts")
    print(f"{'method':<46} {'rows':>5} {'bases':>6} {'seconds':>8} {'bases/s':>8} {'ratio':>7} {'CPU s':>8} "
          f"{'CPU ratio':>9}")
    print(f"{'naive loop (one forward per mutated isoform)':<46} {len(naive):>5} {bases:>6} "
          f"{naive_seconds:>8.2f} {bases / naive_seconds:>8.2f} {1.0:>6.2f}x {naive_cpu:>8.2f} {1.0:>8.2f}x")
    print(f"{'isoformer explain --method ism (end to end)':<46} {len(rows):>5} {bases:>6} {engine_seconds:>8.2f} "
          f"{bases / engine_seconds:>8.2f} {naive_seconds / engine_seconds:>6.2f}x {engine_cpu:>8.2f} "
          f"{naive_cpu / engine_cpu:>8.2f}x")
    print(f"naive vs ism.tsv: {compared} rows compared, largest |delta difference| {worst:.2e} (tolerance "
          f"{args.tolerance:.0e}): {'equal' if agree else 'NOT equal'}\n")
    return agree


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=("tiny", "official"), default="tiny",
                        help="tiny: the bundled demo checkpoint; official: random weights (slow on a CPU)")
    parser.add_argument("--transcripts", type=int, default=None,
                        help="the first N isoforms of the human example (default: 4 tiny, 1 official)")
    parser.add_argument("--steps", type=int, default=None, help="integration steps (default: 50 tiny, 8 official)")
    parser.add_argument("--ism-bases", type=int, default=None, help="bases mutated (default: 20 tiny, 2 official)")
    parser.add_argument("--skip-ism", action="store_true", help="only the integrated-gradients table")
    parser.add_argument("--skip-ig", action="store_true", help="only the ISM table")
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs of each (default 2)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's; 1 gives steadier figures on a shared machine)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="largest difference allowed between naive and engine (default: 1e-4 fp32, 3e-2 bf16)")
    args = parser.parse_args(argv)
    official = args.preset == "official"
    args.transcripts = args.transcripts or (1 if official else 4)
    args.steps = args.steps or (8 if official else 50)
    args.ism_bases = args.ism_bases or (2 if official else 20)
    args.tolerance = args.tolerance or (1e-4 if args.precision == "fp32" else 3e-2)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average "
          f"{load[0]:.2f}\n")
    agree = True
    with tempfile.TemporaryDirectory(prefix="isoformer-explain-bench-") as folder:
        model, checkpoint = load_model(args.preset, device, folder)
        triples = selected_triples(model, args.transcripts)
        if not args.skip_ig:
            try:
                agree &= integrated_gradients_table(model, triples, args, device)
            except DeviceError as error:  # the memory plan refuses a gradient pass this device cannot hold
                print(f"1. Integrated gradients, {args.preset} preset: not run here: {error}\n")
                agree = False
        if not args.skip_ism:
            if checkpoint is None:
                from isoformer_cli.models.checkpoint.save import save_checkpoint

                checkpoint = os.path.join(folder, "official")
                save_checkpoint(model, checkpoint)
            agree &= ism_table(model, checkpoint, triples, args, device, folder)
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
