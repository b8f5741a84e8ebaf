"""Inputs from standard input: ``isoformer triples ... | isoformer predict --triples - ...`` in a real pipe."""

import pathlib
import subprocess
import sys

from click.testing import CliRunner

from isoformer_cli.cli.main import cli
from isoformer_cli.formats.predictions import read_predictions

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "example_data"
GENOME = str(EXAMPLES / "hg38_chr16_186964-397118.fa")
ANNOTATION = str(EXAMPLES / "hg38_chr16_186964-397118.refGene.gtf")
ISOFORMER = [sys.executable, "-m", "isoformer_cli", "-q"]


def body(path):
    """The rows of a predictions TSV (the provenance header names the command line, which differs)."""
    return [line for line in pathlib.Path(path).read_text().splitlines() if not line.startswith("#")]


def test_triples_piped_into_predict_equal_a_table_file(tmp_path):
    table = tmp_path / "triples.tsv"
    # Written to standard output like the piped run below, so that both record the same command line in the
    # table's provenance line and the two tables are the same bytes.
    with open(table, "wb") as stream:
        subprocess.run([*ISOFORMER, "triples", "--genome", GENOME, "--annotation", ANNOTATION], stdout=stream,
                       check=True)
    from_file = tmp_path / "from_file.tsv"
    subprocess.run([*ISOFORMER, "predict", "--genome", GENOME, "--triples", str(table), "--checkpoint", "demo",
                    "-o", str(from_file)], check=True)
    producer = subprocess.Popen([*ISOFORMER, "triples", "--genome", GENOME, "--annotation", ANNOTATION],
                                stdout=subprocess.PIPE)
    consumer = subprocess.run([*ISOFORMER, "predict", "--genome", GENOME, "--triples", "-", "--checkpoint", "demo",
                               "-o", "-"], stdin=producer.stdout, capture_output=True, text=True)
    producer.stdout.close()
    assert producer.wait() == 0 and consumer.returncode == 0, consumer.stderr
    piped = tmp_path / "piped.tsv"
    piped.write_text(consumer.stdout)
    assert body(piped) == body(from_file) and len(body(piped)) == 18
    # The provenance checksums what came through the pipe: the same bytes as the file.
    assert read_predictions(str(piped)).provenance["inputs"]["triples"] == \
        read_predictions(str(from_file)).provenance["inputs"]["triples"]


def test_a_bad_table_on_standard_input_is_named_as_such(tmp_path):
    output = tmp_path / "out.tsv"
    result = CliRunner().invoke(cli, ["-q", "predict", "--genome", GENOME, "--triples", "-", "--checkpoint", "demo",
                                      "-o", str(output)], input="transcript_id\tgene_id\nT1\tG1\n")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith(
        "isoformer: error: standard input (--triples -):1: not a triples table: the header must be")
    assert not output.exists()


def test_standard_input_is_refused_under_torchrun(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    result = CliRunner().invoke(cli, ["-q", "embed", "--genome", GENOME, "--triples", "-", "--checkpoint", "demo",
                                      "-o", str(tmp_path / "out.h5")], input="")
    assert result.exit_code == 1
    assert "--triples - (standard input) cannot be shared among torchrun ranks; give a file" in result.output


def test_finetune_refuses_triples_from_standard_input(tmp_path):
    expression = tmp_path / "expression.tsv"
    expression.write_text("transcript_id\tLiver\nNM_1\t1\n")
    result = CliRunner().invoke(cli, ["-q", "finetune", "--genome", GENOME, "--triples", "-", "--expression",
                                      str(expression), "--checkpoint", "demo", "-o", str(tmp_path / "run")], input="")
    assert result.exit_code == 2
    assert "--triples - (standard input) cannot be fine-tuned on" in result.output
    assert not (tmp_path / "run").exists()


def test_standard_input_is_hashed_while_it_is_copied(tmp_path, monkeypatch):
    """The copy of ``--triples -`` is checksummed as it is written, not read once more for the provenance, and
    the provenance records the checksum of the bytes that came in (issue 20)."""
    import hashlib

    from isoformer_cli.formats import provenance

    table = tmp_path / "triples.tsv"
    result = CliRunner().invoke(cli, ["-q", "triples", "--genome", GENOME, "--annotation", ANNOTATION, "-o",
                                      str(table)])
    assert result.exit_code == 0, result.output
    hashed, real = [], provenance.sha256_hex

    def recorded(path):
        hashed.append(str(path))
        return real(path)

    monkeypatch.setattr(provenance, "sha256_hex", recorded)
    output = tmp_path / "out.tsv"
    result = CliRunner().invoke(cli, ["-q", "predict", "--genome", GENOME, "--triples", "-", "--checkpoint", "demo",
                                      "-o", str(output)], input=table.read_bytes())
    assert result.exit_code == 0, result.output
    assert GENOME in hashed and not [path for path in hashed if "isoformer-stdin-" in path]
    assert read_predictions(str(output)).provenance["inputs"]["triples"] == \
        "sha256:" + hashlib.sha256(table.read_bytes()).hexdigest()
    # A named file is hashed when the provenance is built.
    hashed.clear()
    result = CliRunner().invoke(cli, ["-q", "predict", "--genome", GENOME, "--triples", str(table), "--checkpoint",
                                      "demo", "-o", str(tmp_path / "named.tsv")])
    assert result.exit_code == 0, result.output
    assert str(table) in hashed
