"""``isoformer predict``: tissue expression of every transcript, as TSV or AnnData HDF5."""

import sys

import click

from isoformer_cli.cli.options import model_run_options, record_options, selection_options, triple_source


def build_run_config(config_class, genome, annotation, triples_table, biotypes, on_invalid, orf,
                     min_orf_length, transcripts, genes, region, coding_only, contig_alias, **run_options):
    """The plain config object of ``predict`` / ``embed`` from their click options."""
    source = triple_source(genome, annotation, triples_table, biotypes, on_invalid, orf, min_orf_length,
                           transcripts, genes, region, coding_only, contig_alias)
    return config_class(source=source, command_args=tuple(sys.argv[1:]), **run_options)


@click.command("predict")
@model_run_options
@selection_options
@record_options
@click.option("-o", "--output", default="-", show_default=True, metavar="FILE",
              help="Predictions: .tsv, .tsv.gz, .h5/.h5ad (AnnData layout), or - for stdout (TSV).")
@click.option("--gene-summary", metavar="FILE",
              help="Also write per gene and tissue the total predicted TPM and each isoform's usage fraction.")
def predict_command(output, gene_summary, **options):
    """Predict the expression of every transcript in every tissue of the model.

    Triples come from --genome and --annotation (built on the fly, with the same selection
    options as `isoformer triples`) or from --triples. Values are in the checkpoint's units
    (log(TPM+1) for IsoFormer), one row per transcript in annotation order: transcript_id
    gene_id gene_name, the tissues, flags. Results stream into a temporary file beside the
    output, renamed when the run completes; rerun with --resume after an interruption.
    """
    from isoformer_cli.app.predict import PredictConfig, run_predict

    config = build_run_config(PredictConfig, output=output, gene_summary=gene_summary, **options)
    run_predict(config)
