"""Import the official InstaDeepAI/isoformer weights (``pytorch_model.bin``) into our checkpoint format.

The official file is a plain PyTorch state dict (read with ``weights_only=True``, memory-mapped). Its
top-level key names have never been seen by this project: the table below encodes the best-documented guess, ONE row per rule, tried in order. Each row is a
regular expression on the official key and either our key (``re.sub`` replacement) or ``IGNORE`` with
the reason. A user holding the file can see where every key goes with ``isoformer convert --list-keys``
and correct the table without touching code through ``--mapping FILE`` (rows tried before these).

Nothing is guessed silently: every official key ends up *matched* (copied into our model), *ignored*
(a table row says why: Enformer's species heads, the masked-LM heads, recomputed buffers) or
*unmatched* (reported with its shape). The conversion refuses to write anything when a tensor of ours
would stay uninitialised, when shapes differ, or when two spellings of one tensor (Enformer's ``_trunk.N``
duplicates) hold different values.
"""

import hashlib
import logging
import os

from isoformer_cli.errors import CheckpointError
from isoformer_cli.models.checkpoint import build_model, check_folder_target, save_checkpoint
from isoformer_cli.models.weights import (
    fill_module,
    format_shape,
    load_weights_file,
    name_some,
    read_json_file,
    weights_file_shapes,
)
from isoformer_cli.models.encoders.enformer import ENFORMER
from isoformer_cli.models.encoders.esm import ESM2
from isoformer_cli.models.encoders.nucleotide_transformer import NT_RNA
from isoformer_cli.models.key_mapping import MappingRow, plan_conversion, read_mapping_file

log = logging.getLogger(__name__)

# Official weight file names inside the downloaded folder, in order of preference.
OFFICIAL_WEIGHT_FILES = ("pytorch_model.bin", "model.safetensors")


# UNVERIFIED against the real file: the top-level names (esm_model, nt_model, enformer_model,
# cross_attention_layer_rna/protein, head_layer_1/2) are a recollection of the official code; the
# sub-keys below each prefix follow from the libraries (EsmForMaskedLM, enformer-pytorch) and are solid.
OFFICIAL_KEY_MAP = (
    # Protein encoder: ESM-2 150M inside EsmForMaskedLM ("esm." + EsmModel keys, "lm_head.").
    *ESM2.key_rows(r"esm_model\.", "protein_encoder."),
    # RNA encoder: NT-v2 inside its masked-LM wrapper, ESM-style names.
    *NT_RNA.key_rows(r"nt_model\.", "rna_encoder."),
    # DNA encoder: enformer-pytorch (both the named and the _trunk.N spellings; species heads ignored).
    *ENFORMER.key_rows(r"enformer_model\.", "dna_encoder.enformer."),
    # Aggregation: two cross-attention blocks with query/key/value/dense linears.
    MappingRow(r"^cross_attention_layer_rna\.", "aggregation.rna_cross_attention."),
    MappingRow(r"^cross_attention_layer_protein\.", "aggregation.protein_cross_attention."),
    # Head 3072 -> 6144 -> 30: two linears, named head_layer_1/2 or an nn.Sequential "head" (0 and 2).
    MappingRow(r"^(?:head_layer_1|head\.0)\.", "head.dense."),
    MappingRow(r"^(?:head_layer_2|head\.2)\.", "head.output."),
)


def find_official_weights(source):
    """The weights file of ``source`` (a downloaded InstaDeepAI/isoformer folder, or the file itself)."""
    source = os.fspath(source)
    if os.path.isfile(source):
        return source
    if not os.path.isdir(source):
        raise CheckpointError(f"{source}: no such file or folder (give the downloaded InstaDeepAI/isoformer folder)")
    for name in OFFICIAL_WEIGHT_FILES:
        candidate = os.path.join(source, name)
        if os.path.isfile(candidate):
            return candidate
    raise CheckpointError(
        f"{source}: no {' or '.join(OFFICIAL_WEIGHT_FILES)} in this folder; download the InstaDeepAI/isoformer "
        "model files into it first"
    )


def _official_config_differences(source, config):
    """(field, official value, our value) for fields both configs name the same way (informative only)."""
    path = os.path.join(source, "config.json") if os.path.isdir(source) else None
    if path is None or not os.path.isfile(path):
        return []
    official = read_json_file(path, "official configuration")
    ours = config.to_dict()
    skip = {"architectures", "auto_map", "model_type", "transformers_version", "dtype", "torch_dtype", "_name_or_path"}
    return sorted(
        (name, official[name], ours[name])
        for name in official
        if name in ours and name not in skip and official[name] != ours[name]
    )


