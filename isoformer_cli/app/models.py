"""``isoformer models``: list, pull, verify, locate and remove the models in the model folder.

``pull NAME`` is the one command that gets real weights:

* ``official``: download ``InstaDeepAI/isoformer`` (config.json, tokenizer files, pytorch_model.bin), then
  ``isoformer convert`` (layout found by key signatures, architecture from config.json and the shapes,
  self-checks);
* ``encoders``: download the three pretrained encoders, then ``isoformer init`` (self-checks; a new,
  untrained aggregation and head);

and stores the result as ``MODEL_DIR/NAME`` (``--checkpoint NAME`` resolves it) with a manifest of where
everything came from (:mod:`isoformer_cli.models.distribution.store`). Downloads go through ``huggingface_hub``
(:mod:`isoformer_cli.models.distribution.hub`): resumable, verified, offline-aware; this is the only place the tool uses
the network.
"""

import logging
import os
from dataclasses import dataclass, field

from isoformer_cli.errors import CheckpointError, InputError
from isoformer_cli.formats.locks import lock_outputs
from isoformer_cli.models.checkpoint.save import check_folder_target
from isoformer_cli.models.conversion.convert import convert_official
from isoformer_cli.models.conversion.pretrained import init_model
from isoformer_cli.models.distribution.hub import fetch_repository, remove_download_folder
from isoformer_cli.models.distribution.locate import (
    DEMO_CHECKPOINT_NAME,
    demo_checkpoint_path,
    locate_checkpoint,
    model_dir_for,
    resolve_checkpoint,
)
from isoformer_cli.models.distribution.registry import KNOWN_MODELS
from isoformer_cli.models.distribution.store import (
    check_name,
    downloads_dir,
    present_checkpoints,
    remove_checkpoint,
    verify_checkpoint,
    write_manifest,
)
from isoformer_cli.runtime.progress import progress_enabled

log = logging.getLogger(__name__)


@dataclass
class PullConfig:
    """Options of ``isoformer models pull``.

    Attributes:
        model: the registry name (``official``, ``encoders``).
        name: the checkpoint name in the model folder (default: ``model``).
        model_dir: the model folder (default ``$ISOFORMER_MODEL_DIR`` or the per-user folder).
        revision: a branch, tag or commit of the repository (single-repository models only).
        preset: fills the architecture fields the files do not determine (``official`` by default).
        settings: ``{field: value}`` configuration overrides (``--set``).
        mapping: extra key-mapping rows for the conversion (``official``).
        force: replace an existing checkpoint of that name.
        keep_downloads: keep the downloaded files after a successful pull.
    """

    model: str
    name: str | None = None
    model_dir: str | None = None
    revision: str | None = None
    preset: str = "official"
    settings: dict = field(default_factory=dict)
    mapping: str | None = None
    force: bool = False
    keep_downloads: bool = False


def known(name: str):
    """The registry entry ``name``; InputError listing the known names otherwise."""
    entry = KNOWN_MODELS.get(name)
    if entry is None:
        raise InputError(f"unknown model {name!r}; known models: {', '.join(KNOWN_MODELS)} (isoformer models list)")
    return entry


def run_pull(config: PullConfig):
    """Download, build and store the checkpoint; returns its folder (the bundled one for ``demo``)."""
    entry = known(config.model)
    if not entry.pullable:
        log.info("%s is bundled with isoformer: use --checkpoint %s (nothing to download)", entry.name, entry.name)
        return demo_checkpoint_path()
    if config.revision and len(entry.repositories) != 1:
        raise InputError(f"--revision applies to a single repository; {entry.name} has {len(entry.repositories)}")
    name = check_name(config.name or entry.name)
    model_dir = model_dir_for(config.model_dir)
    os.makedirs(model_dir, exist_ok=True)
    target = os.path.join(model_dir, name)
    if os.path.isdir(target) and os.listdir(target) and not config.force:
        raise CheckpointError(
            f"{target} exists: {name} is already pulled (isoformer models verify {name} re-checks it; --force "
            "replaces it)"
        )
    check_folder_target(target, overwrite=config.force)
    log.info("%s: %s", entry.name, entry.description)
    log.info("licence: %s", entry.licence)

    folders = [os.path.join(downloads_dir(model_dir), repository.folder_name) for repository in entry.repositories]
    os.makedirs(downloads_dir(model_dir), exist_ok=True)
    # One pull at a time per checkpoint name and per repository download.
    with lock_outputs(folders=[target, *folders]):
        fetched = []
        for repository, folder in zip(entry.repositories, folders):
            if len(entry.repositories) > 1:
                log.info("%s (licence of the weights: %s)", repository.repo_id, repository.licence)
            fetched.append(fetch_repository(repository, folder, config.revision, progress=progress_enabled()))
        manifest = {
            "name": name,
            "model": entry.name,
            "how": f"isoformer models pull {entry.name}" + (" (isoformer convert)" if entry.kind == "convert"
                                                            else " (isoformer init)"),
            "licence": entry.licence,
            "sources": [item.record() for item in fetched],
            "settings": {"preset": config.preset, "set": config.settings, "mapping": config.mapping,
                         "revision": config.revision},
        }
        pulled = {f"pulled_from_{index}": f"{item.repository.repo_id}@{item.commit or 'unknown commit'}"
                  for index, item in enumerate(fetched)}
        try:
            _build(entry, config, fetched, target, pulled, lambda partial: write_manifest(partial, manifest))
        except Exception:
            if any(os.path.isdir(item.folder) and os.listdir(item.folder) for item in fetched):
                log.warning("the downloaded files are kept in %s; the next pull uses them", downloads_dir(model_dir))
            raise
    if not config.keep_downloads:
        for item in fetched:
            remove_download_folder(item.folder)
    log.info("stored %s: use --checkpoint %s", target, name)
    return target


