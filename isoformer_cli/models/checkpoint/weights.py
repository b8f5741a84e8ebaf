"""Reading weights files safely, and putting a dictionary of tensors into a module, all or nothing.

* Weight files: :func:`load_weights_file` reads ``.safetensors`` (safetensors) or ``.bin`` / ``.pt`` /
  ``.pth`` (``torch.load(weights_only=True, mmap=True)``: plain tensors only, nothing else is ever
  unpickled). :func:`load_weights_folder` finds the weights of a Hugging Face-style folder
  (``model.safetensors``, ``pytorch_model.bin``, or a sharded ``*.index.json``).
* Matching: :func:`fill_module` puts a ``{name: tensor}`` dictionary into a module and refuses, in one
  message naming the first few tensors and the counts, when tensors are missing, unexpected or of the
  wrong shape. Names that share one tensor inside the module (aliases) count as one.

Errors are :class:`~isoformer_cli.errors.CheckpointError` naming the file and the tensors.
"""

import json
import logging
import os
import pickle
import re
import zipfile

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from isoformer_cli.errors import CheckpointError

log = logging.getLogger(__name__)

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth")
# Weight file names of a Hugging Face folder, in order of preference.
FOLDER_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
FOLDER_INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")

# Buffers that every module recomputes from its configuration (rotary frequencies, position ids): a
# file may lack them or spell them differently without that being an error.
COMPUTED_BUFFER_PATTERN = re.compile(r"(^|\.)(inv_freq|position_ids)$")


# ------------------------------------------------------------------------------------------------
# Messages
# ------------------------------------------------------------------------------------------------


def name_some(names, limit=5):
    """``"a, b, c and 4 more"``: the first ``limit`` names (sorted) and how many were left out."""
    names = sorted(names)
    shown = ", ".join(names[:limit])
    if len(names) > limit:
        shown += f" and {len(names) - limit:,} more"
    return shown


def format_shape(shape):
    return "[" + ", ".join(str(size) for size in shape) + "]"


# ------------------------------------------------------------------------------------------------
# Weight files
# ------------------------------------------------------------------------------------------------


def _check_file(path):
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file")
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a folder, expected a weights file")
    if not os.access(path, os.R_OK):
        raise CheckpointError(f"{path}: not readable (check its permissions)")


def _suffix_kind(path):
    lowered = path.lower()
    if lowered.endswith(SAFETENSORS_SUFFIXES):
        return "safetensors"
    if lowered.endswith(PICKLE_SUFFIXES):
        return "torch"
    raise CheckpointError(
        f"{path}: unknown weights file type; expected a name ending in .safetensors, .bin, .pt or .pth"
    )


def _load_safetensors(path):
    try:
        return load_file(path, device="cpu")
    except SafetensorError as exc:
        raise CheckpointError(
            f"{path}: not a valid safetensors file, it is truncated or corrupted ({exc}); download or write it again"
        ) from exc


def _load_torch_file(path):
    """Plain tensors only (``weights_only=True``); memory-mapped when the file is a zip archive."""
    mmap = zipfile.is_zipfile(path)
    if not mmap and os.path.getsize(path) > 0:
        # Not a zip archive: either the legacy torch.save format (readable, without mmap) or damage.
        log.debug("%s is not a zip archive; reading it without memory mapping", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):
            raise CheckpointError(
                f"{path}: contains Python objects other than tensors; refusing to unpickle them "
                "(save a plain state dict of tensors, or convert it to .safetensors)"
            ) from exc
        raise CheckpointError(f"{path}: not a PyTorch weights file, or it is truncated or corrupted") from exc
    except Exception as exc:  # noqa: BLE001 - damaged files fail in many ways inside torch's unpickler
        raise CheckpointError(
            f"{path}: not a PyTorch weights file, or it is truncated or corrupted "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}); download it again"
        ) from exc


