"""``isoformer evaluate``: agreement of a prediction table with observed expression."""

import click

from isoformer_cli.cli.options import expression_input, expression_options


@click.command("evaluate")
@click.option("--predictions", required=True, metavar="FILE",
              help="Prediction table written by isoformer predict (TSV, TSV.gz, or HDF5).")
@expression_options
@click.option("-o", "--output", default="-", show_default=True, metavar="TSV",
              help="Evaluation table (TSV), or - for standard output.")
@click.option("--plot", metavar="FILE.png",
              help="Also draw per-tissue correlation bars and a predicted-vs-observed density (.png, .pdf, .svg; "
                   "needs matplotlib).")
def evaluate_command(predictions, output, plot, **options):
    """Compare predicted with observed expression, per tissue and overall.

    For every tissue the two tables share: R² (1 - SS_res/SS_tot), Pearson and Spearman correlation across
    transcripts, and the within-gene isoform Spearman (for each gene with two or more isoforms, the rank
    correlation of its isoforms' predicted and observed values, averaged over genes; genes whose values are
    all equal are left out). Then the same over all transcript x tissue pairs (pooled) and the mean over
    tissues. Values are compared in log(TPM+1); transcript ids match with or without version suffixes.
    """
    # Imported here, not at the top (start-up cost): `isoformer --help` need not load the readers.
    from isoformer_cli.app.evaluate import EvaluateConfig, run_evaluate

    run_evaluate(EvaluateConfig(predictions=predictions, expression=expression_input(options), output=output,
                                plot=plot))
