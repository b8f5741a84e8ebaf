"""Metrics of predicted against observed expression, across transcripts, per tissue and overall.

All inputs are (n_transcripts, n_tissues) arrays in the same units (log(TPM + 1)); numpy only.

Definitions (n = number of transcripts):

* R² (coefficient of determination, not the squared Pearson r): ``1 - SS_res / SS_tot`` with
  ``SS_res = sum((observed - predicted)^2)`` and ``SS_tot = sum((observed - mean(observed))^2)``. It can be
  negative (worse than predicting the mean); undefined (NaN) when the observed values are constant.
* Pearson r: linear correlation; NaN when either side is constant or n < 2.
* Spearman rho: Pearson r of the ranks, ties given their average rank (as ``scipy.stats.spearmanr``).
* Within-gene isoform Spearman (differential isoform expression): in one tissue, for every gene with at
  least two isoforms among the transcripts, Spearman rho between predicted and observed values of the
  gene's isoforms; the genes' values are averaged with equal weight. A gene whose observed or predicted
  values are all equal in that tissue has no defined ranking and is left out (counted as unused). A
  two-isoform gene scores +1 or -1 (right or wrong order). Genes come from the prediction table's
  ``gene_id`` column.

Rows of :func:`evaluate` (scope, tissue):

* ``tissue``: one row per tissue, across the transcripts.
* ``pooled``: every (transcript, tissue) pair at once; the isoform Spearman averages every
  (gene, tissue) pair.
* ``mean``: the unweighted mean of the tissue rows (NaN tissue values are skipped); this is the
  headline figure (``isoformer finetune`` stops early on the validation ``mean`` Spearman).
"""

from dataclasses import dataclass
from typing import List, Sequence

import numpy as np


def average_ranks(values):
    """1-based ranks of a 1-D array, ties sharing their average rank (float64, same length)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Runs of equal values in sorted order: run k covers sorted positions [starts[k], ends[k]).
    is_start = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    starts = np.flatnonzero(is_start)
    ends = np.r_[starts[1:], len(values)]
    run_of_position = np.cumsum(is_start) - 1
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = ((starts + ends + 1) / 2.0)[run_of_position]  # mean of ranks starts+1 .. ends
    return ranks


def pearson(x, y):
    """Pearson r of two 1-D arrays; NaN when n < 2 or either side is constant."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) < 2:
        return float("nan")
    dx, dy = x - x.mean(), y - y.mean()
    denominator = np.sqrt((dx * dx).sum() * (dy * dy).sum())
    if denominator == 0.0:
        return float("nan")
    return float(np.clip((dx * dy).sum() / denominator, -1.0, 1.0))


def spearman(x, y):
    """Spearman rho (Pearson r of average ranks); NaN when n < 2 or either side is constant."""
    if len(x) < 2:
        return float("nan")
    return pearson(average_ranks(x), average_ranks(y))


def r_squared(observed, predicted):
    """Coefficient of determination ``1 - SS_res / SS_tot``; NaN when observed is constant or empty."""
    observed = np.asarray(observed, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    if len(observed) == 0:
        return float("nan")
    total = ((observed - observed.mean()) ** 2).sum()
    if total == 0.0:
        return float("nan")
    return float(1.0 - ((observed - predicted) ** 2).sum() / total)


def gene_groups(genes: Sequence[str]):
    """Index arrays of the transcripts of every gene with at least two transcripts (input order)."""
    members = {}
    for index, gene in enumerate(genes):
        members.setdefault(gene, []).append(index)
    return [np.asarray(indices) for indices in members.values() if len(indices) >= 2]


def isoform_spearman_values(groups, observed, predicted):
    """Within-gene Spearman rho of every gene group whose values are not constant on either side."""
    values = []
    for indices in groups:
        obs, pred = observed[indices], predicted[indices]
        if np.all(obs == obs[0]) or np.all(pred == pred[0]):
            continue  # no ranking to compare
        values.append(spearman(pred, obs))
    return values


@dataclass
class MetricRow:
    """One row of the evaluation table (see the module docstring for the scopes)."""

    scope: str
    tissue: str
    n_transcripts: int
    r2: float
    pearson: float
    spearman: float
    isoform_spearman: float
    isoform_genes_used: int



def _nanmean(values):
    finite = [value for value in values if np.isfinite(value)]
    return float(np.mean(finite)) if finite else float("nan")


def evaluate(observed, predicted, tissues: Sequence[str], genes: Sequence[str]) -> List[MetricRow]:
    """Metric rows for matched arrays.

    Args:
        observed, predicted: (n, T) arrays, the same transcripts and tissues in the same order.
        tissues: the T tissue names.
        genes: the n gene ids (for the within-gene isoform Spearman).

    Returns:
        T ``tissue`` rows, then the ``pooled`` and ``mean`` rows.
    """
    observed = np.asarray(observed, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    if observed.shape != predicted.shape or observed.shape[1] != len(tissues) or observed.shape[0] != len(genes):
        raise ValueError(f"shapes differ: observed {observed.shape}, predicted {predicted.shape}, "
                         f"{len(tissues)} tissues, {len(genes)} genes")
    n = observed.shape[0]
    groups = gene_groups(genes)
    rows, all_isoform = [], []
    for column, tissue in enumerate(tissues):
        obs, pred = observed[:, column], predicted[:, column]
        isoform = isoform_spearman_values(groups, obs, pred)
        all_isoform += isoform
        rows.append(MetricRow("tissue", tissue, n, r_squared(obs, pred), pearson(obs, pred), spearman(pred, obs),
                              _nanmean(isoform), len(isoform)))
    flat_obs, flat_pred = observed.ravel(), predicted.ravel()
    rows.append(MetricRow("pooled", "all", n, r_squared(flat_obs, flat_pred), pearson(flat_obs, flat_pred),
                          spearman(flat_pred, flat_obs), _nanmean(all_isoform), len(all_isoform)))
    tissue_rows = rows[: len(tissues)]
    rows.append(MetricRow(
        "mean", "all", n,
        _nanmean([row.r2 for row in tissue_rows]),
        _nanmean([row.pearson for row in tissue_rows]),
        _nanmean([row.spearman for row in tissue_rows]),
        _nanmean([row.isoform_spearman for row in tissue_rows]),
        len(all_isoform),
    ))
    return rows


def headline(rows: List[MetricRow]) -> MetricRow:
    """The ``mean`` row."""
    return next(row for row in rows if row.scope == "mean")
