"""``isoformer finetune`` as a plain function: train IsoFormer on an expression table, resumably, on 1..N processes.

Steps of :func:`run_finetune`:

1. Load the starting checkpoint (restricted to ``--modalities``), build the triples (annotation or triples table,
   with the selection options of ``isoformer triples``), read the expression table and keep the transcripts
   that have expression (counts of both sides' unmatched ids are logged).
2. Split the transcripts by gene hash or by chromosome (:mod:`isoformer_cli.pipeline.splits`); match the head
   to the table's tissues (:func:`isoformer_cli.pipeline.training.fit_head`).
3. Every input is checked before the run folder is created, so a bad input leaves nothing behind.
4. Train: AdamW, warm-up + cosine schedule, gradient accumulation over micro-batches, gradient clipping,
   bf16 autocast (default on CUDA), optional activation checkpointing; DistributedDataParallel under torchrun.
   The batch plan and dropout seeds are functions of (seed, epoch, step) only
   (:mod:`isoformer_cli.pipeline.finetune_data`), so N processes train like one with the same ``--batch-size``
   and a resumed run like an uninterrupted one.
5. After every epoch: validation metrics, ``best/`` when the validation Spearman (the mean over tissues of
   the per-tissue Spearman across transcripts) improved, ``last/``, ``metrics.tsv``; stop early after
   ``--patience`` epochs without improvement.
6. At the end: predictions of the best model for the validation and test transcripts, and the test metrics.

Run folder (``-o RUN``)::

    run.json            resolved settings, input checksums, the command line
    split.tsv           transcript_id gene_id chrom split (train/val/test)
    metrics.tsv         one row per epoch: losses, validation R2 / Pearson / Spearman / isoform Spearman
    best/               checkpoint (our format) of the best validation Spearman (only with a validation split)
    last/               checkpoint of the latest saved step, plus training_state.safetensors (AdamW moments,
                        random generator states) and training_state.json (epoch, step, history, best so far);
                        written as one folder renamed into place, so it is always consistent
    predictions/        val.tsv, test.tsv: prediction tables of the final model (``isoformer evaluate`` reads them)
    test_metrics.tsv    the evaluation table of the test split (see isoformer_cli.evaluation.report)
    summary.json        written last: why training stopped, best epoch, test headline numbers

``--resume`` continues from ``last/``: the same command (the run's settings and input checksums must match;
``--max-steps``, ``--save-every``, ``--num-workers`` and ``--device`` may change) gives the weights an
uninterrupted run would have reached. ``--max-steps N`` stops once N optimiser steps are done in total (the
schedule still spans every epoch), for jobs with a time limit.
"""

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader

from isoformer_cli import __version__
from isoformer_cli.config_fields import check_field_types
from isoformer_cli.errors import InputError, IsoformerError, OutputError
from isoformer_cli.evaluation.metrics import evaluate, headline
from isoformer_cli.evaluation.report import write_metrics_table
from isoformer_cli.io.expression import ExpressionInput, match_transcripts, require_overlap
from isoformer_cli.io.genome import Genome
from isoformer_cli.model.checkpoint import atomic_folder, load_checkpoint, save_checkpoint
from isoformer_cli.model.tokenizers import ProteinTokenizer, RnaTokenizer
from isoformer_cli.outputs.atomic import atomic_text_output
from isoformer_cli.outputs.collisions import refuse_shared_files
from isoformer_cli.outputs.locks import lock_outputs
from isoformer_cli.outputs.predictions import obs_row, open_prediction_writer
from isoformer_cli.outputs.provenance import build_provenance, checkpoint_id, recorded_command_line, sha256_file
from isoformer_cli.pipeline import distributed
from isoformer_cli.pipeline.device import autocast_context, make_deterministic, resolve_device
from isoformer_cli.pipeline.engine import DEFAULT_MAX_TOKENS, ChunkPredictor
from isoformer_cli.pipeline.finetune_data import BatchPlan, MicroBatches
from isoformer_cli.pipeline.predict import (
    checkpoint_files,
    is_demo_checkpoint,
    resolve_checkpoint,
    units_label,
    writes_outputs,
)
from isoformer_cli.pipeline.prepare import TokenizerSettings, prepare_chunk
from isoformer_cli.pipeline.sources import TripleSource, iter_triples
from isoformer_cli.pipeline.splits import SplitMember, SplitSpec, assign_splits, split_counts, write_split
from isoformer_cli.pipeline.training import (
    adapt_modalities,
    build_optimizer,
    capture_rng,
    derive_seed,
    enable_activation_checkpointing,
    fill_missing_gradients,
    fit_head,
    freeze,
    learning_rate,
    load_optimizer_state,
    optimizer_state_tensors,
    parameter_counts,
    parse_freeze,
    plain_batchnorm,
    restore_rng,
    set_learning_rate,
    set_train_mode,
    trainable_parameters,
)
from isoformer_cli.progress import configure_progress, progress

log = logging.getLogger(__name__)

