"""A local stand-in for the Hugging Face hub: a loopback HTTP server (127.0.0.1 only) for ``HF_ENDPOINT``.

It answers what ``huggingface_hub`` asks when it downloads a file: ``HEAD``/``GET
/{owner}/{name}/resolve/{revision}/{path}`` with the hub's headers (``X-Repo-Commit``; ``ETag`` = the git blob
id of a small file, or ``X-Linked-Etag`` = the SHA-256 and ``X-Linked-Size`` of a large "LFS" file),
byte ranges (``Range: bytes=N-`` -> 206), and the hub's error codes (``X-Error-Code: RepoNotFound``,
``RevisionNotFound``, ``EntryNotFound``, ``GatedRepo``). Faults on demand: a connection dropped after N bytes,
an error status for the next requests, content that does not match its checksum, a repository that needs a
token. Every request is logged (method, path, Range, Authorization).
"""

import hashlib
import http.server
import threading
import urllib.parse
from dataclasses import dataclass, field

LFS_SUFFIXES = (".bin", ".safetensors", ".csv")


def git_blob_sha1(content):
    return hashlib.sha1(f"blob {len(content)}\0".encode() + content).hexdigest()


@dataclass
class Repository:
    files: dict
    commit: str
    token: str | None = None


@dataclass
class Faults:
    """Per ``(repo_id, path)``: drop the connection after ``drop_after`` bytes (``drops`` times), then answer
    ``fail_status`` to ``failures`` requests; serve ``corrupt`` bytes instead of the content."""

    drop_after: int | None = None
    drops: int = 0
    fail_status: int = 500
    failures: int = 0
    corrupt: bytes | None = None


@dataclass
class LocalHub:
    repositories: dict = field(default_factory=dict)
    faults: dict = field(default_factory=dict)
    log: list = field(default_factory=list)

    def add(self, repo_id, files, token=None):
        """Serve ``files`` (``{path: bytes}``) as ``repo_id`` at one commit (derived from the content)."""
        digest = hashlib.sha1(repo_id.encode())
        for name in sorted(files):
            digest.update(name.encode() + hashlib.sha256(files[name]).digest())
        self.repositories[repo_id] = Repository(dict(files), digest.hexdigest(), token)
        return self.repositories[repo_id].commit

    def fault(self, repo_id, path, **settings):
        self.faults[(repo_id, path)] = Faults(**settings)

    def requests(self, method=None, path_end=None):
        return [entry for entry in self.log if (method is None or entry[0] == method)
                and (path_end is None or entry[1].endswith(path_end))]

    def __enter__(self):
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest's output clean
                pass

            def do_HEAD(self):
                hub._answer(self, head=True)

            def do_GET(self):
                hub._answer(self, head=False)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def __exit__(self, *exc_info):
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------------------------------
    def _answer(self, handler, head):
        path = urllib.parse.unquote(urllib.parse.urlsplit(handler.path).path)
        self.log.append((handler.command, path, handler.headers.get("Range"), handler.headers.get("Authorization")))
        parts = path.lstrip("/").split("/")
        # Dataset repositories live under /datasets/ (added as "datasets/OWNER/NAME").
        kind = ""
        if parts and parts[0] == "datasets":
            kind, parts = "datasets/", parts[1:]
        if len(parts) < 5 or parts[2] != "resolve":
            return self._error(handler, 404, "RepoNotFound")
        repo_id, revision, name = kind + "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        repository = self.repositories.get(repo_id)
        if repository is None:
            return self._error(handler, 404, "RepoNotFound")
        if repository.token and handler.headers.get("Authorization") != f"Bearer {repository.token}":
            return self._error(handler, 403, "GatedRepo")
        if revision not in ("main", repository.commit):
            return self._error(handler, 404, "RevisionNotFound")
        if name not in repository.files:
            return self._error(handler, 404, "EntryNotFound", repository.commit)
        content = repository.files[name]
        faults = self.faults.get((repo_id, name))
        headers = {"X-Repo-Commit": repository.commit, "Accept-Ranges": "bytes"}
        if name.endswith(LFS_SUFFIXES):
            sha256 = hashlib.sha256(content).hexdigest()
            headers.update({"ETag": f'"{sha256}"', "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(len(content))})
        else:
            headers["ETag"] = f'"{git_blob_sha1(content)}"'
        if head:
            handler.send_response(200)
            for key, value in {**headers, "Content-Length": str(len(content))}.items():
                handler.send_header(key, value)
            handler.end_headers()
            return None
        if faults is not None and faults.drops == 0 and faults.failures > 0:
            faults.failures -= 1
            return self._error(handler, faults.fail_status, None, repository.commit)
        body = faults.corrupt if faults is not None and faults.corrupt is not None else content
        start, status = 0, 200
        requested = handler.headers.get("Range")
        if requested and requested.startswith("bytes=") and requested.endswith("-"):
            start, status = int(requested[len("bytes="):-1]), 206
            headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
        handler.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body) - start)}.items():
            handler.send_header(key, value)
        handler.end_headers()
        payload = body[start:]
        if faults is not None and faults.drops > 0 and faults.drop_after is not None:
            faults.drops -= 1
            handler.wfile.write(payload[: max(0, faults.drop_after - start)])
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(2)  # the connection drops mid-body
            return None
        handler.wfile.write(payload)
        return None

    @staticmethod
    def _error(handler, status, code, commit=None):
        handler.send_response(status)
        if code:
            handler.send_header("X-Error-Code", code)
        if commit:
            handler.send_header("X-Repo-Commit", commit)
        body = f"{status} {code or ''}".encode()
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)
