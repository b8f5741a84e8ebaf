"""The run folder of ``isoformer finetune`` (``-o RUN``): its layout, its checks, and the files it holds.

Layout::

    run.json            resolved settings, input checksums, the command line
    split.tsv           transcript_id gene_id chrom split (train/val/test)
    metrics.tsv         one row per epoch: losses, validation R2 / Pearson / Spearman / isoform Spearman
    best/               checkpoint (our format) of the best validation Spearman (only with a validation split)
    last/               checkpoint of the latest saved step plus the training state
                        (:mod:`isoformer_cli.training.checkpoints`)
    predictions/        val.tsv, test.tsv: prediction tables of the final model (``isoformer evaluate`` reads them)
    test_metrics.tsv    the evaluation table of the test split (see isoformer_cli.formats.metrics_table)
    summary.json        written last: why training stopped, best epoch, test headline numbers

JSON files are written with sorted keys, two-space indents and NaN / infinities as ``null``, so the same
run gives the same bytes. ``--resume`` continues a folder whose run.json matches this command's settings
(:data:`RESUMABLE_CHANGES` and input paths may differ; checksums may not); ``--force`` replaces a folder only
when it holds a run.json, so it never deletes a folder that is not a fine-tuning run.

Only rank 0 writes; :func:`on_main` runs a write there and raises its error on every rank.
"""

import json
import logging
import math
import os
import shutil
from dataclasses import dataclass

from isoformer_cli import __version__
from isoformer_cli.errors import InputError, OutputError
from isoformer_cli.formats.atomic import atomic_text_output
from isoformer_cli.formats.json_file import read_json_object
from isoformer_cli.formats.metrics_table import write_metrics_table
from isoformer_cli.formats.predictions import open_prediction_writer
from isoformer_cli.formats.provenance import RUN_FOLDER_FILE, checkpoint_id, recorded_command_line, sha256_file
from isoformer_cli.runtime import distributed
from isoformer_cli.training.splits import split_counts, write_split

log = logging.getLogger(__name__)

RUN_FORMAT = 1
RUN_FILE = RUN_FOLDER_FILE
SPLIT_FILE = "split.tsv"
METRICS_FILE = "metrics.tsv"
BEST_DIR = "best"
LAST_DIR = "last"
PREDICTIONS_DIR = "predictions"
TEST_METRICS_FILE = "test_metrics.tsv"
SUMMARY_FILE = "summary.json"
METRICS_COLUMNS = ("epoch", "step", "lr", "train_loss", "val_loss", "val_r2", "val_pearson", "val_spearman",
                   "val_isoform_spearman", "seconds")
# Settings that may differ when a run is resumed: they change how, not what, it computes.
RESUMABLE_CHANGES = ("max_steps", "save_every", "num_workers", "device", "world_size")