RUN_FORMAT = 1
RUN_FILE = "run.json"
SPLIT_FILE = "split.tsv"
METRICS_FILE = "metrics.tsv"
BEST_DIR = "best"
LAST_DIR = "last"
PREDICTIONS_DIR = "predictions"
TEST_METRICS_FILE = "test_metrics.tsv"
SUMMARY_FILE = "summary.json"
STATE_TENSORS = "training_state.safetensors"
STATE_JSON = "training_state.json"
METRICS_COLUMNS = ("epoch", "step", "lr", "train_loss", "val_loss", "val_r2", "val_pearson", "val_spearman",
                   "val_isoform_spearman", "seconds")
# Settings that may differ when a run is resumed: they change how, not what, it computes.
RESUMABLE_CHANGES = ("max_steps", "save_every", "num_workers", "device", "world_size")
PREDICTION_CHUNK = 64
PRECISION_CHOICES = ("auto", "fp32", "bf16")


@dataclass
class FinetuneConfig:
    """Everything ``isoformer finetune`` needs (the CLI fills it; tests build it directly).

    Attributes (training ones; see ``isoformer finetune --help`` for all):
        source: where the triples come from (the checkpoint sets the DNA window length).
        expression: the expression table.
        output: the run folder.
        checkpoint / model_dir: the starting model (see :func:`isoformer_cli.pipeline.predict.resolve_checkpoint`).
        modalities: comma-separated subset of the checkpoint's modalities, or None for all.
        freeze: ``--freeze`` values (``dna``, ``rna:2``, ``encoders``, ...).
        new_head: new output layer for the table's tissues.
        split: :class:`~isoformer_cli.pipeline.splits.SplitSpec` (its seed is set from ``seed``).
        epochs, batch_size (rows per optimiser step, over all processes), micro_batch_size (rows per forward
            pass of one process; default batch_size / processes), lr, weight_decay, warmup_fraction (of all
            steps), grad_clip (max gradient norm; 0 = off), patience (epochs without a better validation
            Spearman before stopping; 0 = never), max_steps, save_every (also save ``last/`` every N steps).
        seed, device, precision ("auto": bf16 on CUDA, fp32 on CPU), deterministic, activation_checkpointing,
        num_workers, rna_truncation, protein_truncation, eval_max_tokens (token budget of validation batches).
        resume / force: continue ``output`` / replace an existing run folder.
    """

    source: TripleSource
    expression: ExpressionInput
    output: str
    checkpoint: Optional[str] = None
    model_dir: Optional[str] = None
    modalities: Optional[str] = None
    freeze: Tuple[str, ...] = ()
    new_head: bool = False
    split: SplitSpec = field(default_factory=SplitSpec)
    epochs: int = 10
    batch_size: int = 32
    micro_batch_size: Optional[int] = None
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    grad_clip: float = 1.0
    patience: int = 3
    max_steps: Optional[int] = None
    save_every: Optional[int] = None
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    deterministic: bool = False
    activation_checkpointing: bool = False
    num_workers: int = 0
    rna_truncation: str = "keep_start"
    protein_truncation: str = "keep_start"
    eval_max_tokens: int = DEFAULT_MAX_TOKENS
    resume: bool = False
    force: bool = False
    command_args: Tuple[str, ...] = field(default_factory=lambda: tuple(sys.argv[1:]))


@dataclass
class FinetuneResult:
    """What a call of :func:`run_finetune` did."""

    run_dir: str
    global_step: int
    epochs_completed: int
    finished: bool
    stop_reason: str
    best_epoch: Optional[int] = None
    best_val_spearman: Optional[float] = None
    test_metrics: Optional[list] = None


@dataclass
class TrainingState:
    """Counters that ``--resume`` restores (saved in ``last/training_state.json``)."""

    epoch: int = 0              # 0-based epoch in progress
    step_in_epoch: int = 0      # optimiser steps of that epoch already done
    global_step: int = 0        # optimiser steps done in total
    epoch_loss_sum: float = 0.0  # sum of the epoch's per-step losses so far
    epoch_steps: int = 0
    best_val_spearman: Optional[float] = None
    best_epoch: Optional[int] = None
    epochs_since_best: int = 0
    stop_early: bool = False
    history: list = field(default_factory=list)


# The JSON kinds of training_state.json: TrainingState's fields, the random states and the process count.
TRAINING_STATE_KINDS = {
    "epoch": ("integer",), "step_in_epoch": ("integer",), "global_step": ("integer",),
    "epoch_loss_sum": ("number",), "epoch_steps": ("integer",), "best_val_spearman": ("number", "null"),
    "best_epoch": ("integer", "null"), "epochs_since_best": ("integer",), "stop_early": ("boolean",),
    "history": ("list",), "rng": ("list",), "world_size": ("integer",),
}


