"""A local stand-in for the model hub, as ``huggingface_hub.hf_hub_download`` sees it.

What ``hf_hub_download`` (huggingface_hub 2.4.0) asks of the hub, for a revision that is a branch:

1. ``HEAD {endpoint}/{repo_id}/resolve/{revision}/{filename}`` with ``Accept-Encoding: identity``,
   redirects not followed automatically. No ``/api/`` call comes first.
   It follows a redirect only while it stays on the hub's own origin; for a large (LFS) file the
   hub answers ``302`` with ``Location`` on a CDN host, and the metadata is read off that ``302``:
   ``X-Repo-Commit`` (required), ``X-Linked-Etag`` (else ``ETag``; required, the sha256 for an
   LFS file) and ``X-Linked-Size`` (else ``Content-Length``, which is ignored on a redirect).
   No ``X-Xet-Hash`` header means no Xet download.
2. ``GET {location}`` for the bytes, streamed, with the length taken from ``Content-Range`` or
   ``Content-Length``. When the connection breaks mid-body it waits a second and asks again with
   ``Range: bytes=N-`` (up to 5 times without progress), expecting ``206`` and ``Content-Range``.
3. Errors are told apart by status and ``X-Error-Code``: ``404`` + ``EntryNotFound`` is a missing
   file (remembered under ``.no_exist/{commit}``, so ``X-Repo-Commit`` comes with it),
   ``RepoNotFound`` a missing repository; a ``5xx`` or a refused connection sends it to the local
   cache, retried with back-off once when the cache has nothing.

The server here plays both the hub (``endpoint``) and, on a second port so that it is another
origin, the CDN the hub redirects to. It records every request, and can cut or hold a download
part-way to test resumption and interruption.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import quote, unquote, urlsplit

__all__ = ["Fault", "HubServer", "Request", "free_port"]


@dataclass
class Fault:
    """What goes wrong when one file is fetched from the CDN.

    ``cut_after`` bytes of the first full ``GET`` are sent, then the connection is closed.
    Later ranged ``GET`` requests are answered with ``range_status`` when it is set. With
    ``hold``, the server waits after the first ``cut_after`` bytes (setting ``reached``) until
    ``hold`` is set.
    """

    cut_after: int
    range_status: int | None = None
    hold: threading.Event | None = None
    reached: threading.Event = field(default_factory=threading.Event)
    cuts: int = 0


@dataclass(frozen=True)
class Request:
    """One request as the server saw it."""

    server: str  # "hub" or "cdn"
    method: str
    path: str
    range: str | None


class HubServer:
    """Serves files under ``{endpoint}/{repo_id}/resolve/{revision}/{filename}``.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.faults: dict[str, Fault] = {}
        self.requests: list[Request] = []
        self.unavailable = False
        self._blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._hub: ThreadingHTTPServer | None = None
        self._cdn: ThreadingHTTPServer | None = None

    # -- content -------------------------------------------------------------------------------

    def add_repo(self, repo_id: str, files: dict[str, bytes] | None = None) -> None:
        """Create a repository (possibly empty) holding ``files``."""
        self.repos.setdefault(repo_id, {})
        for name, data in (files or {}).items():
            self.add_file(repo_id, name, data)

    def add_file(self, repo_id: str, filename: str, data: bytes) -> None:
        self.repos.setdefault(repo_id, {})[filename] = data
        self._blobs[hashlib.sha256(data).hexdigest()] = data

    def commit(self, repo_id: str) -> str:
        """The 40-hex commit id the hub reports for a repository."""
        return hashlib.sha1(repo_id.encode()).hexdigest()

    def seen(self, method: str | None = None, server: str | None = None) -> list[Request]:
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method) and (server is None or r.server == server)
            ]

    # -- life cycle ----------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        assert self._hub is not None, "server not started"
        return f"http://127.0.0.1:{self._hub.server_address[1]}"

    @property
    def cdn(self) -> str:
        assert self._cdn is not None, "server not started"
        return f"http://127.0.0.1:{self._cdn.server_address[1]}"

    def start(self) -> HubServer:
        self._hub = self._serve("hub")
        self._cdn = self._serve("cdn")
        return self

    def stop(self) -> None:
        for fault in self.faults.values():
            if fault.hold is not None:
                fault.hold.set()
        for server in (self._hub, self._cdn):
            if server is not None:
                server.shutdown()
                server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self, role: str) -> ThreadingHTTPServer:
        hub = self

        class Handler(_Handler):
            server_role = role
            state = hub

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name=f"hub-{role}", daemon=True).start()
        return server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_role = "hub"
    state: HubServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def do_GET(self) -> None:
        self._answer(head=False)

    def _answer(self, head: bool) -> None:
        state = self.state
        path = urlsplit(self.path).path
        with state._lock:
            state.requests.append(
                Request(self.server_role, self.command, path, self.headers.get("Range"))
            )
        if state.unavailable:
            self._plain(503, b"unavailable", head)
        elif self.server_role == "cdn":
            self._blob(path, head)
        else:
            self._resolve(path, head)

    def _resolve(self, path: str, head: bool) -> None:
        state = self.state
        repo_id, sep, rest = path.lstrip("/").partition("/resolve/")
        revision, _, filename = rest.partition("/")
        repo_id, filename = unquote(repo_id), unquote(filename)
        if not sep or not filename:
            self._plain(404, b"Not Found", head)
            return
        if repo_id not in state.repos:
            self._plain(404, b"Repository not found", head, {"X-Error-Code": "RepoNotFound"})
            return
        commit = state.commit(repo_id)
        if unquote(revision) not in ("main", commit):
            self._plain(404, b"Invalid rev id", head, {"X-Error-Code": "RevisionNotFound"})
            return
        data = state.repos[repo_id].get(filename)
        if data is None:
            headers = {
                "X-Error-Code": "EntryNotFound",
                "X-Error-Message": "Entry not found",
                "X-Repo-Commit": commit,
            }
            self._plain(404, b"Entry not found", head, headers)
            return
        sha256 = hashlib.sha256(data).hexdigest()
        self.send_response(302)
        self.send_header("Location", f"{state.cdn}/blobs/{sha256}/{quote(filename)}")
        self.send_header("X-Repo-Commit", commit)
        self.send_header("X-Linked-Etag", f'"{sha256}"')
        self.send_header("X-Linked-Size", str(len(data)))
        self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _blob(self, path: str, head: bool) -> None:
        state = self.state
        _, _, sha256, filename = (path.split("/") + ["", "", "", ""])[:4]
        data = state._blobs.get(sha256)
        if data is None:
            self._plain(404, b"Not Found", head)
            return
        start = _range_start(self.headers.get("Range"))
        fault = state.faults.get(unquote(filename))
        if fault is not None and not head:
            if start == 0 and fault.cuts == 0:
                fault.cuts += 1
                self._cut(data, fault)
                return
            if start > 0 and fault.range_status is not None:
                self._plain(fault.range_status, b"range refused", head)
                return
        if start >= len(data) and start > 0:
            self._plain(416, b"", head, {"Content-Range": f"bytes */{len(data)}"})
            return
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{sha256}"')
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _cut(self, data: bytes, fault: Fault) -> None:
        """Promise the whole file, send part of it, then drop the connection."""
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(data[: fault.cut_after])
        self.wfile.flush()
        fault.reached.set()
        if fault.hold is not None:
            fault.hold.wait(timeout=60)
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _plain(
        self, status: int, body: bytes, head: bool, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)


def _range_start(header: str | None) -> int:
    if not header or not header.startswith("bytes="):
        return 0
    first = header[len("bytes=") :].split(",")[0]
    start, _, _ = first.partition("-")
    return int(start) if start.strip().isdigit() else 0


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, read, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
