"""``isoformer evaluate`` as a plain function: a prediction table against observed expression.

The prediction table is any table ``isoformer predict`` writes (TSV, TSV.gz, HDF5); the observed table is read
by :mod:`isoformer_cli.genomics.expression` (matrix, GCT + samples, or a sample sheet of quantifications). Transcripts are matched with or without
version suffixes, tissues by exact name; both sides' leftovers are logged, and an empty overlap is an error.
The metrics are those of :mod:`isoformer_cli.evaluation.metrics`, written as the table of
:mod:`isoformer_cli.formats.metrics_table`; ``plot`` also draws :mod:`isoformer_cli.evaluation.plots`.
"""

import difflib
import logging
import os
from dataclasses import dataclass

from isoformer_cli.errors import InputError
from isoformer_cli.evaluation.metrics import evaluate, headline
from isoformer_cli.formats.metrics_table import write_metrics_table
from isoformer_cli.genomics.expression import ExpressionInput
from isoformer_cli.genomics.transcript_match import match_transcripts, require_overlap
from isoformer_cli.formats.atomic import STDOUT, check_writable
from isoformer_cli.formats.collisions import refuse_shared_files
from isoformer_cli.formats.locks import lock_outputs
from isoformer_cli.formats.predictions import read_predictions
from isoformer_cli.formats.provenance import PREDICTION_UNITS, demo_warning

log = logging.getLogger(__name__)


@dataclass
class EvaluateConfig:
    """Options of ``isoformer evaluate``.

    Attributes:
        predictions: prediction table (``isoformer predict`` output).
        expression: the observed expression table.
        output: evaluation TSV path, ``-`` for standard output.
        plot: optional figure path (.png, .pdf or .svg).
    """

    predictions: str
    expression: ExpressionInput
    output: str = STDOUT
    plot: str | None = None


def run_evaluate(config: EvaluateConfig):
    """Compare, write the table (and the plot); returns the metric rows."""
    refuse_shared_files([("--predictions", config.predictions)] + config.expression.input_files(),
                        {"-o/--output": config.output, "--plot": config.plot})
    check_writable(config.output)
    if config.plot:
        from isoformer_cli.evaluation.plots import check_plot_target

        check_plot_target(config.plot)
    with lock_outputs(config.output, config.plot):
        return _evaluate(config)


def _evaluate(config):
    if not os.path.isfile(config.predictions):
        raise InputError(f"{config.predictions}: prediction table not found")
    table = read_predictions(config.predictions)
    if not table.obs:
        raise InputError(f"{config.predictions}: the prediction table has no rows")
    units = table.provenance.get("units")
    if units and units != PREDICTION_UNITS:
        log.warning("%s holds %s, but the expression table is compared as log(TPM+1)", config.predictions, units)
    ids = [row["transcript_id"] for row in table.obs]
    expression = config.expression.read(keep=ids)
    for note in expression.notes:
        log.info("%s", note)
    match = match_transcripts(ids, expression)
    require_overlap(match, expression, ids, config.predictions)
    log.info("%s", match.describe(transcripts_label="predicted transcripts"))

    # In the observed table's order: the user's list of tissues (the finetune test metrics use it too).
    tissues = [tissue for tissue in expression.tissues if tissue in table.tissues]
    if not tissues:
        raise InputError(
            f"no tissue in common between {config.predictions} ({', '.join(table.tissues[:3])}, ...) and "
            f"{expression.source} ({', '.join(expression.tissues[:3])}, ...); tissue names must match exactly"
        )
    left_out = [name for name in table.tissues if name not in tissues]
    if left_out:
        log.info("%d tissue(s) of %s are not in the other table and are left out (e.g. %s)", len(left_out),
                 config.predictions, ", ".join(left_out[:3]))
    for name in expression.tissues:
        if name not in tissues:
            # The observed table's columns are the user's choice: one that matches nothing is likely a typo.
            close = difflib.get_close_matches(name, table.tissues, n=1, cutoff=0.6)
            log.warning("tissue column %r of %s is not a tissue of %s and is left out%s", name, expression.source,
                        config.predictions, f" (did you mean {close[0]!r}?)" if close else "")
    kept = match.rows >= 0
    if int(kept.sum()) < 2:
        raise InputError(
            f"only {int(kept.sum())} transcript of {config.predictions} is in the expression table "
            f"{expression.source}; correlations and R² need at least 2 (check that both tables cover the same "
            "transcripts)"
        )
    predicted_columns = [table.tissues.index(tissue) for tissue in tissues]
    observed_columns = [expression.tissues.index(tissue) for tissue in tissues]
    predicted = table.values[kept][:, predicted_columns]
    observed = expression.values[match.rows[kept]][:, observed_columns]
    genes = [row.get("gene_id") or row["transcript_id"] for row, keep in zip(table.obs, kept) if keep]
    rows = evaluate(observed, predicted, tissues, genes)
    warning = demo_warning(table.provenance)
    if warning:
        log.warning("%s", warning)
    notes = ([f"WARNING: {warning}"] if warning else []) + [
        f"predictions: {config.predictions}",
        f"observed: {expression.source}",
        f"{int(kept.sum()):,} transcripts x {len(tissues)} tissues compared; units log(TPM+1)",
    ]
    write_metrics_table(config.output, rows, notes)
    if config.plot:
        from isoformer_cli.evaluation.plots import plot_evaluation

        plot_evaluation(config.plot, rows, observed, predicted,
                        title=f"{os.path.basename(config.predictions)} vs {os.path.basename(expression.source)}")
        log.info("wrote plot %s", config.plot)
    summary = headline(rows)
    log.info("mean over %d tissues: Spearman %.3f, Pearson %.3f, R2 %.3f, within-gene isoform Spearman %s",
             len(tissues), summary.spearman, summary.pearson, summary.r2,
             "NA" if summary.isoform_spearman != summary.isoform_spearman else f"{summary.isoform_spearman:.3f}")
    return rows
