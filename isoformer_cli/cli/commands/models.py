"""``isoformer models``: the known models, and the checkpoints in the model folder (list, pull, verify, path,
remove)."""

import json
import sys

import click

from isoformer_cli.app.options import DEFAULT_MIN_SPEARMAN, TRUNCATION_POLICIES
from isoformer_cli.cli.options import (
    expression_input,
    expression_options_group,
    input_options,
    model_dir_option,
    record_options,
    runtime_options,
    runtime_options_from,
    selection_options,
    triple_source,
    usage_errors,
)


def settings_option(function):
    """``--set KEY=VALUE`` (repeatable): configuration fields, checked when the command starts."""
    return click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
                        help="Set a configuration field of the new model (repeatable), e.g. --set "
                             "head_activation=softplus, --set fusion_order=parallel, --set pool_window_start=-2.")(
        function)


def parse_settings(settings):
    """``{field: value}`` from the ``--set`` values; a bad one is a usage error."""
    # Imported here, not at the top (start-up cost): the app module loads torch and transformers, which
    # `isoformer --help` and the commands without a model never need.
    from isoformer_cli.app.checkpoints import parse_config_settings

    return usage_errors(parse_config_settings, settings)


@click.group("models")
def models_command():
    """List, download, check and calibrate models.

    The known models are the official IsoFormer release (official), the three pretrained encoders that
    isoformer init starts from (encoders) and the bundled demo (demo). 'isoformer models pull NAME'
    downloads one from the Hugging Face hub and stores it in the model folder as a checkpoint that
    --checkpoint NAME loads. The network is used only by pull.
    """


@models_command.command("list")
@model_dir_option
@click.option("--json", "as_json", is_flag=True, help="Write the listing as JSON on stdout.")
def list_command(model_dir, as_json):
    """The known models (source repository, revision, size, licence) and the checkpoints in the model
    folder (size, SHA-256, where they came from)."""
    # Imported here, not at the top (start-up cost): the app module loads torch and transformers, which
    # `isoformer --help` and the commands without a model never need.
    from isoformer_cli.app.models import format_listing, list_models

    listing = list_models(model_dir)
    if as_json:
        click.echo(json.dumps(listing, indent=2))
    else:
        click.echo(format_listing(listing), nl=False)


@models_command.command("pull")
@click.argument("model")
@click.option("--name", metavar="NAME", help="Store the checkpoint under this name (default: MODEL).")
@model_dir_option
@click.option("--revision", metavar="REV", help="Branch, tag or commit of the repository (default: the registry's "
                                                "pin, else main; the commit pulled is recorded).")
@click.option("--preset", default="official", show_default=True, metavar="NAME",
              help="Architecture preset for what the downloaded files do not say (official, tiny).")
@settings_option
@click.option("--mapping", metavar="FILE", type=click.Path(exists=True, dir_okay=False),
              help="Extra key-mapping rows for converting the official release (see isoformer convert).")
@click.option("--force", is_flag=True, help="Replace an existing checkpoint of that name.")
@click.option("--keep-downloads", is_flag=True, help="Keep the downloaded files in MODEL_DIR/.downloads.")
def pull_command(model, name, model_dir, revision, preset, settings, mapping, force, keep_downloads):
    """Download MODEL (official, encoders) and store it as a checkpoint in the model folder.

    official: InstaDeepAI/isoformer's config.json, tokenizer files and pytorch_model.bin, converted
    (isoformer convert: layout found by key signatures, self-checks). encoders:
    EleutherAI/enformer-official-rough, InstaDeepAI/nucleotide-transformer-v2-250m-multi-species and
    facebook/esm2_t30_150M_UR50D, combined by isoformer init (new, untrained aggregation and head; a
    starting point for isoformer finetune).

    Downloads go through huggingface_hub and honour HF_ENDPOINT, HF_TOKEN, HF_HOME (its cache is used
    when it already holds a file) and HF_HUB_OFFLINE (no network: files must already be in the download
    folder or the cache; the error says what to copy where). An interrupted download continues where it
    stopped when the command is run again. Every file is checked against the hub's size and checksum, and
    against the registry where it knows them; a mismatch keeps nothing. The licence of the weights is
    printed before downloading.
    """
    # Imported here, not at the top (start-up cost): the app module loads torch and transformers, which
    # `isoformer --help` and the commands without a model never need.
    from isoformer_cli.app.models import PullConfig, run_pull

    config = PullConfig(model=model, name=name, model_dir=model_dir, revision=revision, preset=preset,
                        settings=parse_settings(settings), mapping=mapping, force=force, keep_downloads=keep_downloads)
    run_pull(config)


@models_command.command("verify")
@click.argument("model")
@model_dir_option
def verify_command(model, model_dir):
    """Re-hash and re-check MODEL (a name in the model folder, or a checkpoint folder).

    Checks the configuration and weights header against the model, each file's size and SHA-256 against
    the manifest written at pull time, the kept downloads, and the registry's known sizes and checksums.
    Exit status 1 on any mismatch.
    """
    # Imported here, not at the top (start-up cost): the app module loads torch and transformers, which
    # `isoformer --help` and the commands without a model never need.
    from isoformer_cli.app.models import run_verify

    for line in run_verify(model, model_dir):
        click.echo(line)


