"""Throughput of ``isoformer variants`` against a naive loop, and its peak memory at 10k and 100k variants.

    python benchmarks/variants.py                # tiny preset (the bundled demo checkpoint), CPU
    python benchmarks/variants.py --variants 300 --memory-sizes 10000 100000

Two measurements, printed as tables:

1. Variants per second on the mouse example (GENCODE-style, genes with several isoforms), with SNVs and
   1-3 bp indels drawn around TSSs and in exons: the command's engine (``run_variants``: each transcript's
   reference predicted once per gene, alternative rows deduplicated, distinct inputs encoded once per
   chunk, batched under the token budget; the three attribution stages included) against a naive loop
   that predicts reference and alternative per variant x transcript, each as its own forward pass with no
   cache (what a notebook does; no attribution stages). The naive loop gets the same affected pairs and
   the same model, loaded once; the engine's time includes reading the VCF and the annotation.
2. Peak RSS (``os.wait4``) of ``isoformer variants`` in a subprocess on synthetic VCFs of 10k and 100k
   records, each with the same number of scored records around TSSs (``--memory-scored``, default 50) and
   the rest in the N-only first 3 Mb of the slice, which no window reaches: memory must stay flat as the
   VCF grows. (The peak itself is set by the busiest chunk: records per chunk x alternative windows per
   record, under the token budget; a VCF dense in scored variants peaks higher, whatever its length.)
"""

import argparse
import gzip
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLES = os.path.join(ROOT, "example_data")
GENOME = os.path.join(EXAMPLES, "chr9.4M.fa.gz")
ANNOTATION = os.path.join(EXAMPLES, "chr9.4M.gtf.gz")
TARGET_SPEEDUP = 3.0


def _genome_copy(folder):
    path = os.path.join(folder, "genome.fa.gz")
    shutil.copy(GENOME, path)
    return path


def _triples(genome_path, dna_length=2048):
    from isoformer_cli.genomics.genome import Genome
    from isoformer_cli.triples.source import TripleSource, iter_triples

    genome = Genome(genome_path)
    return genome, list(iter_triples(TripleSource(genome=genome_path, annotation=ANNOTATION, dna_length=dna_length),
                                     genome))


def synthetic_variants(genome, triples, count, seed=1, scored=None):
    """``count`` sorted (pos, ref, alt) records: ``scored`` of them (all by default) near TSSs and in exons,
    the rest in the N-only start of the slice, which no window reaches."""
    rng = random.Random(seed)
    sequence = genome.fetch("chr9", 0, genome.length("chr9"))
    records = set()
    scored = count if scored is None else scored
    while len(records) < scored:
        triple = rng.choice(triples)
        if rng.random() < 0.5:
            position = triple.tss + rng.randint(-900, 900)
        else:
            start, end = rng.choice(triple.transcript.exons)
            position = rng.randrange(start, end)
        ref = sequence[position]
        if ref not in "ACGT" or position < 5:
            continue
        kind = rng.random()
        if kind < 0.7:
            records.add((position + 1, ref, rng.choice([base for base in "ACGT" if base != ref])))
        elif kind < 0.85:
            size = rng.randint(1, 3)
            records.add((position + 1, sequence[position:position + size + 1], ref))
        else:
            records.add((position + 1, ref, ref + "".join(rng.choice("ACGT") for _ in range(rng.randint(1, 3)))))
    while len(records) < count:
        position = rng.randrange(10, 2_900_000)
        records.add((position, "N", rng.choice("ACGT")))
    return sorted(records)


def write_vcf(path, records, length):
    with open(path, "w") as out:
        out.write(f"##fileformat=VCFv4.2\n##contig=<ID=chr9,length={length}>\n")
        out.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for number, (pos, ref, alt) in enumerate(records):
            out.write(f"chr9\t{pos}\tv{number}\t{ref}\t{alt}\t.\t.\t.\n")


def engine_rate(folder, genome_path, vcf, n_records):
    from isoformer_cli.app.variants import VariantsConfig, run_variants
    from isoformer_cli.triples.source import TripleSource

    config = VariantsConfig(source=TripleSource(genome=genome_path, annotation=ANNOTATION), checkpoint="demo",
                            vcf=vcf, output=os.path.join(folder, "engine.vcf"),
                            table=os.path.join(folder, "engine.tsv"), command_args=("benchmark",))
    started = time.perf_counter()
    run_variants(config)
    elapsed = time.perf_counter() - started
    return n_records / elapsed, elapsed


