"""Our checkpoint format: a folder with ``config.json`` (an :class:`IsoformerConfig`) and ``model.safetensors``
(every parameter and persistent buffer of :class:`IsoformerModel`, one name per tensor).

:func:`load_checkpoint` validates the config and the file's header against the model before loading anything;
:func:`save_checkpoint` writes into a hidden temporary folder beside the target and renames it into place at the
end, so a failed save never leaves a half-written checkpoint. Weight files and tensor matching:
:mod:`isoformer_cli.models.weights`.
"""

import contextlib
import logging
import os
import shlex
import shutil
import sys
import tempfile

import torch

from isoformer_cli.errors import CheckpointError, OutputError
from isoformer_cli.formats.config_fields import check_field_types, kinds_of_default
from isoformer_cli.models.weights import (
    compare_shapes,
    fill_module,
    load_weights_file,
    name_some,
    read_safetensors_into,
    read_json_file,
    tensor_aliases,
    transformers_renames,
    weights_file_shapes,
)

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

# Fields a config.json may carry beyond IsoformerConfig's own (written by other tools or versions).
_TOLERATED_CONFIG_FIELDS = {"_name_or_path", "auto_map", "transformers_version", "architectures", "model_type"}


# ------------------------------------------------------------------------------------------------
# Our checkpoint format
# ------------------------------------------------------------------------------------------------


def _known_config_fields():
    from isoformer_cli.models.configuration import IsoformerConfig

    return set(IsoformerConfig().to_dict()) | _TOLERATED_CONFIG_FIELDS


def config_from_dict(fields, source):
    """Build an :class:`IsoformerConfig` from the fields of a config.json, refusing unknown fields."""
    from isoformer_cli.errors import InputError
    from isoformer_cli.models.configuration import IsoformerConfig

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
    import inspect

    from isoformer_cli.models.configuration import IsoformerConfig
    from isoformer_cli.models.encoders import encoder_config_fields

    kinds = {}
    for name, parameter in inspect.signature(IsoformerConfig.__init__).parameters.items():
        if parameter.default is not inspect.Parameter.empty:
            kinds[name] = kinds_of_default(parameter.default)
    for name, default in encoder_config_fields().items():
        kinds[name] = kinds_of_default(default)
    kinds["modalities"] = ("strings", "string")  # ["dna", "rna"] or "dna,rna"
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
    import json

    from isoformer_cli.errors import InputError

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


def load_config(folder):
    """The :class:`IsoformerConfig` of a checkpoint folder (``config.json``), with clear errors."""
    folder = os.fspath(folder)
    _check_checkpoint_folder(folder)
    path = os.path.join(folder, CONFIG_FILE)
    return config_from_dict(read_json_file(path, "model configuration"), path)


def _check_checkpoint_folder(folder):
    if not os.path.exists(folder):
        raise CheckpointError(f"{folder}: no such checkpoint folder")
    if not os.path.isdir(folder):
        raise CheckpointError(f"{folder}: not a folder; a checkpoint is a folder with {CONFIG_FILE} and {WEIGHTS_FILE}")


