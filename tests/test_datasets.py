"""`isoformer datasets pull`: the official dataset's CSV layout (written here, small) converted into this tool's
formats, from a local folder and from a loopback hub (resume, checksum, offline), then `calibrate --dataset`."""

import hashlib
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from huggingface_hub import constants as hub_constants

from cli_helpers import HUMAN_GENOME, HUMAN_GTF
from local_hub import LocalHub
from isoformer_cli.cli.main import cli
from isoformer_cli.formats.triples_table import read_triples_table
from isoformer_cli.genomics.expression import read_expression
from isoformer_cli.models.network.configuration import GTEX_TISSUES
from isoformer_cli.triples.source import TripleSource, iter_triples
from isoformer_cli.genomics.genome import Genome

REPO = "datasets/InstaDeepAI/multi_omics_transcript_expression"
TABLE = "transcript_expression/GTEx_final.csv"
NORMALIZATION = "transcript_expression/normalization_values.csv"
SPLITS = ["train", "validation", "test", "validation", "train", "validation"]


def invoke(*args):
    return CliRunner().invoke(cli, ["-q", *[str(arg) for arg in args]])


def human_triples(count=len(SPLITS)):
    """The first ``count`` coding transcripts of the human example (14 at most)."""
    source = TripleSource(genome=HUMAN_GENOME, annotation=HUMAN_GTF)
    return [t for t in iter_triples(source, Genome(HUMAN_GENOME)) if t.protein][:count]


def official_csv(standardised=True, mean=2.0, sigma=0.5, columns_dropped=(), splits=SPLITS, genes=None):
    """``(csv bytes, normalization bytes, log1p labels)`` in the official layout, for real human-example
    transcripts (1-based start/end from their 0-based exons; the 5'UTR/CDS/3'UTR split of the RNA): one row per
    entry of ``splits`` (its split), with gene ids ``genes`` (a list; default the annotation's, one transcript
    per gene in the human example)."""
    rng = np.random.default_rng(1)
    labels = rng.uniform(0, 4, size=(len(splits), len(GTEX_TISSUES)))
    header = ["transcript_id_gtex", "gene_id_gtex", "split", "chr", "strand", "start", "end", "RNA", "5UTR", "CDS",
              "3UTR", "Protein", *GTEX_TISSUES]
    header = [name for name in header if name not in columns_dropped]
    lines = [",".join(header)]
    triples = human_triples(len(splits))
    assert len(triples) == len(splits), "the human example has 14 coding transcripts"
    for index, (triple, split, values) in enumerate(zip(triples, splits, labels)):
        t = triple.transcript
        shown = (values - mean) / sigma if standardised else values
        rna, (cds_start, cds_end) = triple.rna, (triple.cds_start, triple.cds_end)
        row = {"transcript_id_gtex": t.transcript_id, "gene_id_gtex": genes[index] if genes else t.gene_id,
               "split": split,
               "chr": triple.genome_chrom, "strand": t.strand, "start": str(t.start + 1), "end": str(t.end),
               "RNA": rna, "5UTR": rna[:cds_start], "CDS": rna[cds_start:cds_end], "3UTR": rna[cds_end:],
               "Protein": triple.protein}
        row.update({tissue: repr(float(value)) for tissue, value in zip(GTEX_TISSUES, shown)})
        lines.append(",".join(row[name] for name in header))
    normalization = "tissue,m_t,sigma_t,m_g,sigma_g\n" + "".join(f"{t},{mean},{sigma},0,1\n" for t in GTEX_TISSUES)
    return ("\n".join(lines) + "\n").encode(), normalization.encode(), labels


def local_source(tmp_path, **kwargs):
    table, normalization, labels = official_csv(**kwargs)
    folder = tmp_path / "source" / "transcript_expression"
    folder.mkdir(parents=True)
    (folder / "GTEx_final.csv").write_bytes(table)
    (folder / "normalization_values.csv").write_bytes(normalization)
    return tmp_path / "source", labels


def test_local_folder_is_converted_and_validated_then_calibrated_on(tmp_path):
    source, labels = local_source(tmp_path)
    out = tmp_path / "datasets"
    result = invoke("datasets", "pull", "isoformer-gtex", "--source", source, "--dataset-dir", out,
                    "--genome", HUMAN_GENOME, "--annotation", HUMAN_GTF)
    assert result.exit_code == 0, result.output
    folder = out / "isoformer-gtex"
    # The triples table equals the one this tool builds from the annotation, window and CDS included.
    built = {t.transcript.transcript_id: t for t in human_triples()}
    rows = list(read_triples_table(str(folder / "triples.tsv")))
    assert [row.transcript_id for row in rows] == list(built)
    for row in rows:
        triple = built[row.transcript_id]
        assert (row.tss, row.window_start, row.window_end, row.cds_start, row.cds_end, row.rna, row.protein) == (
            triple.tss, triple.window_start, triple.window_end, triple.cds_start, triple.cds_end, triple.rna,
            triple.protein)
    validation = [row.transcript_id for row in read_triples_table(str(folder / "triples.validation.tsv"))]
    assert validation == [tid for tid, split in zip(built, SPLITS) if split == "validation"]
    # The standardisation is undone: the labels are log(TPM+1) again.
    expression = read_expression(str(folder / "expression.tsv"), values="log1p")
    np.testing.assert_allclose(expression.values, labels, atol=1e-9)
    assert expression.tissues == list(GTEX_TISSUES)
    record = json.loads((folder / "dataset.json").read_text())
    assert record["checks"]["standardised"] is True
    assert record["checks"]["rna_equals_annotation"] == [len(SPLITS), len(SPLITS)]
    assert record["checks"]["regions_spell_rna"] == [len(SPLITS), len(SPLITS)]
    assert (folder / "split.tsv").read_text().splitlines()[1].endswith("\ttrain")

    result = invoke("models", "calibrate", "demo", "--genome", HUMAN_GENOME, "--dataset", "isoformer-gtex",
                    "--split", "validation", "--dataset-dir", out, "--min-spearman", "-1", "-o", tmp_path / "cal")
    assert result.exit_code == 0, result.output
    assert json.loads(_metadata(tmp_path / "cal")["calibration"])["transcripts"] == 3