@dataclass(frozen=True)
class RunFolder:
    """The run folder at ``path`` (absolute)."""

    path: str

    def file(self, name):
        return os.path.join(self.path, name)

    @property
    def last_dir(self):
        return self.file(LAST_DIR)

    @property
    def best_dir(self):
        return self.file(BEST_DIR)

    def check(self, config):
        """Check the folder against ``--resume`` / ``--force``; returns the saved run.json or None."""
        run_dir, run_file = self.path, self.file(RUN_FILE)
        exists = os.path.isdir(run_dir) and bool(os.listdir(run_dir))
        if os.path.exists(run_dir) and not os.path.isdir(run_dir):
            raise OutputError(f"{run_dir}: exists and is not a folder; choose another -o")
        if config.resume:
            if not os.path.isfile(run_file):
                raise InputError(f"{run_dir}: no fine-tuning run to resume here ({RUN_FILE} missing); "
                                 "drop --resume to start one")
            if os.path.isfile(self.file(SUMMARY_FILE)):
                raise InputError(f"{run_dir}: this run already finished ({SUMMARY_FILE}); nothing to resume")
            return read_json_object(run_file, "run settings", "the run folder is damaged; start a new run "
                                    "(drop --resume, choose a new -o)")
        if exists:
            if not config.force:
                raise OutputError(f"{run_dir}: folder exists and is not empty; use --resume to continue the run in "
                                  "it, --force to replace it, or choose a new -o")
            if not os.path.isfile(run_file):
                raise OutputError(f"{run_dir}: --force replaces fine-tuning run folders only, and this folder holds "
                                  f"no {RUN_FILE}; choose a new -o")
        parent = os.path.dirname(run_dir)
        if not os.path.isdir(parent):
            raise OutputError(f"{run_dir}: folder {parent} does not exist; create it first")
        if not os.access(parent, os.W_OK):
            raise OutputError(f"{run_dir}: folder {parent} is not writable; choose another -o")
        return None

    def has_split(self):
        return os.path.isfile(self.file(SPLIT_FILE))

    def create(self, settings, members, splits, resuming):
        """Create the folder (replacing a run folder checked by :meth:`check` unless ``resuming``) with
        run.json and split.tsv."""
        if os.path.isdir(self.path) and os.listdir(self.path) and not resuming:
            shutil.rmtree(self.path)
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot create the run folder: {exc.strerror}") from None
        write_json(self.file(RUN_FILE), settings)
        write_split(self.file(SPLIT_FILE), members, splits)

    def write_metrics(self, history):
        """metrics.tsv: one row per epoch of ``history`` (dicts keyed by :data:`METRICS_COLUMNS`)."""
        def cell(value):
            if value is None:
                return "NA"
            if isinstance(value, float):
                return "NA" if not math.isfinite(value) else f"{value:.6g}"
            return str(value)

        with atomic_text_output(self.file(METRICS_FILE)) as stream:
            stream.write("\t".join(METRICS_COLUMNS) + "\n")
            for row in history:
                stream.write("\t".join(cell(row.get(column)) for column in METRICS_COLUMNS) + "\n")

    def write_predictions(self, name, tissues, provenance, obs, values):
        """predictions/<name>.tsv: ``values`` (len(obs), len(tissues)) for the transcripts of ``obs``."""
        folder = self.file(PREDICTIONS_DIR)
        os.makedirs(folder, exist_ok=True)
        with open_prediction_writer(os.path.join(folder, f"{name}.tsv"), list(tissues), provenance) as writer:
            writer.write_chunk(obs, values)

    def write_test_metrics(self, rows, transcripts, model_dir):
        """test_metrics.tsv: the evaluation table ``rows`` of the ``transcripts`` test transcripts."""
        write_metrics_table(self.file(TEST_METRICS_FILE), rows, notes=[
            f"test split of {self.path}: {transcripts} transcripts, model {model_dir}",
            "units: log(TPM+1)",
        ])

    def write_summary(self, stop_reason, state, final_dir, best):
        """summary.json, the mark of a finished run (``state``: the final TrainingState; ``best``: the test
        split's headline metrics, or None without a test split)."""
        write_json(self.file(SUMMARY_FILE), {
            "finished": True, "stop_reason": stop_reason, "epochs_completed": state.epoch,
            "global_step": state.global_step, "best_epoch": state.best_epoch,
            "best_val_spearman": state.best_val_spearman, "final_model": os.path.basename(final_dir),
            "test": None if best is None else {"r2": best.r2, "pearson": best.pearson, "spearman": best.spearman,
                                               "isoform_spearman": best.isoform_spearman},
        })


def on_main(group, write):
    """Run ``write`` (a write into the run folder) on rank 0 only; an error there is raised on every rank."""
    def guarded():
        try:
            return write()
        except OSError as error:  # a full disk, a vanished folder: still a one-line error on every rank
            raise OutputError(f"cannot write the run folder: {error}") from None

    return distributed.run_on_main(group, guarded)


# ---------------------------------------------------------------------------------------------
# run.json
# ---------------------------------------------------------------------------------------------


def input_checksums(source, expression):
    """``{role: {"path": absolute path, "sha256": ...}}`` of every input file of the run."""
    files = {"genome": source.genome, "expression": expression.path}
    files["annotation" if source.annotation else "triples"] = source.label
    if expression.samples:
        files["samples"] = expression.samples
    prefix = "--expression sample "
    for role, path in expression.input_files():
        if role.startswith(prefix):  # a sample sheet's quantification files
            files[f"expression_sample:{role[len(prefix):]}"] = path
    if source.contig_alias:
        files["contig_alias"] = source.contig_alias
    return {role: {"path": os.path.abspath(path), "sha256": sha256_file(path)} for role, path in files.items()}


