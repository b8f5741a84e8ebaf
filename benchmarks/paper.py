"""Reproduce the paper's headline with the official weights, in one command (a GPU machine with network).

    python benchmarks/paper.py --genome hg38.fa --device cuda --out paper-run
    python benchmarks/paper.py --genome hg38.fa --limit 200 --out quick      # a subset, for a quick run
    python benchmarks/paper.py --genome hg38.fa --source DIR --out run       # local copies, no network

Steps, each through the ``isoformer`` command line a user runs (invoked in this process, so the timings
leave out Python's and torch's start-up but include loading the model):

1. ``isoformer models pull official`` into ``--model-dir`` (skipped when ``official`` is already there). With
   ``--source DIR``, the files of ``InstaDeepAI/isoformer`` in ``DIR/model/`` (``config.json``,
   ``pytorch_model.bin``, tokenizer files) are linked into the pull's download folder and the pull runs offline
   (``HF_HUB_OFFLINE=1``), the documented way to pull files copied by hand: same checks, same conversion.
2. ``isoformer datasets pull isoformer-gtex`` into ``--dataset-dir`` (skipped when already there); with
   ``--source DIR``, from ``DIR/dataset/`` (the dataset's own layout:
   ``transcript_expression/GTEx_final.csv`` and ``normalization_values.csv``).
3. ``isoformer models calibrate official --dataset isoformer-gtex --split validation`` into ``OUT/calibrated``
   (the ranked candidates in ``OUT/calibration.tsv``).
4. ``isoformer predict --checkpoint OUT/calibrated --triples <test split>`` into ``OUT/predictions.test.tsv``.
5. ``isoformer evaluate`` of those predictions against the test split's labels into ``OUT/metrics.test.tsv``.

Then prints (stdout, TSV; also ``OUT/paper.tsv``) the evaluation's rows (pooled, mean over tissues, one per
tissue) with R², Spearman and the within-gene isoform Spearman (definitions:
``isoformer_cli/evaluation/metrics.py``), the paper's figures beside the pooled and mean rows, and, as ``#``
lines, the calibrated settings and the throughput (predict in transcripts/s, calibrate in seconds). The
figures are those ``isoformer evaluate`` wrote (``OUT/metrics.test.tsv``, six significant digits), rounded to
four decimals.

``--limit N`` keeps, in each of the validation and test splits, the first N transcripts in the table's order
rounded down to whole genes (at least one gene), so the within-gene metric still sees every isoform of the
genes kept; it is passed to calibrate and predict as ``--transcripts @FILE``.

A step that cannot run stops the script with the command's one-line message and a line naming the step; the
exit status is the command's (2 for this script's own usage errors). It needs the network or ``--source``, and
an hg38 FASTA (the dataset's DNA windows are fetched from it). It is not part of ``scripts/gpu-check.sh``: the
GPU machines there have no network and no copy of the weights.
"""

import argparse
import contextlib
import csv
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from isoformer_cli.cli.main import cli  # noqa: E402
from isoformer_cli.formats.metrics_table import read_metrics_table  # noqa: E402
from isoformer_cli.models.checkpoint.check import checkpoint_metadata  # noqa: E402
from isoformer_cli.models.distribution.locate import dataset_dir_for, model_dir_for  # noqa: E402
from isoformer_cli.models.distribution.registry import KNOWN_DATASETS, KNOWN_MODELS  # noqa: E402
from isoformer_cli.models.distribution.store import downloads_dir  # noqa: E402

MODEL = "official"
DATASET = "isoformer-gtex"
# The paper's headline with all three modalities (DNA, RNA, protein), as issue 21 states it ("the paper's
# R² 0.53 / Spearman 0.72"; also the team's design notes, DESIGN.md section 2). Neither says whether the
# figures are pooled over every (transcript, tissue) pair or averaged over tissues, so both rows show them.
PAPER_R2 = 0.53
PAPER_SPEARMAN = 0.72
COLUMNS = ("scope", "tissue", "n_transcripts", "r2", "spearman", "isoform_spearman", "isoform_genes_used",
           "paper_r2", "paper_spearman")


