"""``isoformer convert``: import the official InstaDeepAI/isoformer weights into our checkpoint format."""

import click


@click.command("convert")
@click.argument("official", type=click.Path(exists=False))
@click.option("-o", "--output", metavar="DIR", help="Checkpoint folder to write (config.json + model.safetensors).")
@click.option("--list-keys", is_flag=True, help="Only list the file's tensors grouped by prefix, with where each goes.")
@click.option("--preset", default="official", show_default=True, metavar="NAME", help="Model preset to convert into.")
@click.option(
    "--mapping",
    metavar="FILE",
    type=click.Path(exists=True, dir_okay=False),
    help="Extra key-mapping rows (REGEX<TAB>REPLACEMENT, '-' to ignore), tried before the built-in table.",
)
@click.option("--force", is_flag=True, help="Replace an existing, non-empty output folder.")
def convert_command(official, output, list_keys, preset, mapping, force):
    """Convert OFFICIAL (the downloaded InstaDeepAI/isoformer folder, or its pytorch_model.bin).

    The file is read with torch.load(weights_only=True) memory-mapped: plain tensors only, no remote
    code. Every tensor is matched through one key-mapping table, ignored for a stated reason (Enformer's
    species heads, the masked-LM heads) or reported as unmatched with its shape. Nothing is written when
    a tensor of the model would stay uninitialised or a shape differs.

    The official key names are not documented; the built-in table is a best guess. Run with
    --list-keys to see the file's layout and where each key goes, and correct the table with --mapping.
    """
    if list_keys:
        if output:
            raise click.UsageError("--list-keys prints the file's keys; it takes no -o/--output")
        from isoformer_cli.models.convert import list_official_keys

        click.echo(list_official_keys(official, preset=preset, mapping_file=mapping), nl=False)
        return
    if not output:
        raise click.UsageError("missing -o/--output DIR (or use --list-keys)")

    import logging

    from isoformer_cli.models.convert import convert_official

    plan = convert_official(official, output, preset=preset, mapping_file=mapping, overwrite=force)
    logging.getLogger("isoformer_cli").info("converted %s: %s; wrote %s", official, plan.summary(), output)
