"""``isoformer embed``: pooled IsoFormer embeddings of every transcript, as HDF5."""

import click

from isoformer_cli.cli.commands.predict import model_run_config
from isoformer_cli.cli.options import model_run_options


@click.command("embed")
@model_run_options
@click.option("-o", "--output", required=True, metavar="FILE.h5", help="HDF5 file of embeddings.")
@click.option("--modalities", is_flag=True,
              help="Also write each encoder's own pooled embedding (dna, rna, protein) beside the fused one.")
def embed_command(**options):
    """Write the fused, pooled embedding of every transcript (the head's input) to HDF5.

    Same inputs, batching and resume as `isoformer predict`; datasets transcript_id and fused
    (n_transcripts x width), and with --modalities dna, rna, protein (NaN where a transcript
    lacks that modality, e.g. protein of a non-coding RNA) with has_dna / has_rna / has_protein masks.
    """
    # Imported here, not at the top (start-up cost): the app module loads torch and transformers, which
    # `isoformer --help` and the commands without a model never need.
    from isoformer_cli.app.predict import EmbedConfig, run_embed

    run_embed(model_run_config(EmbedConfig, options))
