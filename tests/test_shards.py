"""``--shard K/N`` and ``isoformer merge``: shards merged equal one run, byte for byte; bad sets are refused.

Bodies are compared (every line but ``# provenance:``, which records the shard); HDF5 files dataset by
dataset. Runs go through the command line in this process (``CliRunner``), with the bundled demo model.
"""

import gzip
import json
import pathlib
import subprocess
import sys

import h5py
import numpy as np
import pytest

from isoformer_cli.errors import InputError
from isoformer_cli.formats.run_identity import comparable_command
from isoformer_cli.formats.sharding import decode_order, encode_order, merged_provenance
from isoformer_cli.genomics.shards import Shard, parse_shard, shard_of

from cli_helpers import invoke

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "example_data"
DATASETS = {
    "human": (str(EXAMPLES / "hg38_chr16_186964-397118.fa"), str(EXAMPLES / "hg38_chr16_186964-397118.refGene.gtf")),
    "mouse": (str(EXAMPLES / "chr9.4M.fa.gz"), str(EXAMPLES / "chr9.4M.gtf.gz")),
}
COUNTS = (1, 2, 3, 7)


def run(*args, expect=0):
    return invoke(*args, expect=expect)


def error_of(*args):
    """The one error line of a failing run."""
    result = run(*args, expect=1)
    lines = [line for line in result.output.splitlines() if line.startswith("isoformer: error: ")]
    assert len(lines) == 1, result.output
    return lines[0][len("isoformer: error: "):]


