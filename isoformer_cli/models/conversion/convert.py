"""Import the official InstaDeepAI/isoformer weights (``pytorch_model.bin``) into our checkpoint format.

The official file is a plain PyTorch state dict (read with ``weights_only=True``, memory-mapped; nothing but
tensors is unpickled). Its top-level names have never been documented, so nothing here depends on them:

1. **Layout** (:mod:`isoformer_cli.models.conversion.layout`): each component (ESM-2, NT-v2, Enformer in either
   spelling, the two cross-attention blocks, the head) is found by its key signature and shapes, whatever
   its prefix, and becomes mapping rows onto our names. Rows of a ``--mapping`` file
   (``REGEX<TAB>REPLACEMENT``, ``-`` to ignore) are tried first and override the detection.
2. **Architecture** (:func:`derive_config`): the official ``config.json`` beside the weights (its ``esm_*``,
   ``nt_*``, ``enformer_*`` and aggregation fields, named as ours) plus what the shapes reveal (widths,
   depths, Enformer heads, number of tissues), so smaller models in the same format convert too. A field
   that config.json and the shapes disagree on is an error. Fields neither determines come from the preset
   (``--preset``, default ``official``) and are reported as assumed; the architecture's unknowns are plain
   configuration fields (``fusion_order``, ``head_activation``, ``pool_window_*``): ``--set KEY=VALUE``
   fixes them, and overrides anything else.
3. **Plan** (:func:`~isoformer_cli.models.conversion.key_mapping.plan_conversion`): every key is matched, ignored with a
   reason (species heads, masked-LM heads, contact heads, recomputed buffers) or reported unmatched with its
   shape. A tensor of ours left uninitialised, a wrong shape or two spellings with different values refuse
   the conversion.
4. **Self-checks** (:mod:`isoformer_cli.models.conversion.self_check`): each encoder of the new model against a
   reference built from the source tensors; a disagreement refuses the conversion.

Nothing is written unless all of this succeeds; the checkpoint's provenance records the source file and its
SHA-256, the layout found, where each architecture field came from and the self-check results.
"""

import json
import logging
import os

from transformers import PretrainedConfig

from isoformer_cli.errors import CheckpointError, InputError
from isoformer_cli.formats.collisions import refuse_shared_files
from isoformer_cli.formats.config_fields import check_field_types
from isoformer_cli.formats.locks import lock_outputs
from isoformer_cli.formats.provenance import sha256_file
from isoformer_cli.models.checkpoint.calibration import CALIBRATED_KEY
from isoformer_cli.models.checkpoint.save import check_folder_target, save_checkpoint
from isoformer_cli.models.checkpoint.schema import _config_field_kinds, config_field_names
from isoformer_cli.models.checkpoint.weights import (
    fill_module,
    format_shape,
    load_weights_file,
    name_some,
    read_json_file,
    weights_file_shapes,
)
from isoformer_cli.models.conversion.key_mapping import plan_conversion, read_mapping_file
from isoformer_cli.models.conversion.layout import COMPONENT_TARGETS, detect_layout
from isoformer_cli.models.conversion.self_check import check_encoders, metadata_of
from isoformer_cli.models.network.build import build_model
from isoformer_cli.models.network.configuration import GTEX_TISSUES, IsoformerConfig
from isoformer_cli.models.network.tokenizers import DNA_VOCABULARY, PROTEIN_VOCABULARY, RnaTokenizer

log = logging.getLogger(__name__)

# Official weight file names inside the downloaded folder, in order of preference.
OFFICIAL_WEIGHT_FILES = ("pytorch_model.bin", "model.safetensors")
OFFICIAL_CONFIG_FILE = "config.json"

