"""``isoformer expression``: a sample sheet of per-sample quantifications written once as an expression matrix."""

import sys

import click

from isoformer_cli.cli.options import condition_column_option


@click.command("expression")
@click.argument("sheet", metavar="SHEET")
@click.option("-o", "--output", default="-", show_default=True, metavar="TSV",
              help="The matrix (TSV; .gz compresses), or - for standard output.")
@condition_column_option
def expression_command(sheet, output, condition_column):
    """Aggregate a lab's quantifications into one transcripts x conditions matrix.

    SHEET is a TSV or CSV sample sheet with columns sample, path (relative to the sheet) and tissue
    (else condition, or --condition-column). Each path is one sample's quantification, its format
    recognised from its content: salmon quant.sf, kallisto abundance.tsv or abundance.h5 (TPM from
    est_counts and eff_lengths, as kallisto computes it), RSEM *.isoforms.results, StringTie -e GTF
    (TPM attributes) or t_data.ctab (TPM from FPKM), IsoQuant *transcript_tpm.tsv or
    *transcript_model_tpm.tsv (a multi-sample table gives the column named like the sample). GENCODE
    names (ENST...|ENSG...|...) reduce to the transcript id.

    Each value is the mean TPM over the condition's samples (a transcript absent from a sample's file
    is 0 TPM there); --expression of finetune and evaluate reads the matrix as log(mean TPM + 1),
    exactly the table the sheet gives. The provenance line records the samples and their checksums.
    """
    # Imported here, not at the top (start-up cost): `isoformer --help` need not load the readers.
    from isoformer_cli.app.expression import ExpressionConfig, run_expression

    run_expression(ExpressionConfig(sheet=sheet, output=output, condition_column=condition_column,
                                    command_args=tuple(sys.argv[1:])))
