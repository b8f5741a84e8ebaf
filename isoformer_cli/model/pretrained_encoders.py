"""Build a fresh IsoFormer from pretrained encoders saved in their own libraries' formats (``isoformer init``).

Accepted folders (each downloaded by the user; ``config.json`` plus ``model.safetensors``,
``pytorch_model.bin`` or a sharded index):

* protein: an ESM-2 folder as written by ``transformers`` ``EsmForMaskedLM`` / ``EsmModel.save_pretrained``
  (``facebook/esm2_t30_150M_UR50D``): ``esm.*`` keys (or bare ``EsmModel`` keys), ``lm_head.*`` ignored.
* RNA: a Nucleotide Transformer v2 folder in Hugging Face format
  (``InstaDeepAI/nucleotide-transformer-v2-250m-multi-species``): ``config.json`` with ``model_type``
  "esm" and NT fields (``add_bias_fnn``), ``esm.*`` weights; ``lm_head.*`` and the contact head ignored.
* DNA: an enformer-pytorch folder (``EleutherAI/enformer-official-rough``): ``config.json`` with
  ``model_type`` "enformer", weights with the named and/or ``_trunk.N`` spellings; the human/mouse output
  heads are ignored. With ``dna_encoder_type="nucleotide_transformer"`` the DNA folder is an NT-v2 one.

Configuration policy: the preset decides the architecture. Each encoder folder's ``config.json`` must
agree with the preset on every field that defines the encoder's weights or its meaning (widths, depth,
heads, vocabulary, position embedding type, ...); a difference is an error naming the field, both
values and the file. Fields that only change behaviour (dropout, ``token_dropout``, ``layer_norm_eps``,
Enformer's ``target_length`` / ``use_tf_gamma``, ...) may differ: the preset's value is used, with a
warning. Every tensor of the encoder must then be in the folder with its shape; nothing is filled
partially. An omitted encoder, the aggregation and the head are randomly initialised (``seed``).
"""

import logging
import os
from dataclasses import dataclass, field

import torch

from isoformer_cli.errors import CheckpointError, InputError
from isoformer_cli.model.checkpoint import (
    build_model,
    check_folder_target,
    fill_module,
    load_weights_folder,
    read_json_file,
    save_checkpoint,
)
from isoformer_cli.model.key_mapping import IGNORE, MappingRow, enformer_rows, plan_conversion

log = logging.getLogger(__name__)

MODALITY_OF_ENCODER = {"dna_encoder": "dna", "rna_encoder": "rna", "protein_encoder": "protein"}

# (field, is it part of the architecture?) for each kind of encoder folder; architecture fields must
# match the preset, the others may differ (the preset's value is used, with a warning).
ESM_FIELDS = (
    ("hidden_size", True),
    ("num_hidden_layers", True),
    ("num_attention_heads", True),
    ("intermediate_size", True),
    ("vocab_size", True),
    ("position_embedding_type", True),
    ("emb_layer_norm_before", True),
    ("hidden_act", True),
    ("pad_token_id", True),
    ("mask_token_id", False),
    ("token_dropout", False),
    ("layer_norm_eps", False),
    ("max_position_embeddings", False),
)
NT_FIELDS = ESM_FIELDS[:7] + (("add_bias_fnn", True), ("pad_token_id", True), ("layer_norm_eps", False))
ENFORMER_FIELDS = (
    ("dim", True),
    ("depth", True),
    ("heads", True),
    ("attn_dim_key", True),
    ("num_downsamples", True),
    ("dim_divisible_by", True),
    ("use_convnext", True),
    ("target_length", False),
    ("use_tf_gamma", False),
)


def _esm_rows(target_prefix):
    """Rows for an ESM-style (ESM-2 or NT-v2) masked-LM or base-model state dict."""
    return (
        MappingRow(r"^lm_head\.", IGNORE, "masked-LM head (not used by IsoFormer)"),
        MappingRow(r"^(?:esm\.)?pooler\.", IGNORE, "pooling layer (not used by IsoFormer)"),
        MappingRow(r"^esm\.", target_prefix),
        MappingRow(r"^", target_prefix),
    )