# Fields of the official config.json that are read but deliberately not applied, and why.
_TOKENIZER_LENGTH = "a tokenizer length; this tool's input limits come from the encoders' position tables"
OFFICIAL_FIELDS_NOT_APPLIED = {
    "pool_window_start": "its meaning is unknown (absolute bins, relative to the TSS, or fractions); the converted "
    "model pools over every DNA bin unless you --set pool_window_start/pool_window_end/pool_window_reference",
    "pool_window_end": "see pool_window_start",
    "num_tokens_per_seq_nuctf": _TOKENIZER_LENGTH,
    "num_tokens_per_seq_nuctf_rna": _TOKENIZER_LENGTH,
    "num_protein_tokens_per_seq": _TOKENIZER_LENGTH,
    "enformer_output_heads": "Enformer's species heads are not used by IsoFormer",
    "esm_tie_word_embeddings": "a masked-LM option, no effect on the encoder",
    "esm_use_cache": "a generation option, no effect on the encoder",
    "nt_tie_word_embeddings": "a masked-LM option, no effect on the encoder",
    "esm_intermediate_factor": "an older revision's field; the shapes give the feed-forward width",
    "nt_intermediate_factor": "an older revision's field; the shapes give the feed-forward width",
}
# Fields whose official value must be this one for this tool to compute what the official model computes.
OFFICIAL_REQUIRED_VALUES = {
    "esm_add_bias_fnn": True,
    "enformer_use_convnext": False,
    "nt_position_embedding_type": "rotary",
    "nt_token_dropout": False,
}
# Fields of every Hugging Face config.json, not part of the architecture.
_GENERIC_FIELDS = {"architectures", "auto_map", "model_type", "transformers_version", "torch_dtype", "dtype",
                   "_name_or_path"}
#: Fields that neither the official config.json nor the shapes are known to settle: reported with their origin.
ARCHITECTURE_UNKNOWNS = (
    "fusion_order", "head_activation", "pool_window_start", "pool_window_end", "pool_window_reference",
    "esm_num_attention_heads", "nt_num_attention_heads", "num_heads_omics_cross_attention",
    "enformer_target_length", "enformer_dim_divisible_by", "dna_length",
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
        "model files into it first (or run: isoformer models pull official)"
    )


def _official_config(weights):
    """``(fields, path)`` of the config.json beside the weights, or ``(None, None)``."""
    path = os.path.join(os.path.dirname(os.path.abspath(weights)), OFFICIAL_CONFIG_FILE)
    if not os.path.isfile(path):
        return None, None
    fields = read_json_file(path, "official configuration")
    model_type = fields.get("model_type")
    if model_type not in (None, "isoformer"):
        raise CheckpointError(
            f"{path}: model_type is {model_type!r}, not 'isoformer'; this is not an IsoFormer release "
            "(pretrained encoders go through 'isoformer init')"
        )
    return fields, path


# ------------------------------------------------------------------------------------------------
# The architecture
# ------------------------------------------------------------------------------------------------


