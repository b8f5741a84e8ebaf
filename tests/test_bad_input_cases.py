"""Ordinary mistakes of a new user, through the command line: each is bad input with one clear line,
and no input is changed. (Outputs: test_output_targets.py, test_same_file.py, test_concurrent_runs.py.)
"""

import gzip
import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from cli_helpers import HUMAN_GENOME, HUMAN_GTF, fingerprint, invoke, leftovers, one_error_line
from isoformer_cli.cli import main as cli_main
from isoformer_cli.formats.embeddings import read_embeddings
from isoformer_cli.models.distribution.locate import demo_checkpoint_path

MOUSE_GENOME = os.path.join(os.path.dirname(HUMAN_GENOME), "chr9.4M.fa.gz")


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """A gzipped triples table and a prediction table of the human example."""
    folder = tmp_path_factory.mktemp("tables")
    common = ["--genome", HUMAN_GENOME, "--annotation", HUMAN_GTF]
    assert invoke("triples", *common, "--dna-length", "1000", "-o", folder / "t.tsv.gz").exit_code == 0
    assert invoke("predict", *common, "--checkpoint", "demo", "-o", folder / "p.tsv").exit_code == 0
    assert invoke("predict", *common, "--checkpoint", "demo", "-o", folder / "p.tsv.gz").exit_code == 0
    return folder


def _expression(path, ids, tissues=("Liver", "Lung")):
    rng = np.random.default_rng(0)
    lines = ["transcript_id\t" + "\t".join(tissues)]
    lines += [f"{name}\t" + "\t".join(f"{value:.3f}" for value in rng.exponential(5, len(tissues))) for name in ids]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _ids(predictions):
    return [line.split("\t")[0] for line in open(predictions) if not line.startswith(("#", "transcript_id"))]


# ------------------------------------------------------------------------------- embed --modalities


@pytest.mark.parametrize("selection", [["--biotype", "lincRNA"], ["--transcripts", "NR_104317"], ["--chunk-size", "1"]])
def test_embed_modalities_with_chunks_lacking_a_protein(tmp_path, selection):
    out = tmp_path / "e.h5"
    # The refGene example has no biotypes (a --biotype selection of it is an error): lincRNAs of the mouse one.
    inputs = ([MOUSE_GENOME, os.path.join(os.path.dirname(HUMAN_GENOME), "chr9.4M.gtf.gz")]
              if selection[0] == "--biotype" else [HUMAN_GENOME, HUMAN_GTF])
    result = invoke("embed", "--genome", inputs[0], "--annotation", inputs[1], "--checkpoint", "demo",
                    "--modalities", *selection, "-o", out)
    assert result.exit_code == 0, result.output
    embeddings = read_embeddings(str(out))
    values, has = embeddings.modalities["protein"]
    assert set(embeddings.modalities) == {"dna", "rna", "protein"}
    if selection[0] != "--chunk-size":
        assert len(has) == (5 if selection[0] == "--biotype" else 1)
        assert not has.any() and np.isnan(values).all()  # non-coding RNAs: no protein anywhere
    else:
        assert has.any() and not has.all()


def test_embed_and_evaluate_outputs_of_the_demo_checkpoint_say_so(tmp_path, tables):
    out = tmp_path / "e.h5"
    assert invoke("embed", "--genome", HUMAN_GENOME, "--annotation", HUMAN_GTF, "--checkpoint", "demo",
                  "--transcripts", "NM_032039", "-o", out).exit_code == 0
    with h5py.File(out, "r") as handle:
        assert handle.attrs["warning"].startswith("WARNING: DEMO checkpoint")
    predictions = str(tables / "p.tsv")
    expression = _expression(tmp_path / "e.tsv", _ids(predictions))
    result = invoke("evaluate", "--predictions", predictions, "--expression", expression, "-o", tmp_path / "m.tsv")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.tsv").read_text().splitlines()[1].startswith("# WARNING: DEMO checkpoint")
    assert "WARNING: DEMO checkpoint" in result.output