def _sha256(path, chunk=16 * 1024 * 1024):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _rows(mapping_file):
    return (read_mapping_file(mapping_file) if mapping_file else ()) + OFFICIAL_KEY_MAP


def convert_official(source, output, preset="official", mapping_file=None, overwrite=False):
    """Convert the official weights at ``source`` into our checkpoint folder ``output``.

    Returns the :class:`ConversionPlan` (for the report). Raises :class:`CheckpointError` naming the
    tensors when anything of ours would stay uninitialised, a shape differs or duplicate spellings
    disagree; nothing is written then. Unmatched official tensors are reported, not fatal.
    """
    from isoformer_cli.formats.collisions import refuse_shared_files
    from isoformer_cli.formats.locks import lock_outputs

    refuse_shared_files({"OFFICIAL": source, "--mapping": mapping_file}, {}, output_folders={"-o/--output": output})
    check_folder_target(output, overwrite)
    with lock_outputs(folders=[output]):
        return _convert_official(source, output, preset, mapping_file, overwrite)


def _convert_official(source, output, preset, mapping_file, overwrite):
    from isoformer_cli.models.configuration import IsoformerConfig

    weights = find_official_weights(source)
    config = IsoformerConfig.from_preset(preset)
    for name, official_value, our_value in _official_config_differences(os.fspath(source), config):
        log.warning("official config.json has %s=%r, the %s preset %r", name, official_value, preset, our_value)
    tensors = load_weights_file(weights)
    model = build_model(config, initialise=False)
    plan = plan_conversion({key: tuple(t.shape) for key, t in tensors.items()}, model, _rows(mapping_file), weights)
    plan.check_values(tensors)
    if plan.refused:
        hint = ""
        if plan.unmatched:
            hint = " (see where each key goes with --list-keys; correct the key mapping with --mapping FILE)"
        raise CheckpointError(f"{weights}: cannot convert: {plan.problems()}; nothing was written{hint}")
    for key, shape in sorted(plan.unmatched):
        log.warning("unmatched official tensor %s %s (not copied)", key, format_shape(shape))
    fill_module(model, plan.tensors_for(tensors), weights)
    metadata = {
        "converted_from": os.path.abspath(weights),
        "source_sha256": _sha256(weights),
        "key_mapping": "official table (unverified against the real file)"
        + (f" + {mapping_file}" if mapping_file else ""),
    }
    save_checkpoint(model.eval(), output, overwrite=overwrite, metadata=metadata)
    return plan


def list_official_keys(source, preset="official", mapping_file=None):
    """Text listing every key of the official weights, grouped by top-level prefix, with its destination.

    Per group: the number of tensors and of elements (parameters and buffers). Per key (tab-separated):
    name, shape, and where the table sends it (our key, ``ignored: reason`` or ``UNMATCHED``).
    """
    from isoformer_cli.models.configuration import IsoformerConfig

    weights = find_official_weights(source)
    shapes = weights_file_shapes(weights)
    model = build_model(IsoformerConfig.from_preset(preset), device="meta")
    plan = plan_conversion(shapes, model, _rows(mapping_file), weights)
    destination = dict(plan.targets)
    destination.update({key: f"ignored: {reason}" for key, reason in plan.ignored})
    destination.update({key: "UNMATCHED" for key, _ in plan.unmatched})
    for key, ours, _, expected in plan.wrong_shape:
        destination[key] = f"{ours} (WRONG SHAPE: model has {format_shape(expected)})"

    groups = {}
    for key in shapes:
        groups.setdefault(key.split(".", 1)[0], []).append(key)
    lines = [f"# {weights}: {len(shapes):,} tensors, {sum(_numel(s) for s in shapes.values()):,} elements"]
    lines.append(f"# {plan.summary()} (preset {preset})")
    for group, keys in groups.items():
        lines.append(f"# group {group}: {len(keys):,} tensors, {sum(_numel(shapes[k]) for k in keys):,} elements")
    lines.append("key\tshape\tdestination")
    for group, keys in groups.items():
        for key in keys:
            lines.append(f"{key}\t{format_shape(shapes[key])}\t{destination.get(key, 'UNMATCHED')}")
    if plan.missing:
        lines.append(f"# {len(plan.missing):,} tensors of the model filled by no key: {name_some(plan.missing, 10)}")
    return "\n".join(lines) + "\n"


def _numel(shape):
    count = 1
    for size in shape:
        count *= size
    return count
