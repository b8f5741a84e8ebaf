"""``isoformer models``: the known models, and the checkpoints in the model folder (list, pull, verify, path,
remove)."""

import json

import click

from isoformer_cli.cli.options import model_dir_option, usage_errors


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
    """List, download and check models.

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
