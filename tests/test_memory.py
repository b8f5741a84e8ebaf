"""Memory that fits the machine: the budget from the device and the cgroup, --max-memory, the plan of batches and
chunks, refusals before a run that cannot fit, the micro-batch of fine-tuning."""

import pathlib

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from isoformer_cli.cli.main import cli
from isoformer_cli.errors import DeviceError, InputError
from isoformer_cli.formats.predictions import read_predictions
from isoformer_cli.inference.memory_plan import (
    CPU_BATCH_BYTES,
    DEFAULT_CHUNK_ROWS,
    check_fits,
    one_isoform_bytes,
    plan_memory,
    row_output_bytes,
)
from isoformer_cli.models.checkpoint.load import load_checkpoint
from isoformer_cli.models.distribution.locate import demo_checkpoint_path
from isoformer_cli.models.network.configuration import IsoformerConfig
from isoformer_cli.runtime import memory
from isoformer_cli.runtime.memory import MemoryBudget, memory_budget, parse_size
from isoformer_cli.training.memory import micro_batch_from_memory

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "example_data"
HUMAN = ["--genome", str(EXAMPLES / "hg38_chr16_186964-397118.fa"),
         "--annotation", str(EXAMPLES / "hg38_chr16_186964-397118.refGene.gtf")]
CPU = torch.device("cpu")
GB = 1 << 30


@pytest.mark.parametrize("text, size", [("4G", 4 * GB), ("512M", 512 << 20), ("1.5GB", int(1.5 * GB)),
                                        ("4GiB", 4 * GB), ("2048", 2048), ("16 g", 16 * GB)])
def test_sizes_are_read_in_powers_of_1024(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "4X", "-1G", "G", "1.2.3G", "0"])
def test_bad_sizes_are_input_errors(text):
    with pytest.raises(InputError, match="--max-memory"):
        parse_size(text)


@pytest.fixture()
def fake_machine(tmp_path, monkeypatch):
    """A cgroup v2 hierarchy and a meminfo of our own (the files the memory code reads)."""
    root = tmp_path / "cgroup"
    (root / "job").mkdir(parents=True)
    (tmp_path / "self_cgroup").write_text("0::/job\n")
    (tmp_path / "meminfo").write_text("MemTotal:       33554432 kB\nMemAvailable:   16777216 kB\n")
    monkeypatch.setattr(memory, "CGROUP_ROOT", str(root))
    monkeypatch.setattr(memory, "PROC_SELF_CGROUP", str(tmp_path / "self_cgroup"))
    monkeypatch.setattr(memory, "MEMINFO", str(tmp_path / "meminfo"))

    def limit(maximum, current):
        (root / "job" / "memory.max").write_text(f"{maximum}\n")
        (root / "job" / "memory.current").write_text(f"{current}\n")

    return limit


def test_the_budget_follows_the_cgroup_limit(fake_machine):
    fake_machine("max", 0)
    assert memory_budget(CPU, held=0).bytes == 16 * GB  # no cgroup limit: what the kernel has available
    fake_machine(6 * GB, 2 * GB)
    budget = memory_budget(CPU, held=0)
    assert budget.bytes == 4 * GB and budget.source == "memory available to the process"
    fake_machine(3 * GB, 2 * GB)  # a lowered limit (a smaller SLURM allocation) shrinks the budget
    assert memory_budget(CPU, held=0).bytes == 1 * GB
    # --max-memory caps the process, the memory it holds included.
    capped = memory_budget(CPU, max_memory=1 * GB, held=768 << 20)
    assert capped.bytes == 256 << 20 and capped.source == "--max-memory 1.0 GB"


def test_cgroup_v1_limits_are_read_too(fake_machine, tmp_path, monkeypatch):
    v1 = tmp_path / "cgroup" / "memory" / "job"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text(str(5 * GB))
    (v1 / "memory.usage_in_bytes").write_text(str(1 * GB))
    (tmp_path / "self_cgroup").write_text("9:memory:/job\n")
    assert memory_budget(CPU, held=0).bytes == 4 * GB