@dataclass
class EncoderSpec:
    """How to read one encoder folder: expected model_type, fields to compare, key rows, target prefix."""

    label: str
    model_type: str
    fields: tuple
    rows: tuple
    prefix: str
    reference: dict


def _encoder_specs(config):
    """The spec of each encoder the configuration has, keyed by our top-level attribute name."""
    specs = {}
    if config.has_dna:
        if config.dna_encoder_type == "enformer":
            reference = config.enformer_config().to_dict()
            reference.setdefault("use_convnext", False)
            specs["dna_encoder"] = EncoderSpec(
                "DNA (enformer-pytorch)", "enformer", ENFORMER_FIELDS,
                enformer_rows("", "dna_encoder.enformer."), "dna_encoder.enformer.", reference,
            )  # fmt: skip
        else:
            specs["dna_encoder"] = EncoderSpec(
                "DNA (Nucleotide Transformer v2)", "esm", NT_FIELDS,
                _esm_rows("dna_encoder.nucleotide_transformer."), "dna_encoder.nucleotide_transformer.",
                config.dna_nt_config().to_dict(),
            )  # fmt: skip
    if config.has_rna:
        specs["rna_encoder"] = EncoderSpec(
            "RNA (Nucleotide Transformer v2)", "esm", NT_FIELDS, _esm_rows("rna_encoder."), "rna_encoder.",
            config.rna_encoder_config().to_dict(),
        )  # fmt: skip
    if config.has_protein:
        specs["protein_encoder"] = EncoderSpec(
            "protein (ESM-2)", "esm", ESM_FIELDS, _esm_rows("protein_encoder."), "protein_encoder.",
            config.protein_encoder_config().to_dict(),
        )  # fmt: skip
    return specs


# Values a config.json may leave out, with what the library then assumes.
_LIBRARY_DEFAULTS = {"use_convnext": False, "add_bias_fnn": True, "emb_layer_norm_before": None}


def check_encoder_config(folder, spec, preset):
    """Compare ``folder/config.json`` with the preset; return the warnings (behaviour fields that differ).

    Raises:
        CheckpointError: wrong ``model_type`` or an architecture field that differs, naming the file,
            the field and both values.
    """
    path = os.path.join(os.fspath(folder), "config.json")
    fields = read_json_file(path, f"{spec.label} encoder configuration")
    model_type = fields.get("model_type")
    if model_type != spec.model_type:
        raise CheckpointError(
            f"{path}: model_type is {model_type!r}, expected {spec.model_type!r} for the {spec.label} encoder; "
            "is this the right folder for this option?"
        )
    errors, warnings = [], []
    for name, architecture in spec.fields:
        ours = spec.reference.get(name, _LIBRARY_DEFAULTS.get(name))
        theirs = fields.get(name, _LIBRARY_DEFAULTS.get(name))
        if theirs == ours or (name == "emb_layer_norm_before" and not theirs and not ours):
            continue
        text = f"{name} is {theirs!r} there but {ours!r} in the {preset} preset"
        (errors if architecture else warnings).append(text)
    if errors:
        raise CheckpointError(
            f"{path}: the {spec.label} encoder does not match the {preset} preset: {'; '.join(errors)} "
            "(use an encoder of the preset's size)"
        )
    return [f"{path}: {text}; using the preset's value" for text in warnings]


@dataclass
class InitReport:
    """What ``init_model`` did: encoders loaded (folder, weights file, tensor count), randomly initialised."""

    loaded: dict = field(default_factory=dict)
    random: list = field(default_factory=list)
    warnings: list = field(default_factory=list)


