"""What a model is: configuration summary, tissues and parameter counts, for ``isoformer inspect``.

The model is built on PyTorch's ``meta`` device (shapes without memory), so summarising the official
preset (about 673M parameters) takes a fraction of a second. For a checkpoint folder the weights file
is checked against the configuration from its header alone (:func:`check_checkpoint`); no tensor data
is read.
"""

import os

from isoformer_cli.errors import InputError
from isoformer_cli.models.checkpoint import build_model, check_checkpoint, checkpoint_metadata

SUMMARY_FORMAT_VERSION = 1
COMPONENTS = ("dna_encoder", "rna_encoder", "protein_encoder", "aggregation", "head", "total")


def _dna_encoder_summary(config):
    if not config.has_dna:
        return None
    common = {"window_bp": config.dna_length, "positions": config.dna_bins, "output_width": config.dna_embedding_size}
    if config.dna_encoder_type == "enformer":
        return {
            "type": "enformer",
            "dim": config.enformer_dim,
            "depth": config.enformer_depth,
            "heads": config.enformer_heads,
            "downsamples": config.enformer_num_downsamples,
            "bin_bp": 2**config.enformer_num_downsamples,
            **common,
        }
    return {
        "type": "nucleotide_transformer",
        "hidden_size": config.dna_nt_hidden_size,
        "layers": config.dna_nt_num_hidden_layers,
        "heads": config.dna_nt_num_attention_heads,
        "ffn_size": config.dna_nt_intermediate_size,
        **common,
    }


def _rna_encoder_summary(config):
    if not config.has_rna:
        return None
    return {
        "type": "nucleotide_transformer_v2",
        "hidden_size": config.nt_hidden_size,
        "layers": config.nt_num_hidden_layers,
        "heads": config.nt_num_attention_heads,
        "ffn_size": config.nt_intermediate_size,
        "max_tokens": config.max_rna_tokens,
    }


def _protein_encoder_summary(config):
    if not config.has_protein:
        return None
    return {
        "type": "esm2",
        "hidden_size": config.esm_hidden_size,
        "layers": config.esm_num_hidden_layers,
        "heads": config.esm_num_attention_heads,
        "ffn_size": config.esm_intermediate_size,
        "max_residues": config.max_protein_residues,
    }


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
        "dna_encoder": _dna_encoder_summary(config),
        "rna_encoder": _rna_encoder_summary(config),
        "protein_encoder": _protein_encoder_summary(config),
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


def inspect_model(checkpoint=None, preset=None):
    """Summary of a checkpoint folder or of a named preset (exactly one of the two).

    Returns a dictionary: ``source`` (``{"checkpoint": path}`` or ``{"preset": name}``), the fields of
    :func:`summarize_config`, and for a checkpoint ``weights`` (file, size in bytes, header metadata).
    Raises :class:`CheckpointError` for a broken checkpoint, :class:`InputError` for an unknown preset.
    """
    from isoformer_cli.models.configuration import IsoformerConfig

    if (checkpoint is None) == (preset is None):
        raise InputError("give either a checkpoint folder or a preset name, not both or neither")
    if preset is not None:
        config = IsoformerConfig.from_preset(preset)
        source, weights = {"preset": preset}, None
    else:
        config, weights_path, _ = check_checkpoint(checkpoint)
        source = {"checkpoint": os.path.abspath(checkpoint)}
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
    if summary is None:
        return "none"
    kind = summary["type"]
    if kind == "enformer":
        return (
            f"enformer (dim {summary['dim']}, depth {summary['depth']}, {summary['heads']} heads), "
            f"{summary['window_bp']:,} bp -> {summary['positions']} bins of {summary['bin_bp']} bp "
            f"x {summary['output_width']}"
        )
    text = (
        f"{kind} (hidden {summary['hidden_size']}, {summary['layers']} layers, {summary['heads']} heads, "
        f"FFN {summary['ffn_size']})"
    )
    if "max_tokens" in summary:
        text += f", up to {summary['max_tokens']:,} tokens after <cls>"
    if "max_residues" in summary:
        text += f", up to {summary['max_residues']:,} residues"
    if "window_bp" in summary:
        text += f", {summary['window_bp']:,} bp -> {summary['positions']} positions"
    return text


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
