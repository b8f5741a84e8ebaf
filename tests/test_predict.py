"""`isoformer predict` / `isoformer embed` end to end, with the bundled demo checkpoint."""

import gzip
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from cli_helpers import invoke, run_torchrun
from isoformer_cli.app.predict import PredictConfig, run_predict
from isoformer_cli.cli.main import cli
from isoformer_cli.formats.atomic import temporary_path_for
from isoformer_cli.formats.embeddings import read_embeddings
from isoformer_cli.formats.predictions import read_predictions
from isoformer_cli.runtime.options import RuntimeOptions
from isoformer_cli.triples.source import TripleSource

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "example_data"
HUMAN_GENOME = str(EXAMPLES / "hg38_chr16_186964-397118.fa")
HUMAN_GTF = str(EXAMPLES / "hg38_chr16_186964-397118.refGene.gtf")
MOUSE_GENOME = str(EXAMPLES / "chr9.4M.fa.gz")
MOUSE_GTF = str(EXAMPLES / "chr9.4M.gtf.gz")


def predict(*args, expect=0):
    return invoke("predict", "--checkpoint", "demo", *args, expect=expect)


def values_of(path):
    table = read_predictions(str(path))
    return [row["transcript_id"] for row in table.obs], table.values, table


def test_predict_writes_one_row_per_transcript_in_annotation_order(tmp_path):
    out = tmp_path / "pred.tsv"
    predict("--genome", HUMAN_GENOME, "--annotation", HUMAN_GTF, "-o", str(out))
    ids, values, table = values_of(out)
    gtf_order = []
    for line in open(HUMAN_GTF):
        transcript_id = line.split('transcript_id "')[1].split('"')[0]
        if transcript_id not in gtf_order:
            gtf_order.append(transcript_id)
    assert ids == gtf_order
    assert values.shape == (17, 30)
    assert np.isfinite(values).all()
    assert table.provenance["demo"] is True
    assert "DEMO" in out.read_text().splitlines()[2]
    header = [line for line in out.read_text().splitlines() if not line.startswith("#")][0].split("\t")
    assert header[:4] == ["transcript_id", "gene_id", "gene_name", "Adipose Tissue"]
    assert header[-1] == "flags"


def test_annotation_path_equals_triples_path(tmp_path):
    triples = tmp_path / "triples.tsv"
    result = CliRunner().invoke(cli, ["-q", "triples", "--genome", MOUSE_GENOME, "--annotation", MOUSE_GTF,
                                      "--dna-length", "1000", "-o", str(triples)])
    assert result.exit_code == 0, result.output
    from_annotation, from_triples = tmp_path / "a.tsv", tmp_path / "t.tsv"
    predict("--genome", MOUSE_GENOME, "--annotation", MOUSE_GTF, "-o", str(from_annotation))
    predict("--genome", MOUSE_GENOME, "--triples", str(triples), "-o", str(from_triples))
    ids_a, values_a, table_a = values_of(from_annotation)
    ids_t, values_t, table_t = values_of(from_triples)
    assert ids_a == ids_t
    np.testing.assert_array_equal(values_a, values_t)
    assert [row["flags"] for row in table_a.obs] == [row["flags"] for row in table_t.obs]
    # The tiny model takes at most 126 residues: longer mouse proteins are truncated and flagged.
    assert any("protein_truncated" in row["flags"] for row in table_a.obs)


def test_tsv_equals_hdf5_and_anndata_reads_it(tmp_path):
    anndata = pytest.importorskip("anndata")
    tsv, h5 = tmp_path / "p.tsv.gz", tmp_path / "p.h5ad"
    predict("--genome", MOUSE_GENOME, "--annotation", MOUSE_GTF, "-o", str(tsv))
    predict("--genome", MOUSE_GENOME, "--annotation", MOUSE_GTF, "-o", str(h5))
    ids_t, values_t, _ = values_of(tsv)
    ids_h, values_h, _ = values_of(h5)
    assert ids_t == ids_h
    np.testing.assert_allclose(values_t, values_h, rtol=1e-5, atol=1e-9)
    adata = anndata.read_h5ad(h5)
    assert list(adata.obs_names) == ids_h
    assert adata.var_names[0] == "Adipose Tissue"
    assert adata.uns["provenance"]["demo"]


