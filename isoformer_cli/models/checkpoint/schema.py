"""The schema of our checkpoint format: the two file names of a checkpoint folder and the fields its
``config.json`` may hold (an :class:`~isoformer_cli.models.network.configuration.IsoformerConfig`'s own and the
encoders' declared ones), with their JSON kinds; also ``--set KEY=VALUE`` parsed against the same kinds.
"""

import inspect
import json

from isoformer_cli.errors import CheckpointError, InputError
from isoformer_cli.formats.config_fields import check_field_types, kinds_of_default
from isoformer_cli.models.checkpoint.weights import name_some
from isoformer_cli.models.network.configuration import IsoformerConfig
from isoformer_cli.models.network.encoders import encoder_config_fields

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

# Fields a config.json may carry beyond IsoformerConfig's own (written by other tools or versions).
_TOLERATED_CONFIG_FIELDS = {"_name_or_path", "auto_map", "transformers_version", "architectures", "model_type"}


def _known_config_fields():
    return set(IsoformerConfig().to_dict()) | _TOLERATED_CONFIG_FIELDS


def config_from_dict(fields, source):
    """Build an :class:`IsoformerConfig` from the fields of a config.json, refusing unknown fields."""
    model_type = fields.get("model_type", IsoformerConfig.model_type)
    if model_type != IsoformerConfig.model_type:
        raise CheckpointError(
            f"{source}: model_type is {model_type!r}, not 'isoformer'; this is not an isoformer checkpoint "
            "(pretrained encoders go through 'isoformer init', the official release through 'isoformer convert')"
        )
    unknown = sorted(set(fields) - _known_config_fields())
    if unknown:
        raise CheckpointError(
            f"{source}: unknown configuration fields {name_some(unknown)}; the file was written by another "
            "version or edited by hand (remove the fields or use a matching isoformer version)"
        )
    kinds = _config_field_kinds()
    check_field_types(fields, kinds, source, error=CheckpointError)
    # JSON writes 10000.0 as 10000; the encoders' configurations insist on a float.
    fields = {key: float(value) if kinds.get(key) == ("number",) else value for key, value in fields.items()}
    try:
        return IsoformerConfig(**fields)
    except (InputError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: {exc}") from exc


def _config_field_kinds():
    """``{field: accepted JSON kinds}`` of IsoformerConfig's own fields and the encoders' declared ones, from
    their defaults."""
    kinds = {}
    for name, parameter in inspect.signature(IsoformerConfig.__init__).parameters.items():
        if parameter.default is not inspect.Parameter.empty:
            kinds[name] = kinds_of_default(parameter.default)
    for name, default in encoder_config_fields().items():
        kinds[name] = kinds_of_default(default)
    kinds["modalities"] = ("strings", "string")  # ["dna", "rna"] or "dna,rna"
    # Positions (tss, absolute) or fractions (pool_window_reference=fraction); the configuration checks which.
    kinds["pool_window_start"] = kinds["pool_window_end"] = ("number", "null")
    return kinds


def config_field_names():
    """Names of every field an :class:`IsoformerConfig` takes (its own and the encoders' declared ones)."""
    return set(_config_field_kinds())


def parse_config_settings(texts):
    """``{field: value}`` from ``KEY=VALUE`` strings (``--set``), each value checked against the field's type.

    A value is read as JSON when it is valid JSON (``8``, ``1e-5``, ``true``, ``null``, ``["a", "b"]``) and
    as a plain string otherwise; a list field (``tissues``, ``modalities``) also takes a comma-separated
    string. Raises :class:`InputError` naming the setting for an unknown field or a wrong type.
    """

    kinds = _config_field_kinds()
    settings = {}
    for text in texts or ():
        key, separator, raw = text.partition("=")
        key = key.strip()
        if not separator or not key:
            raise InputError(f"--set {text!r}: expected KEY=VALUE, e.g. --set head_activation=softplus")
        if key not in kinds:
            close = sorted(name for name in kinds if key.split("_")[0] in name)[:6]
            hint = f" (fields like it: {', '.join(close)})" if close else ""
            raise InputError(f"--set {text!r}: {key!r} is not a configuration field{hint}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        if "strings" in kinds[key] and isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if kinds[key] == ("number",) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        check_field_types({key: value}, {key: kinds[key]}, f"--set {text!r}", error=InputError)
        settings[key] = value
    return settings