def text_body(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", newline="") as stream:
        return [line for line in stream if not line.startswith("# provenance: ")]


def provenance_of(path):
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            if line.startswith("# provenance: "):
                return json.loads(line[len("# provenance: "):])
    return None


def hdf5_contents(path):
    """Every dataset of an HDF5 file (bytes of string datasets), without the provenance attributes."""
    contents = {}
    with h5py.File(path, "r") as handle:
        def visit(name, item):
            if isinstance(item, h5py.Dataset) and not name.startswith("uns/provenance"):
                contents[name] = item[()]
        handle.visititems(visit)
        contents["attrs"] = {key: value for key, value in handle.attrs.items() if key != "provenance"}
    return contents


def assert_same_hdf5(merged, single):
    a, b = hdf5_contents(merged), hdf5_contents(single)
    assert a.keys() == b.keys()
    for key in a:
        if key == "attrs":
            assert a[key].keys() == b[key].keys()
            continue
        left, right = np.asarray(a[key]), np.asarray(b[key])
        assert left.dtype == right.dtype and left.shape == right.shape, key
        if left.dtype == object:  # strings
            assert left.tolist() == right.tolist(), key
        else:  # bit-identical, NaN included (embeddings of a missing modality are NaN)
            assert left.tobytes() == right.tobytes(), key


# ------------------------------------------------------------------------------------------ the split


def test_parse_shard_and_its_errors():
    assert parse_shard("2/8") == Shard(2, 8) and str(parse_shard(" 1 / 1 ")) == "1/1"
    for bad, text in (("0/3", "K must be between 1 and N"), ("4/3", "K must be between 1 and N"),
                      ("1/0", "K must be between 1 and N"), ("a/3", "write it as K/N"), ("3", "write it as K/N")):
        with pytest.raises(InputError, match=text):
            parse_shard(bad)


def test_shard_of_is_a_fixed_function_of_the_gene_and_n():
    # Pinned values: a change of the hash would silently re-split every user's annotation.
    assert [shard_of(key, 7) for key in ("ENSG00000141510", "TP53", "NM_000546", "")] == [5, 5, 6, 2]
    assert all(1 <= shard_of(f"G{i}", 3) <= 3 for i in range(100))
    assert sorted({shard_of(f"G{i}", 3) for i in range(100)}) == [1, 2, 3]


def test_order_encoding_round_trips():
    for ordinals in ([], [0], [5], [0, 1, 2, 3], [2, 3, 9, 10, 11, 40], list(range(0, 10000, 3))):
        assert decode_order(encode_order(ordinals), "x") == ordinals
    with pytest.raises(ValueError):
        encode_order([3, 2])
    with pytest.raises(InputError, match="x: the shard order in the provenance is damaged"):
        decode_order("not base64!", "x")


def test_comparable_command_drops_what_may_differ_between_shards():
    a = "isoformer -q predict --genome /a/g.fa --annotation a.gtf --shard 1/3 -o p1.tsv --device cpu --precision fp32"
    b = "isoformer predict --genome=/b/g.fa --annotation b.gtf --shard=2/3 --output p2.tsv --precision fp32"
    assert comparable_command(a) == comparable_command(b) == (("isoformer", "predict"), (("--precision", "fp32"),))
    assert comparable_command(a) != comparable_command(a.replace("fp32", "bf16"))
    # Option order, --opt=value and where the global flags stand make no difference.
    c = "isoformer predict --precision=fp32 --coding-only --genes A,B -q"
    d = "isoformer -v predict --genes A,B --coding-only --precision fp32"
    assert comparable_command(c) == comparable_command(d) != comparable_command(d.replace("A,B", "A"))


@pytest.mark.parametrize("name", DATASETS)
def test_shards_partition_the_genes(name, tmp_path):
    genome, annotation = DATASETS[name]
    run("triples", "--genome", genome, "--annotation", annotation, "-o", tmp_path / "all.tsv")
    every = [line.split("\t")[:2] for line in text_body(tmp_path / "all.tsv")[1:]]
    seen = []
    for k in (1, 2, 3):
        run("triples", "--genome", genome, "--annotation", annotation, "--shard", f"{k}/3", "-o", tmp_path / f"{k}.tsv")
        rows = [line.split("\t")[:2] for line in text_body(tmp_path / f"{k}.tsv")[1:]]
        assert all(shard_of(gene or transcript, 3) == k for transcript, gene in rows)
        seen += rows
    assert sorted(seen) == sorted(every)


# ------------------------------------------------------------------------- merged equals one run


@pytest.fixture(scope="module", params=sorted(DATASETS))
def single(request, tmp_path_factory):
    """The single run's outputs of every kind for one dataset."""
    genome, annotation = DATASETS[request.param]
    folder = tmp_path_factory.mktemp(f"single-{request.param}")
    common = ("--genome", genome, "--annotation", annotation)
    run("triples", *common, "-o", folder / "triples.tsv.gz")
    run("predict", *common, "--checkpoint", "demo", "-o", folder / "predictions.tsv",
        "--gene-summary", folder / "genes.tsv")
    run("predict", *common, "--checkpoint", "demo", "-o", folder / "predictions.h5ad")
    run("embed", *common, "--checkpoint", "demo", "--modalities", "-o", folder / "embeddings.h5")
    return common, folder


@pytest.mark.parametrize("count", COUNTS)
def test_shards_merged_equal_one_run(single, count, tmp_path):
    common, folder = single
    outputs = {kind: [] for kind in ("triples", "predictions", "genes", "h5ad", "embeddings")}
    for k in range(1, count + 1):
        shard = ("--shard", f"{k}/{count}")
        outputs["triples"].append(tmp_path / f"triples.{k}.tsv")
        run("triples", *common, *shard, "-o", outputs["triples"][-1])
        outputs["predictions"].append(tmp_path / f"predictions.{k}.tsv")
        outputs["genes"].append(tmp_path / f"genes.{k}.tsv")
        run("predict", *common, *shard, "--checkpoint", "demo", "-o", outputs["predictions"][-1],
            "--gene-summary", outputs["genes"][-1])
        outputs["h5ad"].append(tmp_path / f"predictions.{k}.h5ad")
        run("predict", *common, *shard, "--checkpoint", "demo", "-o", outputs["h5ad"][-1])
        outputs["embeddings"].append(tmp_path / f"embeddings.{k}.h5")
        run("embed", *common, *shard, "--checkpoint", "demo", "--modalities", "-o", outputs["embeddings"][-1])
    # Shards in reverse order: merge sorts them itself.
    merged = {kind: tmp_path / name for kind, name in (
        ("triples", "triples.tsv.gz"), ("predictions", "predictions.tsv"), ("genes", "genes.tsv"),
        ("h5ad", "predictions.h5ad"), ("embeddings", "embeddings.h5"))}
    for kind, paths in outputs.items():
        run("merge", "-o", merged[kind], *reversed(paths))
    assert text_body(merged["triples"]) == text_body(folder / "triples.tsv.gz")
    assert text_body(merged["predictions"]) == text_body(folder / "predictions.tsv")
    assert text_body(merged["genes"]) == text_body(folder / "genes.tsv")
    assert_same_hdf5(merged["h5ad"], folder / "predictions.h5ad")
    assert_same_hdf5(merged["embeddings"], folder / "embeddings.h5")
    provenance = provenance_of(merged["predictions"])
    assert provenance["merged_shards"] == count and "shard" not in provenance
    assert "--shard" not in provenance["command_line"]
    single_line = "isoformer predict --genome g.fa --shard 2/3 -o p2.tsv --gene-summary=g2.tsv --precision fp32"
    assert merged_provenance({"command_line": single_line}, 3)["command_line"] == \
        "isoformer predict --genome g.fa --precision fp32"
    assert provenance["inputs"] == provenance_of(folder / "predictions.tsv")["inputs"]


def test_a_sharded_table_gives_mergeable_predictions(tmp_path):
    """``triples --shard`` then ``predict --triples``: the predictions carry the table's shard."""
    genome, annotation = DATASETS["mouse"]
    run("predict", "--genome", genome, "--annotation", annotation, "--checkpoint", "demo", "-o", tmp_path / "one.tsv")
    parts = []
    for k in (1, 2):
        table = tmp_path / f"t{k}.tsv"
        run("triples", "--genome", genome, "--annotation", annotation, "--shard", f"{k}/2", "-o", table)
        parts.append(tmp_path / f"p{k}.tsv")
        run("predict", "--genome", genome, "--triples", table, "--checkpoint", "demo", "-o", parts[-1])
        assert provenance_of(parts[-1])["shard"]["shard"] == f"{k}/2"
    run("merge", "-o", tmp_path / "merged.tsv", *parts)
    assert text_body(tmp_path / "merged.tsv") == text_body(tmp_path / "one.tsv")
    assert error_of("predict", "--genome", genome, "--triples", tmp_path / "t1.tsv", "--checkpoint", "demo",
                    "--shard", "1/2", "-o", tmp_path / "x.tsv") == (
        f"{tmp_path / 't1.tsv'}: this triples table is already shard 1/2; drop --shard (or shard the annotation "
        "itself)")


def test_shards_through_a_pipe(tmp_path):
    """``isoformer triples --shard K/N | isoformer predict --triples -`` per shard, then merge."""
    genome, annotation = DATASETS["human"]
    isoformer = [sys.executable, "-m", "isoformer_cli", "-q"]
    subprocess.run([*isoformer, "predict", "--genome", genome, "--annotation", annotation, "--checkpoint", "demo",
                    "-o", str(tmp_path / "one.tsv")], check=True)
    parts = []
    for k in (1, 2):
        producer = subprocess.Popen([*isoformer, "triples", "--genome", genome, "--annotation", annotation,
                                     "--shard", f"{k}/2"], stdout=subprocess.PIPE)
        parts.append(tmp_path / f"p{k}.tsv")
        consumer = subprocess.run([*isoformer, "predict", "--genome", genome, "--triples", "-", "--checkpoint", "demo",
                                   "-o", str(parts[-1])], stdin=producer.stdout, capture_output=True, text=True)
        producer.stdout.close()
        assert producer.wait() == 0 and consumer.returncode == 0, consumer.stderr
    merged = subprocess.run([*isoformer, "merge", *map(str, parts)], capture_output=True, text=True, check=True)
    (tmp_path / "merged.tsv").write_text(merged.stdout)
    assert text_body(tmp_path / "merged.tsv") == text_body(tmp_path / "one.tsv")


# -------------------------------------------------------------------------------------- refusals


@pytest.fixture(scope="module")
def shard_files(tmp_path_factory):
    """Prediction shards 1/3..3/3 of the human example, and odd files around them."""
    genome, annotation = DATASETS["human"]
    folder = tmp_path_factory.mktemp("shards")
    common = ("--genome", genome, "--annotation", annotation, "--checkpoint", "demo")
    files = {}
    for k in (1, 2, 3):
        files[k] = folder / f"p{k}.tsv"
        run("predict", *common, "--shard", f"{k}/3", "-o", files[k], "--gene-summary", folder / f"g{k}.tsv")
    files["of2"] = folder / "of2.tsv"
    run("predict", *common, "--shard", "1/2", "-o", files["of2"])
    files["whole"] = folder / "whole.tsv"
    run("predict", *common, "-o", files["whole"])
    # Shard 3 as a run with another option would have written it (the runs here record pytest's argv).
    files["bf16"] = folder / "bf16.tsv"
    provenance = provenance_of(files[3])
    provenance["command_line"] += " --precision bf16"
    files["bf16"].write_text("".join(
        f"# provenance: {json.dumps(provenance, sort_keys=True)}\n" if line.startswith("# provenance: ") else line
        for line in files[3].read_text().splitlines(keepends=True)))
    mouse_genome, mouse_annotation = DATASETS["mouse"]
    files["mouse"] = folder / "mouse.tsv"
    run("predict", "--genome", mouse_genome, "--annotation", mouse_annotation, "--checkpoint", "demo",
        "--shard", "3/3", "-o", files["mouse"])
    files["g1"] = folder / "g1.tsv"
    return files


def test_merge_refuses_bad_sets_with_one_line(shard_files, tmp_path):
    f = {key: str(path) for key, path in shard_files.items()}
    out = tmp_path / "merged.tsv"
    assert error_of("merge", "-o", out, f[1], f[2]) == f"shard 3/3 missing: 2 of 3 shards given ({f[1]}, {f[2]})"
    assert error_of("merge", "-o", out, f[1], f[2], f[2]) == f"{f[2]}: shard 2/3 was given twice (also {f[2]})"
    assert error_of("merge", "-o", out, f[1], f[2], f["of2"]) == (
        f"{f['of2']}: shard 1/2 is from a split into 2, but {f[1]} is from a split into 3")
    assert error_of("merge", "-o", out, f[1], f[2], f["whole"]) == (
        f"{f['whole']}: not a shard output (its provenance has no shard entry); merge the outputs of runs with "
        "--shard K/N")
    assert error_of("merge", "-o", out, f[1], f[2], f["mouse"]) == (
        f"{f['mouse']}: not from the same run as {f[1]}: its input annotation, genome differs (checksum)")
    assert error_of("merge", "-o", out, f[1], f[2], f["bf16"]).startswith(
        f"{f['bf16']}: not from the same run as {f[1]}: its options differ (")
    assert "--precision bf16" in error_of("merge", "-o", out, f[1], f[2], f["bf16"])
    assert error_of("merge", "-o", out, f[1], f[2], f["g1"]) == (
        f"{f['g1']}: a gene summary, but {f[1]} is a prediction table; merge one kind of output at a time")
    assert error_of("merge", "-o", tmp_path / "merged.h5", f[1], f[2], f[3]) == (
        f"{tmp_path / 'merged.h5'}: a merged prediction table is written as .tsv or .tsv.gz; name the output so")
    assert error_of("merge", "-o", f[1], f[1], f[2], f[3]) == (
        f"-o/--output {f[1]} is the same file as SHARD {f[1]}; choose another output path")
    assert not out.exists() and not (tmp_path / "merged.h5").exists()


def test_merge_refuses_an_incomplete_or_edited_shard(shard_files, tmp_path):
    lines = pathlib.Path(shard_files[2]).read_text().splitlines(keepends=True)
    cut = tmp_path / "cut.tsv"
    cut.write_text("".join(lines[:-1]))
    out = tmp_path / "merged.tsv"
    message = error_of("merge", "-o", out, shard_files[1], cut, shard_files[3])
    assert message.startswith(f"{cut}: holds fewer units than its shard order lists")
    longer = tmp_path / "longer.tsv"
    longer.write_text("".join(lines + lines[-1:]))
    assert error_of("merge", "-o", out, shard_files[1], longer, shard_files[3]).startswith(
        f"{longer}: holds more units than its shard order lists")
    assert not out.exists()
    damaged = tmp_path / "damaged.tsv"
    damaged.write_text("".join(line.replace('"order": "', '"order": "!') for line in lines))
    assert error_of("merge", "-o", out, shard_files[1], damaged, shard_files[3]).startswith(
        f"{damaged}: the shard order in the provenance is damaged")


def test_merge_refuses_other_files(tmp_path):
    other = tmp_path / "notes.tsv"
    other.write_text("a\tb\n1\t2\n")
    assert error_of("merge", "-o", tmp_path / "m.tsv", other) == (
        f"{other}: not an output isoformer merge knows (a triples table, prediction table, gene summary, HDF5 "
        "predictions, embeddings or variants output written with --shard)")
    assert error_of("merge", "-o", tmp_path / "m.tsv", tmp_path / "absent.tsv").startswith(
        f"{tmp_path / 'absent.tsv'}: cannot read the shard")


def test_shard_option_errors(tmp_path):
    genome, annotation = DATASETS["human"]
    result = run("triples", "--genome", genome, "--annotation", annotation, "--shard", "4/3", expect=2)
    assert "--shard 4/3: K must be between 1 and N" in result.output
    result = run("triples", "--genome", genome, "--annotation", annotation, "--shard", "1/2", "--fasta-prefix",
                 tmp_path / "p", expect=2)
    assert "--fasta-prefix cannot be combined with --shard" in result.output
