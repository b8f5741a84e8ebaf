"""Runs, options and messages a new user meets (issue 18, items 5, 6, 8, 11, 12, 15, 17): every test runs the
command line on inputs it writes itself and checks the exit code, the one-line message and what is written."""

import json
import logging
import os
import pathlib
import re
import shutil
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from isoformer_cli.cli.main import COMMAND_MODULES, cli
from isoformer_cli.formats.predictions import read_predictions
from isoformer_cli.formats.targets import classify_output, resumable_partial_path
from isoformer_cli.genomics.expression import LOG1P_CEILING, warn_about_value_scale
from isoformer_cli.inference.engine import ChunkPredictor
from isoformer_cli.models.distribution.locate import demo_checkpoint_path

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "example_data"
HUMAN_GENOME = str(EXAMPLES / "hg38_chr16_186964-397118.fa")
HUMAN_GTF = str(EXAMPLES / "hg38_chr16_186964-397118.refGene.gtf")


def invoke(*args):
    """Run the command line in this process, with ``sys.argv`` as a shell would set it (outputs record it)."""
    args = [str(arg) for arg in args]
    saved = sys.argv
    sys.argv = ["isoformer", *args]
    try:
        return CliRunner().invoke(cli, args)
    finally:
        sys.argv = saved


def error_line(result):
    """The one ``isoformer: error:`` line of a failed command (asserting there is exactly one)."""
    lines = [line for line in result.output.splitlines() if "error:" in line.lower()]
    assert len(lines) == 1, result.output
    return lines[0]


def transcript_ids():
    ids = re.findall(r'transcript_id "([^"]+)"', pathlib.Path(HUMAN_GTF).read_text())
    return list(dict.fromkeys(ids))


def write_expression(path, ids, value=None, seed=0, tissues=("Liver", "Brain")):
    rng = np.random.default_rng(seed)
    with open(path, "w") as stream:
        stream.write("transcript_id\t" + "\t".join(tissues) + "\n")
        for transcript in ids:
            cells = [f"{value if value is not None else rng.exponential(10):.4f}" for _ in tissues]
            stream.write(transcript + "\t" + "\t".join(cells) + "\n")
    return str(path)


def finetune_args(run_dir, expression, *extra):
    return ["-q", "finetune", "-o", run_dir, "--genome", HUMAN_GENOME, "--annotation", HUMAN_GTF,
            "--expression", expression, "--checkpoint", "demo", "--batch-size", "4", "--micro-batch-size", "2",
            "--val-fraction", "0.05", "--test-fraction", "0.2", "--epochs", "1", *extra]


def predict_args(output, *extra):
    return ["predict", "--genome", HUMAN_GENOME, "--annotation", HUMAN_GTF, "--checkpoint", "demo", "-o", output,
            *extra]


# ------------------------------------------------------------------ 5. a validation split without a Spearman


@pytest.mark.parametrize("case, message", [
    # The gene split (seed 0, --val-fraction 0.05) puts NM_032039 and NM_001286436 into validation.
    ("one", "the split leaves 1 validation transcript (of 16 with expression): a Spearman needs at least 2"),
    ("constant", "the split leaves 2 validation transcripts whose observed values are the same in every tissue"),
])
def test_finetune_refuses_a_validation_split_that_cannot_give_a_spearman(tmp_path, case, message):
    ids = transcript_ids()
    if case == "one":
        expression = write_expression(tmp_path / "e.tsv", [t for t in ids if t != "NM_001286436"])
    else:
        expression = write_expression(tmp_path / "e.tsv", ids, value=3.0)
    result = invoke(*finetune_args(tmp_path / "run", expression))
    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert message in line and "raise --val-fraction (now 0.05)" in line and "--val-fraction 0" in line
    assert not (tmp_path / "run").exists()


def fake_run_folder(path, with_last=True):
    """A finetune run folder as a finished run without a validation Spearman leaves it: run.json, summary.json,
    last/ (a copy of the demo's weights), no best/."""
    path.mkdir()
    (path / "run.json").write_text("{}\n")
    (path / "summary.json").write_text(json.dumps({"best_epoch": None, "finished": True}) + "\n")
    if with_last:
        last = path / "last"
        last.mkdir()
        for name in ("config.json", "model.safetensors"):
            shutil.copy(os.path.join(demo_checkpoint_path(), name), last / name)
    return path


