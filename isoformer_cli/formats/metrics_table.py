"""The evaluation table (TSV) written by ``isoformer evaluate`` and by ``isoformer finetune`` for its test split.

Layout (UTF-8, ``\\n``)::

    # isoformer evaluation, format 1
    # <notes: what was compared, units, how many transcripts matched>
    scope  tissue  n_transcripts  r2  pearson  spearman  isoform_spearman  isoform_genes_used
    tissue Adipose Tissue  4718  0.51  0.73  0.71  0.34  812
    ...
    pooled all  4718 ...
    mean   all  4718 ...

Numbers have six significant digits; an undefined value (a constant column, no multi-isoform gene) is
``NA``. Read it with ``pandas.read_csv(path, sep="\\t", comment="#")``. Column meanings: see
:mod:`isoformer_cli.evaluation.metrics`.
"""

import math

from isoformer_cli.errors import InputError
from isoformer_cli.formats.atomic import atomic_text_output

TITLE = "# isoformer evaluation, format 1"
COLUMNS = ("scope", "tissue", "n_transcripts", "r2", "pearson", "spearman", "isoform_spearman",
           "isoform_genes_used")
# Columns holding counts (written as integers); the other numeric columns are metrics.
COUNT_COLUMNS = ("n_transcripts", "isoform_genes_used")


def _cell(value):
    """A metric with six significant digits, ``NA`` when undefined (None, NaN, infinite)."""
    return "NA" if value is None or not math.isfinite(value) else f"{value:.6g}"


def format_row(row):
    """The cells of one row: ``row`` has one attribute per column (an evaluation ``MetricRow``)."""
    cells = []
    for column in COLUMNS:
        value = getattr(row, column)
        cells.append(value if isinstance(value, str) else str(value) if column in COUNT_COLUMNS else _cell(value))
    return cells


def format_metrics_table(rows, notes=()):
    """The table's text (layout in the module docstring)."""
    lines = [TITLE] + [f"# {note}" for note in notes] + ["\t".join(COLUMNS)]
    lines += ["\t".join(format_row(row)) for row in rows]
    return "\n".join(lines) + "\n"


def write_metrics_table(path, rows, notes=()):
    """Write the table to ``path`` atomically (``-`` for standard output)."""
    with atomic_text_output(path) as stream:
        stream.write(format_metrics_table(rows, notes))


def read_metrics_table(path):
    """The table's rows as dicts (numbers as float, NA as NaN); InputError when it is not one."""
    rows = []
    with open(path, encoding="utf-8") as stream:
        lines = [line.rstrip("\n") for line in stream if not line.startswith("#")]
    if not lines or tuple(lines[0].split("\t")) != COLUMNS:
        raise InputError(f"{path}: not an isoformer evaluation table")
    for line in lines[1:]:
        cells = dict(zip(COLUMNS, line.split("\t")))
        for key in COLUMNS[2:]:
            cells[key] = float("nan") if cells[key] == "NA" else float(cells[key])
        rows.append(cells)
    return rows
