"""What ``isoformer finetune`` is asked to do, validated once when built (InputError names the option).

* :class:`TrainingSettings`: the model a run trains (modality subset, frozen parts, new head) and how
  (epochs, batch sizes, AdamW, schedule, clipping, early stopping, resumable stops);
* :class:`FinetuneConfig`: the inputs, the starting checkpoint, the run folder, the runtime, the split and
  the training settings.
"""

import math
import sys
from dataclasses import dataclass, field
from typing import Optional, Tuple

from isoformer_cli.errors import InputError, check_choice
from isoformer_cli.genomics.expression import ExpressionInput
from isoformer_cli.inference.batching import DEFAULT_MAX_TOKENS
from isoformer_cli.models.network.tokenizers import TRUNCATION_POLICIES
from isoformer_cli.runtime.options import RuntimeOptions
from isoformer_cli.training.batches import check_batch_division
from isoformer_cli.training.freezing import parse_freeze
from isoformer_cli.training.splits import SplitSpec
from isoformer_cli.triples.source import TripleSource


@dataclass(frozen=True)
class TrainingSettings:
    """The model a run trains and how.

    Attributes:
        modalities: comma-separated subset of the checkpoint's modalities, or None for all.
        freeze: ``--freeze`` values (``dna``, ``rna:2``, ``encoders``, ...).
        new_head: a new output layer for the expression table's tissues.
        epochs: passes over the training split.
        batch_size: rows per optimiser step, over all processes.
        micro_batch_size: rows per forward pass of one process (default: batch_size / processes).
        lr, weight_decay: AdamW's peak learning rate and weight decay (matrices only).
        warmup_fraction: share of all steps spent warming up linearly (cosine decay afterwards).
        grad_clip: maximum gradient norm (0: no clipping).
        patience: epochs without a better validation Spearman before stopping (0: never).
        max_steps: stop (resumably) once this many optimiser steps are done in total.
        save_every: also save ``last/`` every N steps within an epoch.
        seed: seed of the gene split, the batch order, dropout and a new head.
        activation_checkpointing: recompute encoder activations in the backward pass.
    """

    modalities: Optional[str] = None
    freeze: Tuple[str, ...] = ()
    new_head: bool = False
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
    activation_checkpointing: bool = False

    def __post_init__(self):
        checks = [
            (self.epochs >= 1, "--epochs must be at least 1"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.micro_batch_size is None or self.micro_batch_size >= 1, "--micro-batch-size must be at least 1"),
            (self.lr > 0 and math.isfinite(self.lr), "--lr must be a positive number"),
            (self.weight_decay >= 0, "--weight-decay must be 0 or more"),
            (0 <= self.warmup_fraction < 1, "--warmup-fraction must be at least 0 and below 1"),
            (self.grad_clip >= 0, "--grad-clip must be 0 (off) or more"),
            (self.patience >= 0, "--patience must be 0 (off) or more"),
            (self.max_steps is None or self.max_steps >= 1, "--max-steps must be at least 1"),
            (self.save_every is None or self.save_every >= 1, "--save-every must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)
        parse_freeze(self.freeze)

    def micro_batch_for(self, world_size):
        """Rows per forward pass of one process with ``world_size`` processes."""
        return self.micro_batch_size or max(1, self.batch_size // world_size)

    def check_processes(self, world_size):
        """InputError when ``batch_size`` cannot be shared out evenly among ``world_size`` processes and their
        micro-batches."""
        check_batch_division(self.batch_size, self.micro_batch_for(world_size), world_size)


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything ``isoformer finetune`` needs (the CLI fills it; tests build it directly).

    Attributes:
        source: where the triples come from (the checkpoint sets the DNA window length).
        expression: the expression table.
        output: the run folder.
        checkpoint, model_dir: the starting model (see :func:`isoformer_cli.models.distribution.locate.resolve_checkpoint`).
        runtime: device, precision (``auto``: bf16 on CUDA, fp32 on CPU), determinism, workers.
        training: :class:`TrainingSettings`.
        split: how transcripts are split into train/validation/test (its seed is the training seed).
        rna_truncation, protein_truncation: tokenizer policies for long inputs.
        eval_max_tokens: token budget of validation batches.
        resume / force: continue ``output`` / replace an existing run folder.
        command_args: the command-line arguments to record in run.json.
    """

    source: TripleSource
    expression: ExpressionInput
    output: str
    checkpoint: Optional[str] = None
    model_dir: Optional[str] = None
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    split: SplitSpec = field(default_factory=SplitSpec)
    rna_truncation: str = "keep_start"
    protein_truncation: str = "keep_start"
    eval_max_tokens: int = DEFAULT_MAX_TOKENS
    resume: bool = False
    force: bool = False
    command_args: Tuple[str, ...] = field(default_factory=lambda: tuple(sys.argv[1:]))

    def __post_init__(self):
        if self.resume and self.force:
            raise InputError("--resume continues a run and --force replaces it; give one of them")
        if self.source.triples == "-":
            # The run folder records the inputs' checksums and --resume reads them again: a pipe cannot be.
            raise InputError("--triples - (standard input) cannot be fine-tuned on: a run folder records and "
                             "re-reads its inputs; write the table to a file (isoformer triples -o FILE)")
        for option, value in (("--rna-truncation", self.rna_truncation),
                              ("--protein-truncation", self.protein_truncation)):
            check_choice(option, value, TRUNCATION_POLICIES)
        if self.eval_max_tokens < 1:
            raise InputError(f"eval_max_tokens must be at least 1, not {self.eval_max_tokens}")
        self.split.check()
