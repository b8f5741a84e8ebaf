"""``isoformer finetune``: train IsoFormer on your own expression table, on one process or many (torchrun)."""

import os
import sys

import click

from isoformer_cli.cli.options import expression_input, expression_options
from isoformer_cli.cli.options import record_options, selection_options, triple_source
from isoformer_cli.errors import InputError

TRUNCATIONS = ["keep_start", "keep_end", "keep_center", "error"]


def _contigs(text):
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


@click.command("finetune")
@click.option("-o", "--output", required=True, metavar="RUN_DIR",
              help="Run folder: settings, split, metrics, best/ and last/ checkpoints, predictions.")
@click.option("--genome", required=True, metavar="FASTA", help="Genome FASTA, plain or bgzip-compressed.")
@click.option("--annotation", metavar="GTF|GFF3", help="Transcript annotation; triples are built on the fly.")
@click.option("--triples", "triples_table", metavar="TSV",
              help="A table from `isoformer triples`, instead of --annotation.")
@expression_options
@click.option("--checkpoint", metavar="DIR|NAME",
              help="Starting model: a checkpoint folder (isoformer init/convert/finetune), a name inside --model-dir, "
                   "or 'demo'.")
@click.option("--model-dir", type=click.Path(file_okay=False), envvar="ISOFORMER_MODEL_DIR", metavar="DIR",
              help="Folder holding named checkpoints [env: ISOFORMER_MODEL_DIR].")
@click.option("--modalities", metavar="LIST",
              help="Train on this subset of the checkpoint's modalities (comma-separated dna,rna,protein).")
@click.option("--freeze", multiple=True, metavar="NAME[:K]",
              help="Freeze an encoder (dna, rna, protein, or encoders for all three); NAME:K keeps its last K "
                   "layers trainable. Repeat or comma-separate.")
@click.option("--new-head", is_flag=True,
              help="New output layer for the expression table's tissues (needed when they are not the checkpoint's).")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True,
              help="Passes over the training split.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Transcripts per optimiser step, over all processes.")
@click.option("--micro-batch-size", type=click.IntRange(min=1),
              help="Transcripts per forward pass of one process; gradients accumulate up to --batch-size "
                   "[default: batch size / processes].")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True,
              help="Peak learning rate of AdamW.")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=0.01, show_default=True,
              help="AdamW weight decay (matrices only).")
@click.option("--warmup-fraction", type=click.FloatRange(min=0, max=1, max_open=True), default=0.05,
              show_default=True, help="Share of all steps spent warming up linearly; cosine decay afterwards.")
