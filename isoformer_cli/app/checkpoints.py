"""The commands that make or describe one checkpoint, as plain functions (the CLI and tests call the same ones):
``isoformer convert`` (the official release into our format), ``isoformer init`` (pretrained encoder folders
into a new model) and ``isoformer inspect`` (what a checkpoint or preset is).

``inspect NAME`` finds its checkpoint the way every ``--checkpoint`` does (a folder, a name in the model folder,
or ``demo``), through :func:`~isoformer_cli.models.distribution.locate.locate_checkpoint`.
"""

import json
import logging
from dataclasses import dataclass, field

from isoformer_cli.errors import InputError
from isoformer_cli.models.checkpoint.schema import parse_config_settings
from isoformer_cli.models.checkpoint.summary import format_summary, inspect_model
from isoformer_cli.models.conversion.convert import convert_official, list_official_keys, mapping_rows_text
from isoformer_cli.models.conversion.pretrained import init_model
from isoformer_cli.models.distribution.locate import locate_checkpoint

log = logging.getLogger(__name__)

__all__ = ["ConvertConfig", "InitConfig", "parse_config_settings", "run_convert", "run_init", "run_inspect"]


@dataclass(frozen=True)
class ConvertConfig:
    """``isoformer convert``: ``official`` (the release folder or its ``pytorch_model.bin``) into ``output``.

    ``list_keys`` / ``show_mapping``: only describe the conversion (the text :func:`run_convert` returns);
    ``settings``: ``--set`` fields (parsed with :func:`parse_config_settings`); ``mapping``: a file of extra
    key-mapping rows; ``force``: replace a non-empty ``output``.
    """

    official: str
    output: str | None = None
    list_keys: bool = False
    show_mapping: bool = False
    preset: str = "official"
    settings: dict = field(default_factory=dict)
    mapping: str | None = None
    force: bool = False

    def __post_init__(self):
        if (self.list_keys or self.show_mapping) and self.output:
            raise InputError("--list-keys and --show-mapping print to stdout; they take no -o/--output")
        if not (self.list_keys or self.show_mapping or self.output):
            raise InputError("missing -o/--output DIR (or use --list-keys)")


def run_convert(config: ConvertConfig) -> str | None:
    """Convert (returns None) or describe the conversion (returns the text to print)."""
    if config.show_mapping:
        return mapping_rows_text(config.official, mapping_file=config.mapping)
    if config.list_keys:
        return list_official_keys(config.official, preset=config.preset, mapping_file=config.mapping,
                                  settings=config.settings)
    result = convert_official(config.official, config.output, preset=config.preset, mapping_file=config.mapping,
                              overwrite=config.force, settings=config.settings)
    log.info("converted %s: %s; wrote %s", config.official, result.plan.summary(), config.output)
    return None


@dataclass(frozen=True)
class InitConfig:
    """``isoformer init``: a new checkpoint ``output`` from the encoder folders (``{"dna_encoder" |
    "rna_encoder" | "protein_encoder": folder or None}``), a preset and overrides of it."""

    output: str
    encoder_folders: dict = field(default_factory=dict)
    preset: str = "official"
    modalities: str | None = None
    aggregation: str | None = None
    seed: int = 0
    force: bool = False


def run_init(config: InitConfig):
    """Build and write the checkpoint (see :func:`~isoformer_cli.models.conversion.pretrained.init_model`)."""
    overrides = {}
    if config.modalities:
        overrides["modalities"] = config.modalities
    if config.aggregation:
        overrides["aggregation"] = config.aggregation
    return init_model(config.output, preset=config.preset, encoder_folders=config.encoder_folders,
                      overrides=overrides, seed=config.seed, overwrite=config.force)


def run_inspect(checkpoint: str | None = None, preset: str | None = None, model_dir: str | None = None,
                as_json: bool = False) -> str:
    """The text ``isoformer inspect`` prints for ``checkpoint`` (a folder, a name in the model folder
    ``model_dir``, or ``demo``) or for a ``preset``: JSON with ``as_json``, one fact per line otherwise."""
    if (checkpoint is None) == (preset is None):
        raise InputError("give a CHECKPOINT (a folder, a name in the model folder, or demo) or --preset NAME "
                         "(exactly one)")
    checked = locate_checkpoint(checkpoint, model_dir) if checkpoint is not None else None
    summary = inspect_model(checked=checked, preset=preset)
    return json.dumps(summary, indent=2) + "\n" if as_json else format_summary(summary)
