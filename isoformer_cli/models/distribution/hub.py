"""Download a model repository's files through ``huggingface_hub``: resumable, verified, offline-aware.

:func:`fetch_repository` brings the files a :class:`~isoformer_cli.models.distribution.registry.Repository` lists into one
local folder (``MODEL_DIR/.downloads/OWNER__NAME``) and returns what it got. Per file:

1. Metadata from the hub (``huggingface_hub.get_hf_file_metadata``: a HEAD request on ``/resolve``): the
   commit the revision resolves to (every later file is taken at that commit, so all files come from one
   commit even if the branch moves meanwhile), the size, and the hub's checksum of the content: the
   SHA-256 of a large (LFS) file, or the git blob id (SHA-1) of a small one.
2. A file completed by an earlier pull at the same checksum is reused; a file already in the Hugging Face
   cache (``$HF_HUB_CACHE`` or ``$HF_HOME/hub``, e.g. from ``hf download`` or ``transformers``) at that
   commit is linked into the download folder (copied where links are not possible), not downloaded again.
3. Otherwise it is downloaded into ``NAME.part`` by ``huggingface_hub``'s ``http_get`` (progress bar on an
   interactive stderr; a dropped connection is resumed with an HTTP range request, up to five times). A pull
   that still fails keeps ``NAME.part`` and the next pull continues from its end, if the hub still serves the
   same content.
4. Checks: the size, and the SHA-256 against the registry where known and against the hub's checksum; the
   git blob id for small files. A mismatch removes the file (nothing is kept) and is an error.

Environment, read at each call (as ``huggingface_hub`` does): ``HF_ENDPOINT`` (a mirror or a private hub),
``HF_TOKEN`` or the token saved under ``HF_HOME`` (sent to the hub), ``HF_HUB_OFFLINE=1`` (no network: only
files already downloaded, copied into the download folder by hand, or in the Hugging Face cache are used;
anything missing is an error that says what to copy where). The network is used nowhere else in the tool.
"""

import hashlib
import json
import logging
import os
import re
import shutil
import sys
import urllib.parse
from dataclasses import dataclass, field

from huggingface_hub import constants, errors, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
from huggingface_hub.file_download import http_get
from huggingface_hub.utils import build_hf_headers
from tqdm.auto import tqdm

from isoformer_cli.errors import DownloadError
# The one file hash (64 hex digits), under the name models/ uses for it (store.py and convert.py import it here).
from isoformer_cli.formats.provenance import sha256_hex as sha256_file

log = logging.getLogger(__name__)

PART_SUFFIX = ".part"
STATE_FILE = "download.json"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_GIT_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_TRUE = {"1", "on", "yes", "true"}
_HASH_BLOCK = 16 * 1024 * 1024


# ------------------------------------------------------------------------------------------------
# Environment
# ------------------------------------------------------------------------------------------------


def hub_endpoint():
    """The hub to download from: ``$HF_ENDPOINT`` or huggingface_hub's default (https://huggingface.co)."""
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def is_offline():
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set to a true value."""
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        value = os.environ.get(variable)
        if value is not None:
            return value.strip().lower() in _TRUE
    return bool(constants.HF_HUB_OFFLINE)


def hf_cache_dir():
    """The Hugging Face hub cache: ``$HF_HUB_CACHE``, ``$HF_HOME/hub``, or huggingface_hub's default."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return constants.HF_HUB_CACHE


# ------------------------------------------------------------------------------------------------
# Checksums
# ------------------------------------------------------------------------------------------------