def test_the_plan_shrinks_batches_and_chunks_with_the_budget():
    config = IsoformerConfig.from_preset("tiny")
    roomy = plan_memory(config, CPU, "fp32", MemoryBudget(16 * GB, "test"))
    assert roomy.chunk_size == DEFAULT_CHUNK_ROWS
    windows = roomy.positions_per_batch["dna"] // config.dna_length
    assert 1 <= windows and config.encoder("dna").activation_bytes(config, windows, config.dna_length) <= CPU_BATCH_BYTES
    tight = plan_memory(config, CPU, "fp32", MemoryBudget(one_isoform_bytes(config, "fp32") * 4, "test"))
    assert tight.chunk_size < DEFAULT_CHUNK_ROWS
    assert tight.chunk_size * row_output_bytes(config) <= 4 * one_isoform_bytes(config, "fp32")
    for modality in config.modalities:  # never less than one full-length input
        encoder = config.encoder(modality)
        assert tight.positions_per_batch[modality] >= encoder.max_input_length(config)


def test_the_official_preset_in_3_gb_is_refused_up_front():
    # About 2.5 GB of weights and 1.4 GB of working memory (the Enformer window dominates): 4 GB just fits.
    config = IsoformerConfig.from_preset("official")
    with pytest.raises(DeviceError) as raised:
        check_fits(config, "fp32", MemoryBudget(3 * GB, "--max-memory 3.0 GB"), weights_bytes=2_700_000_000)
    message = str(raised.value)
    assert message.startswith("not enough memory: one full-length isoform needs about 2.5 GB of weights and ")
    assert "--max-memory 3.0 GB" in message and "--precision bf16" in message


def test_max_memory_below_one_isoform_refuses_before_the_model_loads(tmp_path):
    output = tmp_path / "out.tsv"
    result = CliRunner().invoke(cli, ["-q", "predict", *HUMAN, "--checkpoint", "demo", "--max-memory", "1M",
                                      "-o", str(output)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("isoformer: error: not enough memory: one full-length isoform")
    assert "--max-memory 1.0 MB" in lines[0]
    assert not output.exists()


def test_bad_max_memory_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(cli, ["-q", "predict", *HUMAN, "--checkpoint", "demo", "--max-memory", "lots",
                                      "-o", str(tmp_path / "out.tsv")])
    assert result.exit_code == 2 and "--max-memory 'lots'" in result.output


def test_predictions_do_not_depend_on_the_memory_budget(tmp_path, monkeypatch):
    # --max-memory caps the whole process; a test process that has run hundreds of tests holds an amount of
    # memory that depends on the order, so the bytes it holds are fixed here.
    monkeypatch.setattr(memory, "process_resident_bytes", lambda: 300 << 20)
    outputs = {}
    for label, options in (("roomy", []), ("tight", ["--max-memory", "900M", "--chunk-size", "5"])):
        outputs[label] = tmp_path / f"{label}.tsv"
        result = CliRunner().invoke(cli, ["-q", "predict", *HUMAN, "--checkpoint", "demo", *options,
                                          "-o", str(outputs[label])])
        assert result.exit_code == 0, result.output
    roomy, tight = (read_predictions(str(path)) for path in outputs.values())
    assert roomy.obs == tight.obs
    np.testing.assert_allclose(tight.values, roomy.values, rtol=1e-4, atol=1e-7)


def test_training_micro_batch_from_memory():
    model = load_checkpoint(demo_checkpoint_path())
    model.train()
    assert micro_batch_from_memory(model, 32, "fp32", False, MemoryBudget(16 * GB, "test")) == 32
    with pytest.raises(DeviceError, match="not enough memory to train: one example needs about .*add "
                                          "--activation-checkpointing"):
        micro_batch_from_memory(model, 32, "fp32", False, MemoryBudget(1 << 20, "--max-memory 1.0 MB"))
    # The largest micro-batch that fits and divides the rows of the step.
    from isoformer_cli.training.memory import MARGIN, example_bytes, optimizer_bytes

    room = int(MARGIN * (optimizer_bytes(model) + 5.5 * example_bytes(model, "fp32", False)))
    assert micro_batch_from_memory(model, 12, "fp32", False, MemoryBudget(room, "test")) == 4
