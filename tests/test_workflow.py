"""The Snakemake workflow (workflows/snakemake) gives the files one `isoformer predict` run writes.

Snakemake runs in a subprocess, in a temporary folder, on the bundled human example: the shards
are predicted (`--shard K/3`) and merged, then compared with one run without --shard. The files may
differ only in their `# provenance:` line.
"""

import json
import os
import pathlib
import shlex
import subprocess
import sys

import pytest

import isoformer_cli

pytest.importorskip("snakemake")
yaml = pytest.importorskip("yaml")  # a requirement of Snakemake; it reads the shipped config here

ROOT = pathlib.Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "workflows" / "snakemake"
EXAMPLES = ROOT / "example_data"
# The subprocesses import the isoformer_cli this test process imported (a checkout or the installed one).
PACKAGE_PARENT = pathlib.Path(isoformer_cli.__file__).resolve().parent.parent


def environment():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_PARENT), env.get("PYTHONPATH")]))
    return env


def run(command, cwd, **env):
    """Run ``command`` in ``cwd``; the CompletedProcess, failing the test with its output on an error."""
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=dict(environment(), **env),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def write_config(folder, **changes):
    """The shipped config.yaml with the example data as absolute paths, with ``changes``; its path."""
    config = yaml.safe_load((WORKFLOW / "config.yaml").read_text())
    config.update(
        genome=str(EXAMPLES / "hg38_chr16_186964-397118.fa"),
        annotation=str(EXAMPLES / "hg38_chr16_186964-397118.refGene.gtf"),
        # The isoformer of this test's Python, whatever `isoformer` is on PATH.
        isoformer=f"{sys.executable} -m isoformer_cli",
    )
    config.update(changes)
    path = folder / "config.yaml"
    path.write_text(json.dumps(config, indent=1))  # JSON is YAML
    return path, config


def snakemake(folder, configfile, *targets):
    return run([sys.executable, "-m", "snakemake", *targets, "--cores", "2", "--snakefile", WORKFLOW / "Snakefile",
                "--directory", folder, "--configfile", configfile], cwd=folder)


def body(path):
    """The lines of ``path`` except its provenance line (the only one a merge changes)."""
    lines = pathlib.Path(path).read_text().splitlines(keepends=True)
    return [line for line in lines if not line.startswith("# provenance:")]


def test_merged_shards_equal_one_run(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    configfile, config = write_config(work)
    assert config["shards"] == 3 and config["checkpoint"] == "demo"
    snakemake(work, configfile)
    results = work / config["outdir"]
    assert sorted(p.name for p in (results / "shards").glob("predictions.*.tsv")) == [
        "predictions.1-of-3.tsv", "predictions.2-of-3.tsv", "predictions.3-of-3.tsv"]

    # One run with the options of the shards, and their thread count (floating-point sums depend on it).
    single = tmp_path / "single"
    single.mkdir()
    run([sys.executable, "-m", "isoformer_cli", "predict", "--genome", config["genome"],
         "--annotation", config["annotation"], "--checkpoint", config["checkpoint"],
         "--max-memory", f"{config['mem_mb']}M", *shlex.split(config["predict_options"]), "-o", single / "predictions.tsv",
         "--gene-summary", single / "gene_summary.tsv"],
        cwd=single, OMP_NUM_THREADS=str(config["threads"]))

    for name in ("gene_summary.tsv", "predictions.tsv"):
        merged = body(results / name)
        assert len(merged) > 10, name
        assert merged == body(single / name), f"{name}: the merged shards differ from one run"


def test_a_config_without_a_setting_is_refused_with_its_name(tmp_path):
    configfile, _ = write_config(tmp_path)
    config = json.loads(configfile.read_text())
    del config["checkpoint"]
    configfile.write_text(json.dumps(config))
    result = subprocess.run([sys.executable, "-m", "snakemake", "--dry-run", "--cores", "1", "--snakefile",
                             str(WORKFLOW / "Snakefile"), "--directory", str(tmp_path), "--configfile",
                             str(configfile)], capture_output=True, text=True, timeout=300, env=environment())
    assert result.returncode != 0
    assert "the configuration lacks checkpoint" in result.stdout + result.stderr