def _build(entry, config, fetched, target, metadata, on_written):
    if entry.kind == "convert":
        official = fetched[0]
        weights = official.files.get("pytorch_model.bin")
        convert_official(official.folder, target, preset=config.preset, mapping_file=config.mapping,
                         overwrite=config.force, settings=config.settings,
                         source_sha256=weights.sha256 if weights else None, extra_metadata=metadata,
                         on_written=on_written)
        return
    if config.mapping:
        raise InputError("--mapping applies to the official release (pull official), not to the encoders")
    folders = {item.repository.role: item.folder for item in fetched}
    init_model(target, preset=config.preset, encoder_folders=folders, overrides=config.settings,
               overwrite=config.force, extra_metadata=metadata, on_written=on_written)


def list_models(model_dir: str | None = None):
    """``{"model_dir": ..., "known": [...], "present": [...]}`` for ``isoformer models list``."""
    root = model_dir_for(model_dir)
    present = present_checkpoints(root)
    pulled = {item["name"] for item in present}
    known_rows = []
    for entry in KNOWN_MODELS.values():
        repositories = [{
            "repo_id": repository.repo_id,
            "role": repository.role,
            "revision": repository.revision,
            "approximate_size": repository.approximate_size,
            "licence": repository.licence,
            "files": [{"name": item.name, "size": item.size, "sha256": item.sha256} for item in repository.files],
        } for repository in entry.repositories]
        known_rows.append({
            "name": entry.name, "kind": entry.kind, "description": entry.description, "licence": entry.licence,
            "repositories": repositories,
            "status": "bundled" if not entry.pullable else ("pulled" if entry.name in pulled else "not pulled"),
        })
    return {"model_dir": root, "known": known_rows, "present": present}


def format_listing(listing):
    """The text of ``isoformer models list``."""
    lines = ["Known models (get one with: isoformer models pull NAME):"]
    for row in listing["known"]:
        lines.append(f"  {row['name']:<9} {row['status']:<11} {row['description']}")
        lines.append(f"  {'':<9} licence: {row['licence']}")
        for repository in row["repositories"]:
            revision = repository["revision"] or "unpinned (main; the commit pulled is recorded)"
            lines.append(f"  {'':<9} {repository['repo_id']}  revision {revision}, about "
                         f"{repository['approximate_size']}, {repository['licence']}")
            known = [f"{item['name']} {item['size']:,} B" for item in repository["files"] if item["size"]]
            checked = [item["name"] for item in repository["files"] if item["sha256"]]
            lines.append(f"  {'':<9}   exact sizes known: {', '.join(known) or 'none'}; SHA-256 known: "
                         f"{', '.join(checked) or 'none (recorded at pull)'}")
    lines.append("")
    lines.append(f"Model folder: {listing['model_dir']}")
    if not listing["present"]:
        lines.append("  no checkpoints yet")
    for item in listing["present"]:
        sha = item["sha256"] or "not recorded (isoformer models verify computes it)"
        lines.append(f"  {item['name']:<9} {_human_size(item['size']):>9}  model.safetensors SHA-256 {sha}")
        lines.append(f"  {'':<9} {item['provenance']}")
    return "\n".join(lines) + "\n"


def _human_size(size):
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def run_verify(name_or_dir: str, model_dir: str | None = None):
    """Report lines of ``isoformer models verify``; CheckpointError on any mismatch."""
    return verify_checkpoint(locate_checkpoint(name_or_dir, model_dir))


def run_path(name: str, model_dir: str | None = None):
    """The folder of checkpoint ``name`` (``demo``: the bundled one)."""
    return resolve_checkpoint(name if name == DEMO_CHECKPOINT_NAME else check_name(name), model_dir, names_only=True)


def run_remove(name: str, model_dir: str | None = None):
    """Remove checkpoint ``name`` (and its kept downloads); returns the removed paths."""
    removed = remove_checkpoint(name, model_dir)
    for path in removed:
        log.info("removed %s", path)
    return removed