@models_command.command("path")
@click.argument("model")
@model_dir_option
def path_command(model, model_dir):
    """Print the folder of checkpoint MODEL (for scripts: --checkpoint "$(isoformer models path official)")."""
    # Imported here, not at the top (start-up cost): the app module loads torch and transformers, which
    # `isoformer --help` and the commands without a model never need.
    from isoformer_cli.app.models import run_path

    click.echo(run_path(model, model_dir))


@models_command.command("remove")
@click.argument("model")
@model_dir_option
def remove_command(model, model_dir):
    """Remove checkpoint MODEL from the model folder, with the downloads kept for it."""
    # Imported here, not at the top (start-up cost): the app module loads torch and transformers, which
    # `isoformer --help` and the commands without a model never need.
    from isoformer_cli.app.models import run_remove

    run_remove(model, model_dir)


@models_command.command("calibrate")
@click.argument("checkpoint")
@click.option("-o", "--output", metavar="DIR", help="Write the calibrated checkpoint to this new folder.")
@click.option("--in-place", is_flag=True,
              help="Replace CHECKPOINT, a named model of the model folder, with its calibrated version (atomic: "
                   "the old folder stays until the new one is complete).")
@input_options()
@expression_options_group(required=False)
@click.option("--dataset", metavar="NAME",
              help="Take the transcripts and labels of this pulled dataset (isoformer datasets pull isoformer-gtex) "
                   "instead of --annotation/--triples and --expression.")
@click.option("--split", type=click.Choice(("train", "validation", "test")), default="validation", show_default=True,
              help="The split of --dataset to calibrate on.")
@click.option("--dataset-dir", type=click.Path(file_okay=False), envvar="ISOFORMER_DATASET_DIR", metavar="DIR",
              help="Folder of converted datasets [env: ISOFORMER_DATASET_DIR].")
@model_dir_option
@click.option("--rna-truncation", type=click.Choice(TRUNCATION_POLICIES), default="keep_start", show_default=True,
              help="RNA longer than the model maximum: which tokens to keep.")
@click.option("--protein-truncation", type=click.Choice(TRUNCATION_POLICIES), default="keep_start",
              show_default=True, help="Protein longer than the model maximum: which residues to keep.")
@click.option("--min-spearman", type=float, default=DEFAULT_MIN_SPEARMAN, show_default=True,
              help="Refuse, writing nothing, when the best candidate's pooled Spearman is under this.")
@click.option("--force", is_flag=True, help="Replace a non-empty -o/--output folder.")
@runtime_options
@click.option("--max-tokens", type=int,
              help="Expert override: padded input positions per batch instead of batches sized from the memory.")
@click.option("--chunk-size", type=int, help="Transcripts per chunk (each chunk's encoder outputs serve every "
                                             "candidate, then are dropped).")
@selection_options
@record_options
def calibrate_command(checkpoint, output, in_place, dataset, split, dataset_dir, model_dir, rna_truncation,
                      protein_truncation, min_spearman, force, max_tokens, chunk_size, **options):
    """Find the unpublished settings of CHECKPOINT from labelled transcripts.

    The official release does not publish three settings its predictions depend on: the order of the two
    cross-attention blocks (fusion_order), the head's activation (head_activation) and the DNA bins it
    pools (pool_window_*). None changes a weight, so every combination is scored on the transcripts of
    --annotation/--triples against --expression (the labels the weights were trained on, log(TPM+1)),
    or on a split of a pulled dataset (--dataset isoformer-gtex --split validation, with --genome):
    3 fusion orders x 5 activations x pool windows (all bins = fractions 0..1, central fractions, windows
    of 1 to 128 bins around the TSS bin, the first bin). The encoders run once per distinct input; only
    the fusion and the head run per candidate, so calibrating costs about one predict.

    Prints the candidates ranked by pooled Spearman, then pooled R2 (TSV on stdout), and writes the
    checkpoint with the best settings and the whole table in its provenance (-o DIR, or --in-place).
    When the best pooled Spearman is under --min-spearman nothing is written: the architecture then
    differs in a way the candidates do not cover.
    """
    # Imported here, not at the top (start-up cost): the app module loads torch and transformers.
    from isoformer_cli.app.calibrate import CalibrateConfig, run_calibrate
    from isoformer_cli.app.datasets import dataset_files

    if dataset:
        given = [option for option, key in (("--annotation", "annotation"), ("--triples", "triples_table"),
                                            ("--expression", "expression")) if options.get(key)]
        if given:
            raise click.UsageError(f"--dataset gives the transcripts and labels; drop {', '.join(given)}")
        files = dataset_files(dataset, split, dataset_dir)
        options.update(triples_table=files.triples, expression=files.expression, expression_values="log1p")
    elif not options.get("expression"):
        raise click.UsageError("missing --expression FILE (the labels), or --dataset NAME")
    source = triple_source(options)
    expression = expression_input(options)
    runtime = runtime_options_from(options)
    config = usage_errors(CalibrateConfig, checkpoint=checkpoint, source=source, expression=expression,
                          output=output, in_place=in_place, model_dir=model_dir, runtime=runtime,
                          rna_truncation=rna_truncation, protein_truncation=protein_truncation, max_tokens=max_tokens,
                          chunk_size=chunk_size, min_spearman=min_spearman, force=force,
                          command_args=tuple(sys.argv[1:]))
    result = run_calibrate(config)
    click.echo(result.table(), nl=False)
