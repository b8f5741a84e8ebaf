"""Throughput of ``isoformer predict`` against a naive per-isoform loop, and its memory at scale.

    python benchmarks/predict.py                 # both example datasets, demo (tiny) checkpoint
    python benchmarks/predict.py --official-gpu  # also the official preset in bf16 on CUDA

Three measurements, printed as tables:

1. Isoforms per second, both example datasets, tiny preset (the bundled demo checkpoint), in
   one process: the engine (chunks, each distinct DNA window / RNA / protein encoded once,
   vectorised tokenizers, length-sorted token-budget batches) against a naive loop that does
   what the official notebook does: official-style ``transformers.EsmTokenizer`` tokenisation
   and one isoform at a time through the model, every encoder run for every isoform. Both
   start from built triples and fetch DNA windows themselves; the model is loaded once. The
   two must agree (max |difference| printed).
2. How much the engine shares: distinct windows / RNAs / proteins per transcript.
3. Peak RSS of ``isoformer predict`` (a subprocess, ``os.wait4``) on the mouse annotation at 1x
   and 20x its size (replicated under new transcript ids): memory must stay flat.

With ``--official-gpu`` (needs CUDA): the official preset with random weights in bf16 on
synthetic full-length isoforms, isoforms per second and the fraction of the GPU's bf16 peak
(from ``--peak-tflops``, e.g. 989 for an H100 SXM dense) that the forward FLOPs reach.
"""

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLES = os.path.join(ROOT, "example_data")
DATASETS = {
    "human chr16 (refGene)": ("hg38_chr16_186964-397118.fa", "hg38_chr16_186964-397118.refGene.gtf"),
    "mouse chr9 (GENCODE)": ("chr9.4M.fa.gz", "chr9.4M.gtf.gz"),
}
TARGET_SPEEDUP = 5.0


def build_triples(genome, source):
    from isoformer_cli.triples.source import iter_triples

    return list(iter_triples(source, genome))


def official_style_tokenizers(folder):
    """``transformers.EsmTokenizer`` over the official vocabularies, as the official code builds them.

    DNA: ``A C G T N <unk>`` (the official model drops the leading token before Enformer);
    RNA: the NT-v2 6-mer vocabulary; protein: the ESM-2 alphabet.
    """
    from transformers import EsmTokenizer

    from isoformer_cli.models.tokenizers import protein_vocabulary, rna_vocabulary

    vocabularies = {"dna": ["A", "C", "G", "T", "N", "<unk>"], "rna": rna_vocabulary(), "protein": protein_vocabulary()}
    tokenizers = {}
    for name, tokens in vocabularies.items():
        path = os.path.join(folder, f"{name}_vocab_list.txt")
        with open(path, "w") as handle:
            handle.write("\n".join(tokens) + "\n")
        tokenizers[name] = EsmTokenizer(path, model_max_length=10**9)
    return tokenizers


def naive_loop(model, genome, triples, tokenizers):
    """One isoform at a time through ``model.forward``, as the official notebook does: the
    official-style tokenizers, every encoder run for every isoform, no batching, no sharing."""
    from isoformer_cli.triples.dna_window import fetch_window

    max_rna, max_protein = model.config.max_rna_tokens + 1, model.config.max_protein_residues + 2
    predictions = []
    with torch.inference_mode():
        for triple in triples:
            window = fetch_window(genome, triple.genome_chrom, triple.window_start, triple.window_end,
                                  triple.transcript.strand)
            dna = torch.tensor([tokenizers["dna"](window, add_special_tokens=True)["input_ids"][1:len(window) + 1]])
            rna_ids = tokenizers["rna"](triple.rna, add_special_tokens=False)["input_ids"]
            rna = torch.tensor([[3] + rna_ids[: max_rna - 1]])
            protein = None
            if triple.protein:
                protein = torch.tensor([tokenizers["protein"](triple.protein, truncation=True,
                                                              max_length=max_protein)["input_ids"]])
            output = model(dna_input_ids=dna, rna_input_ids=rna, protein_input_ids=protein)
            predictions.append(output.predictions[0].float().numpy())
    return np.stack(predictions)


