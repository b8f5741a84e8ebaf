"""Our Enformer trunk against enformer-pytorch on identical weights: CPU, batch 1, wall time and peak memory.

Rows: {tiny, official} geometry x {fp32, bf16 autocast} x {ours, enformer-pytorch}. Both implementations
have the same state-dict keys and shapes; every tensor is filled with the same seeded random values.

* Time: both models in one subprocess, one warm-up forward each, then ``--repeats`` forwards each under
  ``torch.inference_mode``, alternating between the two (the order flips every round) so that both see the
  same load on a shared machine. Wall time (best and median) and CPU time of the process (median, all
  threads: less sensitive to other processes than wall time). The two outputs are compared.
* Memory: a fresh subprocess per implementation runs one forward; its peak resident set size
  (``ru_maxrss``: weights + activations + Python/torch runtime) and that peak minus the resident size just
  before the forward ("forward GB", what the forward itself adds).

Targets (speed-up on the CPU-time median, fp32): tiny >= 1.5x, official >= 1.25x; our forward's memory no
higher than enformer-pytorch's (memory ratio <= 1). ``benchmarks/model_forward.py --enformer`` runs this too.

Official rows need about 4 GB of RAM per process and tens of seconds per forward on 2 cores; the load average
is printed at the start, after each geometry/precision pair and at the end.

    python benchmarks/enformer_trunk.py                              # every row
    python benchmarks/enformer_trunk.py --geometry tiny --repeats 50
    python benchmarks/enformer_trunk.py --geometry official --repeats 3 --profile
    python benchmarks/enformer_trunk.py --threads 1                  # steadier on a busy machine
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

GEOMETRIES = {
    "tiny": {
        "dim": 192, "depth": 2, "heads": 4, "attn_dim_key": 16, "target_length": 128, "num_downsamples": 3,
        "dim_divisible_by": 16, "length": 2048,
    },
    "official": {
        "dim": 1536, "depth": 11, "heads": 8, "attn_dim_key": 64, "target_length": 896, "num_downsamples": 7,
        "dim_divisible_by": 128, "length": 196_608,
    },
}
PRECISIONS = ("fp32", "bf16")
IMPLEMENTATIONS = ("ours", "enformer-pytorch")
DEFAULT_REPEATS = {"tiny": 30, "official": 3}
#: Speed-up targets by (geometry, precision); rows without one print "-".
TARGET_SPEEDUP = {("tiny", "fp32"): 1.5, ("tiny", "bf16"): 1.5, ("official", "fp32"): 1.25}
PROFILED_FORWARDS = {"tiny": 20, "official": 1}


def build_model(implementation: str, geometry: str) -> torch.nn.Module:
    """The trunk in eval mode, every state-dict tensor filled with seeded random values."""
    hyper = {key: value for key, value in GEOMETRIES[geometry].items() if key != "length"}
    if implementation == "ours":
        from isoformer_cli.models.network.encoders.enformer_trunk import EnformerTrunk

        model = EnformerTrunk(**hyper)
    else:
        from enformer_pytorch import Enformer, EnformerConfig

        model = Enformer(EnformerConfig(**hyper, output_heads={}, use_tf_gamma=False))
    fill_weights(model)
    return model.eval()


def fill_weights(model: torch.nn.Module) -> None:
    """Seeded values per key (sorted), so two modules with the same keys and shapes get the same tensors.

    enformer-pytorch also names each trunk tensor under ``_trunk.N.``; those are the same tensors, skipped.
    """
    norm_types = (torch.nn.BatchNorm1d, torch.nn.LayerNorm)
    norm_scales = {f"{name}.weight" for name, module in model.named_modules() if isinstance(module, norm_types)}
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, tensor in sorted(model.state_dict().items()):
            if key.startswith("_trunk.") or not tensor.is_floating_point():
                continue
            if key.endswith("running_var"):
                tensor.uniform_(0.5, 2.0, generator=generator)
            elif key in norm_scales:
                tensor.normal_(1.0, 0.1, generator=generator)
            elif tensor.ndim >= 2:
                tensor.normal_(0.0, tensor[0].numel() ** -0.5, generator=generator)
            else:
                tensor.normal_(0.0, 0.2, generator=generator)


def current_rss_gb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024**3


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux reports KiB


def one_hot_input(geometry: str) -> torch.Tensor:
    """(1, L, 4) float32 one-hot, A C G T and some N (all-zero rows), fixed seed."""
    token_ids = torch.randint(0, 5, (1, GEOMETRIES[geometry]["length"]), generator=torch.Generator().manual_seed(1))
    return torch.nn.functional.one_hot(token_ids, 5)[..., :4].float()


def forward_function(implementation: str, model: torch.nn.Module, one_hot: torch.Tensor):
    if implementation == "ours":
        return lambda: model(one_hot)
    return lambda: model(one_hot, return_only_embeddings=True)


def precision_context(precision: str):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def measure_time(geometry: str, precision: str, repeats: int, profile: bool) -> dict:
    """Both implementations in this process, timed in alternation (the order flips every round) so that both
    see the same machine load. Wall time and CPU time (this process, all threads) per forward."""
    one_hot = one_hot_input(geometry)
    forwards = {name: forward_function(name, build_model(name, geometry), one_hot) for name in IMPLEMENTATIONS}
    wall = {name: [] for name in IMPLEMENTATIONS}
    cpu = {name: [] for name in IMPLEMENTATIONS}
    first, outputs, profiles = {}, {}, {}
    with torch.inference_mode(), precision_context(precision):
        for name, forward in forwards.items():
            started = time.perf_counter()
            outputs[name] = forward().float()
            first[name] = time.perf_counter() - started
        for round_number in range(repeats):
            order = IMPLEMENTATIONS if round_number % 2 == 0 else IMPLEMENTATIONS[::-1]
            for name in order:
                wall_started, cpu_started = time.perf_counter(), time.process_time()
                forwards[name]()
                cpu[name].append(time.process_time() - cpu_started)
                wall[name].append(time.perf_counter() - wall_started)
        if profile:
            from torch.profiler import ProfilerActivity
            from torch.profiler import profile as profiler

            for name, forward in forwards.items():
                with profiler(activities=[ProfilerActivity.CPU]) as recorded:
                    for _ in range(PROFILED_FORWARDS[geometry]):
                        forward()
                profiles[name] = recorded.key_averages().table(sort_by="self_cpu_time_total", row_limit=14)
    ours, theirs = outputs["ours"], outputs["enformer-pytorch"]
    return {
        "first_s": first,
        "best_s": {name: min(values) for name, values in wall.items()},
        "median_s": {name: statistics.median(values) for name, values in wall.items()},
        "median_cpu_s": {name: statistics.median(values) for name, values in cpu.items()},
        "difference": float((ours - theirs).abs().max() / theirs.abs().max()),
        "profiles": profiles,
    }


def measure_memory(implementation: str, geometry: str, precision: str) -> dict:
    """One model alone in this (fresh) process: peak RSS over one forward."""
    model = build_model(implementation, geometry)
    forward = forward_function(implementation, model, one_hot_input(geometry))
    rss_before = current_rss_gb()
    with torch.inference_mode(), precision_context(precision):
        forward()
    peak = peak_rss_gb()
    return {"peak_rss_gb": peak, "forward_gb": peak - rss_before}


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def run_child(*arguments: str, threads: int | None = None) -> dict:
    thread_option = ["--threads", str(threads)] if threads else []
    finished = subprocess.run(
        [sys.executable, __file__, *arguments, *thread_option], capture_output=True, text=True, check=False
    )
    if finished.returncode:
        sys.exit(f"{' '.join(arguments)} failed:\n{finished.stderr[-3000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--geometry", nargs="+", choices=sorted(GEOMETRIES), default=list(GEOMETRIES))
    parser.add_argument("--precision", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--repeats", type=int, help="timed forwards per implementation (default: tiny 30, official 3)")
    parser.add_argument("--profile", action="store_true", help="also print torch.profiler's top operations")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice); 1 is the least "
                        "sensitive to other processes on a shared machine")
    parser.add_argument("--time-row", nargs=2, metavar=("GEOMETRY", "PRECISION"), help=argparse.SUPPRESS)
    parser.add_argument("--memory-row", nargs=3, metavar=("IMPLEMENTATION", "GEOMETRY", "PRECISION"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.time_row:
        geometry, precision = args.time_row
        print(json.dumps(measure_time(geometry, precision, args.repeats or DEFAULT_REPEATS[geometry], args.profile)))
        return
    if args.memory_row:
        print(json.dumps(measure_memory(*args.memory_row)))
        return

    print(f"Enformer trunk: ours vs enformer-pytorch, CPU, batch 1, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    print("tiny: dim 192, depth 2, 2,048 bp -> 128 x 384; official: dim 1536, depth 11, 196,608 bp -> 896 x 3072")
    print("time: both models in one process, one warm-up forward each (first s), then N forwards each in "
          "alternation; wall best / median and CPU-time median (all threads)")
    print("memory: ru_maxrss of a fresh process per implementation over one forward (peak GB: weights + "
          "activations + runtime) and that peak minus the RSS just before the forward (forward GB)")
    print(f"load average (1, 5, 15 min) at start: {load_average()}\n")
    header = (f"{'geometry':<9} {'precision':<9} {'implementation':<16} {'N':>3} {'first s':>8} {'best s':>8} "
              f"{'median s':>9} {'CPU s':>8} {'peak GB':>8} {'forward GB':>10}")
    print(header)
    print("-" * len(header))
    summary, profiles = [], []
    for geometry in args.geometry:
        repeats = args.repeats or DEFAULT_REPEATS[geometry]
        for precision in args.precision:
            timing = run_child("--time-row", geometry, precision, "--repeats", str(repeats),
                               *(["--profile"] if args.profile else []), threads=args.threads)
            memory = {
                name: run_child("--memory-row", name, geometry, precision, threads=args.threads)
                for name in IMPLEMENTATIONS
            }
            for name in IMPLEMENTATIONS:
                print(f"{geometry:<9} {precision:<9} {name:<16} {repeats:>3} {timing['first_s'][name]:>8.3f} "
                      f"{timing['best_s'][name]:>8.3f} {timing['median_s'][name]:>9.3f} "
                      f"{timing['median_cpu_s'][name]:>8.3f} {memory[name]['peak_rss_gb']:>8.2f} "
                      f"{memory[name]['forward_gb']:>10.2f}", flush=True)
                if name in timing["profiles"]:
                    profiles.append((f"{PROFILED_FORWARDS[geometry]} forward(s): {name}, {geometry}, {precision}",
                                     timing["profiles"][name]))
            summary.append((geometry, precision, timing, memory, load_average()))

    print("\nspeed-up = enformer-pytorch time / our time; memory ratio = our forward GB / theirs; "
          "difference = max |ours - theirs| / max |theirs|")
    header = (f"{'geometry':<9} {'precision':<9} {'best':>7} {'median':>7} {'CPU':>7} {'target':>7} "
              f"{'memory ratio':>12} {'difference':>10}  load 1/5/15 after the row")
    print(header)
    print("-" * len(header))
    for geometry, precision, timing, memory, load in summary:
        ratio = {
            key: timing[key]["enformer-pytorch"] / timing[key]["ours"] for key in ("best_s", "median_s", "median_cpu_s")
        }
        memory_ratio = memory["ours"]["forward_gb"] / max(memory["enformer-pytorch"]["forward_gb"], 1e-9)
        target = TARGET_SPEEDUP.get((geometry, precision))
        target_text = f"{target:.2f}x" if target else "-"
        print(f"{geometry:<9} {precision:<9} {ratio['best_s']:>6.2f}x {ratio['median_s']:>6.2f}x "
              f"{ratio['median_cpu_s']:>6.2f}x {target_text:>7} {memory_ratio:>12.2f} {timing['difference']:>10.1e}  "
              f"{load}")
    print(f"\nload average (1, 5, 15 min) at end: {load_average()}")
    for title, table in profiles:
        print(f"\ntorch.profiler, totals over {title}\n{table}")


if __name__ == "__main__":
    main()