@click.option("--grad-clip", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Clip the gradient norm to this value (0: no clipping).")
@click.option("--patience", type=click.IntRange(min=0), default=3, show_default=True,
              help="Stop after this many epochs without a better validation Spearman (0: never).")
@click.option("--val-fraction", type=click.FloatRange(min=0, max=1, max_open=True), default=0.05, show_default=True,
              help="Share of genes in the validation split (gene-level split).")
@click.option("--test-fraction", type=click.FloatRange(min=0, max=1, max_open=True), default=0.05, show_default=True,
              help="Share of genes in the test split (gene-level split).")
@click.option("--val-chroms", metavar="LIST", help="Split by chromosome: these contigs are the validation split.")
@click.option("--test-chroms", metavar="LIST", help="Split by chromosome: these contigs are the test split.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the gene split, the batch order, dropout and a new head.")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda|cuda:N",
              help="Where training runs (under torchrun, each process takes the GPU of its local rank).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="bf16 autocast; auto: bf16 on CUDA, fp32 on CPU.")
@click.option("--deterministic", is_flag=True, help="Deterministic kernels (slower on GPU).")
@click.option("--activation-checkpointing", is_flag=True,
              help="Recompute encoder activations in the backward pass: less memory, more compute "
                   "(for the official preset).")
@click.option("--num-workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Worker processes fetching DNA windows and tokenising (0: in the main process).")
@click.option("--rna-truncation", type=click.Choice(TRUNCATIONS), default="keep_start", show_default=True,
              help="RNA longer than the model maximum: which tokens to keep.")
@click.option("--protein-truncation", type=click.Choice(TRUNCATIONS), default="keep_start", show_default=True,
              help="Protein longer than the model maximum: which residues to keep.")
@click.option("--max-steps", type=click.IntRange(min=1),
              help="Stop (resumably) once this many optimiser steps are done in total; the schedule still spans "
                   "all epochs.")
@click.option("--save-every", type=click.IntRange(min=1), metavar="STEPS",
              help="Also save last/ every STEPS steps within an epoch (it is always saved after each epoch).")
@click.option("--resume", is_flag=True, help="Continue the run in RUN_DIR from its last/ checkpoint.")
@click.option("--force", is_flag=True, help="Replace an existing run folder.")
@selection_options
@record_options
@click.pass_context
def finetune_command(ctx, output, genome, annotation, triples_table, checkpoint, model_dir, expression,
                     expression_values, samples, sample_column, tissue_column, freeze, val_chroms, test_chroms,
                     val_fraction, test_fraction, seed, biotypes, on_invalid, orf, min_orf_length, transcripts, genes,
                     region, coding_only, contig_alias, batch_size, micro_batch_size, resume, force, **training):
    """Fine-tune IsoFormer on an expression table (transcripts x tissues).

    Triples come from --genome with --annotation (or --triples); targets from --expression, as log(TPM+1)
    (a GCT file is averaged per tissue over its samples with --samples). Transcripts are split into
    train/validation/test by gene (isoforms of a gene stay together) or by chromosome (--val-chroms,
    --test-chroms). Writes RUN_DIR/: run.json, split.tsv, metrics.tsv, best/ and last/ checkpoints,
    predictions/ and test_metrics.tsv. Interrupted runs continue with --resume. On several GPUs or nodes,
    launch with torchrun (torchrun --nproc-per-node 4 -m isoformer_cli finetune ...): --batch-size stays
    the total per step, so results do not depend on the process count.
    """
    from isoformer_cli.training.finetune import FinetuneConfig, run_finetune
    from isoformer_cli.training.splits import SplitSpec
    from isoformer_cli.training.training import parse_freeze

    source = triple_source(genome, annotation, triples_table, biotypes, on_invalid, orf, min_orf_length,
                           transcripts, genes, region, coding_only, contig_alias)
    if resume and force:
        raise click.UsageError("--resume continues a run and --force replaces it; give one of them")
    by_chromosome = bool(val_chroms or test_chroms)
    for name in ("val_fraction", "test_fraction"):
        if by_chromosome and ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError(f"--{name.replace('_', '-')} is for the gene split; with --val-chroms/--test-chroms "
                                   "the contigs decide")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if batch_size % world_size:
        raise click.UsageError(f"--batch-size {batch_size} must be a multiple of the {world_size} processes")
    if micro_batch_size and (batch_size // world_size) % micro_batch_size:
        raise click.UsageError(f"--batch-size {batch_size} over {world_size} process(es) is {batch_size // world_size} "
                               f"per process, not a multiple of --micro-batch-size {micro_batch_size}")
    try:
        parse_freeze(freeze)
        split = SplitSpec(val_fraction=val_fraction, test_fraction=test_fraction, val_chroms=_contigs(val_chroms),
                          test_chroms=_contigs(test_chroms), seed=seed)
        split.check()
    except InputError as exc:
        raise click.UsageError(str(exc)) from None
    config = FinetuneConfig(
        source=source, expression=expression_input(expression, expression_values, samples, sample_column,
                                                   tissue_column),
        output=output, checkpoint=checkpoint, model_dir=model_dir, freeze=tuple(freeze), split=split, seed=seed,
        batch_size=batch_size, micro_batch_size=micro_batch_size, resume=resume, force=force,
        command_args=tuple(sys.argv[1:]), **training,
    )
    run_finetune(config)
