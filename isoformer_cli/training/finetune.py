"""``isoformer finetune`` as a plain function: train IsoFormer on an expression table, resumably, on 1..N processes.

Steps of :func:`run_finetune`:

1. Load the starting checkpoint (restricted to ``--modalities``), build the triples (annotation or triples table,
   with the selection options of ``isoformer triples``), read the expression table and keep the transcripts
   that have expression (:mod:`isoformer_cli.training.examples`).
2. Split the transcripts by gene hash or by chromosome (:mod:`isoformer_cli.training.splits`); match the head
   to the table's tissues (:func:`isoformer_cli.training.model_setup.fit_head`); freeze ``--freeze``.
3. Every input is checked before the run folder (:mod:`isoformer_cli.training.run_folder`) is created, so a
   bad input leaves nothing behind.
4. Train (:mod:`isoformer_cli.training.trainer`): AdamW, warm-up + cosine schedule, gradient accumulation over
   micro-batches, gradient clipping, bf16 autocast (default on CUDA), optional activation checkpointing;
   DistributedDataParallel under torchrun. The batch plan and dropout seeds are functions of (seed, epoch,
   step) only (:mod:`isoformer_cli.training.batches`), so N processes train like one with the same
   ``--batch-size`` and a resumed run like an uninterrupted one.
5. After every epoch: validation metrics, ``best/``, ``last/`` (:mod:`isoformer_cli.training.checkpoints`),
   ``metrics.tsv``; stop early after ``--patience`` epochs without a better validation Spearman.
6. At the end: predictions of the best model for the validation and test transcripts, and the test metrics.

``--resume`` continues from ``last/``: the same command (the run's settings and input checksums must match;
``--max-steps``, ``--save-every``, ``--num-workers`` and ``--device`` may change) gives the weights an
uninterrupted run would have reached. ``--max-steps N`` stops once N optimiser steps are done in total (the
schedule still spans every epoch), for jobs with a time limit.
"""

import contextlib
import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Optional

from isoformer_cli.formats.collisions import refuse_shared_files
from isoformer_cli.formats.locks import lock_outputs
from isoformer_cli.models.checkpoint.load import load_checked, load_checkpoint
from isoformer_cli.models.distribution.locate import is_demo_checkpoint, is_demo_derived, locate_checkpoint
from isoformer_cli.runtime.distributed import is_main_process
from isoformer_cli.runtime.memory import memory_budget
from isoformer_cli.runtime.setup import model_run
from isoformer_cli.training.batches import BatchPlan
from isoformer_cli.training.examples import check_lengths, check_validation, load_examples, split_examples
from isoformer_cli.training.freezing import freeze, parse_freeze, plain_batchnorm
from isoformer_cli.training.memory import micro_batch_from_memory
from isoformer_cli.training.model_setup import adapt_modalities, fit_head
from isoformer_cli.training.run_folder import LAST_DIR, RUN_FILE, RunFolder, compare_settings, on_main, run_settings
from isoformer_cli.training.trainer import Trainer, TrainingJob

log = logging.getLogger(__name__)


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


def run_finetune(config):
    """Fine-tune a checkpoint on an expression table (see the module docstring); returns a FinetuneResult.

    Raises the typed errors of the inputs, checkpoint and outputs before anything is written. No
    input may lie inside the run folder (``--force`` replaces it); the folder is locked for the run.
    """
    checked = locate_checkpoint(config.checkpoint, config.model_dir)
    inputs = config.source.input_files() + checked.files()
    inputs += config.expression.input_files()
    refuse_shared_files(inputs, {}, output_folders={"-o/--output": config.output})
    with lock_outputs(folders=[config.output]) if is_main_process() else contextlib.nullcontext():
        return _finetune(config, checked)


def _finetune(config, checked):
    with model_run(config.runtime, seed=config.training.seed) as context:
        trainer = None
        try:
            trainer = Trainer(config, context, _prepare(config, context, checked))
            finished, stop_reason, test_rows = trainer.train()
        except KeyboardInterrupt:
            # A warning, so that -q keeps the one thing to do next.
            last = os.path.join(config.output, LAST_DIR)
            if is_main_process() and os.path.isfile(os.path.join(config.output, RUN_FILE)):
                log.warning("interrupted: rerun the same command with --resume to continue from %s",
                            last if os.path.isdir(last) else "the start (no step was saved yet)")
            raise
        finally:
            if trainer is not None:
                trainer.release_process_group()
        state = trainer.state
        return FinetuneResult(run_dir=trainer.folder.path, global_step=state.global_step,
                              epochs_completed=state.epoch, finished=finished, stop_reason=stop_reason,
                              best_epoch=state.best_epoch, best_val_spearman=state.best_val_spearman,
                              test_metrics=test_rows)


