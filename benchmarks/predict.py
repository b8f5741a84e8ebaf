"""Throughput of ``isoformer predict`` against the official stack run naively, and its memory at scale.

    python benchmarks/predict.py                 # both example datasets, demo (tiny) checkpoint
    python benchmarks/predict.py --official      # also the official preset on four human isoforms (slow on CPU)
    python benchmarks/predict.py --official-only # only that table
    python benchmarks/predict.py --official-gpu  # also the official preset in bf16 on CUDA
    python benchmarks/predict.py --memory        # only the memory tables (benchmarks/memory_runs.py)

Measurements, printed as tables:

1. Isoforms per second, both example datasets, tiny preset (the bundled demo checkpoint), in one process:
   the engine (chunks, each distinct DNA window / RNA / protein encoded once, vectorised tokenizers,
   length-sorted token-budget batches, our Enformer trunk) against the official stack run the way the official
   notebook runs it: the enformer-pytorch trunk (loaded with the same weights), ``transformers.EsmTokenizer``
   tokenisation and one isoform at a time through the model, every encoder run for every isoform. Both start
   from built triples and fetch DNA windows themselves; the model is loaded once. The two must agree
   (max |difference| printed). Targets: >= 3x on the human example, >= 2x on the mouse example.
2. Engine overhead, same runs: the engine's wall time against the sum of the model work inside it (each
   distinct input's encoder forward, fusion and head), timed around ``encode_dna`` / ``encode_rna`` /
   ``encode_protein`` / ``fuse_and_predict``. The rest is window fetching, tokenisation, batching and
   bookkeeping. Target: <= 10%.
3. How much the engine shares: distinct windows / RNAs / proteins per transcript.
4. Peak RSS of ``isoformer predict`` (a subprocess, ``os.wait4``) on the mouse annotation at 1x
   and 20x its size (replicated under new transcript ids): memory must stay flat.

With ``--official``: the official preset with random weights on the first four isoforms of the human example
(full 196,608-bp windows), one run each of the engine and the naive official stack (needs enformer-pytorch
and about 10 GB of RAM; minutes on a few CPU cores).

With ``--memory``: only the memory tables of ``benchmarks/memory_runs.py`` (tiny preset at 1x, 20x and 200x
the mouse example; official preset on four human isoforms against one forward, and under ``--max-memory 4G``).

With ``--official-gpu`` (needs CUDA): the official preset with random weights in bf16 on
synthetic full-length isoforms, isoforms per second and the fraction of the GPU's bf16 peak
(from ``--peak-tflops``, e.g. 989 for an H100 SXM dense) that the forward FLOPs reach.

The naive baseline needs enformer-pytorch (the ``test`` extra); ``isoformer`` itself does not.
"""

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections import defaultdict

import numpy as np
import torch

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import memory_runs
else:
    from benchmarks import memory_runs

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLES = os.path.join(ROOT, "example_data")
DATASETS = {
    "human chr16 (refGene)": ("hg38_chr16_186964-397118.fa", "hg38_chr16_186964-397118.refGene.gtf"),
    "mouse chr9 (GENCODE)": ("chr9.4M.fa.gz", "chr9.4M.gtf.gz"),
}
TARGET_SPEEDUP = {"human chr16 (refGene)": 3.0, "mouse chr9 (GENCODE)": 2.0}
TARGET_OVERHEAD = 0.10
MODEL_WORK = {"encode_dna": "DNA", "encode_rna": "RNA", "encode_protein": "protein", "fuse_and_predict": "fusion+head"}


def build_triples(genome, source):
    from isoformer_cli.triples.source import iter_triples

    return list(iter_triples(source, genome))


def official_style_tokenizers(folder):
    """``transformers.EsmTokenizer`` over the official vocabularies, as the official code builds them.

    DNA: ``A C G T N <unk>`` (the official model drops the leading token before Enformer);
    RNA: the NT-v2 6-mer vocabulary; protein: the ESM-2 alphabet.
    """
    from transformers import EsmTokenizer

    from isoformer_cli.models.network.tokenizers import protein_vocabulary, rna_vocabulary

    vocabularies = {"dna": ["A", "C", "G", "T", "N", "<unk>"], "rna": rna_vocabulary(), "protein": protein_vocabulary()}
    tokenizers = {}
    for name, tokens in vocabularies.items():
        path = os.path.join(folder, f"{name}_vocab_list.txt")
        with open(path, "w") as handle:
            handle.write("\n".join(tokens) + "\n")
        tokenizers[name] = EsmTokenizer(path, model_max_length=10**9)
    return tokenizers


