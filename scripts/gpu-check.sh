#!/usr/bin/env bash
# The CUDA checks, in one short run on a lent GPU machine (no CI machine has a GPU).
#
# Prepare here, once per checkout (the GPU machine cannot download; the wheels travel with the tree):
#     bash scripts/gpu-check.sh --fetch-wheels        # pysam for Python 3.12 into .whl/ (git-ignored)
# Then, with the device tool:
#     run(command="bash scripts/gpu-check.sh", carry=[".whl"], timeout_s=540)
#
# What it runs, each under its own time limit so one slow step cannot eat the others' time, everything
# logged under $OUT (what comes back from the machine):
#   1. the `gpu` tests (tests/test_gpu.py: predict/embed/finetune on CUDA against the CPU);
#   2. benchmarks/predict.py --official-gpu-only: the official preset in bf16, isoforms per second and the
#      fraction of the bf16 peak;
#   3. a short official-preset fine-tune (random weights from `isoformer init`, 10 optimiser steps, bf16) on
#      the human example, with its wall time and metrics;
#   4. benchmarks/explain.py on the official preset (random weights), bf16: integrated gradients of two
#      isoforms, batched engine against the naive loop, checked equal (ISM left out for time).
# The package is used from the tree (PYTHONPATH), not installed: the machine's own PyTorch build is the one
# that sees its GPU, and an install could replace it.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--fetch-wheels" ]; then
    mkdir -p .whl
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "pysam>=0.22"
    exit
fi

OUT=${OUT:-$(mktemp -d)}
export PYTHONUNBUFFERED=1
if ! python3 -c "import pysam" 2>/dev/null; then
    if ! ls .whl/*.whl >/dev/null 2>&1; then
        echo "gpu-check: pysam is missing and no wheels were carried; run 'bash scripts/gpu-check.sh" \
             "--fetch-wheels' here first and carry .whl" >&2
        exit 1
    fi
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'transformers', transformers.__version__, 'device', torch.cuda.get_device_name(0))"
} 2>&1 | tee "$OUT/machine.txt"

echo "== 1. gpu tests" | tee "$OUT/gpu-tests.txt"
timeout 240 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee -a "$OUT/gpu-tests.txt" \
    || status=1

echo "== 2. official preset, bf16, CUDA" | tee "$OUT/predict-gpu.txt"
timeout 120 python3 benchmarks/predict.py --official-gpu-only --gpu-isoforms 64 --gpu-batch 16 2>&1 \
    | tee -a "$OUT/predict-gpu.txt" || status=1

echo "== 3. short official-preset fine-tune, bf16, CUDA" | tee "$OUT/finetune-gpu.txt"
work=$(mktemp -d)
annotation=example_data/hg38_chr16_186964-397118.refGene.gtf
python3 - "$annotation" "$work/expression.tsv" <<'EOF'
import random, re, sys
ids = sorted(set(re.findall(r'transcript_id "([^"]+)"', open(sys.argv[1]).read())))
random.seed(0)
with open(sys.argv[2], "w") as out:
    out.write("transcript_id\tLiver\tBrain\n")
    out.writelines(f"{t}\t{random.expovariate(0.3):.3f}\t{random.expovariate(0.3):.3f}\n" for t in ids)
EOF
(
    set -e
    timeout 90 python3 -m isoformer_cli -q init --preset official -o "$work/official"
    SECONDS=0
    timeout 150 python3 -m isoformer_cli finetune --genome example_data/hg38_chr16_186964-397118.fa \
        --annotation "$annotation" --expression "$work/expression.tsv" --checkpoint "$work/official" \
        -o "$work/run" --device cuda --precision bf16 --batch-size 4 --max-steps 10 --val-fraction 0.2 \
        --test-fraction 0.2 --patience 0
    echo "fine-tune wall seconds (10 steps, load and evaluation included): $SECONDS"
    cat "$work/run/metrics.tsv"
) 2>&1 | tee -a "$OUT/finetune-gpu.txt" || status=1
rm -rf "$work"

echo "== 4. explain, official preset, bf16, CUDA" | tee "$OUT/explain-gpu.txt"
timeout 90 python3 benchmarks/explain.py --preset official --device cuda --precision bf16 --transcripts 2 \
    --skip-ism 2>&1 | tee -a "$OUT/explain-gpu.txt" || status=1

echo "gpu-check: exit $status (logs in $OUT)"
exit $status
