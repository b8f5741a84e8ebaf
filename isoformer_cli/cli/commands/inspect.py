"""``isoformer inspect``: what a checkpoint or preset is, and how many parameters each part has."""

import click

from isoformer_cli.cli.options import model_dir_option


@click.command("inspect")
@click.argument("checkpoint", required=False, metavar="[CHECKPOINT]")
@click.option("--preset", metavar="NAME", help="Describe a named preset (official, tiny) instead of a checkpoint.")
@model_dir_option
@click.option("--json", "as_json", is_flag=True, help="Write the summary as JSON on stdout.")
def inspect_command(checkpoint, preset, model_dir, as_json):
    """Summarise CHECKPOINT or a --preset. CHECKPOINT is what --checkpoint takes elsewhere: a folder with
    config.json and model.safetensors, a name in the model folder (--model-dir, isoformer models list), or
    'demo' for the bundled demo checkpoint.

    Prints the encoders, modalities, aggregation, input lengths, target units, tissues and the
    parameter count of each component (dna_encoder, rna_encoder, protein_encoder, aggregation, head,
    total). The checkpoint's weights file is checked against its configuration from the file header;
    no weights are loaded, and presets are built without memory, so this is instant.
    """
    if (checkpoint is None) == (preset is None):
        raise click.UsageError("give a CHECKPOINT (a folder, a name in the model folder, or demo) or --preset NAME "
                               "(exactly one)")
    # Imported here, not at the top (start-up cost): the app module loads torch and transformers, which
    # `isoformer --help` and the commands without a model never need.
    from isoformer_cli.app.checkpoints import run_inspect

    click.echo(run_inspect(checkpoint, preset, model_dir, as_json), nl=False)
