"""``isoformer convert``: import the official InstaDeepAI/isoformer weights into our checkpoint format."""

import click

from isoformer_cli.cli.commands.models import parse_settings, settings_option
from isoformer_cli.cli.options import usage_errors


@click.command("convert")
@click.argument("official", type=click.Path(exists=False))
@click.option("-o", "--output", metavar="DIR", help="Checkpoint folder to write (config.json + model.safetensors).")
@click.option("--list-keys", is_flag=True, help="Only list what was found and where each of the file's tensors goes.")
@click.option("--show-mapping", is_flag=True,
              help="Only print the key-mapping rows found, in --mapping file format (to edit and pass back).")
@click.option("--preset", default="official", show_default=True, metavar="NAME",
              help="Preset for the architecture fields neither config.json nor the weights determine.")
@settings_option
@click.option(
    "--mapping",
    metavar="FILE",
    type=click.Path(exists=True, dir_okay=False),
    help="Extra key-mapping rows (REGEX<TAB>REPLACEMENT, '-' to ignore), tried before the rows found.",
)
@click.option("--force", is_flag=True, help="Replace an existing, non-empty output folder.")
def convert_command(official, output, list_keys, show_mapping, preset, settings, mapping, force):
    """Convert OFFICIAL (the downloaded InstaDeepAI/isoformer folder, or its pytorch_model.bin).

    The file is read with torch.load(weights_only=True) memory-mapped: plain tensors only, no remote
    code. Each component (ESM-2, NT-v2, Enformer in the named or _trunk.N spelling, the two
    cross-attention blocks, the head) is found by its key signature and shapes under whatever names the
    file uses; the architecture comes from the config.json beside the weights and from the shapes, so
    smaller models in the same format convert too. Extra tensors (Enformer's species heads, masked-LM and
    contact heads) are ignored with a reason; anything else left over is reported with its shape.

    The architecture's unknowns are configuration fields with documented defaults: fusion_order
    (rna,protein), head_activation (gelu), pool_window_start/end/reference (all DNA bins). Fix one with
    --set KEY=VALUE. --mapping rows override the layout found.

    Each encoder of the new model is then checked against a reference built from the same source
    tensors (ESM-2 against transformers' EsmModel, Enformer against its source layout) on a fixed random
    input. Nothing is written when a tensor of the model would stay uninitialised, a shape differs, or a
    self-check fails; the checks are recorded in the checkpoint's provenance.
    """
    # Imported here, not at the top (start-up cost): the app module loads torch and transformers, which
    # `isoformer --help` and the commands without a model never need.
    from isoformer_cli.app.checkpoints import ConvertConfig, run_convert

    config = usage_errors(ConvertConfig, official=official, output=output, list_keys=list_keys,
                          show_mapping=show_mapping, preset=preset, settings=parse_settings(settings),
                          mapping=mapping, force=force)
    text = run_convert(config)
    if text is not None:
        click.echo(text, nl=False)