class StepFailed(Exception):
    """A step that could not run: ``code`` is the exit status, ``message`` says which step and what to do."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def isoformer(step, args, stdout=None, environment=None):
    """Run ``isoformer ARGS`` in this process; returns its wall time in seconds, StepFailed on a non-zero exit.

    ``stdout``: a path receiving the command's standard output; ``environment``: variables set for the step.
    The command prints its own one-line error on stderr; StepFailed adds which step it was.
    """
    saved = {name: os.environ.get(name) for name in (environment or {})}
    os.environ.update(environment or {})
    start = time.perf_counter()
    try:
        with contextlib.ExitStack() as stack:
            if stdout:
                stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(stdout, "w"))))
            try:
                cli.main(args=[str(arg) for arg in args], prog_name="isoformer")
                code = 0
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    if code != 0:
        words = [str(arg) for arg in args if str(arg) != "-q"][:3]
        raise StepFailed(code, f"step '{step}' failed (isoformer {' '.join(words)} ...: exit {code}; its message "
                               "is above)")
    return time.perf_counter() - start


def pulled(folder):
    return os.path.isdir(folder) and bool(os.listdir(folder))


def pull_model(args, model_dir, quiet):
    """Step 1; returns the seconds it took (0 when the model was already pulled)."""
    target = os.path.join(model_dir, MODEL)
    if pulled(target):
        log(f"{MODEL} is already pulled in {model_dir}: reused ({target})")
        return 0.0
    command = [*quiet, "models", "pull", MODEL, "--model-dir", model_dir, "--preset", args.preset]
    if not args.source:
        if _offline():
            raise StepFailed(1, f"step 'pull model': HF_HUB_OFFLINE is set and {MODEL} is not in {model_dir}; "
                                "unset it to download, or give --source DIR with the files in DIR/model/")
        try:
            return isoformer("pull model", command)
        except StepFailed as failed:
            raise StepFailed(failed.code, f"{failed}; without network give --source DIR (the files of "
                                          f"{_repository(MODEL)} in DIR/model/)") from None
    folder = os.path.join(args.source, "model")
    repository = KNOWN_MODELS[MODEL].repositories[0]
    missing = [entry.name for entry in repository.files if not entry.optional
               and not any(os.path.isfile(os.path.join(folder, name)) for name in entry.candidates)]
    if missing:
        raise StepFailed(1, f"step 'pull model': {folder} lacks {', '.join(missing)}; put the files of "
                            f"{repository.repo_id} there (config.json, pytorch_model.bin, tokenizer files)")
    downloads = os.path.join(downloads_dir(model_dir), repository.folder_name)
    os.makedirs(downloads, exist_ok=True)
    for entry in repository.files:
        for name in entry.candidates:
            source, link = os.path.join(folder, name), os.path.join(downloads, name)
            if os.path.isfile(source) and not os.path.lexists(link):
                os.symlink(os.path.abspath(source), link)  # "placed by hand"; pull hashes and checks it
    return isoformer("pull model", command, environment={"HF_HUB_OFFLINE": "1"})


def pull_dataset(args, dataset_dir, quiet):
    """Step 2; returns the seconds it took (0 when the dataset was already pulled)."""
    target = os.path.join(dataset_dir, DATASET)
    if pulled(target):
        log(f"{DATASET} is already pulled in {dataset_dir}: reused ({target})")
        return 0.0
    command = [*quiet, "datasets", "pull", DATASET, "--dataset-dir", dataset_dir]
    if args.source:
        return isoformer("pull dataset", [*command, "--source", os.path.join(args.source, "dataset")])
    if _offline():
        raise StepFailed(1, f"step 'pull dataset': HF_HUB_OFFLINE is set and {DATASET} is not in {dataset_dir}; "
                            "unset it to download, or give --source DIR with the dataset's files in DIR/dataset/")
    try:
        return isoformer("pull dataset", command)
    except StepFailed as failed:
        raise StepFailed(failed.code, f"{failed}; without network give --source DIR (the files of "
                                      f"{KNOWN_DATASETS[DATASET].repository.repo_id} in DIR/dataset/)") from None


def _repository(model):
    return KNOWN_MODELS[model].repositories[0].repo_id


def _offline():
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "on", "yes", "true"}


def split_subset(dataset_folder, split, limit, path):
    """Write the transcript ids of the first ``limit`` transcripts of ``split`` (whole genes, at least one) to
    ``path``; returns how many."""
    genes = {}
    with open(os.path.join(dataset_folder, "split.tsv"), encoding="utf-8") as stream:
        for row in csv.DictReader(stream, delimiter="\t"):
            if row["split"] == split:
                genes.setdefault(row["gene_id"], []).append(row["transcript_id"])
    kept = []
    for members in genes.values():
        if kept and len(kept) + len(members) > limit:
            break
        kept += members
    with open(path, "w", encoding="utf-8") as stream:
        stream.write("".join(f"{transcript}\n" for transcript in kept))
    return len(kept)


def data_rows(path):
    """Lines of a TSV that are neither comments nor the header."""
    with open(path, encoding="utf-8") as stream:
        lines = [line for line in stream if line.strip() and not line.startswith("#")]
    return lines[1:]


def figure(value):
    return "NA" if value != value else f"{value:.4f}"


def paper_table(metrics, notes):
    """The printed table: evaluate's pooled and mean rows (with the paper's figures), then its tissue rows."""
    ordered = [row for scope in ("pooled", "mean", "tissue") for row in metrics if row["scope"] == scope]
    lines = [f"# {note}" for note in notes] + ["\t".join(COLUMNS)]
    for row in ordered:
        paper = row["scope"] in ("pooled", "mean")
        lines.append("\t".join([row["scope"], row["tissue"], str(int(row["n_transcripts"])), figure(row["r2"]),
                                figure(row["spearman"]), figure(row["isoform_spearman"]),
                                str(int(row["isoform_genes_used"])), f"{PAPER_R2}" if paper else "",
                                f"{PAPER_SPEARMAN}" if paper else ""]))
    return "\n".join(lines) + "\n"


def device_name(device):
    try:
        import torch
    except ImportError:
        return device
    if device != "cpu" and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(0)})"
    return device


def log(message):
    print(f"paper: {message}", file=sys.stderr, flush=True)


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--genome", required=True, metavar="FASTA",
                        help="hg38 genome FASTA (the dataset's coordinates are hg38; DNA windows come from it)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for what this writes (created)")
    parser.add_argument("--model-dir", metavar="DIR", help="model folder (default: isoformer's, "
                        "$ISOFORMER_MODEL_DIR or ~/.local/share/isoformer/models)")
    parser.add_argument("--dataset-dir", metavar="DIR", help="dataset folder (default: isoformer's, "
                        "$ISOFORMER_DATASET_DIR or beside the model folder)")
    parser.add_argument("--cache", metavar="DIR", help="shorthand for --model-dir DIR/models --dataset-dir "
                        "DIR/datasets")
    parser.add_argument("--source", metavar="DIR", help="local copies instead of the network: DIR/model/ holds "
                        "the files of InstaDeepAI/isoformer, DIR/dataset/ those of "
                        "InstaDeepAI/multi_omics_transcript_expression (its own layout)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N transcripts of each split "
                        "(whole genes), for a quick run")
    parser.add_argument("--preset", default="official", help="architecture preset for what the official files do "
                        "not say (models pull --preset; default: official)")
    parser.add_argument("--min-spearman", type=float, help="passed to calibrate (default: calibrate's)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors from the steps")
    args = parser.parse_args(argv)
    if args.cache and (args.model_dir or args.dataset_dir):
        parser.error("--cache sets both folders; give it or --model-dir/--dataset-dir, not both")
    if args.limit is not None and args.limit < 2:
        parser.error(f"--limit must be at least 2 (evaluate needs two transcripts), not {args.limit}")
    if not os.path.isfile(args.genome):
        parser.error(f"--genome {args.genome}: no such file; give an hg38 FASTA (e.g. GENCODE's "
                     "GRCh38.primary_assembly.genome.fa), the dataset's DNA windows are read from it")
    if args.source and not os.path.isdir(args.source):
        parser.error(f"--source {args.source}: no such folder (it holds model/ and dataset/)")
    return args


def main(argv=None):
    args = parse(argv)
    quiet = ["-q"] if args.quiet else []
    model_dir = model_dir_for(os.path.join(args.cache, "models") if args.cache else args.model_dir)
    dataset_dir = dataset_dir_for(os.path.join(args.cache, "datasets") if args.cache else args.dataset_dir)
    out = args.out
    os.makedirs(out, exist_ok=True)
    calibrated = os.path.join(out, "calibrated")
    predictions = os.path.join(out, "predictions.test.tsv")
    metrics_path = os.path.join(out, "metrics.test.tsv")
    try:
        seconds_model = pull_model(args, model_dir, quiet)
        seconds_dataset = pull_dataset(args, dataset_dir, quiet)
        folder = os.path.join(dataset_dir, DATASET)
        selections = {}
        if args.limit:
            for split in ("validation", "test"):
                path = os.path.join(out, f"{split}.transcripts.txt")
                log(f"--limit {args.limit}: {split_subset(folder, split, args.limit, path)} {split} transcripts "
                    f"(whole genes) in {path}")
                selections[split] = ["--transcripts", f"@{path}"]
        runtime = ["--device", args.device]
        threshold = ["--min-spearman", str(args.min_spearman)] if args.min_spearman is not None else []
        table = os.path.join(out, "calibration.tsv")
        seconds_calibrate = isoformer("calibrate", [
            *quiet, "models", "calibrate", MODEL, "--model-dir", model_dir, "--dataset", DATASET, "--dataset-dir",
            dataset_dir, "--split", "validation", "--genome", args.genome, *runtime, *threshold,
            *selections.get("validation", []), "-o", calibrated, "--force"], stdout=table)
        seconds_predict = isoformer("predict", [
            *quiet, "predict", "--checkpoint", calibrated, "--genome", args.genome, "--triples",
            os.path.join(folder, "triples.test.tsv"), *runtime, *selections.get("test", []), "-o", predictions])
        isoformer("evaluate", [*quiet, "evaluate", "--predictions", predictions, "--expression",
                               os.path.join(folder, "expression.tsv"), "--values", "log1p", "-o", metrics_path])
    except StepFailed as failed:
        log(str(failed))
        return failed.code
    candidates = data_rows(table)
    best = candidates[0].rstrip("\n").split("\t")
    predicted = len(data_rows(predictions))
    # The labelled transcripts calibrate scored, from the record it wrote into the checkpoint.
    calibrated_rows = json.loads(checkpoint_metadata(os.path.join(calibrated, "model.safetensors"))["calibration"])[
        "transcripts"]
    notes = [
        f"IsoFormer ({MODEL}, calibrated on the validation split) on the test split of {DATASET}: "
        f"{predicted:,} transcripts; metrics as isoformer evaluate wrote them ({metrics_path})",
        f"paper: R2 {PAPER_R2}, Spearman {PAPER_SPEARMAN} (all three modalities; pooled or mean over tissues "
        "is not stated)",
        f"calibrated settings: fusion_order={best[1]} head_activation={best[2]} pool_window={best[3]} "
        f"(validation pooled Spearman {best[4]}, R2 {best[5]}; {len(candidates)} candidates in {table})",
        f"device: {device_name(args.device)}",
        f"pull model: {seconds_model:.1f} s; pull dataset: {seconds_dataset:.1f} s (0 = already there)",
        f"calibrate: {seconds_calibrate:.1f} s for {calibrated_rows:,} validation transcripts x "
        f"{len(candidates)} candidates",
        f"predict: {seconds_predict:.1f} s for {predicted:,} test transcripts = "
        f"{predicted / seconds_predict:.2f} transcripts/s (model loading included)",
    ]
    text = paper_table(read_metrics_table(metrics_path), notes)
    with open(os.path.join(out, "paper.tsv"), "w", encoding="utf-8") as stream:
        stream.write(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