def _check_options(config):
    """InputError for option values no run can use (the CLI's types catch most of them earlier)."""
    checks = [
        (config.epochs >= 1, "--epochs must be at least 1"),
        (config.batch_size >= 1, "--batch-size must be at least 1"),
        (config.micro_batch_size is None or config.micro_batch_size >= 1, "--micro-batch-size must be at least 1"),
        (config.lr > 0 and math.isfinite(config.lr), "--lr must be a positive number"),
        (config.weight_decay >= 0, "--weight-decay must be 0 or more"),
        (0 <= config.warmup_fraction < 1, "--warmup-fraction must be at least 0 and below 1"),
        (config.grad_clip >= 0, "--grad-clip must be 0 (off) or more"),
        (config.patience >= 0, "--patience must be 0 (off) or more"),
        (config.max_steps is None or config.max_steps >= 1, "--max-steps must be at least 1"),
        (config.save_every is None or config.save_every >= 1, "--save-every must be at least 1"),
        (config.num_workers >= 0, "--num-workers must be 0 or more"),
        (config.precision in PRECISION_CHOICES, f"--precision must be one of {', '.join(PRECISION_CHOICES)}"),
    ]
    for ok, message in checks:
        if not ok:
            raise InputError(message)
    parse_freeze(config.freeze)
    config.split.check()