def derive_config(official, official_path, layout, preset="official", settings=None):
    """The :class:`IsoformerConfig` of an official-format file, and where each field came from.

    Args:
        official: the fields of the official config.json (None without one).
        official_path: its path, for messages.
        layout: the :class:`~isoformer_cli.models.conversion.layout.Layout` found in the weights.
        preset: fills the fields nothing else determines.
        settings: ``{field: value}`` from ``--set``, applied last.

    Returns:
        ``(config, origins, notes)``: ``origins`` maps fields to ``"config.json"``, ``"weights"``,
        ``"config.json, weights"``, ``"--set"`` or ``"default (PRESET preset)"``; ``notes`` are
        ``(logging level, line)`` pairs for the report (fields not applied, unknown fields).

    Raises:
        CheckpointError: config.json and the weights disagree, or config.json asks for something this tool
            does not implement; InputError for an invalid resulting configuration.
    """
    settings = dict(settings or {})
    names = config_field_names() - _GENERIC_FIELDS
    fields, origins, notes = {}, {}, []
    source = official_path or "config.json"
    if official is not None:
        kinds = _config_field_kinds()
        for key, value in official.items():
            if key in OFFICIAL_REQUIRED_VALUES:
                if value != OFFICIAL_REQUIRED_VALUES[key]:
                    raise CheckpointError(
                        f"{source}: {key} is {value!r}; this tool implements only {OFFICIAL_REQUIRED_VALUES[key]!r}"
                    )
            elif key in OFFICIAL_FIELDS_NOT_APPLIED:
                # The pooling window matters to the predictions; the other fields do not.
                level = logging.WARNING if key.startswith("pool_window") else logging.INFO
                notes.append((level, f"config.json {key}={value!r} not applied: {OFFICIAL_FIELDS_NOT_APPLIED[key]}"))
            elif key in names:
                check_field_types({key: value}, {key: kinds[key]}, source, error=CheckpointError)
                fields[key] = float(value) if kinds[key] == ("number",) else value
                origins[key] = "config.json"
            elif key not in _GENERIC_FIELDS and key not in _huggingface_generic_fields():
                notes.append((logging.WARNING,
                              f"config.json field {key}={value!r} is not known to isoformer and was ignored"))
    for key, value in layout.fields.items():
        if key == "n_tissues":
            continue
        if key in fields and fields[key] != value and key not in settings:
            raise CheckpointError(
                f"{source}: {key} is {fields[key]!r} there, but the weights have {value!r}; "
                f"the configuration does not describe this file (fix it, or --set {key}={json.dumps(value)})"
            )
        origins[key] = "config.json, weights" if key in fields else "weights"
        fields[key] = value
    tissues = layout.fields.get("n_tissues")
    if tissues is not None and "tissues" not in settings:
        named = fields.get("tissues", GTEX_TISSUES if tissues == len(GTEX_TISSUES) else None)
        if named is None or len(named) != tissues:
            differs = "not the 30 GTEx tissues" if named is None else f"but {source} names {len(named)} tissues"
            raise CheckpointError(
                f"the head predicts {tissues} outputs, {differs}; name them in order with --set tissues=NAME1,NAME2,..."
            )
        if "tissues" not in fields:
            origins["tissues"] = f"the {tissues} GTEx tissues of the official model (from the head's {tissues} outputs)"
    for key, value in settings.items():
        fields[key] = value
        origins[key] = "--set"

    base = IsoformerConfig.from_preset(preset)
    # Input limits follow from the position tables (NT: <cls> plus one spare; ESM: <cls>, <eos> and two spare).
    if "max_rna_tokens" not in fields:
        positions = fields.get("nt_max_position_embeddings", base.nt_max_position_embeddings)
        fields["max_rna_tokens"] = min(base.max_rna_tokens, positions - 2)
    if "max_protein_residues" not in fields:
        positions = fields.get("esm_max_position_embeddings", base.esm_max_position_embeddings)
        fields["max_protein_residues"] = min(base.max_protein_residues, positions - 4)
    fields.setdefault("modalities", ["dna", "rna", "protein"])
    fields.setdefault("aggregation", "cross-attention")
    config = IsoformerConfig.from_preset(preset, **fields)
    for key in ARCHITECTURE_UNKNOWNS:
        origins.setdefault(key, f"default ({preset} preset)")
    return config, origins, notes


def _huggingface_generic_fields():
    return set(PretrainedConfig().to_dict())


# ------------------------------------------------------------------------------------------------
# Tokenizer files
# ------------------------------------------------------------------------------------------------


def check_vocabularies(folder):
    """Compare the official tokenizer vocabularies in ``folder`` (when present) with this tool's tokenizers.

    Returns the names of the files checked. Raises CheckpointError naming the file and the first difference:
    a different vocabulary would make every input token mean something else to the model.
    """
    expected = {
        # The DNA tokenizer's trailing <unk> is never produced; the protein file adds an unused <bos>.
        "dna_vocab_list.txt": list(DNA_VOCABULARY),
        "rna_vocab_list.txt": list(RnaTokenizer.vocabulary()),
        "protein_vocab_list.txt": list(PROTEIN_VOCABULARY),
    }
    checked = []
    for name, ours in expected.items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as handle:
            theirs = handle.read().split()
        if theirs[: len(ours)] != ours:
            position = next((i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b), min(len(theirs), len(ours)))
            found = theirs[position] if position < len(theirs) else "the end of the file"
            raise CheckpointError(
                f"{path}: token {position} is {found!r}, this tool's tokenizer has "
                f"{ours[position] if position < len(ours) else 'nothing'!r} there; the model would read other "
                "tokens than it was trained on (is this the InstaDeepAI/isoformer release?)"
            )
        checked.append(name)
    return checked


# ------------------------------------------------------------------------------------------------
# Conversion
# ------------------------------------------------------------------------------------------------


class ConversionResult:
    """What :func:`convert_official` did.

    Attributes:
        plan: the :class:`~isoformer_cli.models.conversion.key_mapping.ConversionPlan` (matched, ignored,
            unmatched keys).
        layout: the :class:`~isoformer_cli.models.conversion.layout.Layout` found.
        config: the :class:`IsoformerConfig` built; origins: where each architecture field came from.
        checks: the :class:`~isoformer_cli.models.conversion.self_check.SelfCheck` results; notes: report lines.
        metadata: the provenance written into the checkpoint.
    """

    def __init__(self, plan, layout, config, origins, notes, checks, metadata):
        self.plan = plan
        self.layout = layout
        self.config = config
        self.origins = origins
        self.notes = notes
        self.checks = checks
        self.metadata = metadata