def _check_tensor_dictionary(path, content):
    if not isinstance(content, dict):
        raise CheckpointError(
            f"{path}: holds a {type(content).__name__}, expected a dictionary of named tensors (a state dict)"
        )
    not_tensors = [str(key) for key, value in content.items() if not (isinstance(key, str) and torch.is_tensor(value))]
    if not_tensors:
        raise CheckpointError(
            f"{path}: {len(not_tensors):,} entries are not named tensors ({name_some(not_tensors)}); "
            "expected a plain state dict (for a training checkpoint, save model.state_dict() alone)"
        )
    return content


def load_weights_file(path):
    """Read a weights file into ``{name: tensor}`` on the CPU, never unpickling anything but tensors.

    ``.safetensors`` through safetensors; ``.bin`` / ``.pt`` / ``.pth`` through
    ``torch.load(weights_only=True, mmap=True)`` (memory-mapped, so a multi-GB file is not copied into
    memory up front). Raises :class:`CheckpointError` for a missing, unreadable, truncated or corrupted
    file, and for content that is not a dictionary of tensors.
    """
    path = os.fspath(path)
    _check_file(path)
    if _suffix_kind(path) == "safetensors":
        content = _load_safetensors(path)
    else:
        content = _load_torch_file(path)
    return _check_tensor_dictionary(path, content)


#: safetensors dtype names -> torch dtypes (the ones a model's parameters and buffers use).
SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


def read_safetensors_into(path, destinations):
    """Read the tensors of a ``.safetensors`` file straight into existing tensors, one at a time.

    ``destinations`` maps names in the file to contiguous CPU tensors of the same shape (names left out are
    skipped). A tensor of the destination's dtype is read into its memory with ``readinto``; another dtype is
    read into a temporary tensor and converted by ``copy_``. Why not ``safetensors.torch.load_file`` or
    ``safe_open``: both keep the whole file in the process's memory (a copy, or memory-mapped pages that count
    as resident) while the model holds its own copy, which doubled the peak memory of loading a 2.5 GB
    checkpoint (5.5 GB measured, against 2.5 GB for the model itself). The layout read here is the one
    the safetensors format specifies: an 8-byte little-endian header length, a JSON header giving each
    tensor's dtype, shape and ``data_offsets`` (relative to the end of the header), then the data.

    Raises:
        CheckpointError: a header entry that does not describe the destination (dtype unknown, shape or
            byte count different, data beyond the end of the file).
    """
    size = os.path.getsize(path)
    with open(path, "rb", buffering=0) as stream:
        header_length = int.from_bytes(stream.read(8), "little")
        try:
            header = json.loads(stream.read(header_length))
        except (UnicodeDecodeError, ValueError) as exc:
            raise CheckpointError(f"{path}: the safetensors header is not valid JSON; write the file again") from exc
        data_start = 8 + header_length
        for name, destination in destinations.items():
            entry = header.get(name)
            dtype = SAFETENSORS_DTYPES.get(entry.get("dtype")) if isinstance(entry, dict) else None
            if dtype is None:
                raise CheckpointError(f"{path}: tensor {name} is missing or has an unsupported dtype in the header")
            begin, end = entry["data_offsets"]
            shape = tuple(entry["shape"])
            count = destination.numel()
            if shape != tuple(destination.shape) or end - begin != count * dtype.itemsize \
                    or data_start + end > size:
                raise CheckpointError(f"{path}: tensor {name} in the header ({entry['dtype']} {list(shape)}, bytes "
                                      f"{begin}-{end}) does not fit the model or the file; write the file again")
            in_place = destination.dtype == dtype and destination.is_contiguous()
            target = destination if in_place else torch.empty(shape, dtype=dtype)
            stream.seek(data_start + begin)
            buffer = memoryview(target.view(-1).view(torch.uint8).numpy()) if count else memoryview(b"")
            read = 0
            while read < len(buffer):
                got = stream.readinto(buffer[read:])
                if not got:
                    raise CheckpointError(f"{path}: the file ends inside tensor {name}; download or write it again")
                read += got
            if target is not destination:
                with torch.no_grad():
                    destination.copy_(target)


