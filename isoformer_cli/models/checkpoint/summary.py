"""What a model is: configuration summary, tissues and parameter counts, for ``isoformer inspect``.

The model is built on PyTorch's ``meta`` device (shapes without memory), so summarising the official
preset (about 673M parameters) takes a fraction of a second. For a checkpoint folder the weights file
is checked against the configuration from its header alone (:func:`check_checkpoint`); no tensor data
is read.
"""

import os

from isoformer_cli.errors import InputError
from isoformer_cli.models.checkpoint.check import checkpoint_metadata
from isoformer_cli.models.network.build import build_model
from isoformer_cli.models.network.configuration import IsoformerConfig
from isoformer_cli.models.network.encoders import DNA_ENCODERS, PROTEIN_ENCODER, RNA_ENCODER

SUMMARY_FORMAT_VERSION = 1
COMPONENTS = ("dna_encoder", "rna_encoder", "protein_encoder", "aggregation", "head", "total")


def _encoder_summary(config, modality):
    """The encoder's own summary (see ``SequenceEncoder.summary``), or None when the modality is absent."""
    if modality not in config.modalities:
        return None
    return config.encoder(modality).summary(config)


def _aggregation_summary(config):
    summary = {"type": config.aggregation, "query_modality": config.query_modality, "query_width": config.query_size}
    if config.aggregation == "cross-attention":
        summary["heads"] = config.num_heads_omics_cross_attention
    elif config.aggregation == "perceiver":
        summary.update(
            latents=config.perceiver_num_latents, depth=config.perceiver_depth, heads=config.perceiver_num_heads
        )
    if config.aggregation != "perceiver":
        summary["pool_window"] = {
            "start": config.pool_window_start,
            "end": config.pool_window_end,
            "reference": config.pool_window_reference,
        }
    return summary


def summarize_config(config, model):
    """A JSON-ready description of ``config``; ``model`` (any device, meta included) gives the counts."""
    counts = model.parameter_counts()
    detailed = model.parameter_counts(detailed=True)
    return {
        "modalities": list(config.modalities),
        "dna_encoder": _encoder_summary(config, "dna"),
        "rna_encoder": _encoder_summary(config, "rna"),
        "protein_encoder": _encoder_summary(config, "protein"),
        "aggregation": _aggregation_summary(config),
        "head": {
            "hidden_size": config.head_hidden_size,
            "activation": config.head_activation,
            "outputs": config.n_tissues,
        },
        "target_units": config.target_units,
        "tissues": list(config.tissues),
        "parameters": {name: counts[name] for name in COMPONENTS},
        "parameters_detailed": {name: value for name, value in detailed.items() if "." in name},
    }


def inspect_model(checked=None, preset=None):
    """Summary of a checked checkpoint (a :class:`~isoformer_cli.models.checkpoint.check.CheckedCheckpoint`) or of
    a named preset (exactly one of the two).

    Returns a dictionary: ``source`` (``{"checkpoint": path}`` or ``{"preset": name}``), the fields of
    :func:`summarize_config`, and for a checkpoint ``weights`` (file, size in bytes, header metadata).
    Raises :class:`CheckpointError` for a broken checkpoint, :class:`InputError` for an unknown preset.
    """
    if (checked is None) == (preset is None):
        raise InputError("give either a checkpoint folder or a preset name, not both or neither")
    if preset is not None:
        config = IsoformerConfig.from_preset(preset)
        source, weights = {"preset": preset}, None
    else:
        config, weights_path = checked.config, checked.weights
        source = {"checkpoint": os.path.abspath(checked.folder)}
        weights = {
            "file": os.path.abspath(weights_path),
            "bytes": os.path.getsize(weights_path),
            "metadata": checkpoint_metadata(weights_path),
        }
    summary = {"format_version": SUMMARY_FORMAT_VERSION, "source": source}
    summary.update(summarize_config(config, build_model(config, device="meta")))
    if weights is not None:
        summary["weights"] = weights
    return summary


def _encoder_line(summary):
    """The encoder's one-line description (its own ``describe``), or ``none``."""
    if summary is None:
        return "none"
    for encoder in (*DNA_ENCODERS.values(), RNA_ENCODER, PROTEIN_ENCODER):
        if encoder.summary_type == summary["type"]:
            return encoder.describe(summary)
    return summary["type"]


def format_summary(summary):
    """Human-readable text of an :func:`inspect_model` summary (one fact per line)."""
    source = summary["source"]
    lines = [f"model: {source.get('checkpoint') or 'preset ' + source['preset']}"]
    lines.append(f"modalities: {', '.join(summary['modalities'])}")
    for name in ("dna_encoder", "rna_encoder", "protein_encoder"):
        lines.append(f"{name}: {_encoder_line(summary[name])}")
    aggregation = summary["aggregation"]
    text = (
        f"aggregation: {aggregation['type']}, query {aggregation['query_modality']} "
        f"(width {aggregation['query_width']})"
    )
    if "heads" in aggregation:
        text += f", {aggregation['heads']} heads"
    window = aggregation.get("pool_window")
    if window is not None:
        if window["start"] is None and window["end"] is None:
            text += ", mean over all positions"
        else:
            text += f", mean over [{window['start']}, {window['end']}) relative to {window['reference']}"
    lines.append(text)
    head = summary["head"]
    lines.append(f"head: {head['hidden_size']} hidden, {head['activation']}, {head['outputs']} outputs")
    lines.append(f"target units: {summary['target_units']}")
    lines.append(f"tissues ({len(summary['tissues'])}): {', '.join(summary['tissues'])}")
    lines.append("parameters:")
    for name, value in summary["parameters"].items():
        lines.append(f"  {name:<16} {value:>14,}")
    for name, value in summary["parameters_detailed"].items():
        lines.append(f"    {name:<40} {value:>14,}")
    weights = summary.get("weights")
    if weights is not None:
        lines.append(f"weights: {weights['file']} ({weights['bytes']:,} bytes)")
        for key, value in sorted(weights["metadata"].items()):
            if key != "format":
                lines.append(f"  {key}: {value}")
    return "\n".join(lines) + "\n"