@pytest.fixture(scope="module")
def mouse_reference(tmp_path_factory):
    """Predictions for the mouse example with the default engine settings."""
    path = tmp_path_factory.mktemp("reference") / "reference.tsv"
    source = TripleSource(genome=MOUSE_GENOME, annotation=MOUSE_GTF)
    run_predict(PredictConfig(source=source, checkpoint="demo", output=str(path), command_args=("x",)))
    return values_of(path)


@pytest.mark.parametrize("options", [
    {"max_tokens": 2500, "chunk_size": 3},   # one DNA window per batch, chunks splitting genes
    {"max_tokens": 1 << 22, "chunk_size": 1000},  # one chunk, few large batches
    {"dedupe": False, "chunk_size": 7},      # every isoform encodes its own inputs
])
def test_batching_chunking_and_sharing_do_not_change_results(tmp_path, options, mouse_reference):
    source = TripleSource(genome=MOUSE_GENOME, annotation=MOUSE_GTF)
    variant = tmp_path / "variant.tsv"
    run_predict(PredictConfig(source=source, checkpoint="demo", output=str(variant), command_args=("x",), **options))
    ids_r, values_r, _ = mouse_reference
    ids_v, values_v, _ = values_of(variant)
    assert ids_r == ids_v
    np.testing.assert_allclose(values_v, values_r, rtol=1e-4, atol=1e-6)


def test_worker_processes_give_the_same_table(tmp_path, mouse_reference):
    source = TripleSource(genome=MOUSE_GENOME, annotation=MOUSE_GTF)
    out = tmp_path / "workers.tsv"
    run_predict(PredictConfig(source=source, checkpoint="demo", output=str(out), runtime=RuntimeOptions(num_workers=2), chunk_size=5,
                              command_args=("x",)))
    ids_r, values_r, _ = mouse_reference
    ids_w, values_w, _ = values_of(out)
    assert ids_w == ids_r
    np.testing.assert_allclose(values_w, values_r, rtol=1e-4, atol=1e-6)


