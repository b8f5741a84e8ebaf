"""``isoformer evaluate --plot FILE``: per-tissue bars and a predicted-vs-observed density scatter.

matplotlib is an optional dependency (``pip install isoformer[plot]``); it is imported only here, through
its object-oriented API with the Agg canvas (no display, no global pyplot state). The figure has two panels:

* left: Spearman and Pearson correlation per tissue (horizontal bars, tissues top to bottom in table order),
  with the mean over tissues as a dashed line;
* right: every (transcript, tissue) pair as a hexagonal-bin density (log colour scale), predicted against
  observed log(TPM + 1), with the identity line and the pooled R², Pearson and Spearman.
"""

import importlib.util
import os

import numpy as np

from isoformer_cli.errors import InputError, OutputError
from isoformer_cli.formats.atomic import atomic_path, check_writable

FORMATS = ("png", "pdf", "svg")


def check_plot_target(path):
    """Fail early: the suffix must be a known format, the folder writable, matplotlib installed."""
    suffix = os.path.splitext(path)[1].lower().lstrip(".")
    if suffix not in FORMATS:
        raise OutputError(f"{path}: --plot writes {', '.join(FORMATS)}; name the file FILE.png (or .pdf, .svg)")
    check_writable(path)
    if importlib.util.find_spec("matplotlib") is None:
        raise InputError("--plot needs matplotlib: pip install matplotlib (or pip install 'isoformer[plot]')")
    return suffix


def plot_evaluation(path, rows, observed, predicted, title=""):
    """Write the figure to ``path`` (format from its suffix) atomically.

    Args:
        rows: the :func:`isoformer_cli.evaluation.metrics.evaluate` rows.
        observed, predicted: (n, T) arrays of the matched transcripts and tissues.
        title: figure title (e.g. the two file names).
    """
    fmt = check_plot_target(path)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    tissue_rows = [row for row in rows if row.scope == "tissue"]
    pooled = next(row for row in rows if row.scope == "pooled")
    mean = next(row for row in rows if row.scope == "mean")
    height = max(4.5, 0.26 * len(tissue_rows) + 1.8)
    # The scatter is square (equal axes), as tall as the figure; the bars take a fixed width beside it.
    figure = Figure(figsize=(7.0 + height, height), layout="constrained")
    FigureCanvasAgg(figure)
    bars, scatter = figure.subplots(1, 2, width_ratios=[7.0, height])

    positions = np.arange(len(tissue_rows))
    spearman = np.array([row.spearman for row in tissue_rows], dtype=float)
    pearson = np.array([row.pearson for row in tissue_rows], dtype=float)
    width = 0.4
    bars.barh(positions - width / 2, np.nan_to_num(spearman), height=width, label="Spearman", color="#1f77b4")
    bars.barh(positions + width / 2, np.nan_to_num(pearson), height=width, label="Pearson", color="#ff7f0e")
    if np.isfinite(mean.spearman):
        bars.axvline(mean.spearman, color="#1f77b4", linestyle="--", linewidth=1,
                     label=f"mean Spearman {mean.spearman:.3f}")
    bars.set_yticks(positions, [row.tissue for row in tissue_rows], fontsize=8)
    bars.invert_yaxis()
    low = min(0.0, float(np.nanmin(np.r_[spearman, pearson, 0.0])))
    bars.set_xlim(low - 0.05, 1.0)
    bars.axvline(0, color="black", linewidth=0.6)
    bars.set_xlabel("correlation across transcripts, per tissue")
    bars.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=8, frameon=False)

    x = np.asarray(observed, dtype=float).ravel()
    y = np.asarray(predicted, dtype=float).ravel()
    lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    if hi <= lo:
        hi = lo + 1.0
    counts = scatter.hexbin(x, y, gridsize=60, extent=(lo, hi, lo, hi), mincnt=1)
    most = counts.get_array().max() if counts.get_array().size else 1
    counts.remove()
    # A log colour scale shows both the dense core and the sparse tails of large tables.
    density = scatter.hexbin(x, y, gridsize=60, extent=(lo, hi, lo, hi), mincnt=1, cmap="viridis",
                             norm=LogNorm() if most >= 10 else None)
    scatter.plot([lo, hi], [lo, hi], color="#d62728", linestyle="--", linewidth=1, label="predicted = observed")
    scatter.set_xlim(lo, hi)
    scatter.set_ylim(lo, hi)
    scatter.set_aspect("equal")
    scatter.set_xlabel("observed log(TPM+1)")
    scatter.set_ylabel("predicted log(TPM+1)")
    scatter.set_title(f"all transcript x tissue pairs (n = {x.size:,})")
    scatter.text(0.03, 0.97, f"R² {_fmt(pooled.r2)}\nPearson {_fmt(pooled.pearson)}\nSpearman {_fmt(pooled.spearman)}",
                 transform=scatter.transAxes, va="top", fontsize=9,
                 bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})
    scatter.legend(loc="lower right", fontsize=8)
    figure.colorbar(density, ax=scatter, label="pairs per bin")
    if title:
        figure.suptitle(title, fontsize=10)
    with atomic_path(path) as partial:
        figure.savefig(partial, format=fmt, dpi=130)


def _fmt(value):
    return "NA" if not np.isfinite(value) else f"{value:.3f}"
