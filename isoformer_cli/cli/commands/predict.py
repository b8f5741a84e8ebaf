"""``isoformer predict``: tissue expression of every transcript, as TSV or AnnData HDF5."""

import sys

import click

from isoformer_cli.cli.options import (
    chunk_settings,
    model_choice,
    model_run_options,
    runtime_options_from,
    triple_source,
    usage_errors,
)


def model_run_config(config_class, options):
    """The validated config of ``predict`` / ``embed`` from the shared option groups and the command's own
    options (whatever remains in ``options``)."""
    source = triple_source(options)
    model = model_choice(options)
    runtime = runtime_options_from(options)
    chunks = chunk_settings(options)
    return usage_errors(config_class, source=source, runtime=runtime, command_args=tuple(sys.argv[1:]),
                        **model, **chunks, **options)


@click.command("predict")
@model_run_options
@click.option("-o", "--output", default="-", show_default=True, metavar="FILE",
              help="Predictions: .tsv, .tsv.gz, .h5/.h5ad (AnnData layout), or - for stdout (TSV).")
@click.option("--gene-summary", metavar="FILE",
              help="Also write per gene and tissue the total predicted TPM and each isoform's usage fraction.")
def predict_command(**options):
    """Predict the expression of every transcript in every tissue of the model.

    Triples come from --genome and --annotation (built on the fly, with the same selection
    options as `isoformer triples`) or from --triples. Values are in the checkpoint's units
    (log(TPM+1) for IsoFormer), one row per transcript in annotation order: transcript_id
    gene_id gene_name, the tissues, flags. Results stream into a temporary file beside the
    output, renamed when the run completes; rerun with --resume after an interruption.
    """
    # Imported here, not at the top (start-up cost): the app module loads torch and transformers, which
    # `isoformer --help` and the commands without a model never need.
    from isoformer_cli.app.predict import PredictConfig, run_predict

    run_predict(model_run_config(PredictConfig, options))
