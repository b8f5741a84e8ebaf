"""``isoformer finetune``: train IsoFormer on your own expression table, on one process or many (torchrun)."""

import os
import sys

import click

from isoformer_cli.cli.options import (
    expression_input,
    expression_options,
    input_options,
    model_choice,
    model_options,
    record_options,
    runtime_options,
    runtime_options_from,
    selection_options,
    split_list,
    triple_source,
    usage_errors,
)

TRAINING_FIELDS = ("modalities", "freeze", "new_head", "epochs", "batch_size", "micro_batch_size", "lr", "weight_decay",
                   "warmup_fraction", "grad_clip", "patience", "max_steps", "save_every", "seed",
                   "activation_checkpointing")


@click.command("finetune")
@click.option("-o", "--output", required=True, metavar="RUN_DIR",
              help="Run folder: settings, split, metrics, best/ and last/ checkpoints, predictions.")
@input_options()
@expression_options
@model_options
@click.option("--modalities", metavar="LIST",
              help="Train on this subset of the checkpoint's modalities (comma-separated dna,rna,protein).")
@click.option("--freeze", multiple=True, metavar="NAME[:K]",
              help="Freeze an encoder (dna, rna, protein, or encoders for all three); NAME:K keeps its last K "
                   "layers trainable. Repeat or comma-separate.")
@click.option("--new-head", is_flag=True,
              help="New output layer for the expression table's tissues (needed when they are not the checkpoint's).")
@click.option("--epochs", type=int, default=10, show_default=True,
              help="Passes over the training split.")
@click.option("--batch-size", type=int, default=32, show_default=True,
              help="Transcripts per optimiser step, over all processes.")
@click.option("--micro-batch-size", type=int,
              help="Transcripts per forward pass of one process; gradients accumulate up to --batch-size "
                   "[default: batch size / processes].")
@click.option("--lr", type=float, default=1e-4, show_default=True,
              help="Peak learning rate of AdamW.")
@click.option("--weight-decay", type=float, default=0.01, show_default=True,
              help="AdamW weight decay (matrices only).")
@click.option("--warmup-fraction", type=float, default=0.05,
              show_default=True, help="Share of all steps spent warming up linearly; cosine decay afterwards.")
@click.option("--grad-clip", type=float, default=1.0, show_default=True,
              help="Clip the gradient norm to this value (0: no clipping).")
@click.option("--patience", type=int, default=3, show_default=True,
              help="Stop after this many epochs without a better validation Spearman (0: never).")
@click.option("--val-fraction", type=float, default=0.05, show_default=True,
              help="Share of genes in the validation split (gene-level split).")
@click.option("--test-fraction", type=float, default=0.05, show_default=True,
              help="Share of genes in the test split (gene-level split).")
@click.option("--val-chroms", metavar="LIST", help="Split by chromosome: these contigs are the validation split.")
@click.option("--test-chroms", metavar="LIST", help="Split by chromosome: these contigs are the test split.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the gene split, the batch order, dropout and a new head.")
@runtime_options
@click.option("--activation-checkpointing", is_flag=True,
              help="Recompute encoder activations in the backward pass: less memory, more compute "
                   "(for the official preset).")
@click.option("--max-steps", type=int,
              help="Stop (resumably) once this many optimiser steps are done in total; the schedule still spans "
                   "all epochs.")
@click.option("--save-every", type=int, metavar="STEPS",
              help="Also save last/ every STEPS steps within an epoch (it is always saved after each epoch).")
@click.option("--resume", is_flag=True, help="Continue the run in RUN_DIR from its last/ checkpoint.")
@click.option("--force", is_flag=True, help="Replace an existing run folder.")
@selection_options
@record_options
@click.pass_context
def finetune_command(ctx, output, val_chroms, test_chroms, val_fraction, test_fraction, resume, force, **options):
    """Fine-tune IsoFormer on an expression table (transcripts x tissues).

    Triples come from --genome with --annotation (or --triples); targets from --expression, as log(TPM+1)
    (a GCT file is averaged per tissue over its samples with --samples). Transcripts are split into
    train/validation/test by gene (isoforms of a gene stay together) or by chromosome (--val-chroms,
    --test-chroms). Writes RUN_DIR/: run.json, split.tsv, metrics.tsv, best/ and last/ checkpoints,
    predictions/ and test_metrics.tsv. Interrupted runs continue with --resume. On several GPUs or nodes,
    launch with torchrun (torchrun --nproc-per-node 4 -m isoformer_cli finetune ...): --batch-size stays
    the total per step, so results do not depend on the process count.
    """
    # Imported here, not at the top (start-up cost): the app module loads torch and transformers, which
    # `isoformer --help` and the commands without a model never need.
    from isoformer_cli.app.finetune import FinetuneConfig, SplitSpec, TrainingSettings, run_finetune

    source = triple_source(options)
    expression = expression_input(options)
    model = model_choice(options)
    runtime = runtime_options_from(options)
    if val_chroms or test_chroms:
        for name in ("val_fraction", "test_fraction"):
            if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
                raise click.UsageError(f"--{name.replace('_', '-')} is for the gene split; with --val-chroms/"
                                       "--test-chroms the contigs decide")
    training_values = {name: options.pop(name) for name in TRAINING_FIELDS}
    training_values["freeze"] = tuple(training_values["freeze"])
    training = usage_errors(TrainingSettings, **training_values)
    # torchrun sets WORLD_SIZE: check here that the batch can be shared out, before anything is read.
    usage_errors(training.check_processes, int(os.environ.get("WORLD_SIZE", "1")))
    split = SplitSpec(val_fraction=val_fraction, test_fraction=test_fraction, val_chroms=split_list(val_chroms),
                      test_chroms=split_list(test_chroms), seed=training.seed)
    config = usage_errors(FinetuneConfig, source=source, expression=expression, output=output, runtime=runtime,
                          training=training, split=split, resume=resume, force=force,
                          command_args=tuple(sys.argv[1:]), **model)
    run_finetune(config)