def test_error_in_a_worker_process_is_one_line_and_leaves_nothing(tmp_path):
    gtf = tmp_path / "bad.gtf"
    good = gzip.open(MOUSE_GTF, "rt").read().splitlines()
    gtf.write_text("\n".join(good[:40] + ["chr9\tx\texon\tten\t20\t.\t+\t.\tgene_id \"g\"; transcript_id \"t\";"]) + "\n")
    out = tmp_path / "out.tsv"
    result = CliRunner().invoke(cli, ["-q", "predict", "--checkpoint", "demo", "--genome", MOUSE_GENOME,
                                      "--annotation", str(gtf), "--num-workers", "1", "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert f"{gtf}:" in result.output and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("isoformer: error: ")
    assert os.listdir(tmp_path) == ["bad.gtf"]


def test_sharing_encodes_each_distinct_input_once(tmp_path, caplog):
    source = TripleSource(genome=MOUSE_GENOME, annotation=MOUSE_GTF)
    caplog.set_level("INFO", logger="isoformer_cli")
    run_predict(PredictConfig(source=source, checkpoint="demo", output=str(tmp_path / "a.tsv"),
                              chunk_size=1000, command_args=("x",)))
    shared = next(r.getMessage() for r in caplog.records if "distinct inputs" in r.getMessage())
    caplog.clear()
    run_predict(PredictConfig(source=source, checkpoint="demo", output=str(tmp_path / "b.tsv"),
                              chunk_size=1000, dedupe=False, command_args=("x",)))
    unshared = next(r.getMessage() for r in caplog.records if "distinct inputs" in r.getMessage())
    encoded_shared = int(shared.split("(")[1].split()[0])
    encoded_unshared = int(unshared.split("(")[1].split()[0])
    assert encoded_shared < encoded_unshared


def test_gene_summary_usage_sums_to_one_per_gene_and_tissue(tmp_path):
    out, summary = tmp_path / "p.tsv", tmp_path / "genes.tsv"
    predict("--genome", MOUSE_GENOME, "--annotation", MOUSE_GTF, "-o", str(out), "--gene-summary", str(summary))
    totals = {}
    for line in summary.read_text().splitlines():
        if line.startswith("#") or line.startswith("gene_id"):
            continue
        gene, _, tissue, gene_tpm, _, tpm, usage = line.split("\t")
        if usage != "NA":
            totals[(gene, tissue)] = totals.get((gene, tissue), 0.0) + float(usage)
    assert totals
    assert all(abs(total - 1.0) < 1e-4 for total in totals.values())


def test_embed_writes_fused_and_modality_embeddings(tmp_path):
    out = tmp_path / "emb.h5"
    result = CliRunner().invoke(cli, ["-q", "embed", "--checkpoint", "demo", "--genome", HUMAN_GENOME,
                                      "--annotation", HUMAN_GTF, "--modalities", "-o", str(out)])
    assert result.exit_code == 0, result.output
    embeddings = read_embeddings(str(out))
    assert embeddings.fused.shape[0] == 17
    assert np.isfinite(embeddings.fused).all()
    assert set(embeddings.modalities) == {"dna", "rna", "protein"}


@pytest.mark.parametrize("args, message", [
    (["--checkpoint", "/nonexistent/checkpoint"], "checkpoint folder not found"),
    (["--device", "cuda:0"], "CUDA is not available"),
    (["-o", "out.xlsx"], "unknown output format"),
    (["--genome", "/nonexistent.fa"], "nonexistent.fa"),
    (["-o", "missing-folder/out.tsv"], "does not exist"),
])
def test_bad_inputs_fail_cleanly_and_leave_nothing(tmp_path, args, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if "--device" in args:
        pytest.importorskip("torch")
        import torch

        if torch.cuda.is_available():
            pytest.skip("a CUDA device is present")
    base = {"--genome": HUMAN_GENOME, "--annotation": HUMAN_GTF, "-o": "out.tsv", "--checkpoint": "demo"}
    for key, value in zip(args[::2], args[1::2]):
        base[key] = value
    argv = ["-q", "predict"] + [item for pair in base.items() for item in pair]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert os.listdir(tmp_path) == []


def test_wrong_tissue_count_in_checkpoint_is_reported(tmp_path):
    import json
    import shutil

    from isoformer_cli.models.distribution.locate import demo_checkpoint_path

    broken = tmp_path / "broken"
    shutil.copytree(demo_checkpoint_path(), broken)
    config = json.loads((broken / "config.json").read_text())
    config["tissues"] = config["tissues"][:29]
    (broken / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out.tsv"
    result = CliRunner().invoke(cli, ["-q", "predict", "--checkpoint", str(broken), "--genome", HUMAN_GENOME,
                                      "--annotation", HUMAN_GTF, "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert "head.output" in result.output
    assert not out.exists()


def test_unknown_contig_everywhere_is_reported(tmp_path):
    gtf = tmp_path / "other.gtf"
    gtf.write_text('chrZZ\tx\texon\t100\t200\t.\t+\t.\tgene_id "g"; transcript_id "t";\n')
    out = tmp_path / "out.tsv"
    result = CliRunner().invoke(cli, ["-q", "predict", "--checkpoint", "demo", "--genome", HUMAN_GENOME,
                                      "--annotation", str(gtf), "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert "chrZZ" in result.output
    assert not out.exists() and not os.path.exists(temporary_path_for(str(out)))


def test_missing_model_points_to_the_options():
    result = CliRunner().invoke(cli, ["-q", "predict", "--genome", HUMAN_GENOME, "--annotation", HUMAN_GTF])
    assert result.exit_code == 1
    assert "--checkpoint" in result.output


def test_model_dir_resolves_checkpoint_names(tmp_path, monkeypatch):
    import shutil

    from isoformer_cli.models.distribution.locate import demo_checkpoint_path

    shutil.copytree(demo_checkpoint_path(), tmp_path / "models" / "mine")
    monkeypatch.setenv("ISOFORMER_MODEL_DIR", str(tmp_path / "models"))
    out = tmp_path / "p.tsv"
    result = CliRunner().invoke(cli, ["-q", "predict", "--checkpoint", "mine", "--genome", HUMAN_GENOME,
                                      "--annotation", HUMAN_GTF, "-o", str(out)])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["-q", "predict", "--checkpoint", "theirs", "--genome", HUMAN_GENOME,
                                      "--annotation", HUMAN_GTF, "-o", str(out)])
    assert result.exit_code == 1
    assert "mine" in result.output


def _replicated_annotation(folder, copies):
    """The mouse GTF repeated ``copies`` times under new transcript ids (same sequences)."""
    lines = gzip.open(MOUSE_GTF, "rt").read().splitlines()
    path = folder / f"x{copies}.gtf"
    with open(path, "w") as out:
        for copy in range(copies):
            for line in lines:
                if line.startswith("#"):
                    continue
                out.write(line.replace('transcript_id "', f'transcript_id "c{copy}_') + "\n")
    return path


def _predict_process(args, env=None):
    command = [sys.executable, "-m", "isoformer_cli", "-q", "predict", "--checkpoint", "demo", *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_kill_9_then_resume_gives_a_byte_identical_file(tmp_path):
    gtf = _replicated_annotation(tmp_path, 4)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    common = ["--genome", MOUSE_GENOME, "--annotation", str(gtf), "--chunk-size", "4"]
    # Plain TSV: rows reach the temporary file chunk by chunk, so the kill lands mid-run.
    # (.tsv.gz and .h5ad resume byte-identically too: tests/test_predictions_output.py.)
    for suffix in (".tsv",):
        # Same output path in both runs: the path is part of the recorded command line.
        target = tmp_path / f"predictions{suffix}"
        assert _predict_process(common + ["-o", str(target)], env).wait() == 0
        reference = target.rename(tmp_path / f"reference{suffix}")
        partial = pathlib.Path(temporary_path_for(str(target)))
        process = _predict_process(common + ["-o", str(target)], env)
        deadline = time.time() + 120
        while time.time() < deadline and (not partial.exists() or partial.read_bytes().count(b"\n") < 30):
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert partial.exists() and not target.exists()
        resumed = _predict_process(common + ["-o", str(target), "--resume"], env)
        _, stderr = resumed.communicate()
        assert resumed.returncode == 0, stderr
        assert target.read_bytes() == reference.read_bytes()
        assert not partial.exists()


def test_torchrun_two_processes_equal_one(tmp_path):
    pytest.importorskip("torch.distributed")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    common = ["--genome", MOUSE_GENOME, "--annotation", MOUSE_GTF, "--chunk-size", "5"]
    single = tmp_path / "single.tsv"
    assert _predict_process(common + ["-o", str(single)], env).wait() == 0
    double = tmp_path / "double.tsv"
    run_torchrun(["-q", "predict", "--checkpoint", "demo", *common, "-o", double], env, timeout=300)
    body = lambda path: [line for line in path.read_text().splitlines() if not line.startswith("# provenance")]
    assert body(single) == body(double)


def test_nucleotide_transformer_dna_encoder_runs_through_the_engine(tmp_path):
    import torch

    from isoformer_cli.models.network.build import build_model
    from isoformer_cli.models.checkpoint.save import save_checkpoint
    from isoformer_cli.models.network.configuration import IsoformerConfig

    torch.manual_seed(0)
    model = build_model(IsoformerConfig.from_preset("tiny", dna_encoder_type="nucleotide_transformer"))
    save_checkpoint(model, tmp_path / "nt-dna")
    source = TripleSource(genome=HUMAN_GENOME, annotation=HUMAN_GTF)
    shared, unshared = tmp_path / "shared.tsv", tmp_path / "unshared.tsv"
    for output, dedupe in ((shared, True), (unshared, False)):
        run_predict(PredictConfig(source=source, checkpoint=str(tmp_path / "nt-dna"), output=str(output),
                                  dedupe=dedupe, chunk_size=5, command_args=("x",)))
    ids, values, _ = values_of(shared)
    assert len(ids) == 17 and np.isfinite(values).all()
    np.testing.assert_allclose(values, values_of(unshared)[1], rtol=1e-4, atol=1e-6)
