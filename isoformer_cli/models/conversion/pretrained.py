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

Self-checks: once filled, each loaded encoder is run against a reference built from the folder's own tensors
(:mod:`isoformer_cli.models.conversion.self_check`: ESM-2 against ``transformers.EsmModel``, Enformer against a new
Enformer loaded in its source layout, NT-v2 against our module loaded without key mapping); a
disagreement refuses the new checkpoint, and the results are recorded in its provenance.

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
from isoformer_cli.formats.collisions import refuse_shared_files
from isoformer_cli.formats.locks import lock_outputs
from isoformer_cli.models.checkpoint.save import check_folder_target, save_checkpoint
from isoformer_cli.models.checkpoint.weights import fill_module, load_weights_folder, read_json_file
from isoformer_cli.models.conversion.encoders import conversion_for
from isoformer_cli.models.conversion.key_mapping import plan_conversion
from isoformer_cli.models.conversion.self_check import check_encoders, metadata_of
from isoformer_cli.models.network.build import build_model
from isoformer_cli.models.network.configuration import IsoformerConfig

log = logging.getLogger(__name__)

MODALITY_OF_ENCODER = {"dna_encoder": "dna", "rna_encoder": "rna", "protein_encoder": "protein"}


def _encoder_folders(config):
    """How to read a pretrained folder of each encoder the configuration has, keyed by our attribute name."""
    return {
        f"{modality}_encoder": conversion_for(config.encoder(modality)).pretrained_folder(config)
        for modality in config.modalities
    }


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
        ours = spec.reference.get(name, spec.defaults.get(name))
        theirs = fields.get(name, spec.defaults.get(name))
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
    """What ``init_model`` did: encoders loaded (folder, weights file, tensor count), randomly initialised,
    and the self-check results."""

    loaded: dict = field(default_factory=dict)
    random: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    checks: list = field(default_factory=list)


def reference_tensors(encoder, tensors, plan, prefix):
    """``{name in the encoder's own layout: tensor}`` of a pretrained folder, for the encoder's self-check.

    The names come from the encoder's own signature search in the folder (independent of the key mapping);
    when it finds nothing, from the names the mapping gave them.
    """
    found = conversion_for(encoder).find_in_checkpoint({key: tuple(tensor.shape) for key, tensor in tensors.items()})
    if len(found) == 1:
        return {name: tensors[key] for name, key in found[0].sub_keys.items()}
    return {ours[len(prefix):]: tensors[key] for key, ours in plan.targets.items() if key not in plan.duplicates}


def load_encoder(model, name, folder, spec, sources=None):
    """Fill ``model.<name>`` from ``folder`` (all or nothing); return ``(weights path, tensor count)``.

    ``sources``, when given, receives ``{modality: reference tensors}`` for the self-check.
    """
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
    if sources is not None:
        modality = MODALITY_OF_ENCODER[name]
        sources[modality] = reference_tensors(model.config.encoder(modality), tensors, plan, spec.prefix)
    return source, len(filled)


def init_model(output, preset="official", encoder_folders=None, overrides=None, seed=0, overwrite=False,
               extra_metadata=None, on_written=None):
    """Build and save a fresh IsoFormer whose encoders come from pretrained folders.

    Args:
        output: checkpoint folder to write (atomically).
        preset: model preset; ``overrides`` (e.g. ``{"modalities": "dna,rna"}``) adjust it.
        encoder_folders: ``{"dna_encoder" | "rna_encoder" | "protein_encoder": folder}``; missing or None
            entries are randomly initialised (with a warning).
        seed: seed of the random initialisation (aggregation, head, omitted encoders).
        extra_metadata / on_written: passed to :func:`save_checkpoint` (provenance, manifest).

    Returns:
        :class:`InitReport`. Raises CheckpointError, writing nothing, when a folder does not fit the preset or
        a loaded encoder fails its self-check.
    """
    encoder_folders = {name: folder for name, folder in (encoder_folders or {}).items() if folder}
    refuse_shared_files({f"--{name.replace('_', '-')}": folder for name, folder in encoder_folders.items()}, {},
                        output_folders={"-o/--output": output})
    check_folder_target(output, overwrite)
    with lock_outputs(folders=[output]):
        return _init_model(output, preset, encoder_folders, overrides, seed, overwrite, extra_metadata, on_written)


def _init_model(output, preset, encoder_folders, overrides, seed, overwrite, extra_metadata, on_written):
    config = IsoformerConfig.from_preset(preset, **(overrides or {}))
    specs = _encoder_folders(config)
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
    sources = {}
    for name, spec in specs.items():
        if name in encoder_folders:
            report.loaded[name] = (encoder_folders[name],) + load_encoder(model, name, encoder_folders[name], spec,
                                                                          sources)
        else:
            report.random.append(name)
            report.warnings.append(
                f"no --{name.replace('_', '-')} given: the {spec.label} encoder is randomly initialised"
            )
    for warning in report.warnings:
        log.warning("%s", warning)
    model.eval()
    report.checks = check_encoders(model, sources)

    metadata = {"init_seed": str(seed), "init_preset": preset}
    for name, (folder, source, count) in report.loaded.items():
        metadata[f"init_{name}"] = f"{os.path.abspath(source)} ({count} tensors)"
    for name in report.random:
        metadata[f"init_{name}"] = "random"
    metadata.update(metadata_of(report.checks))
    metadata.update(extra_metadata or {})
    save_checkpoint(model, output, overwrite=overwrite, metadata=metadata, on_written=on_written)
    return report