def engine(model, genome, triples, settings, chunk_size=256):
    """The predict engine over the same triples, chunk by chunk (what ``isoformer predict`` runs)."""
    from isoformer_cli.inference.engine import ChunkPredictor
    from isoformer_cli.inference.prepare import prepare_chunk

    predictor = ChunkPredictor(model, torch.device("cpu"))
    stats = {"dna": 0, "rna": 0, "protein": 0}
    predictions = []
    for index, start in enumerate(range(0, len(triples), chunk_size)):
        chunk = prepare_chunk(index, triples[start:start + chunk_size], genome, settings)
        stats["dna"] += len(chunk.dna_tokens)
        stats["rna"] += len(chunk.rna_tokens)
        stats["protein"] += len(chunk.protein_tokens)
        predictions.append(predictor.predict(chunk).predictions)
    return np.concatenate(predictions), stats


def throughput(repeats):
    from isoformer_cli.genomics.genome import Genome
    from isoformer_cli.models.checkpoint import load_checkpoint
    from isoformer_cli.models.locate import demo_checkpoint_path
    from isoformer_cli.inference.prepare import TokenizerSettings
    from isoformer_cli.triples.source import TripleSource

    model = load_checkpoint(demo_checkpoint_path())
    settings = TokenizerSettings.for_model_config(model.config)
    tokenizers = official_style_tokenizers(tempfile.mkdtemp())
    rows, sharing = [], []
    for name, (fasta, annotation) in DATASETS.items():
        source = TripleSource(genome=os.path.join(EXAMPLES, fasta), annotation=os.path.join(EXAMPLES, annotation),
                              dna_length=model.config.dna_length)
        with Genome(source.genome) as genome:
            triples = build_triples(genome, source)
            naive_seconds, engine_seconds = [], []
            for _ in range(repeats):
                began = time.perf_counter()
                naive = naive_loop(model, genome, triples, tokenizers)
                naive_seconds.append(time.perf_counter() - began)
                began = time.perf_counter()
                batched, stats = engine(model, genome, triples, settings)
                engine_seconds.append(time.perf_counter() - began)
        n = len(triples)
        naive_rate, engine_rate = n / min(naive_seconds), n / min(engine_seconds)
        rows.append((name, n, naive_rate, engine_rate, engine_rate / naive_rate, float(np.abs(naive - batched).max())))
        coding = sum(1 for triple in triples if triple.protein)
        sharing.append((name, n, stats["dna"] / n, stats["rna"] / n, stats["protein"] / max(coding, 1)))
    return rows, sharing


def replicated_gtf(folder, copies):
    source = os.path.join(EXAMPLES, "chr9.4M.gtf.gz")
    lines = [line for line in gzip.open(source, "rt") if not line.startswith("#")]
    path = os.path.join(folder, f"mouse_x{copies}.gtf")
    with open(path, "w") as out:
        for copy in range(copies):
            for line in lines:
                out.write(line.replace('transcript_id "', f'transcript_id "copy{copy}_'))
    return path


def peak_rss(copies, folder):
    """Wall seconds and peak RSS (MB) of ``isoformer predict`` on the mouse annotation x copies."""
    gtf = replicated_gtf(folder, copies)
    command = [sys.executable, "-m", "isoformer_cli", "-q", "predict", "--checkpoint", "demo",
               "--genome", os.path.join(EXAMPLES, "chr9.4M.fa.gz"), "--annotation", gtf,
               "-o", os.path.join(folder, f"out_x{copies}.tsv")]
    began = time.perf_counter()
    process = subprocess.Popen(command, stderr=subprocess.PIPE)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"predict failed:\n{stderr.decode(errors='replace')}")
    rows = sum(1 for line in open(os.path.join(folder, f"out_x{copies}.tsv")) if not line.startswith(("#", "transcript_id")))
    return rows, time.perf_counter() - began, usage.ru_maxrss / 1024