def git_blob_sha1(path):
    """The git blob id of a file (``git hash-object``): SHA-1 of ``"blob SIZE\\0"`` + content."""
    digest = hashlib.sha1(f"blob {os.path.getsize(path)}\0".encode())
    with open(path, "rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


class _VerificationFailed(DownloadError):
    """A downloaded file does not match its size or checksum (the pull's files are discarded)."""


# ------------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------------


@dataclass
class FetchedFile:
    """One file of a repository on disk, checked.

    Attributes:
        name: its name in the repository (the alternative actually found).
        path: where it is (the download folder, or the Hugging Face cache).
        size: bytes; sha256: hex digest.
        origin: ``"downloaded"``, ``"earlier download"``, ``"Hugging Face cache"``, ``"placed by hand"``.
        checks: what it was checked against, e.g. ``["size and SHA-256 match the hub"]``.
    """

    name: str
    path: str
    size: int
    sha256: str
    origin: str
    checks: list = field(default_factory=list)

    def record(self):
        """JSON-ready description for manifests."""
        return {"name": self.name, "size": self.size, "sha256": self.sha256, "origin": self.origin,
                "checks": list(self.checks)}


@dataclass
class FetchedRepository:
    """The files of one repository, all from one commit (``commit`` None when offline and unknown)."""

    repository: object
    folder: str
    commit: str | None
    endpoint: str
    files: dict = field(default_factory=dict)  # registry name -> FetchedFile

    def path(self, name):
        """Local path of the file the registry calls ``name`` (None when an optional file is absent)."""
        fetched = self.files.get(name)
        return fetched.path if fetched else None

    def record(self):
        """JSON-ready description for manifests."""
        repository = self.repository
        return {
            "repo_id": repository.repo_id,
            "revision_requested": repository.revision or repository.default_branch,
            "commit": self.commit,
            "endpoint": self.endpoint,
            "licence": repository.licence,
            "files": [fetched.record() for fetched in self.files.values()],
        }


# ------------------------------------------------------------------------------------------------
# The download folder's state (what earlier pulls completed)
# ------------------------------------------------------------------------------------------------


def _read_state(folder):
    path = os.path.join(folder, STATE_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        return {"files": {}}
    if not isinstance(state, dict) or not isinstance(state.get("files"), dict):
        return {"files": {}}
    return state


def _write_state(folder, state):
    path = os.path.join(folder, STATE_FILE)
    partial = path + PART_SUFFIX
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(state, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(partial, path)


def _remove(*paths):
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


# ------------------------------------------------------------------------------------------------
# Fetching
# ------------------------------------------------------------------------------------------------


def fetch_repository(repository, folder, revision=None, progress=False):
    """Bring the files of ``repository`` into ``folder`` (created), verified; return a :class:`FetchedRepository`.

    Args:
        repository: a :class:`~isoformer_cli.models.distribution.registry.Repository`.
        folder: the download folder of this repository.
        revision: a branch, tag or commit overriding the registry's (None: the registry's pin, else its
            default branch).
        progress: draw download bars on stderr.

    Raises:
        DownloadError: offline with files missing (the message says what to copy where), the hub cannot
            be reached, the repository/revision/file does not exist or needs a token, a size or checksum
            differs (the file is removed).
    """
    os.makedirs(folder, exist_ok=True)
    endpoint = hub_endpoint()
    if is_offline():
        return _fetch_offline(repository, folder, revision, endpoint)
    fetched = FetchedRepository(repository, folder, None, endpoint)
    state = _read_state(folder)
    wanted = revision or repository.revision or repository.default_branch
    try:
        for entry in repository.files:
            result = _fetch_online(repository, entry, folder, wanted, fetched, state, endpoint, progress)
            if result is not None:
                fetched.files[entry.name] = result
    except _VerificationFailed:
        # A corrupted or changed file: keep nothing of this repository's download.
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return fetched


def _metadata(repository, name, revision, endpoint):
    """The hub's metadata of ``name`` at ``revision`` (commit, size, ETag, location), or None when it has no such
    file; DownloadError, with what to do, for everything else."""
    url = hf_hub_url(repository.repo_id, name, revision=revision, endpoint=endpoint)
    where = f"{repository.repo_id} (revision {revision}) at {endpoint}"
    try:
        return get_hf_file_metadata(url, endpoint=endpoint)
    except errors.RemoteEntryNotFoundError:
        return None
    except errors.GatedRepoError as exc:
        raise DownloadError(
            f"{where}: access is restricted; accept its terms on the hub and set HF_TOKEN (or run 'hf auth login')"
        ) from exc
    except errors.RepositoryNotFoundError as exc:
        raise DownloadError(
            f"{where}: repository not found (or private: set HF_TOKEN to a token that can read it)"
        ) from exc
    except errors.RevisionNotFoundError as exc:
        raise DownloadError(f"{where}: no revision {revision!r} in this repository") from exc
    except errors.HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        raise DownloadError(f"{where}: the hub answered HTTP {status} for {name}; try again later") from exc
    except Exception as exc:  # noqa: BLE001 - httpx2 connection errors, proxies, TLS: all mean "cannot reach"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DownloadError(
            f"cannot reach {endpoint} for {repository.repo_id} ({reason}); check the network or HF_ENDPOINT, or work "
            f"offline: set HF_HUB_OFFLINE=1 and copy the files by hand (the error then says where)"
        ) from exc


def _expected_checksums(metadata):
    """(SHA-256 or None, git blob id or None) of a file as the hub describes it: its ETag is the SHA-256 of an
    LFS file and the git blob id of a small one."""
    etag = (metadata.etag or "").lower()
    hub_sha256 = etag if _SHA256.match(etag) else None
    git_sha1 = etag if _GIT_SHA1.match(etag) else None
    return hub_sha256, git_sha1


def _fetch_online(repository, entry, folder, revision, fetched, state, endpoint, progress):
    metadata = name = None
    for candidate in entry.candidates:
        metadata = _metadata(repository, candidate, fetched.commit or revision, endpoint)
        if metadata is not None:
            name = candidate
            break
    if metadata is None:
        if entry.optional:
            log.info("%s: no %s (optional)", repository.repo_id, entry.name)
            return None
        raise DownloadError(
            f"{repository.repo_id} (revision {fetched.commit or revision}) at {endpoint} has no "
            f"{' or '.join(entry.candidates)}; is this the right repository and revision?"
        )
    if fetched.commit is None:
        fetched.commit = metadata.commit_hash
        if fetched.commit and fetched.commit != revision:
            log.info("%s: revision %s is commit %s", repository.repo_id, revision, fetched.commit)
    if entry.size is not None and metadata.size is not None and metadata.size != entry.size:
        raise DownloadError(
            f"{repository.repo_id}/{name} at commit {fetched.commit}: the hub serves {metadata.size:,} bytes but the "
            f"registry expects {entry.size:,}; the file changed since this isoformer version was made "
            "(download it by hand into the download folder and use --revision, or update isoformer)"
        )
    hub_sha256, git_sha1 = _expected_checksums(metadata)
    target = os.path.join(folder, name)
    recorded = state["files"].get(name)
    etag = (metadata.etag or "").lower()

    # An earlier pull completed this very content.
    if recorded and recorded.get("etag") == etag and os.path.isfile(target) \
            and os.path.getsize(target) == recorded.get("size"):
        result = FetchedFile(name, target, recorded["size"], recorded["sha256"], "earlier download")
        _check(result, entry, metadata.size, hub_sha256, git_sha1, repository, remove_on_failure=False)
        return result

    # The Hugging Face cache holds it at this commit: link it in.
    cached = _in_hf_cache(repository, name, fetched.commit)
    if cached is not None:
        result = FetchedFile(name, cached, os.path.getsize(cached), sha256_file(cached), "Hugging Face cache")
        _check(result, entry, metadata.size, hub_sha256, git_sha1, repository, remove_on_failure=False)
        log.info("%s/%s: using the copy in the Hugging Face cache (%s)", repository.repo_id, name, cached)
        result.path = _link(cached, target)
        state["files"][name] = {"etag": etag, "size": result.size, "sha256": result.sha256, "commit": fetched.commit}
        _write_state(folder, state)
        return result

    part = target + PART_SUFFIX
    _download(repository, name, metadata, part, etag, fetched.commit, progress)
    result = FetchedFile(name, part, os.path.getsize(part), sha256_file(part), "downloaded")
    _check(result, entry, metadata.size, hub_sha256, git_sha1, repository, remove_on_failure=True)
    os.replace(part, target)
    _remove(part + ".json")
    result.path = target
    state["files"][name] = {"etag": etag, "size": result.size, "sha256": result.sha256, "commit": fetched.commit}
    _write_state(folder, state)
    return result


def _link(source, target):
    """Make ``target`` a symbolic link to ``source`` (a copy where links fail); returns ``target``."""
    _remove(target)
    try:
        os.symlink(os.path.realpath(source), target)
    except OSError:
        shutil.copyfile(source, target)
    return target


def _in_hf_cache(repository, name, commit):
    if not commit:
        return None

    try:
        cached = try_to_load_from_cache(repository.repo_id, name, cache_dir=hf_cache_dir(), revision=commit)
    except Exception:  # noqa: BLE001 - an unreadable cache is no reason to fail: download instead
        return None
    return cached if isinstance(cached, str) and os.path.isfile(cached) else None


def _progress_class(enabled):
    """A tqdm class for huggingface_hub's ``http_get`` that follows this tool's progress setting."""
    class DownloadBar(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = not enabled
            kwargs.setdefault("file", sys.stderr)
            kwargs.pop("name", None)
            super().__init__(*args, **kwargs)

    return DownloadBar


def _download(repository, name, metadata, part, etag, commit, progress):
    """Download (or continue downloading) ``name`` into ``part``; DownloadError keeping ``part`` to resume."""
    sidecar = part + ".json"
    resume = 0
    if os.path.exists(part):
        try:
            with open(sidecar, encoding="utf-8") as handle:
                previous = json.load(handle)
        except (OSError, ValueError):
            previous = {}
        if previous.get("etag") == etag and os.path.getsize(part) <= (metadata.size or float("inf")):
            resume = os.path.getsize(part)
            log.info("%s/%s: resuming the download at %s bytes", repository.repo_id, name, f"{resume:,}")
        else:
            _remove(part)
    if not os.path.exists(part):
        with open(sidecar, "w", encoding="utf-8") as handle:
            json.dump({"etag": etag, "commit": commit, "size": metadata.size}, handle)
    size_text = f" ({metadata.size / 1e9:.2f} GB)" if metadata.size and metadata.size > 1e8 else ""
    # Announce the weights, not every small text file.
    level = logging.INFO if metadata.size is None or metadata.size > 1_000_000 else logging.DEBUG
    log.log(level, "downloading %s/%s%s", repository.repo_id, name, size_text)
    headers = build_hf_headers()
    if urllib.parse.urlsplit(metadata.location).netloc != urllib.parse.urlsplit(hub_endpoint()).netloc:
        # A large file is served from a signed storage URL: the hub token must not leave the hub.
        headers = {key: value for key, value in headers.items() if key.lower() != "authorization"}
    try:
        with open(part, "ab") as handle:
            http_get(metadata.location, handle, resume_size=resume, headers=headers, expected_size=metadata.size,
                     displayed_filename=name, tqdm_class=_progress_class(progress))
    except (KeyboardInterrupt, Exception) as exc:
        have = os.path.getsize(part) if os.path.exists(part) else 0
        if metadata.size is not None and have > metadata.size:
            _remove(part, sidecar)  # more bytes than the file has: nothing to resume from
        if isinstance(exc, KeyboardInterrupt):
            raise
        total = f" of {metadata.size:,}" if metadata.size is not None else ""
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DownloadError(
            f"download of {repository.repo_id}/{name} stopped after {have:,}{total} bytes ({reason}); "
            "rerun the same command to continue where it stopped"
        ) from exc


def _check(fetched, entry, hub_size, hub_sha256, git_sha1, repository, remove_on_failure):
    """Compare ``fetched`` with the registry and the hub; DownloadError (file removed if asked) on a mismatch."""
    problems = []
    expected_size = entry.size if entry.size is not None else hub_size
    if expected_size is not None and fetched.size != expected_size:
        problems.append(f"it has {fetched.size:,} bytes, expected {expected_size:,}")
    if entry.sha256 is not None and fetched.sha256 != entry.sha256.lower():
        problems.append(f"its SHA-256 is {fetched.sha256}, the registry says {entry.sha256.lower()}")
    if hub_sha256 is not None and fetched.sha256 != hub_sha256:
        problems.append(f"its SHA-256 is {fetched.sha256}, the hub says {hub_sha256}")
    if git_sha1 is not None and not problems and git_blob_sha1(fetched.path) != git_sha1:
        problems.append(f"its git blob id is {git_blob_sha1(fetched.path)}, the hub says {git_sha1}")
    if problems:
        kept, error = "", DownloadError
        if remove_on_failure:
            _remove(fetched.path, fetched.path + ".json")
            kept, error = "; nothing of this download was kept", _VerificationFailed
        if fetched.origin == "placed by hand":
            fix = f"replace {fetched.path} with the file from the hub"
        else:
            fix = "the download was corrupted or the file changed on the hub, run the command again"
        raise error(
            f"{repository.repo_id}/{fetched.name} ({fetched.origin}) failed verification: {'; '.join(problems)}"
            f"{kept}; {fix}"
        )
    checks = []
    if entry.size is not None:
        checks.append("size matches the registry")
    if entry.sha256 is not None:
        checks.append("SHA-256 matches the registry")
    if hub_sha256 is not None:
        checks.append("size and SHA-256 match the hub")
    elif git_sha1 is not None:
        checks.append("size and git blob id match the hub")
    if not checks:
        checks.append("not verified (no checksum known); SHA-256 recorded")
    fetched.checks = checks


def _fetch_offline(repository, folder, revision, endpoint):
    """Use only local files: earlier downloads, hand-placed files, the Hugging Face cache."""
    state = _read_state(folder)
    commits = {record.get("commit") for record in state["files"].values() if record.get("commit")}
    fetched = FetchedRepository(repository, folder, commits.pop() if len(commits) == 1 else None, endpoint)
    missing = []
    for entry in repository.files:
        result = None
        for name in entry.candidates:
            result = _local_file(repository, entry, name, folder, state, revision)
            if result is not None:
                break
        if result is not None:
            fetched.files[entry.name] = result
        elif not entry.optional:
            missing.append(" or ".join(entry.candidates))
    if missing:
        url = f"{endpoint}/{repository.repo_id}"
        raise DownloadError(
            f"offline (HF_HUB_OFFLINE is set) and {repository.repo_id} is not downloaded: copy {', '.join(missing)} "
            f"from {url} into {folder}, then run the command again (or unset HF_HUB_OFFLINE to download)"
        )
    return fetched


def _local_file(repository, entry, name, folder, state, revision):
    target = os.path.join(folder, name)
    if os.path.isfile(target):
        recorded = state["files"].get(name)
        size = os.path.getsize(target)
        if recorded and recorded.get("size") == size and recorded.get("sha256"):
            result = FetchedFile(name, target, size, recorded["sha256"], "earlier download")
        else:
            result = FetchedFile(name, target, size, sha256_file(target), "placed by hand")
        _check(result, entry, None, None, None, repository, remove_on_failure=False)
        return result

    wanted = revision or repository.revision or repository.default_branch
    try:
        cached = try_to_load_from_cache(repository.repo_id, name, cache_dir=hf_cache_dir(), revision=wanted)
    except Exception:  # noqa: BLE001 - an unreadable cache counts as absent
        cached = None
    if isinstance(cached, str) and os.path.isfile(cached):
        result = FetchedFile(name, cached, os.path.getsize(cached), sha256_file(cached), "Hugging Face cache")
        _check(result, entry, None, None, None, repository, remove_on_failure=False)
        result.path = _link(cached, target)
        return result
    return None


def remove_download_folder(folder):
    """Remove a repository's download folder (after a successful conversion, unless kept)."""
    shutil.rmtree(folder, ignore_errors=True)