class OfficialStackDna(torch.nn.Module):
    """The DNA encoder of the official stack: ``enformer_pytorch.Enformer`` (no heads) over enformer-pytorch's own
    one-hot encoding, carrying the same tensors as ``trunk`` (our `EnformerTrunk`)."""

    def __init__(self, config, trunk):
        super().__init__()
        from enformer_pytorch import Enformer, EnformerConfig
        from enformer_pytorch.data import seq_indices_to_one_hot

        from isoformer_cli.models.conversion.encoders.enformer import library_fields

        fields = {key: value for key, value in library_fields(config).items() if key != "use_convnext"}
        self.enformer = Enformer(EnformerConfig(**fields))
        missing, unexpected = self.enformer.load_state_dict(trunk.state_dict(), strict=False)
        # Only the duplicate _trunk.N spelling is "missing": it names the same tensors, now loaded.
        assert not unexpected and all(key.startswith("_trunk.") for key in missing), (missing, unexpected)
        self.enformer.to(next(trunk.parameters()).dtype).eval()
        self.one_hot = seq_indices_to_one_hot

    def forward(self, input_ids, attention_mask=None):
        return self.enformer(self.one_hot(input_ids), return_only_embeddings=True), None


@contextlib.contextmanager
def official_stack(model):
    """``model`` with the official stack's DNA encoder in place of ours (restored on exit)."""
    ours = model.dna_encoder
    model.dna_encoder = OfficialStackDna(model.config, ours.enformer)
    try:
        yield model
    finally:
        model.dna_encoder = ours


@contextlib.contextmanager
def timed_model_work(model, seconds):
    """Adds the wall seconds spent in each of ``MODEL_WORK``'s model methods to ``seconds[label]`` while active."""

    def timed(method, label):
        def run(*args, **kwargs):
            began = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                seconds[label] += time.perf_counter() - began

        return run

    for name, label in MODEL_WORK.items():
        setattr(model, name, timed(getattr(model, name), label))  # instance attribute: shadows the method
    try:
        yield seconds
    finally:
        for name in MODEL_WORK:
            delattr(model, name)


def naive_loop(model, genome, triples, tokenizers):
    """One isoform at a time through ``model.forward``, as the official notebook does: the
    official-style tokenizers, every encoder run for every isoform, no batching, no sharing (``model`` inside
    `official_stack`: the enformer-pytorch trunk)."""
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


def compare(model, genome, triples, settings, tokenizers, repeats):
    """Best-of-``repeats`` wall seconds of the naive official stack and of the engine over ``triples``, the
    engine's model work in its best run, the largest difference of their predictions and the sharing stats."""
    naive_seconds, engine_runs = [], []
    for _ in range(repeats):
        with official_stack(model):
            began = time.perf_counter()
            naive = naive_loop(model, genome, triples, tokenizers)
            naive_seconds.append(time.perf_counter() - began)
        work = defaultdict(float)
        with timed_model_work(model, work):
            began = time.perf_counter()
            batched, stats = engine(model, genome, triples, settings)
            engine_runs.append((time.perf_counter() - began, dict(work)))
    engine_seconds, work = min(engine_runs, key=lambda run: run[0])
    return min(naive_seconds), engine_seconds, work, float(np.abs(naive - batched).max()), stats