def official_gpu(batch, peak_tflops, isoforms):
    """Official preset, random weights, bf16 on CUDA: isoforms/s and fraction of the bf16 peak."""
    from isoformer_cli.models.checkpoint import build_model
    from isoformer_cli.models.configuration import IsoformerConfig
    from isoformer_cli.inference.engine import ChunkPredictor
    from isoformer_cli.inference.prepare import PreparedChunk

    if not torch.cuda.is_available():
        return None
    device = torch.device("cuda")
    model = build_model(IsoformerConfig.from_preset("official")).to(device).eval()
    rng = np.random.default_rng(0)
    n_params = sum(p.numel() for p in model.parameters())
    # Every isoform distinct (no sharing): the engine's worst case.
    chunk = PreparedChunk(index=0)
    chunk.dna_tokens = [rng.integers(0, 4, model.config.dna_length) for _ in range(isoforms)]
    chunk.rna_tokens = [np.concatenate(([3], rng.integers(6, 4102, 2048))) for _ in range(isoforms)]
    chunk.protein_tokens = [np.concatenate(([0], rng.integers(4, 24, 1000), [2])) for _ in range(isoforms)]
    chunk.obs = [{} for _ in range(isoforms)]
    chunk.dna_of_row = chunk.rna_of_row = chunk.protein_of_row = np.arange(isoforms)
    predictor = ChunkPredictor(model, device, precision="bf16", limits=batch * model.config.dna_length)
    predictor.predict(chunk)  # warm-up
    torch.cuda.synchronize()
    began = time.perf_counter()
    predictor.predict(chunk)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    # Dense forward FLOPs ~ 2 x parameters x tokens per encoder, measured by the profiler instead
    # of guessed: count with torch.utils.flop_counter over one isoform.
    from torch.utils.flop_counter import FlopCounterMode

    one = PreparedChunk(index=0, obs=[{}], dna_tokens=chunk.dna_tokens[:1], rna_tokens=chunk.rna_tokens[:1],
                        protein_tokens=chunk.protein_tokens[:1], dna_of_row=np.arange(1), rna_of_row=np.arange(1),
                        protein_of_row=np.arange(1))
    with FlopCounterMode(display=False) as counter:
        predictor.predict(one)
    flops_per_isoform = counter.get_total_flops()
    rate = isoforms / seconds
    fraction = rate * flops_per_isoform / (peak_tflops * 1e12)
    return n_params, rate, flops_per_isoform, fraction, torch.cuda.max_memory_allocated() / 2**30


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs (default 3)")
    parser.add_argument("--copies", type=int, default=20, help="replication factor of the memory test (default 20)")
    parser.add_argument("--official-gpu", action="store_true", help="also time the official preset in bf16 on CUDA")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="GPU bf16 dense peak (default: H100 SXM)")
    parser.add_argument("--gpu-isoforms", type=int, default=64)
    parser.add_argument("--gpu-batch", type=int, default=16)
    args = parser.parse_args(argv)
    torch.manual_seed(0)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs\n")
    rows, sharing = throughput(args.repeats)
    print("1. Throughput, tiny preset (demo checkpoint), CPU, best of", args.repeats)
    print(f"{'dataset':<24} {'isoforms':>8} {'naive /s':>9} {'engine /s':>10} {'speed-up':>9} {'max |diff|':>11}")
    for name, n, naive_rate, engine_rate, speedup, diff in rows:
        print(f"{name:<24} {n:>8} {naive_rate:>9.1f} {engine_rate:>10.1f} {speedup:>8.1f}x {diff:>11.2e}")
    print(f"target: >= {TARGET_SPEEDUP:.0f}x\n")

    print("2. Sharing: distinct inputs encoded per transcript (protein: per coding transcript)")
    print(f"{'dataset':<24} {'isoforms':>8} {'windows':>8} {'RNAs':>8} {'proteins':>9}")
    for name, n, windows, rnas, proteins in sharing:
        print(f"{name:<24} {n:>8} {windows:>8.2f} {rnas:>8.2f} {proteins:>9.2f}")
    print()

    print("3. Peak RSS of `isoformer predict` (subprocess), mouse annotation replicated")
    print(f"{'copies':>6} {'isoforms':>8} {'wall s':>7} {'peak RSS MB':>12}")
    with tempfile.TemporaryDirectory() as folder:
        measured = [peak_rss(copies, folder) for copies in (1, args.copies)]
    for copies, (n, seconds, rss) in zip((1, args.copies), measured):
        print(f"{copies:>6} {n:>8} {seconds:>7.1f} {rss:>12.0f}")
    print(f"RSS ratio {args.copies}x / 1x: {measured[1][2] / measured[0][2]:.2f} (flat = about 1)\n")

    if args.official_gpu:
        result = official_gpu(args.gpu_batch, args.peak_tflops, args.gpu_isoforms)
        if result is None:
            print("4. Official preset on GPU: skipped (no CUDA device)")
        else:
            n_params, rate, flops, fraction, memory = result
            print("4. Official preset, bf16, CUDA, random weights, every isoform distinct")
            print(f"parameters {n_params:,}; {rate:.2f} isoforms/s; {flops / 1e12:.2f} TFLOP per isoform; "
                  f"{fraction:.1%} of {args.peak_tflops:.0f} TFLOP/s bf16 peak; peak GPU memory {memory:.1f} GiB")


if __name__ == "__main__":
    main()
