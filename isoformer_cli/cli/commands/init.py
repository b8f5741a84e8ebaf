"""``isoformer init``: a fresh IsoFormer checkpoint from pretrained encoders."""

import click

from isoformer_cli.cli.options import usage_errors


@click.command("init")
@click.option("-o", "--output", required=True, metavar="DIR", help="Checkpoint folder to write.")
@click.option("--dna-encoder", metavar="DIR", type=click.Path(), help="enformer-pytorch folder (config.json, weights).")
@click.option("--rna-encoder", metavar="DIR", type=click.Path(), help="Nucleotide Transformer v2 folder (HF format).")
@click.option("--protein-encoder", metavar="DIR", type=click.Path(), help="ESM-2 folder (transformers format).")
@click.option("--preset", default="official", show_default=True, metavar="NAME", help="Model preset (official, tiny).")
@click.option("--modalities", metavar="LIST", help="Comma-separated subset of dna,rna,protein (default: all three).")
@click.option(
    "--aggregation",
    type=click.Choice(["cross-attention", "perceiver", "linear"]),
    help="Aggregation of the modalities (default: the preset's, cross-attention).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random initialisation.")
@click.option("--force", is_flag=True, help="Replace an existing, non-empty output folder.")
def init_command(output, dna_encoder, rna_encoder, protein_encoder, preset, modalities, aggregation, seed, force):
    """Build a new IsoFormer from pretrained encoders and write it as a checkpoint folder.

    Each encoder folder is what its own library saves (downloaded by you): an enformer-pytorch folder
    such as EleutherAI/enformer-official-rough, an NT-v2 folder such as
    InstaDeepAI/nucleotide-transformer-v2-250m-multi-species, an ESM-2 folder such as
    facebook/esm2_t30_150M_UR50D. The preset fixes the architecture: an encoder whose config.json
    differs in size is refused. An omitted encoder, the aggregation and the head start from random
    weights (--seed).
    """
    # Imported here, not at the top (start-up cost): the app module loads torch and transformers, which
    # `isoformer --help` and the commands without a model never need.
    from isoformer_cli.app.checkpoints import InitConfig, run_init

    folders = {"dna_encoder": dna_encoder, "rna_encoder": rna_encoder, "protein_encoder": protein_encoder}
    run_init(usage_errors(InitConfig, output=output, encoder_folders=folders, preset=preset, modalities=modalities,
                          aggregation=aggregation, seed=seed, force=force))
