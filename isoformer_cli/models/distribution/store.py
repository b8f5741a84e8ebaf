"""The model folder: named checkpoints, their manifests, and the downloads they were made from.

Layout of the model folder (``--model-dir``, ``$ISOFORMER_MODEL_DIR`` or the per-user default of
:func:`~isoformer_cli.models.distribution.locate.default_model_dir`)::

    MODEL_DIR/NAME/config.json             a checkpoint (what --checkpoint NAME loads)
    MODEL_DIR/NAME/model.safetensors
    MODEL_DIR/NAME/isoformer-model.json    its manifest, written by isoformer models pull
    MODEL_DIR/.downloads/OWNER__REPO/      files downloaded from the hub (removed after a successful pull
                                           unless --keep-downloads; a failed pull keeps them to resume)

The manifest (:data:`MANIFEST_FILE`, JSON) says where the checkpoint came from: the registry entry, each
source repository with the commit pulled and every file's size, SHA-256 and what it was checked against,
the settings used, the self-check results, and the size and SHA-256 of the checkpoint's own files, so that
``isoformer models verify`` can re-hash them later. It is written inside the checkpoint's temporary folder,
so a checkpoint and its manifest appear together or not at all.
"""

import datetime
import json
import os
import shlex
import shutil
import sys

from isoformer_cli import __version__
from isoformer_cli.errors import CheckpointError, InputError
from isoformer_cli.formats.locks import lock_outputs
from isoformer_cli.models.checkpoint.check import checkpoint_metadata
from isoformer_cli.models.checkpoint.schema import CONFIG_FILE, WEIGHTS_FILE
from isoformer_cli.models.distribution.hub import sha256_file
from isoformer_cli.models.distribution.locate import DEMO_CHECKPOINT_NAME, model_dir_for, resolve_checkpoint
from isoformer_cli.models.distribution.registry import KNOWN_MODELS

MANIFEST_FILE = "isoformer-model.json"
MANIFEST_VERSION = 1
DOWNLOADS_FOLDER = ".downloads"
CHECKPOINT_FILES = (CONFIG_FILE, WEIGHTS_FILE)


def downloads_dir(model_dir):
    """Where ``pull`` keeps the files it downloads (one folder per repository)."""
    return os.path.join(model_dir, DOWNLOADS_FOLDER)


def check_name(name):
    """InputError unless ``name`` can be a checkpoint name in the model folder (one plain path component)."""
    if not name or name in (".", "..") or name.startswith(".") or "/" in name or os.sep in name \
            or (os.altsep and os.altsep in name):
        raise InputError(f"{name!r} is not a checkpoint name; use a plain name such as 'official' (no '/', no "
                         "leading '.')")
    if name == DEMO_CHECKPOINT_NAME:
        raise InputError("'demo' is the bundled demo checkpoint; choose another name")
    return name


def file_record(path):
    """``{"size": bytes, "sha256": hex}`` of a file."""
    return {"size": os.path.getsize(path), "sha256": sha256_file(path)}