def weights_file_shapes(path):
    """``{name: shape}`` of a weights file; for safetensors read from the header alone (no tensor data)."""
    path = os.fspath(path)
    _check_file(path)
    if _suffix_kind(path) != "safetensors":
        return {name: tuple(tensor.shape) for name, tensor in load_weights_file(path).items()}

    try:
        with safe_open(path, framework="pt", device="cpu") as handle:
            return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except SafetensorError as exc:
        raise CheckpointError(
            f"{path}: not a valid safetensors file, it is truncated or corrupted ({exc}); download or write it again"
        ) from exc


def read_json_file(path, what="JSON file"):
    """Parse a JSON object from ``path``; errors name the file, line and column."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file (the {what} is missing)")
    try:
        with open(path, encoding="utf-8") as handle:
            content = json.load(handle)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON in the {what}: {exc.msg}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read the {what}: {exc}") from exc
    if not isinstance(content, dict):
        raise CheckpointError(f"{path}: the {what} must hold a JSON object, found a {type(content).__name__}")
    return content


def find_weights(folder):
    """Path of the weights of a Hugging Face-style folder: a single file or a shard index (``*.index.json``)."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise CheckpointError(f"{folder}: no such folder")
    for name in FOLDER_WEIGHT_FILES + FOLDER_INDEX_FILES:
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate):
            return candidate
    raise CheckpointError(
        f"{folder}: no weights file found; expected one of {', '.join(FOLDER_WEIGHT_FILES + FOLDER_INDEX_FILES)}"
    )


def load_weights_folder(folder):
    """``({name: tensor}, source)`` for a Hugging Face-style folder; ``source`` names the file(s) read."""
    path = find_weights(folder)
    if not path.endswith(".index.json"):
        return load_weights_file(path), path
    index = read_json_file(path, "shard index")
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{path}: the shard index has no 'weight_map' object")
    tensors = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = os.path.join(os.path.dirname(path), shard)
        tensors.update(load_weights_file(shard_path))
    missing = sorted(set(weight_map) - set(tensors))
    if missing:
        raise CheckpointError(
            f"{path}: {len(missing):,} tensors listed in the index are in no shard ({name_some(missing)})"
        )
    return tensors, path


# ------------------------------------------------------------------------------------------------
# Matching a dictionary of tensors to a module
# ------------------------------------------------------------------------------------------------


def tensor_aliases(module):
    """``{state-dict name: canonical name}``: names that share one parameter or buffer map to the first one."""
    canonical_by_identity = {}
    aliases = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        canonical = canonical_by_identity.setdefault(id(tensor), name)
        aliases[name] = canonical
    return aliases


class StateMismatch:
    """What differs between a module's tensors and a dictionary offered for it (names are the module's)."""

    def __init__(self, missing=(), unexpected=(), wrong_shape=(), conflicting=()):
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        self.wrong_shape = sorted(wrong_shape)  # (name, shape in the file, shape in the model)
        self.conflicting = sorted(conflicting)

    def __bool__(self):
        return bool(self.missing or self.unexpected or self.wrong_shape or self.conflicting)

    def describe(self, limit=5):
        """One line: each kind of problem with its count and the first ``limit`` tensors."""
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing):,} tensors missing ({name_some(self.missing, limit)})")
        if self.wrong_shape:
            shown = ", ".join(
                f"{name} is {format_shape(found)} in the file but {format_shape(expected)} in the model"
                for name, found, expected in self.wrong_shape[:limit]
            )
            more = f" and {len(self.wrong_shape) - limit:,} more" if len(self.wrong_shape) > limit else ""
            parts.append(f"{len(self.wrong_shape):,} with the wrong shape ({shown}{more})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected):,} unexpected ({name_some(self.unexpected, limit)})")
        if self.conflicting:
            parts.append(
                f"{len(self.conflicting):,} given twice with different values ({name_some(self.conflicting, limit)})"
            )
        return "; ".join(parts)