def naive_rate(genome, triples, records):
    """Reference and alternative per variant x transcript, one forward pass each, no cache."""
    import numpy as np
    import torch

    from isoformer_cli.inference.engine import ChunkPredictor
    from isoformer_cli.inference.prepare import PreparedChunk, TokenizerSettings
    from isoformer_cli.models.checkpoint.load import load_checkpoint
    from isoformer_cli.models.distribution.locate import resolve_checkpoint
    from isoformer_cli.triples.affected import affects
    from isoformer_cli.triples.dna_window import fetch_window
    from isoformer_cli.triples.variants import (
        Allele,
        TssDeleted,
        alternative_triple,
        alternative_window,
    )

    torch.manual_seed(0)
    model = load_checkpoint(resolve_checkpoint("demo", None), device=torch.device("cpu"))
    predictor = ChunkPredictor(model, torch.device("cpu"))
    settings = TokenizerSettings.for_model_config(model.config)
    length = model.config.dna_length

    def one_row(dna, rna, protein, name):
        chunk = PreparedChunk(index=0, obs=[{}])
        chunk.dna_tokens = [settings.dna.encode(dna, name)[0]]
        chunk.rna_tokens = [settings.rna.encode(rna, name)[0]] if rna else []
        chunk.protein_tokens = [settings.protein.encode(protein, name)[0]] if protein else []
        chunk.dna_of_row = np.array([0])
        chunk.rna_of_row = np.array([0 if rna else -1])
        chunk.protein_of_row = np.array([0 if protein else -1])
        return predictor.predict(chunk).predictions[0]

    pairs = 0
    started = time.perf_counter()
    for pos, ref, alt in records:
        allele = Allele("chr9", pos - 1, ref, alt)
        for triple in triples:
            if not affects(triple, allele):
                continue
            try:
                alternative = alternative_triple(triple, allele, genome, length)
            except TssDeleted:
                continue
            name = triple.transcript.transcript_id
            reference = one_row(fetch_window(genome, "chr9", triple.window_start, triple.window_end,
                                             triple.transcript.strand), triple.rna, triple.protein, name)
            variant = one_row(alternative_window(genome, allele, alternative, triple.transcript.strand),
                              alternative.rna, alternative.protein, name)
            _ = variant - reference
            pairs += 1
    elapsed = time.perf_counter() - started
    return len(records) / elapsed, elapsed, pairs


def peak_rss_mb(folder, genome_path, vcf):
    """Peak resident memory (MB) of ``isoformer variants`` on ``vcf`` in a child process."""
    output = os.path.join(folder, "memory.vcf.gz")
    command = [sys.executable, "-m", "isoformer_cli", "-q", "variants", "--checkpoint", "demo", "-I", vcf,
               "--genome", genome_path, "--annotation", ANNOTATION, "-O", output, "--table",
               os.path.join(folder, "memory.tsv.gz")]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    if status:
        raise SystemExit(f"isoformer variants failed on {vcf} (status {status})")
    return usage.ru_maxrss / 1024, time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", type=int, default=200, help="records for the throughput comparison")
    parser.add_argument("--memory-sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--memory-scored", type=int, default=50, help="scored records in each memory VCF")
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    folder = tempfile.mkdtemp(prefix="isoformer-variants-bench-")
    try:
        genome_path = _genome_copy(folder)
        genome, triples = _triples(genome_path)
        length = genome.length("chr9")
        load = os.getloadavg()
        print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")

        if args.variants:
            records = synthetic_variants(genome, triples, args.variants)
            vcf = os.path.join(folder, "throughput.vcf")
            write_vcf(vcf, records, length)
            engine, engine_time = engine_rate(folder, genome_path, vcf, len(records))
            naive, naive_time, pairs = naive_rate(genome, triples, records)
            print("\n| method | records | variant x transcript pairs | seconds | variants / s |")
            print("|---|---:|---:|---:|---:|")
            print(f"| naive loop (ref + alt per pair, no cache) | {len(records)} | {pairs} | {naive_time:.1f} | "
                  f"{naive:.2f} |")
            print(f"| isoformer variants (3 attribution stages) | {len(records)} | {pairs} | {engine_time:.1f} | "
                  f"{engine:.2f} |")
            speedup = engine / naive
            verdict = "met" if speedup >= TARGET_SPEEDUP else "NOT met"
            print(f"\nspeed-up {speedup:.1f}x (target >= {TARGET_SPEEDUP:.0f}x): {verdict}")

        if args.memory_sizes:
            print("\n| VCF records | scored | peak RSS (MB) | seconds |")
            print("|---:|---:|---:|---:|")
            for size in args.memory_sizes:
                memory_vcf = os.path.join(folder, f"memory{size}.vcf.gz")
                raw = memory_vcf[:-3]
                write_vcf(raw, synthetic_variants(genome, triples, size, seed=size, scored=args.memory_scored), length)
                with open(raw, "rb") as src, gzip.open(memory_vcf, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                rss, seconds = peak_rss_mb(folder, genome_path, memory_vcf)
                print(f"| {size:,} | {args.memory_scored:,} | {rss:.0f} | {seconds:.0f} |")
        load = os.getloadavg()
        print(f"\nload average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
