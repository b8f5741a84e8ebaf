"""The training loop of ``isoformer finetune``, from a prepared :class:`TrainingJob` to the final predictions.

* Preparing: activation checkpointing, the device, AdamW over the trainable parameters, the state of
  ``last/`` on resume, DistributedDataParallel under torchrun.
* Each optimiser step: ``accumulation`` micro-batches of this process (forward and backward, gradients
  exchanged after the last), gradient clipping, one AdamW step. The loss is the mean squared error over
  the step's ``batch_size`` transcripts x the table's tissues, in the targets' units; a non-finite loss or
  gradient norm stops the run.
* After each epoch: validation metrics, ``best/`` when the validation Spearman (the mean over tissues of
  the per-tissue Spearman across transcripts) improved, ``last/`` and ``metrics.tsv``; early stopping after
  ``--patience`` epochs without improvement. ``--max-steps`` and ``--save-every`` save ``last/`` mid-epoch.
* At the end: predictions of the best model (else the last) for the validation and test transcripts, the
  test metrics and ``summary.json``.

Model outputs have one column per checkpoint tissue; ``columns[j]`` is the output of the table's tissue
``j``, so predictions are compared with targets as ``predictions[:, columns]`` (n_rows, n_tissues).
Predictions are shared out among processes by contiguous blocks of rows and gathered in rank order.
"""

import contextlib
import gc
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

from isoformer_cli.errors import IsoformerError
from isoformer_cli.evaluation.metrics import evaluate, headline
from isoformer_cli.formats.predictions import obs_row
from isoformer_cli.formats.provenance import build_provenance, units_label
from isoformer_cli.inference.engine import ChunkPredictor
from isoformer_cli.inference.prepare import TokenizerSettings, prepare_chunk
from isoformer_cli.models.checkpoint.load import load_checkpoint
from isoformer_cli.models.checkpoint.save import save_checkpoint
from isoformer_cli.models.distribution.locate import mark_demo_derived
from isoformer_cli.runtime import distributed
from isoformer_cli.runtime.determinism import derive_seed
from isoformer_cli.runtime.device import autocast_context
from isoformer_cli.runtime.progress import progress
from isoformer_cli.training.batches import BatchPlan, MicroBatches
from isoformer_cli.training.checkpoints import (
    TrainingState,
    checkpoint_metadata,
    gather_training_state,
    load_training_state,
    write_last,
)
from isoformer_cli.training.examples import Examples
from isoformer_cli.training.freezing import enable_activation_checkpointing, parameter_counts, set_train_mode
from isoformer_cli.training.optim import (
    build_optimizer,
    fill_missing_gradients,
    learning_rate,
    set_learning_rate,
    trainable_parameters,
)
from isoformer_cli.training.run_folder import LAST_DIR, RunFolder, on_main

log = logging.getLogger(__name__)

PREDICTION_CHUNK = 64


@dataclass
class TrainingJob:
    """Everything set up and checked before the run folder was written.

    Attributes:
        folder: the run folder.
        model: the model to train (modalities, head and frozen parts set; not yet on the device).
        frozen: the modules :func:`isoformer_cli.training.freezing.freeze` froze (kept in eval mode).
        columns: the model output of each of the table's tissues.
        examples, rows: the examples and the row numbers of each split.
        plan: the batch plan; ``warmup_steps`` / ``total_steps``: the learning-rate schedule.
        input_paths: role -> path of the input files (hashed into the predictions' provenance).
        resume_from_last: continue from ``last/``.
        demo_source: the starting checkpoint when it is (or derives from) the demo checkpoint, else None: every
            checkpoint the run saves is then marked as derived from the demo, and its predictions warn.
    """

    folder: RunFolder
    model: torch.nn.Module
    frozen: List[torch.nn.Module]
    columns: List[int]
    examples: Examples
    rows: Dict[str, np.ndarray]
    plan: BatchPlan
    warmup_steps: int
    total_steps: int
    input_paths: Dict[str, str]
    resume_from_last: bool
    demo_source: Optional[str] = None