# ----------------------------------------------------------------------------- damaged compressed


def _truncated(source, target):
    data = source.read_bytes()
    target.write_bytes(data[: len(data) * 2 // 3])
    return str(target)


def test_truncated_gzip_triples_table_is_bad_input(tmp_path, tables):
    cut = _truncated(tables / "t.tsv.gz", tmp_path / "cut.tsv.gz")
    before = fingerprint(cut)
    result = invoke("predict", "--genome", HUMAN_GENOME, "--triples", cut, "--checkpoint", "demo",
                    "-o", tmp_path / "p.tsv")
    assert result.exit_code == 1, result.output
    line = result.output.splitlines()[-1]
    assert line.startswith(f"isoformer: error: {cut}: the triples table is truncated or corrupt (")
    assert "interrupted" not in result.output and "Traceback" not in result.output
    assert fingerprint(cut) == before and not (tmp_path / "p.tsv").exists() and leftovers(tmp_path) == []


def test_truncated_gzip_predictions_are_bad_input(tmp_path, tables):
    cut = _truncated(tables / "p.tsv.gz", tmp_path / "cut.tsv.gz")
    expression = _expression(tmp_path / "e.tsv", _ids(str(tables / "p.tsv")))
    result = invoke("evaluate", "--predictions", cut, "--expression", expression, "-o", tmp_path / "m.tsv")
    assert result.exit_code == 1
    assert result.output.startswith(f"isoformer: error: {cut}: the prediction table is truncated or corrupt (")
    assert result.output.count("\n") == 1 and not (tmp_path / "m.tsv").exists()


def test_truncated_hdf5_predictions_are_bad_input(tmp_path):
    table = tmp_path / "p.h5ad"
    assert invoke("predict", "--genome", HUMAN_GENOME, "--annotation", HUMAN_GTF, "--checkpoint", "demo",
                  "--transcripts", "NM_032039,NR_104317", "-o", table).exit_code == 0
    cut = _truncated(table, tmp_path / "cut.h5ad")
    expression = _expression(tmp_path / "e.tsv", ["NM_032039", "NR_104317"])
    result = invoke("evaluate", "--predictions", cut, "--expression", expression)
    assert result.exit_code == 1
    assert result.output.startswith(f"isoformer: error: {cut}: cannot read the HDF5 prediction table, it is "
                                    "truncated or damaged")
    assert result.output.count("\n") == 1


# ------------------------------------------------------------------------------- duplicate records


@pytest.mark.parametrize("records, lines", [
    ([("a", "ACGT"), ("a", "TTTT"), ("b", "GGGG")], (1, 3)),    # duplicate right after the first
    ([("a", "ACGT"), ("b", "GGGG"), ("a", "TTTT")], (1, 5)),    # duplicate last
    ([("b", "GGGG"), ("a x", "ACGT"), ("c", "CC"), ("a", "TT")], (3, 7)),  # a description does not hide it
])
@pytest.mark.parametrize("index", ["ours", pytest.param("samtools", marks=pytest.mark.oracle("samtools"))])
def test_duplicate_fasta_record_names_are_refused(tmp_path, records, lines, index):
    fasta = tmp_path / "dup.fa"
    fasta.write_text("".join(f">{name}\n{sequence}\n" for name, sequence in records))
    if index == "samtools":
        subprocess.run(["samtools", "faidx", str(fasta)], check=True, capture_output=True)
    before = fingerprint(fasta)
    result = invoke("triples", "--genome", fasta, "--annotation", HUMAN_GTF, "-o", tmp_path / "t.tsv")
    one_error_line(result, f"{fasta}: sequence name 'a' is used by two records, on lines {lines[0]} and {lines[1]}; "
                           "rename or remove one (every record needs its own name)")
    assert fingerprint(fasta) == before
    assert os.path.exists(f"{fasta}.fai") == (index == "samtools")  # no index of ours is left behind
    assert not (tmp_path / "t.tsv").exists()


def test_failed_index_of_a_truncated_bgzip_genome_leaves_no_index(tmp_path):
    data = open(MOUSE_GENOME, "rb").read()
    genome = tmp_path / "cut.fa.gz"
    genome.write_bytes(data[: len(data) - 5000])
    result = invoke("triples", "--genome", genome, "--annotation", HUMAN_GTF, "-o", tmp_path / "t.tsv")
    assert result.exit_code == 1
    assert result.output.startswith(f"isoformer: error: {genome}: the compressed FASTA is truncated or corrupt")
    assert result.output.count("\n") == 1
    assert sorted(os.listdir(tmp_path)) == ["cut.fa.gz"]


def test_an_index_pysam_fails_to_build_is_removed(tmp_path, monkeypatch):
    """Whatever makes htslib fail half-way, the index files it began are not left to be trusted later."""
    from isoformer_cli.genomics import genome as genome_module

    genome = tmp_path / "g.fa.gz"
    shutil.copy(MOUSE_GENOME, genome)

    class HalfWay:
        def __init__(self, path):
            open(f"{path}.gzi", "wb").close()  # what htslib leaves when it fails
            raise OSError("error when opening file")

    monkeypatch.setattr(genome_module.pysam, "FastaFile", HalfWay)
    result = invoke("triples", "--genome", genome, "--annotation", HUMAN_GTF, "-o", tmp_path / "t.tsv")
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert sorted(os.listdir(tmp_path)) == ["g.fa.gz"]


# ----------------------------------------------------------------------------------- config files


@pytest.mark.parametrize("key, value, expected", [
    ("nt_hidden_size", "64", '\'nt_hidden_size\' must be an integer, not "64" (a string)'),
    ("tissues", "Liver", '\'tissues\' must be a list of strings, not "Liver" (a string)'),
    ("pool_window_start", "10", '\'pool_window_start\' must be an integer or null, not "10" (a string)'),
    ("head_dropout", [0.1], "'head_dropout' must be a number, not [0.1] (a list)"),
    ("enformer_use_checkpointing", 1, "'enformer_use_checkpointing' must be true or false, not 1 (a number)"),
])
def test_config_value_of_the_wrong_type_is_bad_input(tmp_path, key, value, expected):
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(demo_checkpoint_path(), checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    config[key] = value
    (checkpoint / "config.json").write_text(json.dumps(config))
    for command in (["inspect", checkpoint],
                    ["predict", "--genome", HUMAN_GENOME, "--annotation", HUMAN_GTF, "--checkpoint", checkpoint]):
        result = invoke(*command)
        one_error_line(result, f"{checkpoint / 'config.json'}: {expected}; fix the value")


def test_config_unknown_key_is_bad_input_naming_it(tmp_path):
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(demo_checkpoint_path(), checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    config["nt_hiden_size"] = 64
    (checkpoint / "config.json").write_text(json.dumps(config))
    result = invoke("inspect", checkpoint)
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert f"{checkpoint / 'config.json'}: unknown configuration fields nt_hiden_size" in result.output


def test_config_integer_for_a_float_field_is_accepted(tmp_path):
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(demo_checkpoint_path(), checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    config["nt_rotary_base"] = 10000
    (checkpoint / "config.json").write_text(json.dumps(config))
    assert invoke("inspect", checkpoint).exit_code == 0


def test_training_state_of_the_wrong_type_is_bad_input():
    from isoformer_cli.formats.config_fields import check_field_types
    from isoformer_cli.errors import InputError
    from isoformer_cli.training.checkpoints import TRAINING_STATE_KINDS

    with pytest.raises(InputError, match=r"^state.json: 'epoch' must be an integer, not \"2\" \(a string\); fix"):
        check_field_types({"epoch": "2"}, TRAINING_STATE_KINDS, "state.json", refuse_unknown=True)
    with pytest.raises(InputError, match=r"^state.json: unknown key 'epochs'"):
        check_field_types({"epochs": 2}, TRAINING_STATE_KINDS, "state.json", refuse_unknown=True)


# ------------------------------------------------------------------------------------ broken pipe


def _cli_process(*args):
    return subprocess.Popen([sys.executable, "-m", "isoformer_cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_broken_pipe_mid_run_exits_141_quietly():
    # With the DNA windows the table is far larger than a pipe's buffer: the reader leaves mid-run.
    process = _cli_process("triples", "--genome", HUMAN_GENOME, "--annotation", HUMAN_GTF, "--with-dna")
    process.stdout.readline()
    process.stdout.close()  # `| head -1`
    assert process.wait(timeout=120) == cli_main.EXIT_BROKEN_PIPE == 141
    assert b"error" not in process.stderr.read()


@pytest.mark.parametrize("args", [
    ["inspect", "demo"],  # everything is still in the output buffer at the end: the final flush breaks
    ["-q", "predict", "--genome", HUMAN_GENOME, "--annotation", HUMAN_GTF, "--checkpoint", "demo"],
])
def test_broken_pipe_before_any_output_exits_141_quietly(args):
    process = _cli_process(*args)
    process.stdout.close()  # the reader is gone before the first byte
    assert process.wait(timeout=300) == 141
    stderr = process.stderr.read().decode()
    assert "rror" not in stderr and "Traceback" not in stderr and "Exception ignored" not in stderr


def test_help_lists_the_exit_codes():
    result = CliRunner().invoke(cli_main.cli, ["--help"])
    assert "130 interrupted, 141 output" in " ".join(result.output.split())


# ------------------------------------------------------------------------------ the error boundary


def test_interrupted_is_one_line_without_a_blank_line_before(failing_command):
    failing_command["exception"] = KeyboardInterrupt()
    result = CliRunner().invoke(cli_main.cli, ["fail-for-test"])
    assert result.exit_code == 130 and result.output == "isoformer: interrupted\n"


def test_an_eof_error_is_not_taken_for_an_interruption(failing_command):
    failing_command["exception"] = EOFError("Compressed file ended before the end-of-stream marker was reached")
    result = CliRunner().invoke(cli_main.cli, ["fail-for-test"])
    assert result.exit_code == 1 and "interrupted" not in result.output


@pytest.mark.parametrize("flags", [["-q"], ["-v"], ["--debug"], ["-vv", "-q"]])
def test_global_options_after_the_command(tmp_path, flags):
    result = CliRunner().invoke(cli_main.cli, ["triples", "--genome", HUMAN_GENOME, "--annotation", HUMAN_GTF,
                                               "-o", str(tmp_path / "t.tsv"), *flags])
    assert result.exit_code == 0, result.output
    assert ("INFO" in result.output) == ("-q" not in flags)


def test_a_value_that_looks_like_a_global_option_stays_a_value():
    argv = ["triples", "--genes", "-q", "-o", "-", "-v"]
    assert cli_main.hoist_global_options(cli_main.cli, argv) == ["-v", "triples", "--genes", "-q", "-o", "-"]
    assert cli_main.hoist_global_options(cli_main.cli, ["-q", "inspect", "--", "-v"]) == ["-q", "inspect", "--", "-v"]


# -------------------------------------------------------------------------------------- evaluate


def test_misspelled_tissue_column_is_a_warning_naming_the_likely_one(tmp_path, tables):
    predictions = str(tables / "p.tsv")
    expression = _expression(tmp_path / "e.tsv", _ids(predictions), tissues=("Liver", "Lugn"))
    result = invoke("evaluate", "--predictions", predictions, "--expression", expression, "-o", tmp_path / "m.tsv")
    assert result.exit_code == 0, result.output
    assert (f"isoformer: WARNING: tissue column 'Lugn' of {expression} is not a tissue of {predictions} and is "
            "left out (did you mean 'Lung'?)") in result.output.splitlines()


def test_evaluate_with_one_matching_transcript_is_an_error(tmp_path, tables):
    predictions = str(tables / "p.tsv")
    expression = _expression(tmp_path / "e.tsv", _ids(predictions)[:1] + ["OTHER1", "OTHER2"])
    result = invoke("evaluate", "--predictions", predictions, "--expression", expression, "-o", tmp_path / "m.tsv")
    one_error_line(result, f"only 1 transcript of {predictions} is in the expression table {expression}; "
                           "correlations and R² need at least 2 (check that both tables cover the same transcripts)")
    assert not (tmp_path / "m.tsv").exists()


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_non_finite_prediction_is_refused(tmp_path, tables, bad):
    lines = (tables / "p.tsv").read_text().splitlines(keepends=True)
    row = next(i for i, line in enumerate(lines) if not line.startswith(("#", "transcript_id")))
    fields = lines[row].split("\t")
    fields[4] = bad
    lines[row] = "\t".join(fields)
    predictions = tmp_path / "p.tsv"
    predictions.write_text("".join(lines))
    tissue = lines[row - 1].split("\t")[4]
    expression = _expression(tmp_path / "e.tsv", _ids(str(tables / "p.tsv")))
    result = invoke("evaluate", "--predictions", predictions, "--expression", expression)
    one_error_line(result, f"{predictions}:{row + 1}: the value of transcript {fields[0]} in tissue {tissue!r} is "
                           f"{bad}, not a finite number; predictions must be numbers")


def test_no_shared_ids_counts_the_rows_of_the_table(tmp_path, tables):
    predictions = str(tables / "p.tsv")
    expression = _expression(tmp_path / "e.tsv", [f"X{i}" for i in range(17)])
    result = invoke("evaluate", "--predictions", predictions, "--expression", expression)
    assert result.exit_code == 1
    assert f"is in the expression table {expression} (17 rows; e.g. " in result.output
    assert "X0, X1, X2" in result.output and "none" not in result.output


def test_predict_to_stdout_with_gene_summary(tmp_path):
    summary = tmp_path / "genes.tsv"
    result = invoke("predict", "--genome", HUMAN_GENOME, "--annotation", HUMAN_GTF, "--checkpoint", "demo",
                    "--transcripts", "NM_032039,NR_104317", "--gene-summary", summary)
    assert result.exit_code == 0, result.output
    assert "NM_032039" in result.output and "NM_032039" in summary.read_text()


def test_gzip_sample_table_damage_names_the_sample_table(tmp_path):
    from isoformer_cli.errors import InputError
    from isoformer_cli.genomics.expression import read_sample_tissues

    samples = tmp_path / "samples.txt.gz"
    data = gzip.compress(("SAMPID\tSMTS\n" + "".join(f"S{i * 7919}\tLiver\n" for i in range(5000))).encode())
    samples.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"samples\.txt\.gz: the sample table is truncated or corrupt"):
        read_sample_tissues(str(samples))


def test_non_finite_value_in_an_hdf5_prediction_table_is_refused(tmp_path):
    from isoformer_cli.formats.predictions import open_prediction_writer

    table = tmp_path / "p.h5ad"
    obs = [{"transcript_id": f"T{i}", "gene_id": "G", "gene_name": "", "biotype": "", "chrom": "chr1", "strand": "+",
            "tss": i, "window_start": 0, "window_end": 10, "flags": ""} for i in range(3)]
    with open_prediction_writer(str(table), ["Liver", "Lung"], {"units": "log(TPM+1)"}) as writer:
        writer.write_chunk(obs, np.array([[1, 2], [3, np.nan], [5, 6]], dtype=np.float32))
    expression = _expression(tmp_path / "e.tsv", ["T0", "T1", "T2"])
    result = invoke("evaluate", "--predictions", table, "--expression", expression)
    one_error_line(result, f"{table}: X row 2: the value of transcript T1 in tissue 'Lung' is nan, not a finite "
                           "number; predictions must be numbers")