def load_encoder(model, name, folder, spec):
    """Fill ``model.<name>`` from ``folder`` (all or nothing); return ``(weights path, tensor count)``."""
    tensors, source = load_weights_folder(folder)
    plan = plan_conversion(
        {key: tuple(t.shape) for key, t in tensors.items()}, model, spec.rows, source, required_prefix=spec.prefix
    )
    outside = [key for key, ours in plan.targets.items() if not ours.startswith(spec.prefix)]
    plan.unmatched.extend((key, tuple(tensors[key].shape)) for key in outside)
    for key in outside:
        del plan.targets[key]
    plan.check_values(tensors)
    if plan.refused or plan.unmatched:
        problems = plan.problems()
        if plan.unmatched and not problems:
            shown = ", ".join(f"{key} {list(shape)}" for key, shape in sorted(plan.unmatched)[:5])
            problems = f"{len(plan.unmatched):,} tensors of the file do not belong to the encoder ({shown})"
        raise CheckpointError(f"{source}: cannot load the {spec.label} encoder: {problems}")
    submodule = model.get_submodule(spec.prefix.rstrip("."))
    filled = fill_module(submodule, plan.tensors_for(tensors, spec.prefix), source)
    return source, len(filled)


def init_model(output, preset="official", encoder_folders=None, overrides=None, seed=0, overwrite=False):
    """Build and save a fresh IsoFormer whose encoders come from pretrained folders.

    Args:
        output: checkpoint folder to write (atomically).
        preset: model preset; ``overrides`` (e.g. ``{"modalities": "dna,rna"}``) adjust it.
        encoder_folders: ``{"dna_encoder" | "rna_encoder" | "protein_encoder": folder}``; missing or None
            entries are randomly initialised (with a warning).
        seed: seed of the random initialisation (aggregation, head, omitted encoders).

    Returns:
        :class:`InitReport`.
    """
    from isoformer_cli.outputs.collisions import refuse_shared_files
    from isoformer_cli.outputs.locks import lock_outputs

    encoder_folders = {name: folder for name, folder in (encoder_folders or {}).items() if folder}
    refuse_shared_files({f"--{name.replace('_', '-')}": folder for name, folder in encoder_folders.items()}, {},
                        output_folders={"-o/--output": output})
    check_folder_target(output, overwrite)
    with lock_outputs(folders=[output]):
        return _init_model(output, preset, encoder_folders, overrides, seed, overwrite)


def _init_model(output, preset, encoder_folders, overrides, seed, overwrite):
    from isoformer_cli.model.config import IsoformerConfig

    config = IsoformerConfig.from_preset(preset, **(overrides or {}))
    specs = _encoder_specs(config)
    report = InitReport()
    for name, folder in encoder_folders.items():
        if name not in specs:
            raise InputError(
                f"--{name.replace('_', '-')} {folder} given, but the model has no {MODALITY_OF_ENCODER[name]} "
                f"modality (modalities: {','.join(config.modalities)})"
            )
        if not os.path.isdir(folder):
            raise CheckpointError(f"{folder}: no such folder (the {specs[name].label} encoder)")
        report.warnings.extend(check_encoder_config(folder, specs[name], preset))

    torch.manual_seed(seed)
    model = build_model(config)
    for name, spec in specs.items():
        if name in encoder_folders:
            report.loaded[name] = (encoder_folders[name],) + load_encoder(model, name, encoder_folders[name], spec)
        else:
            report.random.append(name)
            report.warnings.append(
                f"no --{name.replace('_', '-')} given: the {spec.label} encoder is randomly initialised"
            )
    for warning in report.warnings:
        log.warning("%s", warning)

    metadata = {"init_seed": str(seed), "init_preset": preset}
    for name, (folder, source, count) in report.loaded.items():
        metadata[f"init_{name}"] = f"{os.path.abspath(source)} ({count} tensors)"
    for name in report.random:
        metadata[f"init_{name}"] = "random"
    save_checkpoint(model.eval(), output, overwrite=overwrite, metadata=metadata)
    return report