class Trainer:
    """Trains a :class:`TrainingJob` (prepared in ``__init__``); :meth:`train` runs it."""

    def __init__(self, config, context, job):
        self.config = config
        self.group = context.group
        self.device = context.device
        self.precision = context.precision
        self.job = job
        self.folder = job.folder
        self.model = model = job.model
        self.examples = job.examples
        self.rows = job.rows
        self.columns = job.columns
        self.plan = job.plan
        training = config.training
        if training.activation_checkpointing:
            layers = enable_activation_checkpointing(model)
            log.info("activation checkpointing on %d encoder layers", layers)
        model.to(self.device)
        self.named = trainable_parameters(model)
        self.parameters = [parameter for _, parameter in self.named]
        trainable, total = parameter_counts(model)
        log.info("training %s of %s parameters (%d steps of %d transcripts; %d per forward pass, %d process(es))",
                 f"{trainable:,}", f"{total:,}", job.total_steps, training.batch_size, self.plan.micro_batch_size,
                 self.group.world_size)
        self.optimizer = build_optimizer(self.named, training.lr, training.weight_decay)
        self.state = TrainingState()
        if job.resume_from_last:
            self.state = load_training_state(self.folder.last_dir, self.optimizer, self.named, self.group)
            log.info("resuming %s at epoch %d, step %d", self.folder.path, self.state.epoch + 1,
                     self.state.global_step)
        self.wrapped = model
        if self.group.is_distributed:
            from torch.nn.parallel import DistributedDataParallel

            # Every trainable parameter is used in every step (MicroBatches feeds placeholders for absent
            # modalities), so DDP needs no find_unused_parameters graph traversal.
            self.wrapped = DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
            )
        self.dataset = MicroBatches(self.examples.triples, self.examples.targets, self.examples.genome,
                                    TokenizerSettings.for_model_config(model.config, config.rna_truncation,
                                                                       config.protein_truncation),
                                    model.config)
        self.loss_scale = self.group.world_size / (training.batch_size * len(self.columns))
        self.column_index = torch.tensor(self.columns, dtype=torch.long, device=self.device)

    def release_process_group(self):
        """Drop the DistributedDataParallel wrapper (its reducer holds the process group) while every rank is
        still in the group, before ``model_run`` leaves it.

        Why: freed later, after ``destroy_process_group`` and once the other ranks had exited, the reducer's last
        reference to the gloo group ran its destructor, which waited for a peer that was gone: a rank that had
        written every output hung at exit (seen once under load with two CPU ranks). Collected here, the group's
        last reference is the one ``destroy_process_group`` drops, on every rank at the same point.
        """
        if self.wrapped is not self.model:
            self.wrapped = self.model
            gc.collect()  # the wrapper's hooks form reference cycles; free it now, not at some later collection

    def train(self):
        """Train to the end (or to ``--max-steps``); returns ``(finished, stop_reason, test_rows)``, the test
        split's evaluation rows only when finished with a test split."""
        config, state = self.config, self.state
        stop_reason = "epochs"
        if config.training.max_steps is not None and state.global_step >= config.training.max_steps:
            log.info("the run is already at step %d (--max-steps %d); raise --max-steps to go on",
                     state.global_step, config.training.max_steps)
            return False, "max_steps", None
        while state.epoch < config.training.epochs and not state.stop_early:
            started = time.monotonic()
            if not self._train_epoch():
                return False, "max_steps", None
            self._end_epoch(time.monotonic() - started)
        if state.stop_early:
            stop_reason = "early_stopping"
        return True, stop_reason, self._finish(stop_reason)

    # -- training --------------------------------------------------------------------------------

    def _learning_rate(self, step):
        return learning_rate(step, self.config.training.lr, self.job.warmup_steps, self.job.total_steps)

    def _train_epoch(self):
        """Run the rest of the current epoch's steps; False when ``--max-steps`` stopped it."""
        config, state, plan = self.config, self.state, self.plan
        items = plan.micro_batches(state.epoch, self.group.rank, first_step=state.step_in_epoch)
        loader = DataLoader(self.dataset, sampler=[rows for _, _, rows in items], batch_size=None,
                            collate_fn=lambda batch: batch, num_workers=config.runtime.num_workers)
        set_train_mode(self.model, self.job.frozen)
        pending = []
        with progress(total=plan.steps_per_epoch, initial=state.step_in_epoch, unit=" steps",
                      desc=f"epoch {state.epoch + 1}/{config.training.epochs}") as bar:
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
                if config.training.max_steps is not None and state.global_step >= config.training.max_steps:
                    self._save_last()
                    log.info("stopped after step %d (--max-steps); continue with --resume", state.global_step)
                    return False
                if config.training.save_every and state.global_step % config.training.save_every == 0 \
                        and state.step_in_epoch < plan.steps_per_epoch:
                    self._save_last()
        return True

    def _optimizer_step(self, micro_batches):
        """Forward/backward every micro-batch of this process, then one synchronised AdamW step."""
        config, state = self.config, self.state
        # A batch that failed to prepare (in a worker) stops every process, not just its own.
        distributed.raise_if_any(self.group,
                                 next((batch.error for _, batch in micro_batches if batch.error is not None), None))
        self.optimizer.zero_grad(set_to_none=True)
        set_learning_rate(self.optimizer, self._learning_rate(state.global_step))
        local_sum = 0.0
        for position, (micro_index, batch) in enumerate(micro_batches):
            batch.to(self.device)
            torch.manual_seed(derive_seed(config.training.seed, "dropout", state.global_step, micro_index))
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
        step_loss = sum(distributed.all_gather(self.group, local_sum)) / (config.training.batch_size * len(self.columns))
        fill_missing_gradients(self.parameters)
        norm = torch.nn.utils.clip_grad_norm_(self.parameters, config.training.grad_clip or float("inf"))
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
            "lr": self._learning_rate(max(0, state.global_step - 1)),
            "train_loss": state.epoch_loss_sum / max(1, state.epoch_steps),
        }
        improved = False
        val_rows = self.rows["val"]
        if len(val_rows):
            predictions = self._predict(self.model, val_rows)[:, self.columns]
            observed = self.examples.targets[val_rows]
            metrics = headline(evaluate(observed, predictions, self.examples.tissues, self.examples.genes(val_rows)))
            row.update(val_loss=float(np.mean((predictions - observed) ** 2)), val_r2=metrics.r2,
                       val_pearson=metrics.pearson, val_spearman=metrics.spearman,
                       val_isoform_spearman=metrics.isoform_spearman)
            value = metrics.spearman
            improved = math.isfinite(value) and (state.best_val_spearman is None or value > state.best_val_spearman)
            if improved:
                state.best_val_spearman, state.best_epoch, state.epochs_since_best = value, state.epoch + 1, 0
                on_main(self.group, lambda: save_checkpoint(self.model, self.folder.best_dir, overwrite=True,
                                                            metadata=checkpoint_metadata(state),
                                                            on_written=self._mark))
            else:
                state.epochs_since_best += 1
            if config.training.patience and state.epochs_since_best >= config.training.patience:
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

    def _mark(self, partial_folder):
        """Mark a checkpoint being saved as derived from the demo, when the run started from it."""
        if self.job.demo_source is not None:
            mark_demo_derived(partial_folder, self.job.demo_source)

    def _save_last(self):
        """Write last/ (checkpoint + training state) as one folder, then metrics.tsv (rank 0)."""
        tensors, state_json = gather_training_state(self.group, self.optimizer, self.named, self.state)
        metadata = checkpoint_metadata(self.state)

        def write():
            write_last(self.folder.last_dir, self.model, tensors, state_json, metadata, on_written=self._mark)
            self.folder.write_metrics(self.state.history)
            log.debug("saved %s at step %d", self.folder.last_dir, self.state.global_step)

        on_main(self.group, write)

    # -- predictions -----------------------------------------------------------------------------

    def _predict(self, model, rows):
        """Predictions (len(rows), n_outputs) of ``model`` for ``rows``, shared out among processes."""
        model.eval()
        predictor = ChunkPredictor(model, self.device, self.precision, self.config.eval_max_tokens)
        settings = self.dataset.settings
        triples = self.examples.triples
        mine = np.array_split(np.asarray(rows), self.group.world_size)[self.group.rank]
        parts, error = [], None
        try:
            for start in range(0, len(mine), PREDICTION_CHUNK):
                chunk = prepare_chunk(start, [triples[row] for row in mine[start:start + PREDICTION_CHUNK]],
                                      self.examples.genome, settings)
                parts.append(predictor.predict(chunk).predictions)
        except IsoformerError as raised:
            error = raised
        distributed.raise_if_any(self.group, error)
        local = np.concatenate(parts) if parts else np.zeros((0, model.config.n_tissues), dtype=np.float32)
        set_train_mode(self.model, self.job.frozen)
        return np.concatenate(distributed.all_gather(self.group, local))

    def _finish(self, stop_reason):
        """Predictions of the final (best) model for validation and test, the test metrics, summary.json."""
        folder, rows, examples = self.folder, self.rows, self.examples
        final_dir = folder.best_dir if os.path.isdir(folder.best_dir) else folder.last_dir
        model = load_checkpoint(final_dir, device=self.device)
        outputs = {}
        for name in ("val", "test"):
            if len(rows[name]):
                outputs[name] = self._predict(model, rows[name])
        test_rows = None
        if "test" in outputs:
            test_rows = evaluate(examples.targets[rows["test"]], outputs["test"][:, self.columns], examples.tissues,
                                 examples.genes(rows["test"]))

        def write():
            provenance = build_provenance(list(self.config.command_args), final_dir, self.job.input_paths,
                                          units=units_label(model.config.target_units),
                                          demo_derived=self.job.demo_source is not None)
            for name, values in outputs.items():
                folder.write_predictions(name, model.config.tissues, provenance,
                                         [obs_row(examples.triples[row]) for row in rows[name]], values)
            if test_rows is not None:
                folder.write_test_metrics(test_rows, len(rows["test"]), final_dir)
            folder.write_summary(stop_reason, self.state, final_dir,
                                 headline(test_rows) if test_rows is not None else None)

        on_main(self.group, write)
        if test_rows is not None:
            best = headline(test_rows)
            log.info("test split (%d transcripts): Spearman %.3f, Pearson %.3f, R2 %.3f (mean over tissues)",
                     len(rows["test"]), best.spearman, best.pearson, best.r2)
        log.info("fine-tuning finished (%s); run folder %s", stop_reason.replace("_", " "), folder.path)
        return test_rows
