"""The HTTP side of the mock hub (tests/mockhub.py): routing, resolve with ranges and faults, error replies.

State (repos, faults, the request log) lives in `MockHub`; this module only reads it through the methods MockHub
keeps for its server (`record`, `find`, `all_repos`, `take_get`, `lock`, `conns`, `stopping`).
"""

from __future__ import annotations

import json
import re
import select
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.hubdata import Repo, RequestRecord

if TYPE_CHECKING:
    from tests.mockhub import MockHub

_CHUNK = 64 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class HubServer(ThreadingHTTPServer):
    daemon_threads = True
    hub: MockHub

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gives up mid-body (timeouts, truncation tests) is expected, not an error worth a traceback.
        pass


class _Unsatisfiable(Exception):
    pass


class HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive connection ends after this long
    server: HubServer

    def setup(self) -> None:
        super().setup()
        with self.server.hub.lock:
            self.server.hub.conns.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            hub = self.server.hub
            with hub.lock:
                hub.conns.discard(self.connection)
                hub.conns_done.notify_all()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the hub's own request log is `requests`

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # routing

    def _dispatch(self, method: str) -> None:
        hub = self.server.hub
        raw = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        hub.record(RequestRecord(method, unquote(raw.path), raw.query, dict(self.headers.items())))
        query = parse_qs(raw.query, keep_blank_values=True)
        if raw.path.rstrip("/") == "/api/models" and method in ("GET", "HEAD"):
            self._json(200, _list_models(hub.all_repos(), query), head=method == "HEAD")
        elif raw.path.startswith("/api/models/"):
            self._api_repo(method, raw.path[len("/api/models/") :], query, body)
        elif "/resolve/" in raw.path and method in ("GET", "HEAD"):
            repo_raw, _, tail = raw.path.partition("/resolve/")
            rev_raw, _, file_raw = tail.partition("/")
            self._resolve(method, unquote(repo_raw.lstrip("/")), unquote(rev_raw), unquote(file_raw))
        else:
            self._unhandled(method)

    def _unhandled(self, method: str) -> None:
        hub = self.server.hub
        with hub.lock:
            hub.unhandled.append((method, unquote(urlsplit(self.path).path)))
        self._json(404, {"error": f"MockHub has no route for {method} {self.path}"}, head=method == "HEAD")

    def _api_repo(self, method: str, rest: str, query: dict[str, list[str]], body: bytes) -> None:
        hub, segs = self.server.hub, rest.split("/")
        width = 2 if hub.find("/".join(segs[:2])) is not None else 1
        repo = hub.find(unquote("/".join(segs[:width])))
        if repo is None:
            return self._error("RepoNotFound", "Repository not found", method)
        route, args = (segs[width] if len(segs) > width else ""), segs[width + 1 :]
        rev = unquote(args[0]) if args else "main"
        if route not in ("", "revision", "tree", "paths-info") or (route and not args):
            return self._unhandled(method)
        sha = repo.resolve(rev)
        if sha is None:
            return self._error("RevisionNotFound", f"Invalid rev id: {rev}", method)
        head = method == "HEAD"
        if route in ("", "revision") and method in ("GET", "HEAD"):
            self._json(200, repo.info(blobs=_truthy(query.get("blobs"))), head=head)
        elif route == "tree" and method in ("GET", "HEAD"):
            folder = unquote("/".join(args[1:]))
            listing = repo.tree(folder, _truthy(query.get("recursive")), _truthy(query.get("expand")))
            if listing is None:
                return self._error("EntryNotFound", "Entry not found", method, commit=sha)
            self._json(200, listing, head=head)
        elif route == "paths-info" and method == "POST":
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            self._json(200, repo.paths_info(form.get("paths", []), _truthy(form.get("expand"))))
        else:
            self._unhandled(method)

    # responses

    def _send(self, status: int, headers: dict[str, str], body: bytes, *, head: bool = False) -> None:
        self.send_response(status)
        for k, v in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, obj: object, *, head: bool = False, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        self._send(status, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, body, head=head)

    def _error(self, code: str, message: str, method: str, *, commit: str | None = None) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message}
        if commit is not None:
            headers["X-Repo-Commit"] = commit  # the real hub sends it, and the client caches the miss under it
        self._json(404, {"error": message}, head=method == "HEAD", headers=headers)

    def _resolve(self, method: str, repo_id: str, rev: str, path: str) -> None:
        repo = self.server.hub.find(repo_id)
        if repo is None:
            return self._error("RepoNotFound", "Repository not found", method)
        sha = repo.resolve(rev)
        if sha is None:
            return self._error("RevisionNotFound", f"Invalid rev id: {rev}", method)
        stored = repo.files.get(path)
        if stored is None:
            return self._error("EntryNotFound", "Entry not found", method, commit=sha)
        headers = stored.headers(sha)
        data = stored.file.data
        if method == "HEAD":
            return self._send(200, headers, data, head=True)
        fault = self.server.hub.take_get(repo_id, path)
        if fault == "404":
            return self._error("EntryNotFound", "Entry not found", method, commit=sha)
        if fault == "corrupt":
            data = _corrupt(data)
        try:
            span = _parse_range(self.headers.get("Range"), len(data))
        except _Unsatisfiable:
            return self._send(416, {**headers, "Content-Range": f"bytes */{len(data)}"}, b"")
        start, end = span or (0, len(data))
        self.send_response(206 if span else 200)
        if span:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        for k, v in {**headers, "Content-Length": str(end - start)}.items():
            self.send_header(k, v)
        self.end_headers()
        stop_at = max(start, min(end, len(data) // 2)) if fault in ("truncate", "stall") else end
        view = memoryview(data)
        for at in range(start, stop_at, _CHUNK):
            self.wfile.write(view[at : min(at + _CHUNK, stop_at)])
        if fault == "stall":
            self._stall()
        if fault in ("truncate", "stall"):
            self.close_connection = True  # the server then closes the socket: the body ends short

    def _stall(self) -> None:
        """Sends nothing more until the client hangs up or the hub stops."""
        hub = self.server.hub
        while not hub.stopping.is_set():
            readable, _, _ = select.select([self.connection], [], [], 0.05)
            if readable:
                try:
                    if not self.connection.recv(1, socket.MSG_PEEK):
                        return  # the client closed the connection
                except OSError:
                    return
                hub.stopping.wait(0.05)


def _truthy(values: list[str] | None) -> bool:
    """A query flag as httpx sends a Python bool ("true"), or as a person types it."""
    return values is not None and len(values) > 0 and values[-1].lower() in ("1", "true", "yes")


def _parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """(start, end) of a single satisfiable byte range; None to serve the whole file (no or unsupported header)."""
    m = _RANGE.fullmatch((value or "").strip())
    if m is None or m.group(1) == m.group(2) == "":
        return None
    first, last = m.group(1), m.group(2)
    if first == "":
        n = int(last)
        if n == 0 or size == 0:
            raise _Unsatisfiable
        return max(0, size - n), size
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise _Unsatisfiable
    return start, min(size, int(last) + 1) if last else size


def _corrupt(data: bytes) -> bytes:
    """Same length, different bytes (one flipped byte in the middle): the sha256 no longer matches."""
    if not data:
        return data
    mid = len(data) // 2
    return data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :]


def _list_models(repos: list[Repo], query: dict[str, list[str]]) -> list[dict[str, object]]:
    def one(name: str) -> str | None:
        return query[name][-1] if query.get(name) else None

    search, author, pipeline = (one("search") or "").lower(), one("author"), one("pipeline_tag")
    found = [
        r
        for r in repos
        if search in r.repo_id.lower()
        and (author is None or r.author.lower() == author.lower())
        and (pipeline is None or r.pipeline_tag == pipeline)
        and all(f in r.all_tags for f in query.get("filter", []))
    ]
    sort = one("sort")
    if sort in ("downloads", "likes"):
        found.sort(key=lambda r: r.downloads if sort == "downloads" else r.likes, reverse=one("direction") != "1")
    limit = one("limit")
    if limit is not None and limit.isdigit():
        found = found[: int(limit)]
    full, expand, card = _truthy(query.get("full")), query.get("expand", []), _truthy(query.get("cardData"))
    return [r.list_item(full=full, expand=expand, card=card) for r in found]
