"""Measure each encoder's working memory and speed per input position, on the CPU: the figures behind the
memory model of the inference engine (``SequenceEncoder.activation_bytes``).

    python benchmarks/memory_model.py                     # tiny and official presets, fp32 and bf16
    python benchmarks/memory_model.py --presets tiny      # quick

Each case runs in a fresh process: build one encoder (random weights), record the resident memory, reset the
kernel's peak counter (``/proc/self/clear_refs``), run one forward pass in inference mode on a full-length batch
of random tokens, and read the peak (``VmHWM``). The difference is the working memory of the forward pass (its
activations, freed afterwards). Printed per case: seconds per input, working memory, bytes per input position,
and the ratio to what the encoder's own memory model predicts.
"""

import argparse
import json
import os
import subprocess
import sys


CASE_SCRIPT = r"""
import json, sys, time
import numpy as np
import torch
from isoformer_cli.models.network.configuration import IsoformerConfig
from isoformer_cli.runtime.device import autocast_context

preset, modality, batch, precision, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
mode = sys.argv[6]
torch.manual_seed(0)

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

config = IsoformerConfig.from_preset(preset)
encoder = config.encoder(modality)
module = encoder.build(config)
module.train(mode == "train")
if mode == "checkpointed":
    encoder.enable_activation_checkpointing(module)
length = encoder.max_input_length(config)
rng = np.random.default_rng(0)
low, high = encoder.random_token_range(config)
arrays = [rng.integers(low, high, length) for _ in range(batch)]
ids, mask = encoder.collate(arrays, config)
device = torch.device("cpu")

def forward():
    grad = torch.enable_grad() if mode != "inference" else torch.inference_mode()
    with grad, autocast_context(device, precision):
        if modality == "protein":
            out = module(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        else:
            out = module(ids, mask)
        if isinstance(out, tuple):
            out = out[0]
        if mode != "inference":
            out.float().square().mean().backward()
            module.zero_grad(set_to_none=False)
        return out

forward()  # warm-up (allocator pools, lazy initialisation)
before = status("VmRSS")
open("/proc/self/clear_refs", "w").write("5")
began = time.perf_counter()
for _ in range(repeats):
    forward()
seconds = (time.perf_counter() - began) / repeats
peak = status("VmHWM")
predicted = (encoder.activation_bytes(config, batch, length, precision) if mode == "inference"
             else encoder.training_activation_bytes(config, batch, length, precision, mode == "checkpointed"))
print(json.dumps({"seconds": seconds, "working": max(0, peak - before), "length": length, "predicted": predicted}))
"""


def run_case(preset, modality, batch, precision, repeats, mode):
    # Large blocks straight from mmap, so that freed activations leave the process and the next pass's
    # peak is its own (glibc would otherwise keep them for reuse and hide the peak).
    environment = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(1 << 16))
    done = subprocess.run([sys.executable, "-c", CASE_SCRIPT, preset, modality, str(batch), precision, str(repeats), mode],
                          capture_output=True, text=True, timeout=3600, env=environment)
    if done.returncode != 0:
        raise SystemExit(f"case {preset} {modality} {batch} {precision} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny,official")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--modalities", default="dna,rna,protein")
    parser.add_argument("--modes", default="inference",
                        help="inference, train (forward + backward), checkpointed (train with activation checkpointing)")
    args = parser.parse_args(argv)
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{', '.join(f'{value:.1f}' for value in os.getloadavg())}\n")
    header = (f"{'mode':<12} {'preset':<9} {'encoder':<8} {'prec':<5} {'batch':>5} {'positions':>9} {'s/input':>8} "
              f"{'working MB':>10} {'B/position':>10} {'model/measured':>14}")
    print(header)
    for mode in args.modes.split(","):
      for preset in args.presets.split(","):
        batches = (1, 2, 8) if preset == "tiny" else (1, 2)
        repeats = 5 if preset == "tiny" else 1
        for modality in args.modalities.split(","):
            for precision in args.precisions.split(","):
                for batch in batches:
                    result = run_case(preset, modality, batch, precision, repeats, mode)
                    positions = batch * result["length"]
                    per_position = result["working"] / positions
                    ratio = result["predicted"] / result["working"] if result["working"] else float("nan")
                    print(f"{mode:<12} {preset:<9} {modality:<8} {precision:<5} {batch:>5} {result['length']:>9} "
                          f"{result['seconds'] / batch:>8.3f} {result['working'] / 2**20:>10.1f} "
                          f"{per_position:>10.0f} {ratio:>14.2f}", flush=True)


if __name__ == "__main__":
    main()
