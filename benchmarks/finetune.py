"""Training throughput of ``isoformer finetune``: optimiser steps and isoforms per second.

    python benchmarks/finetune.py                  # tiny preset (the demo checkpoint) on CPU
    python benchmarks/finetune.py --preset official --device cuda --batch-sizes 8 --micro-batch-size 2 \\
        --variants plain,checkpointing --epochs 3   # on a GPU: also peak memory, bf16 by default

Each configuration runs the real ``run_finetune`` on the mouse example (54 real transcripts, all in the training
split, DNA windows fetched from the BGZF genome, tokenised on the fly) and reads the per-epoch training time
from the run's ``metrics.tsv`` (``seconds``: training steps only; no validation split, checkpoint saving is
outside it). The first epoch is a warm-up and left out. Variants:

* ``plain``: every parameter trains;
* ``checkpointing``: ``--activation-checkpointing``;
* ``frozen``: ``--freeze encoders`` (only aggregation and head train).

For ``--preset official`` a checkpoint with random weights is written to a temporary folder first (2.8 GB).
"""

import argparse
import json
import logging
import os
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLES = os.path.join(ROOT, "example_data")
GENOME = os.path.join(EXAMPLES, "chr9.4M.fa.gz")
ANNOTATION = os.path.join(EXAMPLES, "chr9.4M.gtf.gz")
VARIANTS = {"plain": {}, "checkpointing": {"activation_checkpointing": True}, "frozen": {"freeze": ("encoders",)}}


def write_expression(folder, tissues):
    """Random TPMs for every mouse transcript, in the checkpoint's tissues."""
    import gzip

    import numpy as np

    ids = []
    with gzip.open(ANNOTATION, "rt") as stream:
        for line in stream:
            if 'transcript_id "' in line:
                ids.append(line.split('transcript_id "')[1].split('"')[0])
    ids = list(dict.fromkeys(ids))
    rng = np.random.default_rng(0)
    path = os.path.join(folder, "expression.tsv")
    with open(path, "w") as stream:
        stream.write("transcript_id\t" + "\t".join(tissues) + "\n")
        for transcript in ids:
            stream.write(transcript + "\t" + "\t".join(f"{value:.3f}" for value in rng.exponential(10, len(tissues)))
                         + "\n")
    return path, len(ids)


def make_checkpoint(preset, folder):
    from isoformer_cli.models.network.build import build_model
    from isoformer_cli.models.checkpoint.save import save_checkpoint
    from isoformer_cli.models.network.configuration import IsoformerConfig
    from isoformer_cli.models.distribution.locate import demo_checkpoint_path

    if preset == "tiny":
        return demo_checkpoint_path()
    torch.manual_seed(0)
    path = os.path.join(folder, f"{preset}-random")
    save_checkpoint(build_model(IsoformerConfig.from_preset(preset)), path)
    return path


def measure(checkpoint, expression, run_dir, batch_size, micro_batch_size, epochs, device, precision, variant):
    from isoformer_cli.genomics.expression import ExpressionInput
    from isoformer_cli.runtime.options import RuntimeOptions
    from isoformer_cli.training.config import FinetuneConfig, TrainingSettings
    from isoformer_cli.training.finetune import run_finetune
    from isoformer_cli.triples.source import TripleSource
    from isoformer_cli.training.splits import SplitSpec

    config = FinetuneConfig(
        source=TripleSource(genome=GENOME, annotation=ANNOTATION), expression=ExpressionInput(expression),
        output=run_dir, checkpoint=checkpoint, split=SplitSpec(val_fraction=0.0, test_fraction=0.0),
        training=TrainingSettings(epochs=epochs, batch_size=batch_size, micro_batch_size=micro_batch_size, lr=1e-4,
                                  patience=0, **VARIANTS[variant]),
        runtime=RuntimeOptions(device=device, precision=precision), command_args=("benchmark",),
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    run_finetune(config)
    with open(os.path.join(run_dir, "metrics.tsv")) as stream:
        rows = [line.rstrip("\n").split("\t") for line in stream][1:]
    steps = [int(row[1]) for row in rows]
    seconds = [float(row[-1]) for row in rows]
    steps_per_epoch = steps[0]
    timed = seconds[1:] or seconds  # leave out the warm-up epoch
    rate = steps_per_epoch * len(timed) / sum(timed)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return rate, peak


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", choices=["tiny", "official"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--batch-sizes", default="4,8,16", help="comma-separated transcripts per step")
    parser.add_argument("--micro-batch-size", type=int, help="default: the batch size (no accumulation)")
    parser.add_argument("--variants", default="plain,checkpointing,frozen")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()

    from isoformer_cli.cli.main import configure_logging
    from isoformer_cli.models.checkpoint.check import load_config

    configure_logging(-1)
    logging.getLogger("isoformer_cli").setLevel(logging.ERROR)  # the demo and no-validation warnings
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = make_checkpoint(args.preset, folder)
        expression, transcripts = write_expression(folder, load_config(checkpoint).tissues)
        print(f"# isoformer finetune throughput: {args.preset} preset, {args.device}, precision {args.precision}, "
              f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {transcripts} mouse transcripts")
        print("variant\tbatch\tmicro\tsteps/s\tisoforms/s\tpeak_GiB")
        for variant in args.variants.split(","):
            for batch_size in (int(value) for value in args.batch_sizes.split(",")):
                micro = args.micro_batch_size or batch_size
                run_dir = os.path.join(folder, f"run-{variant}-{batch_size}")
                started = time.monotonic()
                rate, peak = measure(checkpoint, expression, run_dir, batch_size, micro, args.epochs, args.device,
                                     args.precision, variant)
                print(f"{variant}\t{batch_size}\t{micro}\t{rate:.2f}\t{rate * batch_size:.1f}\t"
                      f"{'-' if peak is None else f'{peak:.1f}'}", flush=True)
                print(f"#   ({time.monotonic() - started:.0f} s wall, run folder summary: "
                      f"{json.load(open(os.path.join(run_dir, 'summary.json')))['global_step']} steps)",
                      file=sys.stderr)


if __name__ == "__main__":
    main()