def transformers_renames(names, expected):
    """``{name in a file: module name, or None to drop}`` for names that differ only by a transformers quirk.

    transformers renames some tensors when it saves (version 5 writes ESM LayerNorm ``weight`` / ``bias``
    as ``gamma`` / ``beta``, and rotary ``inv_freq`` buffers under a ``*`` pattern) and undoes it when
    it loads. Names already in ``expected`` are kept. ``X.gamma`` / ``X.beta`` become ``X.weight`` /
    ``X.bias`` when the module has those; recomputed buffers (``inv_freq``, ``position_ids``) and
    ``*`` patterns that the module does not hold are dropped.
    """
    renamed = {}
    for name in names:
        if name in expected:
            renamed[name] = name
            continue
        for old, new in ((".gamma", ".weight"), (".beta", ".bias")):
            if name.endswith(old) and name[: -len(old)] + new in expected:
                renamed[name] = name[: -len(old)] + new
                break
        else:
            if "*" in name or COMPUTED_BUFFER_PATTERN.search(name):
                renamed[name] = None
            else:
                renamed[name] = name
    return renamed


def compare_shapes(expected_shapes, aliases, offered_shapes, allow_missing=COMPUTED_BUFFER_PATTERN):
    """Compare ``offered_shapes`` ``{name: shape}`` against a module's ``expected_shapes`` / ``aliases``.

    A canonical tensor counts as present when any of its alias names is offered. Missing names that
    match ``allow_missing`` (recomputed buffers) are not reported.
    """
    present = set()
    unexpected, wrong_shape = [], []
    for name, shape in offered_shapes.items():
        if name not in aliases:
            unexpected.append(name)
            continue
        present.add(aliases[name])
        if tuple(shape) != tuple(expected_shapes[name]):
            wrong_shape.append((name, tuple(shape), tuple(expected_shapes[name])))
    missing = [
        name
        for name in set(aliases.values())
        if name not in present and not (allow_missing is not None and allow_missing.search(name))
    ]
    return StateMismatch(missing, unexpected, wrong_shape)


def fill_module(module, tensors, source, allow_missing=COMPUTED_BUFFER_PATTERN, fix=""):
    """Copy ``tensors`` ``{module name: tensor}`` into ``module``, all or nothing.

    Every parameter and persistent buffer must be given exactly once (under any of its alias names),
    with the module's shape; recomputed buffers (``allow_missing``) may be absent and then keep their
    values. Values keep their bits (a dtype different from the module's is converted by ``copy_``).

    Raises:
        CheckpointError: naming ``source``, the first few problem tensors and the counts, then ``fix``.
    """
    aliases = tensor_aliases(module)
    expected = {name: tuple(tensor.shape) for name, tensor in module.state_dict(keep_vars=True).items()}
    mismatch = compare_shapes(expected, aliases, {name: tuple(t.shape) for name, t in tensors.items()}, allow_missing)
    by_canonical = {}
    for name, tensor in tensors.items():
        if name in aliases:
            canonical = aliases[name]
            if canonical in by_canonical and not torch.equal(by_canonical[canonical], tensor):
                mismatch.conflicting.append(canonical)
            by_canonical.setdefault(canonical, tensor)
    if mismatch:
        raise CheckpointError(f"{source} does not match the model: {mismatch.describe()}{'; ' + fix if fix else ''}")
    own = module.state_dict(keep_vars=True)
    with torch.no_grad():
        for name, target in own.items():
            value = by_canonical.get(aliases[name])
            if value is not None and aliases[name] == name:
                target.copy_(value)
    return sorted(by_canonical)
