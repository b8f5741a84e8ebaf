"""Options that name an observed expression table, shared by ``finetune`` and ``evaluate``."""

import click

from isoformer_cli.cli.options import stack
from isoformer_cli.io.expression import VALUE_KINDS


expression_options = stack([
    click.option("--expression", required=True, metavar="FILE",
                 help="Observed expression: a TSV/CSV matrix (transcript id, then one column per tissue), or a "
                      "GTEx GCT v1.2 file of TPM per sample with --samples. Plain or gzip."),
    click.option("--values", "expression_values", type=click.Choice(VALUE_KINDS), default="tpm", show_default=True,
                 help="Matrix values are TPM (turned into log(TPM+1)) or already log1p-transformed (used as given)."),
    click.option("--samples", metavar="FILE",
                 help="Sample -> tissue table for a GCT file (GTEx SampleAttributesDS.txt); each tissue's value is "
                      "log(mean TPM over its samples + 1)."),
    click.option("--sample-column", metavar="NAME",
                 help="Sample id column of --samples [default: SAMPID, else the first]."),
    click.option("--tissue-column", metavar="NAME",
                 help="Tissue column of --samples [default: SMTS, else the second]."),
])


def expression_input(expression, expression_values, samples, sample_column, tissue_column):
    """The plain :class:`~isoformer_cli.io.expression.ExpressionInput` of these options."""
    from isoformer_cli.io.expression import ExpressionInput

    return ExpressionInput(path=expression, values=expression_values, samples=samples, sample_column=sample_column,
                           tissue_column=tissue_column)