def write_manifest(folder, manifest):
    """Complete ``manifest`` with the checkpoint files of ``folder`` (sizes, SHA-256) and write it there."""
    manifest = dict(manifest)
    manifest.setdefault("manifest_version", MANIFEST_VERSION)
    manifest.setdefault("created", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    manifest.setdefault("isoformer_version", __version__)
    manifest.setdefault("command_line", shlex.join(sys.argv))
    manifest["files"] = {name: file_record(os.path.join(folder, name)) for name in CHECKPOINT_FILES}
    metadata = checkpoint_metadata(os.path.join(folder, WEIGHTS_FILE))
    manifest["provenance"] = {key: value for key, value in sorted(metadata.items())
                              if key not in ("format", "command_line", "isoformer_version")}
    with open(os.path.join(folder, MANIFEST_FILE), "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2)
        handle.write("\n")


def read_manifest(folder):
    """The manifest of a checkpoint folder, or None when it has none (made by convert/init/finetune directly).

    Raises CheckpointError for a manifest that is not valid JSON.
    """
    path = os.path.join(folder, MANIFEST_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable manifest ({exc}); pull the model again") from exc
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{path}: the manifest must be a JSON object; pull the model again")
    return manifest


def _size(folder):
    return sum(os.path.getsize(os.path.join(folder, name)) for name in CHECKPOINT_FILES
               if os.path.isfile(os.path.join(folder, name)))


def _provenance_line(folder, manifest):
    """One line saying where a checkpoint came from."""
    if manifest is not None:
        sources = ", ".join(f"{source.get('repo_id')}@{(source.get('commit') or 'unknown commit')[:12]}"
                            for source in manifest.get("sources", []))
        how = manifest.get("how", "pulled")
        return f"{how} from {sources} on {manifest.get('created', '?')}" if sources else how
    weights = os.path.join(folder, WEIGHTS_FILE)
    try:
        metadata = checkpoint_metadata(weights)
    except Exception:  # noqa: BLE001 - a damaged file is reported by verify; the listing goes on
        return "unreadable weights file (run isoformer models verify)"
    if "converted_from" in metadata:
        return f"isoformer convert of {metadata['converted_from']}"
    if "init_seed" in metadata:
        return "isoformer init from " + ", ".join(
            f"{key[len('init_'):]}={value.split(' (')[0]}" for key, value in sorted(metadata.items())
            if key.endswith("_encoder"))
    return metadata.get("command_line", "unknown origin")


def present_checkpoints(model_dir):
    """``[{name, path, size, sha256, provenance, manifest}]`` of the checkpoint folders in ``model_dir``.

    The SHA-256 is the one recorded in the manifest (None without one: ``verify`` computes it).
    """
    entries = []
    if not os.path.isdir(model_dir):
        return entries
    for name in sorted(os.listdir(model_dir)):
        folder = os.path.join(model_dir, name)
        if name.startswith(".") or not os.path.isfile(os.path.join(folder, CONFIG_FILE)):
            continue
        try:
            manifest = read_manifest(folder)
        except CheckpointError:
            manifest = None
        recorded = (manifest or {}).get("files", {}).get(WEIGHTS_FILE, {})
        entries.append({
            "name": name, "path": folder, "size": _size(folder), "sha256": recorded.get("sha256"),
            "provenance": _provenance_line(folder, manifest), "model": (manifest or {}).get("model"),
            "licence": (manifest or {}).get("licence"),
        })
    return entries


def verify_checkpoint(checked):
    """Re-hash a checkpoint folder that :func:`~isoformer_cli.models.checkpoint.check.check_checkpoint` passed
    (a :class:`~isoformer_cli.models.checkpoint.check.CheckedCheckpoint`); returns report lines. CheckpointError
    on any mismatch.

    Checks: the folder is a valid checkpoint (configuration, weights header against the model); each file's
    size and SHA-256 against the manifest; the source files against the manifest when the downloads were
    kept, and against today's registry where it knows sizes and checksums. Without a manifest the SHA-256
    of each file is computed and shown, with nothing to compare against.
    """
    folder = checked.folder
    lines = []
    lines.append(f"{folder}: configuration and weights header agree with the model")
    manifest = read_manifest(folder)
    problems = []
    recorded = (manifest or {}).get("files", {})
    for name in CHECKPOINT_FILES:
        path = os.path.join(folder, name)
        actual = file_record(path)
        expected = recorded.get(name)
        if expected is None:
            lines.append(f"{name}: {actual['size']:,} bytes, SHA-256 {actual['sha256']} (no manifest to compare with)")
        elif actual != {"size": expected.get("size"), "sha256": expected.get("sha256")}:
            problems.append(f"{name} has {actual['size']:,} bytes and SHA-256 {actual['sha256']}, the manifest "
                            f"records {expected.get('size')} bytes and {expected.get('sha256')}")
        else:
            lines.append(f"{name}: {actual['size']:,} bytes, SHA-256 {actual['sha256']} matches the manifest")
    entry = KNOWN_MODELS.get((manifest or {}).get("model"))
    registry = {(repo.repo_id, f.name): f for repo in (entry.repositories if entry else ()) for f in repo.files}
    model_dir = os.path.dirname(os.path.abspath(folder))
    for source in (manifest or {}).get("sources", []):
        for record in source.get("files", []):
            known = registry.get((source.get("repo_id"), record.get("name")))
            if known is not None:
                if known.size is not None and known.size != record.get("size"):
                    problems.append(f"{source['repo_id']}/{record['name']} was {record.get('size')} bytes, the "
                                    f"registry expects {known.size}")
                if known.sha256 is not None and known.sha256 != record.get("sha256"):
                    problems.append(f"{source['repo_id']}/{record['name']} had SHA-256 {record.get('sha256')}, "
                                    f"the registry expects {known.sha256}")
            kept = os.path.join(downloads_dir(model_dir), source.get("repo_id", "").replace("/", "__"),
                                record.get("name", ""))
            if os.path.isfile(kept):
                actual = file_record(kept)
                if actual["sha256"] != record.get("sha256"):
                    problems.append(f"downloaded {kept} has SHA-256 {actual['sha256']}, the manifest records "
                                    f"{record.get('sha256')}")
                else:
                    lines.append(f"source {source['repo_id']}/{record['name']}: kept download matches the manifest")
    if manifest is not None:
        for key, value in sorted(manifest.get("provenance", {}).items()):
            if key.startswith("self_check_"):
                lines.append(f"{key[len('self_check_'):]} self-check at creation: {value}")
    if problems:
        raise CheckpointError(f"{folder} failed verification: {'; '.join(problems)}; pull or convert it again")
    return lines


def remove_checkpoint(name, model_dir=None):
    """Remove the checkpoint ``name`` from the model folder (and the kept downloads of its sources).

    Returns the paths removed. Refuses ``demo``, paths, and folders that are not checkpoints.
    """
    if name == DEMO_CHECKPOINT_NAME:
        raise InputError("'demo' is bundled with isoformer and cannot be removed")
    folder = resolve_checkpoint(check_name(name), model_dir, names_only=True)
    if not any(os.path.exists(os.path.join(folder, part)) for part in (CONFIG_FILE, WEIGHTS_FILE, MANIFEST_FILE)):
        raise CheckpointError(f"{folder} does not look like a checkpoint (no {CONFIG_FILE}); not removing it")
    removed = []
    with lock_outputs(folders=[folder]):
        manifest = None
        try:
            manifest = read_manifest(folder)
        except CheckpointError:
            pass
        shutil.rmtree(folder)
        removed.append(folder)
        for source in (manifest or {}).get("sources", []):
            kept = os.path.join(downloads_dir(model_dir_for(model_dir)), source.get("repo_id", "").replace("/", "__"))
            if source.get("repo_id") and os.path.isdir(kept):
                shutil.rmtree(kept)
                removed.append(kept)
    return removed