def test_a_run_folder_without_best_says_why_and_what_to_use(tmp_path):
    run = fake_run_folder(tmp_path / "run")
    result = invoke(*predict_args(tmp_path / "p.tsv", "--checkpoint", run / "best"))
    assert result.exit_code == 1
    assert error_line(result) == (
        f"isoformer: error: run folder {run} has no best/: its validation never gave a Spearman (no validation "
        f"split, or constant predictions), so no epoch was best; use --checkpoint {run / 'last'} (the final weights)")
    result = invoke(*predict_args(tmp_path / "p.tsv", "--checkpoint", run))
    assert result.exit_code == 1
    assert error_line(result).endswith(f"{run} is a fine-tuning run folder, not a checkpoint; use --checkpoint "
                                       f"{run / 'last'}")
    assert not (tmp_path / "p.tsv").exists()


# -------------------------------------------------------------------- 8. --resume: the same run, not the same text


def interrupted_copy(reference, target, rows):
    """Leave at ``target``'s partial path what a run killed after ``rows`` rows of ``reference`` leaves."""
    lines = reference.read_text().splitlines(keepends=True)
    header = [line for line in lines if line.startswith("#")] + [lines[sum(1 for x in lines if x.startswith("#"))]]
    body = lines[len(header):]
    partial = resumable_partial_path(classify_output(str(target)))
    pathlib.Path(partial).write_text("".join(header + body[:rows]))
    return partial


