"""CPU cost of the IsoFormer model: the ``official`` preset on one full-length isoform, and the ``tiny`` preset
on a batch of 8 (forward + backward).

Random weights (the cost does not depend on their values). Each measurement runs in its own process so its
peak resident memory (``ru_maxrss``) is its own. The official runs need about 4-5 GB of RAM and a minute or two
of CPU each; on a shared machine the timings move with the load.

    python benchmarks/model_forward.py                 # all rows
    python benchmarks/model_forward.py --only tiny     # one row: official-fp32 | official-bf16 | tiny
    python benchmarks/model_forward.py --enformer [--geometry tiny|official] [--precision fp32|bf16]
        [--repeats N] [--profile] [--threads N]

``--enformer``: the DNA trunk alone, ours against enformer-pytorch (the reference implementation, needs the
``test`` extra) on identical weights, CPU, batch 1, fp32 and bf16, tiny and official geometry: wall and CPU
time and peak memory, with the ratios and targets (tiny >= 1.5x, official fp32 >= 1.25x, memory no higher);
``--profile`` adds torch.profiler's top operations. The measurement itself lives in
``benchmarks/enformer_trunk.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

from isoformer_cli.models.network.configuration import IsoformerConfig
from isoformer_cli.models.network.modeling import IsoformerModel

RNA_TOKENS = 2048  # after <cls>: the model maximum
PROTEIN_RESIDUES = 1000


def full_length_isoform(config: IsoformerConfig, batch: int, rna_tokens: int, residues: int) -> dict:
    """Random token ids at the given lengths: DNA A0..T3, RNA <cls> + 6-mers, protein <cls> residues <eos>."""
    generator = torch.Generator().manual_seed(0)
    dna = torch.randint(0, 4, (batch, config.dna_length), generator=generator)
    rna = torch.randint(6, 4102, (batch, 1 + rna_tokens), generator=generator)
    rna[:, 0] = 3
    protein = torch.randint(4, 24, (batch, residues + 2), generator=generator)
    protein[:, 0], protein[:, -1] = 0, 2
    return dict(
        dna_input_ids=dna,
        rna_input_ids=rna,
        rna_attention_mask=torch.ones_like(rna, dtype=torch.bool),
        protein_input_ids=protein,
        protein_attention_mask=torch.ones_like(protein, dtype=torch.bool),
    )


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux reports KiB


def run_official(bf16: bool) -> dict:
    started = time.perf_counter()
    config = IsoformerConfig.from_preset("official")
    model = IsoformerModel(config).eval()
    build_s = time.perf_counter() - started
    inputs = full_length_isoform(config, 1, RNA_TOKENS, PROTEIN_RESIDUES)
    stages = {}
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        started = time.perf_counter()
        t = time.perf_counter()
        dna, dna_mask = model.encode_dna(inputs["dna_input_ids"])
        stages["dna_s"] = time.perf_counter() - t
        t = time.perf_counter()
        rna = model.encode_rna(inputs["rna_input_ids"], inputs["rna_attention_mask"])
        stages["rna_s"] = time.perf_counter() - t
        t = time.perf_counter()
        protein = model.encode_protein(inputs["protein_input_ids"], inputs["protein_attention_mask"])
        stages["protein_s"] = time.perf_counter() - t
        t = time.perf_counter()
        output = model.fuse_and_predict(
            dna, dna_mask, rna, inputs["rna_attention_mask"], protein, inputs["protein_attention_mask"]
        )
        stages["fusion_head_s"] = time.perf_counter() - t
        total = time.perf_counter() - started
    assert output.predictions.shape == (1, 30) and torch.isfinite(output.predictions.float()).all()
    return dict(build_s=build_s, forward_s=total, **stages, peak_rss_gb=peak_rss_gb())


def run_tiny(repeats: int = 7) -> dict:
    torch.manual_seed(0)
    config = IsoformerConfig.from_preset("tiny")
    model = IsoformerModel(config).train()
    inputs = full_length_isoform(config, 8, config.max_rna_tokens, config.max_protein_residues)
    labels = torch.randn(8, config.n_tissues)
    times = []
    for _ in range(repeats + 1):
        model.zero_grad(set_to_none=True)
        started = time.perf_counter()
        model(**inputs, labels=labels).loss.backward()
        times.append(time.perf_counter() - started)
    counts = model.parameter_counts()
    return dict(
        forward_backward_s=statistics.median(times[1:]),  # first call warms up
        parameters=counts["total"],
        peak_rss_gb=peak_rss_gb(),
    )


ROWS = {
    "official-fp32": lambda: run_official(bf16=False),
    "official-bf16": lambda: run_official(bf16=True),
    "tiny": run_tiny,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(ROWS), help="run one measurement in this process, print JSON")
    parser.add_argument("--enformer", action="store_true",
                        help="Enformer trunk: ours vs enformer-pytorch (further options as benchmarks/enformer_trunk.py)")
    args, rest = parser.parse_known_args()
    if args.enformer:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import enformer_trunk

        enformer_trunk.main(rest)
        return
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.only:
        print(json.dumps(ROWS[args.only]()))
        return

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    print("official: 1 isoform, 196,608 bp DNA, 2,048 RNA tokens (+<cls>), 1,000 residues (+<cls>/<eos>)")
    print("tiny: batch of 8 at maximum lengths (2,048 bp, 256 RNA tokens, 126 residues), forward + backward\n")
    header = f"{'row':<15} {'seconds':>9} {'peak RSS GB':>12}  details"
    print(header)
    print("-" * len(header))
    for name in ROWS:
        result = subprocess.run(
            [sys.executable, __file__, "--only", name], capture_output=True, text=True, check=True
        )
        values = json.loads(result.stdout.strip().splitlines()[-1])
        seconds = values.pop("forward_s", None) or values.pop("forward_backward_s")
        peak = values.pop("peak_rss_gb")
        details = ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v:,}" for k, v in values.items())
        print(f"{name:<15} {seconds:>9.2f} {peak:>12.2f}  {details}")


if __name__ == "__main__":
    main()