def throughput(repeats):
    from isoformer_cli.genomics.genome import Genome
    from isoformer_cli.inference.prepare import TokenizerSettings
    from isoformer_cli.models.checkpoint.load import load_checkpoint
    from isoformer_cli.models.distribution.locate import demo_checkpoint_path
    from isoformer_cli.triples.source import TripleSource

    model = load_checkpoint(demo_checkpoint_path())
    settings = TokenizerSettings.for_model_config(model.config)
    tokenizers = official_style_tokenizers(tempfile.mkdtemp())
    rows, overheads, sharing = [], [], []
    for name, (fasta, annotation) in DATASETS.items():
        source = TripleSource(genome=os.path.join(EXAMPLES, fasta), annotation=os.path.join(EXAMPLES, annotation),
                              dna_length=model.config.dna_length)
        with Genome(source.genome) as genome:
            triples = build_triples(genome, source)
            naive_s, engine_s, work, diff, stats = compare(model, genome, triples, settings, tokenizers, repeats)
        n = len(triples)
        rows.append((name, n, n / naive_s, n / engine_s, naive_s / engine_s, diff))
        overheads.append((name, engine_s, work))
        coding = sum(1 for triple in triples if triple.protein)
        sharing.append((name, n, stats["dna"] / n, stats["rna"] / n, stats["protein"] / max(coding, 1)))
    return rows, overheads, sharing


def official_cpu(isoforms):
    """Official preset, random weights, fp32 on the CPU: the first ``isoforms`` human isoforms, one run each of
    the naive official stack and the engine."""
    from isoformer_cli.genomics.genome import Genome
    from isoformer_cli.inference.prepare import TokenizerSettings
    from isoformer_cli.models.network.build import build_model
    from isoformer_cli.models.network.configuration import IsoformerConfig
    from isoformer_cli.triples.source import TripleSource

    torch.manual_seed(0)
    model = build_model(IsoformerConfig.from_preset("official")).eval()
    settings = TokenizerSettings.for_model_config(model.config)
    tokenizers = official_style_tokenizers(tempfile.mkdtemp())
    fasta, annotation = DATASETS["human chr16 (refGene)"]
    source = TripleSource(genome=os.path.join(EXAMPLES, fasta), annotation=os.path.join(EXAMPLES, annotation),
                          dna_length=model.config.dna_length)
    with Genome(source.genome) as genome:
        triples = build_triples(genome, source)[:isoforms]
        naive_s, engine_s, work, diff, stats = compare(model, genome, triples, settings, tokenizers, repeats=1)
    return len(triples), naive_s, engine_s, work, diff, stats


def print_overheads(overheads):
    labels = list(MODEL_WORK.values())
    print(f"{'dataset':<24} {'engine s':>9} " + " ".join(f"{label:>11}" for label in labels)
          + f" {'model work':>10} {'overhead':>9}")
    for name, engine_s, work in overheads:
        total = sum(work.values())
        print(f"{name:<24} {engine_s:>9.2f} " + " ".join(f"{work.get(label, 0.0):>11.2f}" for label in labels)
              + f" {total:>10.2f} {engine_s / total - 1:>8.1%}")
    print(f"overhead = engine wall s / model work s - 1; target: <= {TARGET_OVERHEAD:.0%}\n")


def official_gpu(batch, peak_tflops, isoforms):
    """Official preset, random weights, bf16 on CUDA: isoforms/s and fraction of the bf16 peak."""
    from isoformer_cli.inference.engine import ChunkPredictor
    from isoformer_cli.inference.prepare import PreparedChunk
    from isoformer_cli.models.network.build import build_model
    from isoformer_cli.models.network.configuration import IsoformerConfig

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


def print_official_gpu(args):
    result = official_gpu(args.gpu_batch, args.peak_tflops, args.gpu_isoforms)
    if result is None:
        print("6. Official preset on GPU: skipped (no CUDA device)")
    else:
        n_params, rate, flops, fraction, memory = result
        print("6. Official preset, bf16, CUDA, random weights, every isoform distinct")
        print(f"parameters {n_params:,}; {rate:.2f} isoforms/s; {flops / 1e12:.2f} TFLOP per isoform; "
              f"{fraction:.1%} of {args.peak_tflops:.0f} TFLOP/s bf16 peak; peak GPU memory {memory:.1f} GiB")