def build_model(config, device=None, initialise=True):
    """A fresh :class:`IsoformerModel`; ``device="meta"`` builds it without memory (shapes and counts only).

    With ``initialise=False`` the random initialisation is skipped (parameters hold whatever memory held);
    use it only when every tensor is overwritten next, as :func:`load_checkpoint` does.
    """
    from isoformer_cli.models.modeling import IsoformerModel

    try:
        if device is not None:
            with torch.device(device):
                return IsoformerModel(config)
        if initialise:
            return IsoformerModel(config)
        with skip_weight_initialisation():
            return IsoformerModel(config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot build the model from this configuration: {exc}") from exc


@contextlib.contextmanager
def skip_weight_initialisation():
    """transformers' switch that turns every ``torch.nn.init`` call into a no-op (the location moved in v5).

    For modules whose every tensor is overwritten next: random initialisation of a full-size encoder
    costs tens of seconds on a CPU.
    """
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers 4.x
        from transformers.modeling_utils import no_init_weights
    with no_init_weights():
        yield


def check_checkpoint(folder):
    """Validate our checkpoint folder without reading tensor data; return ``(config, weights_path, renames)``.

    Checks: the folder exists, ``config.json`` is valid JSON with known fields that build a valid model,
    ``model.safetensors`` exists and its header is intact, and every tensor of the model is in the file
    with the right shape and nothing else is. ``renames`` maps each name in the file to the model's
    name (None: a recomputed buffer to skip), see :func:`transformers_renames`.
    """
    folder = os.fspath(folder)
    _check_checkpoint_folder(folder)
    weights = os.path.join(folder, WEIGHTS_FILE)
    if not os.path.isfile(weights):
        hint = ""
        if os.path.isfile(os.path.join(folder, "pytorch_model.bin")):
            hint = "; this looks like the official InstaDeepAI/isoformer release: run 'isoformer convert' on it first"
        raise CheckpointError(f"{weights}: no such file (the checkpoint's weights are missing){hint}")
    config = load_config(folder)
    skeleton = build_model(config, device="meta")
    expected = {name: tuple(t.shape) for name, t in skeleton.state_dict(keep_vars=True).items()}
    file_shapes = weights_file_shapes(weights)
    # IsoformerModel.save_pretrained (transformers) may spell a few names its own way; undo that.
    renames = transformers_renames(file_shapes, expected)
    offered = {renames[name]: shape for name, shape in file_shapes.items() if renames[name] is not None}
    mismatch = compare_shapes(expected, tensor_aliases(skeleton), offered)
    if mismatch:
        raise CheckpointError(f"{weights} does not match the model: {mismatch.describe()}; {_rebuild_hint(folder)}")
    return config, weights, renames


def _rebuild_hint(folder):
    return (
        f"{os.path.join(folder, WEIGHTS_FILE)} was not written for {os.path.join(folder, CONFIG_FILE)}; "
        "re-create the checkpoint"
    )


def checkpoint_metadata(weights_path):
    """The string metadata of a safetensors header (provenance written by :func:`save_checkpoint`)."""
    from safetensors import safe_open

    with safe_open(weights_path, framework="pt", device="cpu") as handle:
        return dict(handle.metadata() or {})


def load_checkpoint(folder, device="cpu"):
    """Load our checkpoint folder (``config.json`` + ``model.safetensors``) into an :class:`IsoformerModel`.

    Everything :func:`check_checkpoint` checks is checked before any tensor data is read. Returns the
    model in eval mode on ``device``, with the file's values bit for bit.
    """
    folder = os.fspath(folder)
    config, weights, renames = check_checkpoint(folder)
    # Every tensor is overwritten next (check_checkpoint found each one in the file), so skip the random
    # initialisation.
    model = build_model(config, initialise=False)
    aliases = tensor_aliases(model)
    own = model.state_dict(keep_vars=True)
    offered = [target for target in renames.values() if target is not None]
    if len({aliases[target] for target in offered}) == len(offered):
        # One file tensor per model tensor (what save_checkpoint writes): read each into its place, so the
        # process never holds the file's tensors and the model's at once.
        destinations = {name: own[aliases[target]].data for name, target in renames.items() if target is not None}
        read_safetensors_into(weights, destinations)
    else:
        # A tensor under two names (a file written by other tools): fill_module checks that the copies agree.
        tensors = {renames[name]: t for name, t in load_weights_file(weights).items() if renames[name] is not None}
        fill_module(model, tensors, weights, fix=_rebuild_hint(folder))
    model.eval()
    return model.to(device) if device not in (None, "cpu") else model


def checkpoint_state(model):
    """``{name: contiguous CPU tensor}`` of every parameter and persistent buffer, one name per tensor."""
    aliases = tensor_aliases(model)
    return {
        name: tensor.detach().to("cpu").contiguous()
        for name, tensor in model.state_dict().items()
        if aliases[name] == name
    }


def save_checkpoint(model, folder, overwrite=False, metadata=None, on_written=None):
    """Write ``model`` as ``folder/config.json`` + ``folder/model.safetensors``, atomically.

    Refuses an existing non-empty ``folder`` unless ``overwrite``. The safetensors header records
    ``format: pt``, the tool version and the command line, plus ``metadata`` (str -> str: provenance).
    ``on_written(partial_folder)``, when given, runs after both files are written and before the folder is
    moved into place (to add files that describe them, such as a manifest with their checksums); if it
    raises, nothing is written.
    """
    from safetensors.torch import save_file

    from isoformer_cli import __version__

    header = {"format": "pt", "isoformer_version": __version__, "command_line": shlex.join(sys.argv)}
    header.update({str(key): str(value) for key, value in (metadata or {}).items()})
    with atomic_folder(folder, overwrite=overwrite) as partial:
        model.config.to_json_file(os.path.join(partial, CONFIG_FILE), use_diff=False)
        save_file(checkpoint_state(model), os.path.join(partial, WEIGHTS_FILE), metadata=header)
        if on_written is not None:
            on_written(partial)
    log.info("wrote checkpoint %s", folder)


def _default_permissions(folder):
    """Give ``folder`` and its files the permissions of a plain mkdir/open under the umask.

    ``mkdtemp`` makes a private 0700 folder; a checkpoint is usually shared within a lab.
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for entry in os.scandir(folder):
        if entry.is_file(follow_symlinks=False):
            os.chmod(entry.path, 0o666 & ~umask)


def check_folder_target(target, overwrite=False):
    """OutputError when ``target`` cannot become a new checkpoint folder; its absolute path otherwise.

    Its parent must exist and be writable; an existing ``target`` must be a folder, and empty
    unless ``overwrite``. (A FIFO or file there is refused, never replaced.)
    """
    target = os.path.abspath(os.fspath(target))
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        raise OutputError(f"{target}: output folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{target}: folder {parent} is not writable; choose another output path")
    if os.path.lexists(target):
        if not os.path.isdir(target):
            raise OutputError(f"{target}: exists and is not a folder; choose another output path")
        if os.listdir(target) and not overwrite:
            raise OutputError(f"{target}: folder exists and is not empty; choose a new output folder or use --force")
    return target


@contextlib.contextmanager
def atomic_folder(target, overwrite=False):
    """Yield a hidden temporary folder beside ``target``; rename it to ``target`` when the block succeeds.

    An existing empty folder at ``target`` is replaced; an existing non-empty one only with
    ``overwrite`` (the old content is removed once the new folder is in place). On any exception the
    temporary folder is removed and ``target`` is untouched.
    """
    target = check_folder_target(target, overwrite)
    parent, name = os.path.split(target)
    partial = tempfile.mkdtemp(prefix=f".{name}.", suffix=".isoformer-partial", dir=parent)
    try:
        yield partial
        _default_permissions(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    previous = None
    try:
        if os.path.exists(target):
            # Move the old folder aside first: rename() cannot replace a non-empty folder.
            previous = tempfile.mkdtemp(prefix=f".{name}.", suffix=".isoformer-old", dir=parent)
            os.replace(target, os.path.join(previous, "old"))
        os.replace(partial, target)
    except OSError as exc:
        if previous is not None and os.path.exists(os.path.join(previous, "old")) and not os.path.exists(target):
            os.replace(os.path.join(previous, "old"), target)
        shutil.rmtree(partial, ignore_errors=True)
        raise OutputError(f"{target}: cannot move the finished checkpoint into place: {exc.strerror}") from exc
    finally:
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
