"""An output that is the same file as an input, or as another output, is refused before anything is read.

Every case of the issue, through the command line: exit 1, one line naming both options, every input
unchanged, and nothing written (not even the genome's index, which the first read would create).
"""

import os
import shutil

import pytest

from cli_helpers import HUMAN_GENOME, HUMAN_GTF, fingerprint, invoke, leftovers, one_error_line


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """A triples table and a prediction table made once from the example."""
    folder = tmp_path_factory.mktemp("originals")
    common = ["--genome", HUMAN_GENOME, "--annotation", HUMAN_GTF]
    assert invoke("triples", *common, "--dna-length", "1000", "-o", folder / "t.tsv").exit_code == 0
    assert invoke("predict", *common, "--checkpoint", "demo", "-o", folder / "p.tsv").exit_code == 0
    return folder


@pytest.fixture
def files(tmp_path, originals):
    """Fresh copies of the inputs in ``tmp_path`` (the genome not indexed: reading it would index it)."""
    genome, annotation = tmp_path / "genome.fa", tmp_path / "genes.gtf"
    shutil.copy(HUMAN_GENOME, genome)
    shutil.copy(HUMAN_GTF, annotation)
    made = tmp_path / "made"
    made.mkdir()
    triples, predictions = made / "t.tsv", made / "p.tsv"
    shutil.copy(originals / "t.tsv", triples)
    shutil.copy(originals / "p.tsv", predictions)
    expression = made / "expression.tsv"
    expression.write_text("transcript_id\tLiver\tLung\nNM_001284497\t1\t2\nNM_032039\t3\t1\nNR_104317\t2\t2\n")
    return {"genome": str(genome), "annotation": str(annotation), "triples": str(triples),
            "predictions": str(predictions), "expression": str(expression), "folder": tmp_path}


def _refused(files, args, message):
    """Run ``args``; assert the one-line refusal and that no input changed and nothing was written."""
    paths = [files[name] for name in ("genome", "annotation", "triples", "predictions", "expression")]
    before = {path: fingerprint(path) for path in paths}
    listing = sorted(os.listdir(files["folder"]))
    result = invoke(*args)
    one_error_line(result, message)
    assert {path: fingerprint(path) for path in paths} == before
    assert sorted(os.listdir(files["folder"])) == listing  # no .fai, no lock, no temporary file
    assert leftovers(files["folder"] / "made") == []


def _same(output_option, output, input_option, path):
    return f"{output_option} {output} is the same file as {input_option} {path}; choose another output path"


@pytest.mark.parametrize("input_name, option", [("annotation", "--annotation"), ("genome", "--genome")])
def test_triples_output_onto_an_input(files, input_name, option):
    target = files[input_name]
    _refused(files, ["triples", "--genome", files["genome"], "--annotation", files["annotation"], "-o", target],
             _same("-o/--output", target, option, target))


def test_triples_output_onto_the_genome_index(files):
    index = files["genome"] + ".fai"
    result = invoke("triples", "--genome", files["genome"], "--annotation", files["annotation"], "-o", index)
    one_error_line(result, _same("-o/--output", index, "--genome (index)", index))
    assert not os.path.exists(index)


def test_triples_fasta_side_file_onto_the_table(files):
    table = str(files["folder"] / "side.rna.fa")
    _refused(files, ["triples", "--genome", files["genome"], "--annotation", files["annotation"], "-o", table,
                     "--fasta-prefix", files["folder"] / "side"],
             _same("--fasta-prefix", table, "-o/--output", table))


def test_predict_triples_table_onto_itself(files):
    table = files["triples"]
    _refused(files, ["predict", "--genome", files["genome"], "--triples", table, "--checkpoint", "demo", "-o", table],
             _same("-o/--output", table, "--triples", table))


def test_gene_summary_onto_the_annotation(files):
    annotation = files["annotation"]
    _refused(files, ["predict", "--genome", files["genome"], "--annotation", annotation, "--checkpoint", "demo",
                     "-o", files["folder"] / "made" / "new.tsv", "--gene-summary", annotation],
             _same("--gene-summary", annotation, "--annotation", annotation))


def test_gene_summary_onto_the_predictions(files):
    output = str(files["folder"] / "made" / "new.tsv")
    _refused(files, ["predict", "--genome", files["genome"], "--annotation", files["annotation"], "--checkpoint",
                     "demo", "-o", output, "--gene-summary", output],
             _same("--gene-summary", output, "-o/--output", output))


@pytest.mark.parametrize("input_name, option", [("predictions", "--predictions"), ("expression", "--expression")])
def test_evaluate_output_onto_an_input(files, input_name, option):
    target = files[input_name]
    _refused(files, ["evaluate", "--predictions", files["predictions"], "--expression", files["expression"],
                     "-o", target],
             _same("-o/--output", target, option, target))


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_evaluate_output_onto_an_input_through_a_link(files, link):
    """A link names the input under another path: resolved paths and device/inode still match."""
    alias = files["folder"] / "made" / "alias.tsv"
    (os.symlink if link == "symlink" else os.link)(files["expression"], alias)
    before = fingerprint(alias)
    _refused(files, ["evaluate", "--predictions", files["predictions"], "--expression", files["expression"],
                     "-o", alias],
             _same("-o/--output", alias, "--expression", files["expression"]))
    assert fingerprint(alias) == before


def test_predict_output_onto_a_selection_file(files):
    ids = files["folder"] / "made" / "ids.txt"
    ids.write_text("NM_032039\n")
    _refused(files, ["predict", "--genome", files["genome"], "--annotation", files["annotation"], "--checkpoint",
                     "demo", "--transcripts", f"@{ids}", "-o", ids],
             _same("-o/--output", ids, "--transcripts", ids))
    assert ids.read_text() == "NM_032039\n"


def test_predict_output_onto_the_checkpoint_weights(files, tmp_path):
    from isoformer_cli.models.distribution.locate import demo_checkpoint_path

    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(demo_checkpoint_path(), checkpoint)
    weights = str(checkpoint / "model.safetensors")
    before = fingerprint(weights)
    result = invoke("predict", "--genome", files["genome"], "--annotation", files["annotation"], "--checkpoint",
                    checkpoint, "-o", weights)
    one_error_line(result, _same("-o/--output", weights, "--checkpoint", weights))
    assert fingerprint(weights) == before


def test_finetune_force_never_deletes_an_input_inside_the_run_folder(files, tmp_path):
    """--force replaces a run folder as a whole: an input inside it is refused first."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}\n")
    expression = run / "expression.tsv"
    shutil.copy(files["expression"], expression)
    before = fingerprint(expression)
    result = invoke("finetune", "-o", run, "--force", "--genome", files["genome"], "--annotation",
                    files["annotation"], "--expression", expression, "--checkpoint", "demo")
    one_error_line(result, f"-o/--output {run} holds --expression {expression}, and the run writes into that "
                           "folder; keep inputs outside it or choose another output folder")
    assert fingerprint(expression) == before and (run / "run.json").exists()