def _metadata(folder):
    from isoformer_cli.models.checkpoint.check import checkpoint_metadata

    return checkpoint_metadata(str(folder / "model.safetensors"))


def test_unknown_layouts_and_missing_normalisation_are_refused(tmp_path):
    source, _ = local_source(tmp_path, columns_dropped=("Protein",))
    result = invoke("datasets", "pull", "isoformer-gtex", "--source", source, "--dataset-dir", tmp_path / "d")
    assert result.exit_code == 1
    assert "unknown layout: no column 'Protein'" in result.output
    assert not (tmp_path / "d" / "isoformer-gtex").exists()

    (source / "transcript_expression" / "normalization_values.csv").unlink()
    (source / "transcript_expression" / "GTEx_final.csv").write_bytes(official_csv()[0])
    result = invoke("datasets", "pull", "isoformer-gtex", "--source", source, "--dataset-dir", tmp_path / "d")
    assert result.exit_code == 1
    assert "labels are standardised" in result.output and "normalization_values.csv" in result.output
    assert not (tmp_path / "d" / "isoformer-gtex").exists()

    result = invoke("datasets", "pull", "isoformer-gtex", "--source", tmp_path / "nowhere", "--dataset-dir",
                    tmp_path / "d")
    assert result.exit_code == 1 and "no such folder" in result.output
    result = invoke("datasets", "pull", "unknown", "--source", source)
    assert result.exit_code == 2 and "unknown dataset 'unknown'" in result.output
    result = invoke("models", "calibrate", "demo", "--genome", HUMAN_GENOME, "--dataset", "isoformer-gtex",
                    "--dataset-dir", tmp_path / "d", "-o", tmp_path / "cal")
    assert result.exit_code == 1 and "is not pulled" in result.output
    result = invoke("models", "calibrate", "demo", "--genome", HUMAN_GENOME, "--dataset", "isoformer-gtex",
                    "--annotation", HUMAN_GTF, "-o", tmp_path / "cal")
    assert result.exit_code == 2 and "drop --annotation" in result.output


@pytest.fixture
def hub(tmp_path, monkeypatch):
    with LocalHub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.delenv("HF_HUB_CACHE", raising=False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setenv("ISOFORMER_DATASET_DIR", str(tmp_path / "datasets"))
        monkeypatch.setattr(hub_constants, "DOWNLOAD_CHUNK_SIZE", 4096)
        yield server


def test_pull_from_the_hub_resumes_checks_and_works_offline(tmp_path, hub, monkeypatch):
    table, normalization, labels = official_csv(standardised=False)
    hub.add(REPO, {TABLE: table, NORMALIZATION: normalization})
    hub.fault(REPO, TABLE, drop_after=len(table) // 2, drops=1)
    result = invoke("datasets", "pull", "isoformer-gtex")
    assert result.exit_code == 0, result.output
    ranges = [entry[2] for entry in hub.requests("GET", TABLE)]
    assert any(value and value.startswith("bytes=") for value in ranges)  # the dropped download was resumed
    folder = tmp_path / "datasets" / "isoformer-gtex"
    np.testing.assert_allclose(read_expression(str(folder / "expression.tsv"), values="log1p").values, labels,
                               atol=1e-9)
    record = json.loads((folder / "dataset.json").read_text())
    assert record["pulled_from"].startswith("InstaDeepAI/multi_omics_transcript_expression@")
    assert record["checks"]["standardised"] is False

    # A corrupted download keeps nothing (the kept download is removed first: it would be reused, checked).
    shutil.rmtree(tmp_path / "datasets" / ".downloads")
    damaged = bytearray(table)
    damaged[len(damaged) // 2] ^= 0x01
    hub.fault(REPO, TABLE, corrupt=bytes(damaged))
    result = invoke("datasets", "pull", "isoformer-gtex", "--name", "other")
    assert result.exit_code == 1
    assert f"its SHA-256 is {hashlib.sha256(bytes(damaged)).hexdigest()}" in result.output
    assert not (tmp_path / "datasets" / "other").exists()

    # Offline: says what to copy where.
    del hub.faults[(REPO, TABLE)]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    result = invoke("datasets", "pull", "isoformer-gtex", "--name", "third")
    assert result.exit_code == 1
    assert "offline (HF_HUB_OFFLINE is set)" in result.output
    assert f"{hub.url}/datasets/InstaDeepAI/multi_omics_transcript_expression" in result.output