def test_resume_compares_what_determines_the_output_not_the_command_text(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # The original command: relative paths, no -q; its finished output is the reference.
    original = predict_args("out.tsv", "--chunk-size", "5")
    result = invoke(*original)
    assert result.exit_code == 0, result.output
    reference = tmp_path / "reference.tsv"
    os.replace(tmp_path / "out.tsv", reference)
    target = tmp_path / "out.tsv"
    partial = interrupted_copy(reference, target, rows=10)
    # Resumed with -q, another option order, --opt=value, other spellings of the same inputs and output, and
    # another chunk size (the engine is batch-invariant).
    resumed = ["-q", "predict", "--resume", f"--annotation={HUMAN_GTF}", "-o", str(target), "--checkpoint", "demo",
               "--genome", os.path.relpath(HUMAN_GENOME, tmp_path), "--chunk-size", "7"]
    other = invoke(*resumed, "--coding-only")  # a setting that changes the output: another run
    assert other.exit_code == 1, (other.output, os.listdir(tmp_path))
    line = error_line(other)
    assert f"{target}: cannot resume: the partial output {partial} was written by a different run (it differs " \
           "in provenance.command_line)" in line
    assert os.path.exists(partial) and not target.exists()
    result = invoke(*resumed)
    assert result.exit_code == 0, result.output
    assert result.output.count("DEMO") == 1  # 12. one warning, not two
    assert target.read_bytes() == reference.read_bytes()  # the interrupted run's header, every row
    assert read_predictions(str(target)).provenance["command_line"] == "isoformer " + " ".join(original)
    assert not os.path.exists(partial)


# ------------------------------------------------------------------------- 11. invalid values: exit 2, JSON words


@pytest.mark.parametrize("command", ["predict", "finetune"])
def test_an_unknown_device_is_a_usage_error(tmp_path, command):
    if command == "predict":
        args = predict_args(tmp_path / "p.tsv", "--device", "tpu")
    else:
        args = finetune_args(tmp_path / "run", write_expression(tmp_path / "e.tsv", transcript_ids()),
                             "--device", "tpu")
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert "Error: --device tpu: expected auto, cpu, cuda or cuda:N" in result.output
    assert not (tmp_path / "p.tsv").exists() and not (tmp_path / "run").exists()


def test_config_value_errors_speak_json(tmp_path):
    result = invoke("models", "pull", "official", "--model-dir", tmp_path / "models", "--set", "head_activation=null")
    assert result.exit_code == 2
    assert "'head_activation' must be a string, not null; fix the value" in result.output
    assert "None" not in result.output and not (tmp_path / "models").exists()


def test_a_memory_cap_below_the_process_says_what_it_leaves_and_what_works(tmp_path):
    result = invoke(*predict_args(tmp_path / "p.tsv", "--max-memory", "1M"))
    assert result.exit_code == 1
    line = error_line(result)
    assert re.search(r"but this run may use 0 B \(--max-memory 1\.0 MB, less the [0-9.]+ [MG]B the process "
                     r"already holds\)", line), line
    smallest = re.search(r"use --max-memory ([0-9]+[MG]) or more$", line)
    assert smallest, line
    assert not (tmp_path / "p.tsv").exists()
    # The figure it names works.
    result = invoke("-q", *predict_args(tmp_path / "p.tsv", "--max-memory", smallest.group(1)))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p.tsv").exists()


# --------------------------------------------------------------- 12. -q keeps the hint; variants' chunk log


def test_an_interrupted_quiet_run_keeps_the_resume_hint(tmp_path, monkeypatch):
    calls = {"n": 0}
    predict = ChunkPredictor.predict

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return predict(self, *args, **kwargs)

    monkeypatch.setattr(ChunkPredictor, "predict", interrupted)
    target = tmp_path / "p.tsv"
    result = invoke("-q", *predict_args(target, "--chunk-size", "5"))
    assert result.exit_code == 130
    assert result.output.splitlines()[-2:] == [
        f"isoformer: WARNING: interrupted: partial output {target} kept; rerun the same command with --resume to "
        "continue", "isoformer: interrupted"]
    assert not target.exists() and os.path.exists(resumable_partial_path(classify_output(str(target))))


def test_variants_logs_its_chunks_in_vcf_records(tmp_path):
    vcf = tmp_path / "in.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=chr16,length=210155>\n"
                   "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
    result = invoke("variants", "--genome", HUMAN_GENOME, "--annotation", HUMAN_GTF, "--checkpoint", "demo",
                    "-I", vcf, "-O", tmp_path / "out.vcf", "--chunk-size", "3")
    assert result.exit_code == 0, result.output
    assert "chunks of 3 VCF records, model calls of up to" in result.output
    assert "transcripts;" not in result.output
    assert result.output.count("DEMO") == 1
    assert (tmp_path / "out.vcf").exists()


# --------------------------------------------------------------------- 15. values that are not what --values says


def test_evaluate_warns_when_log1p_values_are_plainly_tpm(tmp_path):
    predictions = tmp_path / "p.tsv"
    assert invoke("-q", *predict_args(predictions)).exit_code == 0
    expression = write_expression(tmp_path / "e.tsv", transcript_ids(), seed=1)  # TPM, up to about 60
    result = invoke("-q", "evaluate", "--predictions", predictions, "--expression", expression, "--values", "log1p",
                    "-o", tmp_path / "eval.tsv")
    assert result.exit_code == 0, result.output
    warning = [line for line in result.output.splitlines() if "--values log1p, but values go up to" in line]
    assert len(warning) == 1 and "the table looks like TPM; if so, rerun with --values tpm" in warning[0]
    assert (tmp_path / "eval.tsv").exists()
    result = invoke("-q", "evaluate", "--predictions", predictions, "--expression", expression,
                    "-o", tmp_path / "eval2.tsv")
    assert result.exit_code == 0 and "looks like" not in result.output


def test_value_scale_thresholds(caplog):
    ids, tissues = [f"t{i}" for i in range(100)], [f"s{j}" for j in range(10)]
    logs = np.full((100, 10), 2.0)
    logger = logging.getLogger("isoformer_cli.genomics.expression")  # the CLI's logger does not propagate
    logger.addHandler(caplog.handler)
    try:
        warn_about_value_scale("x.tsv", logs, "tpm", ids, tissues)  # 1,000 values all below ln(10^6 + 1)
        warn_about_value_scale("x.tsv", logs[:50], "tpm", ids, tissues)  # too few values to say
        logs[3, 4] = LOG1P_CEILING  # the largest log2(TPM + 1) there is: no warning
        warn_about_value_scale("x.tsv", logs, "log1p", ids, tissues)
    finally:
        logger.removeHandler(caplog.handler)
    messages = sorted({record.getMessage() for record in caplog.records})  # the record may reach caplog twice
    assert messages == ["x.tsv: every one of its 1,000 values is at most 2: they look like log(TPM+1), not TPM; "
                        "if so, rerun with --values log1p"]


# ------------------------------------------------------------------------------- 17. man pages from a checkout


def test_the_readme_says_how_to_read_the_man_pages_of_a_checkout():
    readme = (ROOT / "README.md").read_text()
    assert "man ./man/isoformer-COMMAND.1" in readme and "share/man/man1" in readme
    for name, _ in COMMAND_MODULES:
        assert (ROOT / "man" / f"isoformer-{name}.1").exists() or name == "models", name