def print_official_cpu(args):
    n, naive_s, engine_s, work, diff, stats = official_cpu(args.official_isoforms)
    print(f"5. Official preset, fp32, CPU, random weights, the first {n} human isoforms, one run each")
    print(f"naive official stack {naive_s:.1f} s ({n / naive_s:.3f} isoforms/s); engine {engine_s:.1f} s "
          f"({n / engine_s:.3f} isoforms/s); speed-up {naive_s / engine_s:.2f}x; max |diff| {diff:.2e}; "
          f"distinct windows {stats['dna']}, RNAs {stats['rna']}, proteins {stats['protein']}")
    print_overheads([("official, human", engine_s, work)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs (default 3)")
    parser.add_argument("--copies", type=int, default=20, help="replication factor of the memory test (default 20)")
    parser.add_argument("--official", action="store_true",
                        help="also the official preset (fp32, CPU) on four human isoforms: engine vs naive official stack")
    parser.add_argument("--official-isoforms", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument("--official-only", action="store_true", help="only the --official table")
    parser.add_argument("--official-gpu", action="store_true", help="also time the official preset in bf16 on CUDA")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="GPU bf16 dense peak (default: H100 SXM)")
    parser.add_argument("--gpu-isoforms", type=int, default=64)
    parser.add_argument("--gpu-batch", type=int, default=16)
    parser.add_argument("--official-gpu-only", action="store_true",
                        help="only the official-preset GPU table (for scripts/gpu-check.sh)")
    parser.add_argument("--memory", action="store_true", help="only the memory tables (benchmarks/memory_runs.py)")
    parser.add_argument("--memory-copies", default="1,20,200",
                        help="replication factors of the tiny memory table (default 1,20,200)")
    parser.add_argument("--official-checkpoint", metavar="DIR",
                        help="official-preset checkpoint for --memory (default: random weights from isoformer init)")
    parser.add_argument("--skip-official", action="store_true", help="--memory without the official-preset table")
    args = parser.parse_args(argv)
    torch.manual_seed(0)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs\n")
    if args.official_gpu_only:
        print_official_gpu(args)
        return
    if args.official_only:
        print_official_cpu(args)
        return
    if args.memory:
        copies = [int(value) for value in args.memory_copies.split(",")]
        with tempfile.TemporaryDirectory() as folder:
            memory_runs.print_tiny(memory_runs.tiny_rows(folder, copies))
            if not args.skip_official:
                memory_runs.print_official(memory_runs.official_rows(folder, args.official_checkpoint))
        return
    rows, overheads, sharing = throughput(args.repeats)
    print("1. Throughput, tiny preset (demo checkpoint), CPU, best of", args.repeats,
          "(naive: official stack, one isoform per forward)")
    print(f"{'dataset':<24} {'isoforms':>8} {'naive /s':>9} {'engine /s':>10} {'speed-up':>9} {'target':>7} "
          f"{'max |diff|':>11}")
    for name, n, naive_rate, engine_rate, speedup, diff in rows:
        print(f"{name:<24} {n:>8} {naive_rate:>9.1f} {engine_rate:>10.1f} {speedup:>8.1f}x "
              f"{TARGET_SPEEDUP[name]:>6.0f}x {diff:>11.2e}")
    print()

    print("2. Engine overhead (the engine runs of table 1, seconds of the best run)")
    print_overheads(overheads)

    print("3. Sharing: distinct inputs encoded per transcript (protein: per coding transcript)")
    print(f"{'dataset':<24} {'isoforms':>8} {'windows':>8} {'RNAs':>8} {'proteins':>9}")
    for name, n, windows, rnas, proteins in sharing:
        print(f"{name:<24} {n:>8} {windows:>8.2f} {rnas:>8.2f} {proteins:>9.2f}")
    print()

    print("4. Peak RSS of `isoformer predict` (subprocess), mouse annotation replicated")
    print(f"{'copies':>6} {'isoforms':>8} {'wall s':>7} {'peak RSS MB':>12}")
    with tempfile.TemporaryDirectory() as folder:
        measured = memory_runs.tiny_rows(folder, (1, args.copies))
    for copies, n, seconds, rss in measured:
        print(f"{copies:>6} {n:>8} {seconds:>7.1f} {rss:>12.0f}")
    print(f"RSS ratio {args.copies}x / 1x: {measured[1][3] / measured[0][3]:.2f} (flat = about 1)\n")

    if args.official:
        print_official_cpu(args)

    if args.official_gpu:
        print_official_gpu(args)


if __name__ == "__main__":
    main()