def convert_official(source, output, preset="official", mapping_file=None, overwrite=False, settings=None,
                     source_sha256=None, extra_metadata=None, on_written=None):
    """Convert the official weights at ``source`` into our checkpoint folder ``output``.

    Args:
        source: the downloaded folder (``pytorch_model.bin`` + ``config.json`` + tokenizer files) or the file.
        preset: fills the architecture fields that neither config.json nor the shapes determine.
        mapping_file: extra ``REGEX<TAB>REPLACEMENT`` rows, tried before the detected ones.
        settings: ``{field: value}`` (``--set``), applied last.
        source_sha256: the weights' SHA-256 when already known (skips hashing the file again).
        extra_metadata / on_written: passed to :func:`save_checkpoint` (provenance, manifest).

    Returns:
        :class:`ConversionResult`. Raises :class:`CheckpointError` naming the problem when any tensor of ours
        would stay uninitialised, a shape differs, spellings disagree, the layout is ambiguous or a self-check
        fails; nothing is written then. Unmatched official tensors are reported, not fatal.
    """
    refuse_shared_files({"OFFICIAL": source, "--mapping": mapping_file}, {}, output_folders={"-o/--output": output})
    check_folder_target(output, overwrite)
    with lock_outputs(folders=[output]):
        return _convert_official(source, output, preset, mapping_file, overwrite, settings, source_sha256,
                                 extra_metadata, on_written)


def _user_rows(mapping_file):
    return read_mapping_file(mapping_file) if mapping_file else ()


def _prepare(weights, shapes, preset, mapping_file, settings):
    """``(layout, config, origins, notes, rows, source_config)`` for a weights file's ``shapes``.

    ``source_config`` is the architecture as the source states it (config.json and the shapes win over
    ``--set``), the configuration the self-check references are built with.
    """
    user_rows = _user_rows(mapping_file)
    layout = detect_layout(shapes, user_rows)
    missing = layout.missing()
    if missing:
        groups = {}
        for key in shapes:
            groups[key.split(".", 1)[0]] = groups.get(key.split(".", 1)[0], 0) + 1
        shown = ", ".join(f"{group} ({count} tensors)" for group, count in list(groups.items())[:8])
        raise CheckpointError(
            f"{weights}: found no {', no '.join(missing)} (the file's top-level groups: {shown}); "
            "see where each key goes with --list-keys and map the rest with --mapping FILE"
        )
    official, official_path = _official_config(weights)
    config, origins, notes = derive_config(official, official_path, layout, preset, settings)
    stated = set(official or ()) | set(layout.fields)
    unstated = {key: value for key, value in (settings or {}).items() if key not in stated}
    source_config = derive_config(official, official_path, layout, preset, unstated)[0] if unstated != settings \
        else config
    return layout, config, origins, notes, user_rows + layout.rows, source_config


def _encoder_sources(config, layout, plan, tensors):
    """``{modality: {name in the encoder's own layout: tensor}}`` for the self-checks."""
    sources = {}
    for modality in config.modalities:
        kind = f"{modality}_encoder"
        component = layout.sources.get(kind)
        if component is not None:
            sources[modality] = {name: tensors[key] for name, key in component.sub_keys.items()}
        else:
            # Filled by the user's rows: the reference reads the tensors under the names the rows gave them.
            prefix = f"{kind}.{config.encoder(modality).inner_prefix}"
            sources[modality] = {
                ours[len(prefix):]: tensors[key] for key, ours in plan.targets.items()
                if ours.startswith(prefix) and key not in plan.duplicates
            }
    return sources