def resolve_precision(precision, device):
    """``auto`` -> bf16 on CUDA, fp32 elsewhere."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


# ---------------------------------------------------------------------------------------------
# Run folder
# ---------------------------------------------------------------------------------------------


def _run_folder_state(run_dir, config):
    """Check the run folder against ``--resume`` / ``--force``; returns the saved run.json or None."""
    run_file = os.path.join(run_dir, RUN_FILE)
    exists = os.path.isdir(run_dir) and bool(os.listdir(run_dir))
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise OutputError(f"{run_dir}: exists and is not a folder; choose another -o")
    if config.resume:
        if not os.path.isfile(run_file):
            raise InputError(f"{run_dir}: no fine-tuning run to resume here ({RUN_FILE} missing); "
                             "drop --resume to start one")
        if os.path.isfile(os.path.join(run_dir, SUMMARY_FILE)):
            raise InputError(f"{run_dir}: this run already finished ({SUMMARY_FILE}); nothing to resume")
        try:
            with open(run_file, encoding="utf-8") as stream:
                saved = json.load(stream)
        except (OSError, ValueError) as exc:
            raise InputError(f"{run_file}: cannot read the run settings: {exc}") from None
        if not isinstance(saved, dict):
            raise InputError(f"{run_file}: the run settings must be a JSON object; the run folder is damaged")
        return saved
    if exists:
        if not config.force:
            raise OutputError(f"{run_dir}: folder exists and is not empty; use --resume to continue the run in it, "
                              "--force to replace it, or choose a new -o")
        if not os.path.isfile(run_file):
            raise OutputError(f"{run_dir}: --force replaces fine-tuning run folders only, and this folder holds no "
                              f"{RUN_FILE}; choose a new -o")
    parent = os.path.dirname(run_dir)
    if not os.path.isdir(parent):
        raise OutputError(f"{run_dir}: folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{run_dir}: folder {parent} is not writable; choose another -o")
    return None


def _flatten(value, prefix=""):
    if isinstance(value, dict):
        flat = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else key))
        return flat
    return {prefix: value}


def _compare_settings(saved, current, run_dir):
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


def _on_main(group, action):
    """Run ``action`` on rank 0 only; an error there is raised on every rank (none waits forever)."""
    outcome = None
    if group.is_main:
        try:
            outcome = ("ok", action())
        except IsoformerError as error:
            outcome = ("error", error)
        except OSError as error:  # a full disk, a vanished folder: still a one-line error on every rank
            outcome = ("error", OutputError(f"cannot write the run folder: {error}"))
    outcome = distributed.broadcast_from_main(group, outcome)
    if outcome[0] == "error":
        raise outcome[1]
    return outcome[1]


def _raise_if_any(group, error):
    """Raise the first rank's error on every rank (``error``: this rank's, or None)."""
    for found in distributed.all_gather(group, error):
        if found is not None:
            raise found


def _json_safe(value):
    """``value`` with NaN and infinities as None (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def _write_json(path, value):
    with atomic_text_output(path) as stream:
        json.dump(_json_safe(value), stream, indent=2, sort_keys=True, allow_nan=False)
        stream.write("\n")


@contextlib.contextmanager
def _quiet(logger):
    """Raise ``logger`` to WARNING inside the block."""
    previous = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(previous)


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


class _Finetune:
    """State of one ``run_finetune`` call (set up in ``__init__``, trained by ``train``)."""

    def __init__(self, config, group, device):
        self.config = config
        self.group = group
        self.device = device
        self.precision = resolve_precision(config.precision, device)
        self.run_dir = os.path.abspath(config.output)
        self.last_dir = os.path.join(self.run_dir, LAST_DIR)
        self.best_dir = os.path.join(self.run_dir, BEST_DIR)
        saved = _run_folder_state(self.run_dir, config)
        self.resuming = saved is not None
        self.resume_from_last = self.resuming and os.path.isdir(self.last_dir)
        self.freeze_specs = parse_freeze(config.freeze)

        # 1. The starting model (on resume, the run's last checkpoint carries modalities and head).
        self.checkpoint_dir = resolve_checkpoint(config.checkpoint, config.model_dir)
        if is_demo_checkpoint(self.checkpoint_dir) and group.is_main and not self.resume_from_last:
            log.warning("starting from the bundled DEMO checkpoint (random weights)")
        if self.resume_from_last:
            model = load_checkpoint(self.last_dir)
        else:
            model = adapt_modalities(load_checkpoint(self.checkpoint_dir), config.modalities, self.checkpoint_dir)
        self.source = dataclasses.replace(config.source, dna_length=model.config.dna_length)

        # 2. Triples with expression, and the split.
        self._load_examples()
        self.split = dataclasses.replace(config.split, seed=config.seed)
        members = [SplitMember(t.transcript.transcript_id, t.transcript.gene_id, t.transcript.chrom, t.genome_chrom)
                   for t in self.triples]
        self.members = members
        self.splits = assign_splits(members, self.split)
        self.rows = {name: np.array([i for i, s in enumerate(self.splits) if s == name], dtype=np.int64)
                     for name in ("train", "val", "test")}
        counts = split_counts(self.splits)
        log.info("split %s: %d train, %d validation, %d test transcripts",
                 "by chromosome" if self.split.by_chromosome else "by gene", counts["train"], counts["val"],
                 counts["test"])
        if counts["val"] == 0:
            log.warning("no validation transcripts: no early stopping and no best/ checkpoint")

        # 3. The head and the batch plan.
        head_bias = self.targets[self.rows["train"]].mean(axis=0) if len(self.rows["train"]) else None
        if self.resume_from_last or not config.new_head:
            self.columns = fit_head(model, self.tissues, new_head=False)
        else:
            self.columns = fit_head(model, self.tissues, new_head=True, seed=config.seed, bias=head_bias)
        plain_batchnorm(model)
        self.frozen = freeze(model, self.freeze_specs)
        self.model = model
        world = group.world_size
        micro = config.micro_batch_size or max(1, config.batch_size // world)
        self.plan = BatchPlan(train_rows=tuple(int(row) for row in self.rows["train"]), batch_size=config.batch_size,
                              micro_batch_size=micro, world_size=world, seed=config.seed)
        self.total_steps = self.plan.steps_per_epoch * config.epochs
        self.warmup_steps = int(round(config.warmup_fraction * self.total_steps))
        self._check_lengths(model.config)
        self.settings = self._settings()
        if self.resuming:
            _compare_settings(saved, self.settings, self.run_dir)

        # 4. Nothing was written so far; create (or replace) the run folder now.
        if not self.resuming or not os.path.isfile(os.path.join(self.run_dir, SPLIT_FILE)):
            _on_main(group, self._create_run_folder)

    # -- inputs --------------------------------------------------------------------------------

    def _load_examples(self):
        config = self.config
        with Genome(self.source.genome) as genome:
            triples = list(iter_triples(self.source, genome))
        if not triples:
            raise InputError(f"{self.source.label}: no transcript selected; check the selection options")
        ids = [triple.transcript.transcript_id for triple in triples]
        table = config.expression.read(keep=ids)
        for note in table.notes:
            log.info("%s", note)
        match = match_transcripts(ids, table)
        require_overlap(match, table, ids, self.source.label)
        log.info("%s", match.describe(transcripts_label="selected transcripts"))
        kept = np.flatnonzero(match.rows >= 0)
        self.triples = [triples[i] for i in kept]
        self.targets = table.values[match.rows[kept]].astype(np.float32)
        self.tissues = list(table.tissues)
        self.expression_table = table

    def _check_lengths(self, model_config):
        """With a truncation policy of ``error``, find a too-long RNA or protein now, not mid-training."""
        config = self.config
        checks = []
        if config.rna_truncation == "error" and model_config.has_rna:
            checks.append(("rna", RnaTokenizer(max_tokens=model_config.max_rna_tokens, truncation="error")))
        if config.protein_truncation == "error" and model_config.has_protein:
            checks.append(("protein", ProteinTokenizer(max_residues=model_config.max_protein_residues,
                                                       truncation="error")))
        for attribute, tokenizer in checks:
            for triple in self.triples:
                sequence = getattr(triple, attribute)
                if sequence:
                    tokenizer.encode(sequence, triple.transcript.transcript_id)

    def _input_checksums(self):
        config = self.config
        files = {"genome": self.source.genome, "expression": config.expression.path}
        files["annotation" if self.source.annotation else "triples"] = self.source.label
        if config.expression.samples:
            files["samples"] = config.expression.samples
        if self.source.contig_alias:
            files["contig_alias"] = self.source.contig_alias
        return {role: {"path": os.path.abspath(path), "sha256": sha256_file(path)} for role, path in files.items()}

    def _settings(self):
        """The resolved settings recorded in run.json (and compared on --resume)."""
        config, source = self.config, self.source
        return {
            "format": RUN_FORMAT,
            "tool_version": __version__,
            "command_line": recorded_command_line(config.command_args),
            "checkpoint": {"path": os.path.abspath(self.checkpoint_dir), "id": checkpoint_id(self.checkpoint_dir)},
            "inputs": self._input_checksums(),
            "selection": {
                "transcripts": source.transcripts, "genes": source.genes, "region": source.region,
                "biotypes": list(source.biotypes), "coding_only": source.coding_only,
                "on_invalid": source.on_invalid, "orf": source.orf, "min_orf_length": source.min_orf_length,
                "dna_length": source.dna_length,
            },
            "expression": {"values": config.expression.values, "sample_column": config.expression.sample_column,
                           "tissue_column": config.expression.tissue_column, "tissues": self.tissues},
            "model": {
                "requested_modalities": config.modalities, "modalities": list(self.model.config.modalities),
                "freeze": [str(spec) for spec in self.freeze_specs],
                "new_head": config.new_head, "output_columns": self.columns,
                "activation_checkpointing": config.activation_checkpointing,
            },
            "training": {
                "epochs": config.epochs, "batch_size": config.batch_size,
                "micro_batch_size": self.plan.micro_batch_size, "lr": config.lr,
                "weight_decay": config.weight_decay, "warmup_steps": self.warmup_steps,
                "steps_per_epoch": self.plan.steps_per_epoch, "grad_clip": config.grad_clip,
                "patience": config.patience, "seed": config.seed, "precision": self.precision,
                "deterministic": config.deterministic, "rna_truncation": config.rna_truncation,
                "protein_truncation": config.protein_truncation,
            },
            "split": {"by": "chromosome" if self.split.by_chromosome else "gene",
                      "val_fraction": self.split.val_fraction, "test_fraction": self.split.test_fraction,
                      "val_chroms": list(self.split.val_chroms), "test_chroms": list(self.split.test_chroms),
                      "counts": split_counts(self.splits)},
            "run": {"max_steps": config.max_steps, "save_every": config.save_every,
                    "num_workers": config.num_workers, "device": config.device,
                    "world_size": self.group.world_size},
        }

    def _create_run_folder(self):
        if os.path.isdir(self.run_dir) and os.listdir(self.run_dir) and not self.resuming:
            shutil.rmtree(self.run_dir)  # --force on a run folder (checked in _run_folder_state)
        try:
            os.makedirs(self.run_dir, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{self.run_dir}: cannot create the run folder: {exc.strerror}") from None
        _write_json(os.path.join(self.run_dir, RUN_FILE), self.settings)
        write_split(os.path.join(self.run_dir, SPLIT_FILE), self.members, self.splits)

    # -- training --------------------------------------------------------------------------------

    def _prepare_training(self):
        config = self.config
        model = self.model
        if config.activation_checkpointing:
            layers = enable_activation_checkpointing(model)
            log.info("activation checkpointing on %d encoder layers", layers)
        model.to(self.device)
        self.named = trainable_parameters(model)
        self.parameters = [parameter for _, parameter in self.named]
        trainable, total = parameter_counts(model)
        log.info("training %s of %s parameters (%d steps of %d transcripts; %d per forward pass, %d process(es))",
                 f"{trainable:,}", f"{total:,}", self.total_steps, config.batch_size, self.plan.micro_batch_size,
                 self.group.world_size)
        self.optimizer = build_optimizer(self.named, config.lr, config.weight_decay)
        self.state = TrainingState()
        if self.resume_from_last:
            self._load_training_state()
        self.wrapped = model
        if self.group.is_distributed:
            from torch.nn.parallel import DistributedDataParallel

            # Every trainable parameter is used in every step (MicroBatches feeds placeholders for absent
            # modalities), so DDP needs no find_unused_parameters graph traversal.
            self.wrapped = DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
            )
        self.dataset = MicroBatches(self.triples, self.targets, self.source.genome,
                                    TokenizerSettings.for_model_config(model.config, config.rna_truncation,
                                                                       config.protein_truncation),
                                    model.config)
        self.loss_scale = self.group.world_size / (config.batch_size * len(self.columns))
        self.column_index = torch.tensor(self.columns, dtype=torch.long, device=self.device)

    def train(self):
        """Train to the end (or to ``--max-steps``); returns a :class:`FinetuneResult`."""
        config = self.config
        self._prepare_training()
        state = self.state
        stop_reason = "epochs"
        if config.max_steps is not None and state.global_step >= config.max_steps:
            log.info("the run is already at step %d (--max-steps %d); raise --max-steps to go on",
                     state.global_step, config.max_steps)
            return self._result(finished=False, stop_reason="max_steps")
        while state.epoch < config.epochs and not state.stop_early:
            started = time.monotonic()
            if not self._train_epoch():
                return self._result(finished=False, stop_reason="max_steps")
            self._end_epoch(time.monotonic() - started)
        if state.stop_early:
            stop_reason = "early_stopping"
        test_rows = self._finish(stop_reason)
        return self._result(finished=True, stop_reason=stop_reason, test_rows=test_rows)

    def _train_epoch(self):
        """Run the rest of the current epoch's steps; False when ``--max-steps`` stopped it."""
        config, state, plan = self.config, self.state, self.plan
        items = plan.micro_batches(state.epoch, self.group.rank, first_step=state.step_in_epoch)
        loader = DataLoader(self.dataset, sampler=[rows for _, _, rows in items], batch_size=None,
                            collate_fn=lambda batch: batch, num_workers=config.num_workers)
        set_train_mode(self.model, self.frozen)
        pending = []
        with progress(total=plan.steps_per_epoch, initial=state.step_in_epoch, unit=" steps",
                      desc=f"epoch {state.epoch + 1}/{config.epochs}") as bar:
            for (step, micro_index, _), batch in zip(items, loader):
                pending.append((micro_index, batch))
                if len(pending) < plan.accumulation:
                    continue
                loss = self._optimizer_step(pending)
                pending = []
                state.step_in_epoch = step + 1
                state.global_step += 1
                state.epoch_loss_sum += loss
                state.epoch_steps += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4g}")
                if config.max_steps is not None and state.global_step >= config.max_steps:
                    self._save_last()
                    log.info("stopped after step %d (--max-steps); continue with --resume", state.global_step)
                    return False
                if config.save_every and state.global_step % config.save_every == 0 \
                        and state.step_in_epoch < plan.steps_per_epoch:
                    self._save_last()
        return True

    def _optimizer_step(self, micro_batches):
        """Forward/backward every micro-batch of this process, then one synchronised AdamW step."""
        config, state = self.config, self.state
        # A batch that failed to prepare (in a worker) stops every process, not just its own.
        _raise_if_any(self.group, next((batch.error for _, batch in micro_batches if batch.error is not None), None))
        self.optimizer.zero_grad(set_to_none=True)
        set_learning_rate(self.optimizer, learning_rate(state.global_step, config.lr, self.warmup_steps,
                                                        self.total_steps))
        local_sum = 0.0
        for position, (micro_index, batch) in enumerate(micro_batches):
            batch.to(self.device)
            torch.manual_seed(derive_seed(config.seed, "dropout", state.global_step, micro_index))
            last = position == len(micro_batches) - 1
            # Gradients are exchanged between processes only after the step's last micro-batch.
            sync = contextlib.nullcontext() if last or not self.group.is_distributed else self.wrapped.no_sync()
            with sync:
                with autocast_context(self.device, self.precision):
                    output = self.wrapped(**batch.inputs)
                predictions = output.predictions.float().index_select(1, self.column_index)
                squared_sum = ((predictions - batch.labels) ** 2).sum()
                # Scaled so that the gradients, averaged over processes by DDP, are those of the mean
                # squared error over the whole step's batch.
                (squared_sum * self.loss_scale).backward()
            local_sum += float(squared_sum.detach())
        step_loss = sum(distributed.all_gather(self.group, local_sum)) / (config.batch_size * len(self.columns))
        fill_missing_gradients(self.parameters)
        norm = torch.nn.utils.clip_grad_norm_(self.parameters, config.grad_clip or float("inf"))
        if not (math.isfinite(step_loss) and math.isfinite(float(norm))):
            raise IsoformerError(
                f"training diverged at step {state.global_step + 1} (loss {step_loss}, gradient norm {float(norm)}); "
                f"lower --lr, use --precision fp32, or check the expression values; {LAST_DIR}/ keeps the last "
                "saved step"
            )
        self.optimizer.step()
        return step_loss

    def _end_epoch(self, seconds):
        """Validate, update best/ and last/, write metrics.tsv, decide on early stopping."""
        config, state = self.config, self.state
        row = {
            "epoch": state.epoch + 1, "step": state.global_step,
            "lr": learning_rate(max(0, state.global_step - 1), config.lr, self.warmup_steps, self.total_steps),
            "train_loss": state.epoch_loss_sum / max(1, state.epoch_steps),
        }
        improved = False
        if len(self.rows["val"]):
            predictions = self._predict(self.model, self.rows["val"])[:, self.columns]
            observed = self.targets[self.rows["val"]]
            metrics = headline(evaluate(observed, predictions, self.tissues, self._genes(self.rows["val"])))
            row.update(val_loss=float(np.mean((predictions - observed) ** 2)), val_r2=metrics.r2,
                       val_pearson=metrics.pearson, val_spearman=metrics.spearman,
                       val_isoform_spearman=metrics.isoform_spearman)
            value = metrics.spearman
            improved = math.isfinite(value) and (state.best_val_spearman is None or value > state.best_val_spearman)
            if improved:
                state.best_val_spearman, state.best_epoch, state.epochs_since_best = value, state.epoch + 1, 0
                _on_main(self.group, lambda: save_checkpoint(self.model, self.best_dir, overwrite=True,
                                                              metadata=self._checkpoint_metadata()))
            else:
                state.epochs_since_best += 1
            if config.patience and state.epochs_since_best >= config.patience:
                state.stop_early = True
                log.info("no better validation Spearman for %d epochs: stopping early", state.epochs_since_best)
        row["seconds"] = seconds
        state.history.append(row)
        log.info("epoch %d: train loss %.4g%s", row["epoch"], row["train_loss"],
                 f", validation loss {row['val_loss']:.4g}, Spearman {row['val_spearman']:.3f}"
                 + (" (best)" if improved else "") if "val_loss" in row else "")
        state.epoch += 1
        state.step_in_epoch = 0
        state.epoch_loss_sum, state.epoch_steps = 0.0, 0
        self._save_last()

    def _genes(self, rows):
        return [self.triples[row].transcript.gene_id or self.triples[row].transcript.transcript_id for row in rows]

    # -- predictions -----------------------------------------------------------------------------

    def _predict(self, model, rows):
        """Predictions (len(rows), n_outputs) of ``model`` for ``rows``, shared out among processes."""
        model.eval()
        predictor = ChunkPredictor(model, self.device, self.precision, self.config.eval_max_tokens)
        settings = self.dataset.settings
        mine = np.array_split(np.asarray(rows), self.group.world_size)[self.group.rank]
        genome = self.dataset.genome()
        parts, error = [], None
        try:
            for start in range(0, len(mine), PREDICTION_CHUNK):
                chunk = prepare_chunk(start, [self.triples[row] for row in mine[start:start + PREDICTION_CHUNK]],
                                      genome, settings)
                parts.append(predictor.predict(chunk).predictions)
        except IsoformerError as raised:
            error = raised
        _raise_if_any(self.group, error)
        local = np.concatenate(parts) if parts else np.zeros((0, model.config.n_tissues), dtype=np.float32)
        set_train_mode(self.model, self.frozen)
        return np.concatenate(distributed.all_gather(self.group, local))

    def _finish(self, stop_reason):
        """Predictions of the final (best) model for validation and test, the test metrics, summary.json."""
        final_dir = self.best_dir if os.path.isdir(self.best_dir) else self.last_dir
        model = load_checkpoint(final_dir, device=self.device)
        outputs = {}
        for name in ("val", "test"):
            if len(self.rows[name]):
                outputs[name] = self._predict(model, self.rows[name])
        test_rows = None
        if "test" in outputs:
            test_rows = evaluate(self.targets[self.rows["test"]], outputs["test"][:, self.columns], self.tissues,
                                 self._genes(self.rows["test"]))

        def write():
            provenance = build_provenance(list(self.config.command_args), final_dir,
                                          {role: item["path"] for role, item in self.settings["inputs"].items()},
                                          units=units_label(model.config.target_units))
            if outputs:
                os.makedirs(os.path.join(self.run_dir, PREDICTIONS_DIR), exist_ok=True)
            for name, values in outputs.items():
                writer = open_prediction_writer(os.path.join(self.run_dir, PREDICTIONS_DIR, f"{name}.tsv"),
                                                list(model.config.tissues), provenance)
                with writer:
                    writer.write_chunk([obs_row(self.triples[row]) for row in self.rows[name]], values)
            if test_rows is not None:
                write_metrics_table(os.path.join(self.run_dir, TEST_METRICS_FILE), test_rows, notes=[
                    f"test split of {self.run_dir}: {len(self.rows['test'])} transcripts, model {final_dir}",
                    "units: log(TPM+1)",
                ])
            best = headline(test_rows) if test_rows is not None else None
            _write_json(os.path.join(self.run_dir, SUMMARY_FILE), {
                "finished": True, "stop_reason": stop_reason, "epochs_completed": self.state.epoch,
                "global_step": self.state.global_step, "best_epoch": self.state.best_epoch,
                "best_val_spearman": self.state.best_val_spearman, "final_model": os.path.basename(final_dir),
                "test": None if best is None else {"r2": best.r2, "pearson": best.pearson,
                                                   "spearman": best.spearman,
                                                   "isoform_spearman": best.isoform_spearman},
            })

        _on_main(self.group, write)
        if test_rows is not None:
            best = headline(test_rows)
            log.info("test split (%d transcripts): Spearman %.3f, Pearson %.3f, R2 %.3f (mean over tissues)",
                     len(self.rows["test"]), best.spearman, best.pearson, best.r2)
        log.info("fine-tuning finished (%s); run folder %s", stop_reason.replace("_", " "), self.run_dir)
        return test_rows

    # -- saving and resuming -----------------------------------------------------------------------

    def _checkpoint_metadata(self):
        return {"finetune_step": str(self.state.global_step), "finetune_epoch": str(self.state.epoch)}

    def _save_last(self):
        """Write last/ (checkpoint + training state) as one folder, then metrics.tsv (rank 0)."""
        rng = distributed.all_gather(self.group, capture_rng())
        optimizer = optimizer_state_tensors(self.optimizer, self.named)
        tensors = {f"optimizer/{key}": value for key, value in optimizer.items()}
        plain_rng = []
        for rank, (rng_tensors, rng_plain) in enumerate(rng):
            tensors.update({f"rng/{rank}/{key}": value for key, value in rng_tensors.items()})
            plain_rng.append(rng_plain)
        state_json = dict(dataclasses.asdict(self.state), rng=plain_rng, world_size=self.group.world_size)

        def write():
            from safetensors.torch import save_file

            with atomic_folder(self.last_dir, overwrite=True) as partial:
                # save_checkpoint writes its own folder; move its two files into ours so that weights and
                # training state appear together in one rename.
                inner = os.path.join(partial, "checkpoint")
                with _quiet(logging.getLogger("isoformer_cli.model.checkpoint")):  # its "wrote" names the inner folder
                    save_checkpoint(self.model, inner, metadata=self._checkpoint_metadata())
                for name in os.listdir(inner):
                    os.replace(os.path.join(inner, name), os.path.join(partial, name))
                os.rmdir(inner)
                save_file(tensors, os.path.join(partial, STATE_TENSORS))
                _write_json(os.path.join(partial, STATE_JSON), state_json)
            self._write_metrics()
            log.debug("saved %s at step %d", self.last_dir, self.state.global_step)

        _on_main(self.group, write)

    def _load_training_state(self):
        from safetensors.torch import load_file

        json_path = os.path.join(self.last_dir, STATE_JSON)
        tensor_path = os.path.join(self.last_dir, STATE_TENSORS)
        try:
            with open(json_path, encoding="utf-8") as stream:
                saved = json.load(stream)
            tensors = load_file(tensor_path)
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.last_dir}: cannot read the training state ({exc}); the run folder is damaged") \
                from None
        if not isinstance(saved, dict):
            raise InputError(f"{json_path}: the training state must be a JSON object; the run folder is damaged")
        check_field_types(saved, TRAINING_STATE_KINDS, json_path, refuse_unknown=True)
        fields = {key: saved[key] for key in dataclasses.asdict(TrainingState()) if key in saved}
        self.state = TrainingState(**fields)
        load_optimizer_state(self.optimizer, self.named,
                             {key[len("optimizer/"):]: value for key, value in tensors.items()
                              if key.startswith("optimizer/")}, tensor_path)
        rank = self.group.rank
        if saved.get("world_size") == self.group.world_size:
            restore_rng({key[len(f"rng/{rank}/"):]: value for key, value in tensors.items()
                         if key.startswith(f"rng/{rank}/")}, saved["rng"][rank])
        log.info("resuming %s at epoch %d, step %d", self.run_dir, self.state.epoch + 1, self.state.global_step)

    def _write_metrics(self):
        def cell(value):
            if value is None:
                return "NA"
            if isinstance(value, float):
                return "NA" if not math.isfinite(value) else f"{value:.6g}"
            return str(value)

        with atomic_text_output(os.path.join(self.run_dir, METRICS_FILE)) as stream:
            stream.write("\t".join(METRICS_COLUMNS) + "\n")
            for row in self.state.history:
                stream.write("\t".join(cell(row.get(column)) for column in METRICS_COLUMNS) + "\n")

    def _result(self, finished, stop_reason, test_rows=None):
        return FinetuneResult(run_dir=self.run_dir, global_step=self.state.global_step,
                              epochs_completed=self.state.epoch, finished=finished, stop_reason=stop_reason,
                              best_epoch=self.state.best_epoch, best_val_spearman=self.state.best_val_spearman,
                              test_metrics=test_rows)


def run_finetune(config):
    """Fine-tune a checkpoint on an expression table (see the module docstring); returns a FinetuneResult.

    Raises the typed errors of the inputs, checkpoint and outputs before anything is written. No
    input may lie inside the run folder (``--force`` replaces it); the folder is locked for the run.
    """
    inputs = config.source.input_files() + checkpoint_files(config.checkpoint, config.model_dir)
    inputs += [("--expression", config.expression.path), ("--samples", config.expression.samples)]
    refuse_shared_files(inputs, {}, output_folders={"-o/--output": config.output})
    _check_options(config)
    with lock_outputs(folders=[config.output]) if writes_outputs() else contextlib.nullcontext():
        return _finetune(config)


def _finetune(config):
    device = resolve_device(config.device)
    group = distributed.init_process_group(device.type)
    completed = False
    try:
        if group.is_distributed and device.type == "cuda":
            device = torch.device("cuda", group.local_rank)
        if not group.is_main:
            configure_progress(False)
        if config.deterministic:
            make_deterministic(config.seed)
        run = _Finetune(config, group, device)
        result = run.train()
        completed = True
        return result
    finally:
        distributed.shutdown(group, completed)
