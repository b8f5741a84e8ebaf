"""``isoformer inspect``: what a checkpoint or preset is, and how many parameters each part has."""

import os

import click


@click.command("inspect")
@click.argument("checkpoint", required=False, type=click.Path(file_okay=True, dir_okay=True))
@click.option("--preset", metavar="NAME", help="Describe a named preset (official, tiny) instead of a checkpoint.")
@click.option("--json", "as_json", is_flag=True, help="Write the summary as JSON on stdout.")
def inspect_command(checkpoint, preset, as_json):
    """Summarise CHECKPOINT (a folder with config.json and model.safetensors, or 'demo' for the
    bundled demo checkpoint) or a --preset.

    Prints the encoders, modalities, aggregation, input lengths, target units, tissues and the
    parameter count of each component (dna_encoder, rna_encoder, protein_encoder, aggregation, head,
    total). The checkpoint's weights file is checked against its configuration from the file header;
    no weights are loaded, and presets are built without memory, so this is instant.
    """
    if (checkpoint is None) == (preset is None):
        raise click.UsageError("give a CHECKPOINT folder or --preset NAME (exactly one)")

    import json

    from isoformer_cli.models.distribution.locate import DEMO_CHECKPOINT_NAME, demo_checkpoint_path
    from isoformer_cli.models.checkpoint.summary import format_summary, inspect_model

    if checkpoint == DEMO_CHECKPOINT_NAME and not os.path.isdir(checkpoint):
        checkpoint = demo_checkpoint_path()
    summary = inspect_model(checkpoint=checkpoint, preset=preset)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(format_summary(summary), nl=False)
