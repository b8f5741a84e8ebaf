"""``isoformer explain --plot``: one PNG per transcript, the gene model above the DNA, RNA and protein tracks.

matplotlib is optional (``pip install 'isoformer[plot]'``); it is imported only here, through its object-oriented
API with the Agg canvas (no display, no global pyplot state). Panels, sharing the genome axis except the last:

1. the gene model: exons as boxes (CDS taller), introns as a line, the TSS as an arrow in reading direction;
2. the DNA attribution per window base (genome coordinates);
3. the RNA attribution per exonic base (genome coordinates);
4. the protein attribution per residue (residue number), absent without protein.
"""

import importlib.util

import numpy as np

from isoformer_cli.errors import InputError


def check_matplotlib():
    """InputError when matplotlib cannot be imported (``--plot`` is checked before any work)."""
    if importlib.util.find_spec("matplotlib") is None:
        raise InputError("--plot needs matplotlib: pip install matplotlib (or pip install 'isoformer[plot]')")


def plot_explanation(path, triple, per_base, window_positions, rna_positions, title):
    """Write the PNG of one transcript to ``path``.

    Args:
        triple: the transcript's triple (exons, CDS, window).
        per_base: ``{modality: per-base attributions}`` (DNA in window order, RNA 5'->3', protein residues).
        window_positions: genomic base of each window position (-1 off the contig), or None without DNA.
        rna_positions: genomic base of each RNA position, 5' to 3'.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    transcript = triple.transcript
    panels = 3 + ("protein" in per_base)
    figure = Figure(figsize=(11, 1.8 * panels), constrained_layout=True)
    FigureCanvasAgg(figure)
    axes = figure.subplots(panels, 1)
    model, dna_axis, rna_axis = axes[0], axes[1], axes[2]
    span = (triple.window_start, triple.window_end) if window_positions is not None else \
        (transcript.start, transcript.end)
    model.plot([transcript.start, transcript.end], [0, 0], color="black", linewidth=1)
    cds = transcript.cds
    for start, end in transcript.exons:
        model.add_patch(_box(start, end, 0.25))
        for cds_start, cds_end in cds:
            low, high = max(start, cds_start), min(end, cds_end)
            if low < high:
                model.add_patch(_box(low, high, 0.45))
    direction = 1 if transcript.strand == "+" else -1
    model.annotate("", xy=(triple.tss + direction * 0.03 * (span[1] - span[0]), 0.7), xytext=(triple.tss, 0.7),
                   arrowprops={"arrowstyle": "->"})
    model.set_ylim(-1, 1)
    model.set_yticks([])
    model.set_title(title)
    for axis, modality, positions in ((dna_axis, "dna", window_positions),
                                      (rna_axis, "rna", rna_positions)):
        values = per_base.get(modality)
        if values is None or positions is None:
            axis.text(0.5, 0.5, f"no {modality.upper()} input", transform=axis.transAxes, ha="center")
        else:
            keep = (positions >= 0) & ~np.isnan(values)
            order = np.argsort(positions[keep])
            axis.plot(positions[keep][order], values[keep][order], linewidth=0.6)
        axis.set_ylabel(f"{modality.upper()}")
        axis.set_xlim(*span)
    rna_axis.set_xlabel(f"{triple.genome_chrom} (0-based)")
    model.set_xlim(*span)
    if "protein" in per_base:
        protein = axes[3]
        values = per_base["protein"]
        protein.bar(np.arange(1, len(values) + 1), np.nan_to_num(values), width=1.0)
        protein.set_ylabel("protein")
        protein.set_xlabel("residue")
    figure.savefig(path, format="png", dpi=100)


def _box(start, end, half_height):
    from matplotlib.patches import Rectangle

    return Rectangle((start, -half_height), end - start, 2 * half_height, color="steelblue")
