"""The CUDA paths: predict, embed and finetune on a GPU give what the CPU gives.

Marked ``gpu`` and skipped when no CUDA device is present (CI has none; ``scripts/gpu-check.sh`` runs them on a
lent GPU machine). Tolerances: fp32 on CUDA differs from the CPU by reduction order and TF32-free kernels only
(TF32 is off in the tool), so 1e-4; bf16 rounds every activation to 8 bits of mantissa, so the check there is
closeness of the tissue profile, not of each value.
"""

import json
import pathlib

import h5py
import numpy as np
import pytest
import torch

from isoformer_cli.formats.predictions import read_predictions
from isoformer_cli.runtime.memory import memory_budget

from cli_helpers import invoke

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "example_data"
HUMAN = ["--genome", str(EXAMPLES / "hg38_chr16_186964-397118.fa"),
         "--annotation", str(EXAMPLES / "hg38_chr16_186964-397118.refGene.gtf")]
MOUSE = ["--genome", str(EXAMPLES / "chr9.4M.fa.gz"), "--annotation", str(EXAMPLES / "chr9.4M.gtf.gz")]


@pytest.fixture(scope="module")
def cpu_predictions(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cpu")
    tables = {}
    for name, data in (("human", HUMAN), ("mouse", MOUSE)):
        path = folder / f"{name}.tsv"
        invoke("predict", *data, "--checkpoint", "demo", "--device", "cpu", "-o", path, expect=0)
        tables[name] = read_predictions(str(path))
    return tables


@pytest.mark.parametrize("name, data", [("human", HUMAN), ("mouse", MOUSE)])
def test_predict_fp32_on_cuda_equals_cpu(cpu_predictions, tmp_path, name, data):
    path = tmp_path / "cuda.tsv"
    invoke("predict", *data, "--checkpoint", "demo", "--device", "cuda", "--precision", "fp32", "-o", path, expect=0)
    cuda, cpu = read_predictions(str(path)), cpu_predictions[name]
    assert cuda.obs == cpu.obs
    np.testing.assert_allclose(cuda.values, cpu.values, rtol=1e-4, atol=1e-4)


def test_predict_bf16_on_cuda_keeps_the_tissue_profile(cpu_predictions, tmp_path):
    path = tmp_path / "bf16.tsv"
    invoke("predict", *HUMAN, "--checkpoint", "demo", "--device", "cuda", "--precision", "bf16", "-o", path, expect=0)
    bf16, cpu = read_predictions(str(path)), cpu_predictions["human"]
    assert bf16.obs == cpu.obs and np.isfinite(bf16.values).all()
    for row_bf16, row_cpu in zip(bf16.values, cpu.values):
        assert np.corrcoef(row_bf16, row_cpu)[0, 1] > 0.99


def test_predictions_on_cuda_do_not_depend_on_batching(cpu_predictions, tmp_path):
    path = tmp_path / "small.tsv"
    invoke("predict", *HUMAN, "--checkpoint", "demo", "--device", "cuda", "--precision", "fp32",
           "--chunk-size", "3", "--max-tokens", "4096", "-o", path, expect=0)
    np.testing.assert_allclose(read_predictions(str(path)).values, cpu_predictions["human"].values,
                               rtol=1e-4, atol=1e-4)


def test_embed_on_cuda_equals_cpu(tmp_path):
    outputs = {}
    for device in ("cpu", "cuda"):
        outputs[device] = tmp_path / f"{device}.h5"
        invoke("embed", *HUMAN, "--checkpoint", "demo", "--device", device, "--precision", "fp32",
               "-o", outputs[device], expect=0)
    with h5py.File(outputs["cpu"]) as cpu, h5py.File(outputs["cuda"]) as cuda:
        assert sorted(cpu) == sorted(cuda)
        np.testing.assert_allclose(cuda["fused"][:], cpu["fused"][:], rtol=1e-4, atol=1e-4)


def test_memory_budget_reads_the_free_device_memory():
    device = torch.device("cuda")
    free, _ = torch.cuda.mem_get_info(device)
    budget = memory_budget(device)
    assert 0 < budget.bytes <= free and "CUDA" in budget.source
    capped = memory_budget(device, max_memory=1 << 30, held=0)
    assert capped.bytes == 1 << 30 and "--max-memory" in capped.source


def test_max_memory_below_one_input_refuses_on_cuda(tmp_path):
    output = tmp_path / "out.tsv"
    result = invoke("predict", *HUMAN, "--checkpoint", "demo", "--device", "cuda", "--max-memory", "1M",
                    "-o", output, expect=1)
    assert "not enough memory" in result.output and not output.exists()


def test_finetune_on_cuda_trains_and_writes_a_loadable_checkpoint(tmp_path):
    ids = sorted({line.split('transcript_id "')[1].split('"')[0]
                  for line in open(HUMAN[3]) if 'transcript_id "' in line})
    rng = np.random.default_rng(0)
    expression = tmp_path / "expression.tsv"
    expression.write_text("transcript_id\tLiver\tBrain\n" + "".join(
        f"{transcript}\t{rng.exponential(3):.3f}\t{rng.exponential(3):.3f}\n" for transcript in ids))
    run = tmp_path / "run"
    invoke("finetune", *HUMAN, "--expression", expression, "--checkpoint", "demo", "-o", run, "--device", "cuda",
           "--epochs", "2", "--batch-size", "4", "--val-fraction", "0.2", "--test-fraction", "0.2", "--lr", "1e-3", expect=0)
    metrics = (run / "metrics.tsv").read_text().splitlines()
    assert len(metrics) >= 2
    run_record = json.loads((run / "run.json").read_text())
    assert run_record["run"]["device"] == "cuda" and run_record["training"]["precision"] == "bf16"
    predictions = tmp_path / "after.tsv"
    invoke("predict", *HUMAN, "--checkpoint", run / "best", "--device", "cuda", "-o", predictions, expect=0)
    table = read_predictions(str(predictions))
    assert len(table.obs) == len(ids) and np.isfinite(table.values).all()