def _convert_official(source, output, preset, mapping_file, overwrite, settings, source_sha256, extra_metadata,
                      on_written):
    weights = find_official_weights(source)
    tensors = load_weights_file(weights)
    shapes = {key: tuple(tensor.shape) for key, tensor in tensors.items()}
    layout, config, origins, notes, rows, source_config = _prepare(weights, shapes, preset, mapping_file, settings)
    for line in layout.report():
        log.info("found %s", line)
    vocabularies = check_vocabularies(os.path.dirname(os.path.abspath(weights)))
    if vocabularies:
        log.info("tokenizer files match this tool's tokenizers: %s", ", ".join(vocabularies))
    for level, note in notes:
        log.log(level, "%s", note)
    assumed = [f"{key}={getattr(config, key)!r}" for key in ARCHITECTURE_UNKNOWNS if origins[key].startswith("default")]
    if assumed:
        log.warning("assumed (not in config.json, not readable from the weights): %s; change any with --set KEY=VALUE",
                    ", ".join(assumed))

    model = build_model(config, initialise=False)
    plan = plan_conversion(shapes, model, rows, weights)
    plan.check_values(tensors)
    if plan.refused:
        hint = ""
        if plan.unmatched:
            hint = " (see where each key goes with --list-keys; correct the key mapping with --mapping FILE)"
        raise CheckpointError(f"{weights}: cannot convert: {plan.problems()}; nothing was written{hint}")
    for key, shape in sorted(plan.unmatched):
        log.warning("unmatched official tensor %s %s (not copied)", key, format_shape(shape))
    fill_module(model, plan.tensors_for(tensors), weights)
    model.eval()
    checks = check_encoders(model, _encoder_sources(config, layout, plan, tensors), reference_config=source_config)

    metadata = {
        "converted_from": os.path.abspath(weights),
        "source_sha256": source_sha256 or sha256_file(weights).removeprefix("sha256:"),
        "key_mapping": "found by key signatures and shapes"
        + (f", with the rows of {mapping_file}" if mapping_file else ""),
        "layout": "; ".join(layout.report()),
        "configuration_sources": json.dumps({key: origins[key] for key in sorted(origins)}),
        # The unpublished settings are guesses until `isoformer models calibrate` finds them from data.
        CALIBRATED_KEY: "false",
        **metadata_of(checks),
    }
    if notes:
        metadata["official_config_notes"] = "; ".join(note for _, note in notes)
    if vocabularies:
        metadata["tokenizer_files_checked"] = ", ".join(vocabularies)
    metadata.update(extra_metadata or {})
    save_checkpoint(model, output, overwrite=overwrite, metadata=metadata, on_written=on_written)
    return ConversionResult(plan, layout, config, origins, notes, checks, metadata)


def list_official_keys(source, preset="official", mapping_file=None, settings=None):
    """Text listing every key of the official weights, grouped by top-level prefix, with its destination.

    First the components found (or why the layout could not be settled), then per group the number of
    tensors and of elements, then per key (tab-separated): name, shape, and where it goes (our key,
    ``ignored: reason`` or ``UNMATCHED``).
    """
    weights = find_official_weights(source)
    shapes = weights_file_shapes(weights)
    lines = [f"# {weights}: {len(shapes):,} tensors, {sum(_numel(s) for s in shapes.values()):,} elements"]
    try:
        layout, config, _, _, rows, _ = _prepare(weights, shapes, preset, mapping_file, settings)
        lines.extend(f"# found {line}" for line in layout.report())
    except (CheckpointError, InputError) as exc:
        lines.append(f"# layout not settled: {exc}")
        config, rows = IsoformerConfig.from_preset(preset, **(settings or {})), _user_rows(mapping_file)
    model = build_model(config, device="meta")
    plan = plan_conversion(shapes, model, rows, weights)
    destination = dict(plan.targets)
    destination.update({key: f"ignored: {reason}" for key, reason in plan.ignored})
    destination.update({key: "UNMATCHED" for key, _ in plan.unmatched})
    for key, ours, _, expected in plan.wrong_shape:
        destination[key] = f"{ours} (WRONG SHAPE: model has {format_shape(expected)})"

    groups = {}
    for key in shapes:
        groups.setdefault(key.split(".", 1)[0], []).append(key)
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


def mapping_rows_text(source, mapping_file=None):
    """The rows the detection finds for ``source``, in ``--mapping`` file format (to edit and pass back)."""
    weights = find_official_weights(source)
    layout = detect_layout(weights_file_shapes(weights), _user_rows(mapping_file))
    return layout.mapping_text()


def _numel(shape):
    count = 1
    for size in shape:
        count *= size
    return count


__all__ = ["COMPONENT_TARGETS", "ConversionResult", "convert_official", "derive_config", "find_official_weights",
           "list_official_keys", "mapping_rows_text"]
