"""``isoformer explain``: which bases, exons and residues drive an isoform's predicted expression."""

import sys

import click

from isoformer_cli.cli.options import (
    input_options,
    model_choice,
    model_options,
    runtime_options,
    runtime_options_from,
    triple_source,
    usage_errors,
)

# Defaults of the command (kept here so --help works without importing the model stack).
METHODS = ("integrated-gradients", "saliency", "ism")
DEFAULT_STEPS = 50
DEFAULT_MAX_TRANSCRIPTS = 20
DEFAULT_MAX_POSITIONS = 2000


@click.command("explain")
@input_options(annotation_required=True, with_triples=False)
@click.option("--transcripts", metavar="IDS|@FILE", help="Transcripts to explain (comma-separated, or @file).")
@click.option("--genes", metavar="IDS|@FILE",
              help="Explain the transcripts of these gene ids or names (comma-separated, or @file).")
@click.option("--contig-alias", type=click.Path(dir_okay=False), metavar="FILE",
              help="Tab-separated contig alias file (UCSC chromAlias style) for names chr1<->1 rules miss.")
@model_options
@runtime_options
@click.option("-o", "--output", required=True, metavar="DIR",
              help="Output folder: summary.tsv, regions.tsv, attention.tsv, tracks/, attributions.h5 (ism.tsv "
                   "with --method ism).")
@click.option("--target", default="mean", show_default=True, metavar="TISSUE|mean",
              help="What is explained: one tissue's prediction, or the mean over tissues.")
@click.option("--method", type=click.Choice(METHODS), default="integrated-gradients", show_default=True,
              help="integrated-gradients (from the all-N DNA / <mask> RNA and protein baseline), saliency "
                   "(gradient x input), or ism (every SNV of --region through `isoformer variants`).")
@click.option("--steps", type=int, default=DEFAULT_STEPS, show_default=True,
              help="Integration steps of integrated gradients (Gauss-Legendre nodes, batched to fit memory).")
@click.option("--region", metavar="CHR:START-END",
              help="--method ism: the bases to mutate (1-based, inclusive), within the transcripts' windows.")
@click.option("--max-transcripts", type=int, default=DEFAULT_MAX_TRANSCRIPTS, show_default=True,
              help="Refuse a selection of more transcripts than this.")
@click.option("--max-positions", type=int, default=DEFAULT_MAX_POSITIONS, show_default=True,
              help="--method ism: refuse a region of more bases than this (three SNVs each).")
@click.option("--plot", is_flag=True, help="Also write plots/TRANSCRIPT.png: gene model, DNA, RNA and protein "
                                           "tracks (needs matplotlib).")
def explain_command(**options):
    """Attribute an isoform's predicted expression to its DNA bases, RNA bases and protein residues.

    For each selected transcript the target (one tissue, or the mean over tissues) is attributed to every
    position the model reads: integrated gradients or saliency at the one-hot DNA and at the RNA and protein
    token embeddings (RNA 6-mer tokens spread equally over their six bases). Writes summary.tsv (prediction,
    baseline, attribution per modality, completeness error), regions.tsv (per region: upstream, 5utr, cds,
    3utr, intron, downstream), attention.tsv (DNA->RNA and DNA->protein cross-attention per block, head and
    region), tracks/TRANSCRIPT.dna.bedGraph and .rna.bedGraph (genome coordinates, 0-based; bigWig too when
    pyBigWig is installed) and attributions.h5. With --method ism --region, every SNV of the region is scored
    by `isoformer variants` into ism.tsv (its table layout) and tracks/TRANSCRIPT.ism.bedGraph.
    """
    # Imported here, not at the top (start-up cost): the app module loads torch and transformers.
    from isoformer_cli.app.explain import ExplainConfig, run_explain

    options["triples_table"] = None
    # --region here is the ISM region, not a selection of transcripts.
    region = options.pop("region")
    source = triple_source(options)
    model = model_choice(options)
    runtime = runtime_options_from(options)
    config = usage_errors(ExplainConfig, source=source, runtime=runtime, command_args=tuple(sys.argv[1:]),
                          region=region, **model, **options)
    run_explain(config)