def _micro_batch(training, model, context, saved):
    """Rows per forward pass of this process: ``--micro-batch-size``, the resumed run's own (its dropout masks
    follow it), or the largest that fits the memory there is (:mod:`isoformer_cli.training.memory`)."""
    per_process = training.batch_size // context.group.world_size
    if saved is not None and training.micro_batch_size is None:
        return saved["training"]["micro_batch_size"]
    budget = memory_budget(context.device, context.max_memory)
    weights_to_move = 0
    if context.device.type == "cuda":  # the model moves to the GPU later; its weights count against its memory
        weights_to_move = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    fits = micro_batch_from_memory(model, per_process, context.precision, training.activation_checkpointing,
                                   budget, weights_to_move)
    if training.micro_batch_size is None:
        return fits
    if training.micro_batch_size > fits:
        log.warning("--micro-batch-size %d is more than the %d examples that fit in %s: the run may run out of "
                    "memory", training.micro_batch_size, fits, budget.describe())
    return training.micro_batch_size


def _prepare(config, context, checked):
    """Check every input, build the model (from ``checked``, the located checkpoint) and the examples, then
    create the run folder; a TrainingJob."""
    training = config.training
    folder = RunFolder(os.path.abspath(config.output))
    saved = folder.check(config)
    resuming = saved is not None
    resume_from_last = resuming and os.path.isdir(folder.last_dir)
    freeze_specs = parse_freeze(training.freeze)

    # 1. The starting model (on resume, the run's last checkpoint carries modalities and head).
    checkpoint_dir = checked.folder
    # A model fine-tuned from the demo keeps its random-weight encoders: its checkpoints carry the mark on.
    from_demo = is_demo_checkpoint(checkpoint_dir) or is_demo_derived(checkpoint_dir)
    if from_demo and context.group.is_main and not resume_from_last:
        log.warning("starting from %s (random-weight encoders): the checkpoints of this run are marked as "
                    "derived from the DEMO checkpoint, and their predictions are NOT biological",
                    "the bundled DEMO checkpoint" if is_demo_checkpoint(checkpoint_dir) else
                    f"{config.checkpoint}, fine-tuned from the DEMO checkpoint")
    if resume_from_last:
        model = load_checkpoint(folder.last_dir)
    else:
        model = adapt_modalities(load_checked(checked), training.modalities, checkpoint_dir)
    source = dataclasses.replace(config.source, dna_length=model.config.dna_length)

    # 2. Triples with expression, and the split.
    examples = load_examples(source, config.expression)
    split = split_examples(examples, dataclasses.replace(config.split, seed=training.seed))
    rows = split.rows

    # 3. The head, the frozen parts and the batch plan.
    if resume_from_last or not training.new_head:
        columns = fit_head(model, examples.tissues, new_head=False)
    else:
        head_bias = examples.targets[rows["train"]].mean(axis=0) if len(rows["train"]) else None
        columns = fit_head(model, examples.tissues, new_head=True, seed=training.seed, bias=head_bias)
    plain_batchnorm(model)
    frozen = freeze(model, freeze_specs)
    world = context.group.world_size
    plan = BatchPlan(train_rows=tuple(int(row) for row in rows["train"]), batch_size=training.batch_size,
                     micro_batch_size=_micro_batch(training, model, context, saved), world_size=world,
                     seed=training.seed)
    total_steps = plan.steps_per_epoch * training.epochs
    warmup_steps = int(round(training.warmup_fraction * total_steps))
    check_lengths(examples, model.config, config.rna_truncation, config.protein_truncation)
    check_validation(examples, rows["val"], split.spec)  # last: the other input errors say more
    settings = run_settings(config, source=source, checkpoint_dir=checkpoint_dir, tissues=examples.tissues,
                            modalities=model.config.modalities, freeze_specs=freeze_specs, columns=columns, plan=plan,
                            warmup_steps=warmup_steps, precision=context.precision, split=split.spec,
                            splits=split.names, world_size=world)
    if resuming:
        compare_settings(saved, settings, folder.path)

    # 4. Nothing was written so far; create (or replace) the run folder now.
    if not resuming or not folder.has_split():
        on_main(context.group, lambda: folder.create(settings, split.members, split.names, resuming))
    return TrainingJob(folder=folder, model=model, frozen=frozen, columns=columns, examples=examples, rows=rows,
                       plan=plan, warmup_steps=warmup_steps, total_steps=total_steps,
                       input_paths={role: item["path"] for role, item in settings["inputs"].items()},
                       resume_from_last=resume_from_last, demo_source=checkpoint_dir if from_demo else None)