def run_settings(config, *, source, checkpoint_dir, tissues, modalities, freeze_specs, columns, plan, warmup_steps,
                 precision, split, splits, world_size):
    """The resolved settings recorded in run.json (and compared on --resume).

    Args:
        config: the FinetuneConfig.
        source: the triple source with the checkpoint's DNA window length.
        tissues: the expression table's tissues; ``columns``: the head output of each.
        modalities: the trained model's modalities; ``freeze_specs``: parsed ``--freeze``.
        plan: the BatchPlan; ``warmup_steps``: of the learning-rate schedule.
        split: the SplitSpec (with the training seed); ``splits``: each transcript's split name.
    """
    training = config.training
    return {
        "format": RUN_FORMAT,
        "tool_version": __version__,
        "command_line": recorded_command_line(config.command_args),
        "checkpoint": {"path": os.path.abspath(checkpoint_dir), "id": checkpoint_id(checkpoint_dir)},
        "inputs": input_checksums(source, config.expression),
        "selection": {
            "transcripts": source.transcripts, "genes": source.genes, "region": source.region,
            "biotypes": list(source.biotypes), "coding_only": source.coding_only,
            "on_invalid": source.on_invalid, "orf": source.orf, "min_orf_length": source.min_orf_length,
            "dna_length": source.dna_length,
        },
        "expression": {"values": config.expression.values, "sample_column": config.expression.sample_column,
                       "tissue_column": config.expression.tissue_column,
                       "condition_column": config.expression.condition_column, "tissues": tissues},
        "model": {
            "requested_modalities": training.modalities, "modalities": list(modalities),
            "freeze": [str(spec) for spec in freeze_specs],
            "new_head": training.new_head, "output_columns": columns,
            "activation_checkpointing": training.activation_checkpointing,
        },
        "training": {
            "epochs": training.epochs, "batch_size": training.batch_size,
            "micro_batch_size": plan.micro_batch_size, "lr": training.lr,
            "weight_decay": training.weight_decay, "warmup_steps": warmup_steps,
            "steps_per_epoch": plan.steps_per_epoch, "grad_clip": training.grad_clip,
            "patience": training.patience, "seed": training.seed, "precision": precision,
            "deterministic": config.runtime.deterministic, "rna_truncation": config.rna_truncation,
            "protein_truncation": config.protein_truncation,
        },
        "split": {"by": "chromosome" if split.by_chromosome else "gene",
                  "val_fraction": split.val_fraction, "test_fraction": split.test_fraction,
                  "val_chroms": list(split.val_chroms), "test_chroms": list(split.test_chroms),
                  "counts": split_counts(splits)},
        "run": {"max_steps": training.max_steps, "save_every": training.save_every,
                "num_workers": config.runtime.num_workers, "device": config.runtime.device,
                "world_size": world_size},
    }


def _flatten(value, prefix=""):
    if isinstance(value, dict):
        flat = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else key))
        return flat
    return {prefix: value}


def compare_settings(saved, current, run_dir):
    """InputError naming the first setting that differs between the saved run and this command."""
    ignored = {"command_line", "tool_version", "checkpoint.path"} | {f"run.{key}" for key in RESUMABLE_CHANGES}
    ignored |= {key for key in _flatten(saved) if key.startswith("inputs.") and key.endswith(".path")}
    ignored |= {key for key in _flatten(current) if key.startswith("inputs.") and key.endswith(".path")}
    old, new = _flatten(saved), _flatten(current)
    for key in sorted(set(old) | set(new)):
        if key in ignored:
            continue
        if old.get(key) != new.get(key):
            raise InputError(
                f"{run_dir}: cannot resume: {key} is {json.dumps(new.get(key))} now but was "
                f"{json.dumps(old.get(key))} in the run (see {RUN_FILE}); rerun the run's own command with --resume "
                f"(only {', '.join('--' + name.replace('_', '-') for name in RESUMABLE_CHANGES[:4])} may change)"
            )
    if saved.get("tool_version") != current.get("tool_version"):
        log.warning("resuming a run started by isoformer %s with isoformer %s", saved.get("tool_version"),
                    current.get("tool_version"))


# ---------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------


def _json_safe(value):
    """``value`` with NaN and infinities as None (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def write_json(path, value):
    """``value`` as JSON at ``path``, atomically (the layout in the module docstring)."""
    with atomic_text_output(path) as stream:
        json.dump(_json_safe(value), stream, indent=2, sort_keys=True, allow_nan=False)
        stream.write("\n")
