"""A local stand-in for the Hugging Face Hub, for tests of the download path (there is no huggingface.co here).

`MockHub` is a real HTTP/1.1 server on 127.0.0.1 (stdlib `ThreadingHTTPServer` in a daemon thread). Point
huggingface_hub at it with `HF_ENDPOINT=hub.endpoint`; the client reads that variable at import time, so run it in a
subprocess whose environment sets it. It speaks what huggingface_hub 2.4 sends (read from its source):

- `HEAD`/`GET /{repo}/resolve/{rev}/{path}`: `X-Repo-Commit`, `ETag` (`"<sha256>"` for LFS files, the git blob sha1
  otherwise), `X-Linked-Etag`/`X-Linked-Size` for LFS files, `Content-Length`, `Accept-Ranges: bytes`; a single
  `Range` (`bytes=a-b`, `a-`, `-n`) gets 206 with `Content-Range`. Never `X-Xet-Hash` (it would switch the client to
  the Xet protocol). Files are served directly, with no CDN redirect.
- `GET /api/models/{repo}[/revision/{rev}]` (model_info; `blobs=true` adds sizes and LFS data to `siblings`),
  `GET /api/models/{repo}/tree/{rev}[/{dir}]` (list_repo_tree; `recursive`, `expand`),
  `POST /api/models/{repo}/paths-info/{rev}` (get_paths_info) and `GET /api/models` (list_models: `search`, `filter`
  (repeated: all must match), `author`, `pipeline_tag`, `sort`, `limit`, `full`, `expand`, `cardData`).
- Errors are 404 with a JSON body and `X-Error-Code` `RepoNotFound` / `RevisionNotFound` / `EntryNotFound`, which
  huggingface_hub turns into `RepositoryNotFoundError` / `RevisionNotFoundError` / `RemoteEntryNotFoundError`.
  Any other route is a plain 404, listed in `unhandled` (and, like every request, in `requests`).

Faults (`fault()`) apply to GETs of resolve/ only; HEAD keeps answering normally. "truncate" and "stall" cut the body
at half the file counted from its start, so a resumed `Range` request past that point gets no bytes at all.
"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from dataclasses import dataclass
from types import TracebackType

from tests.hubdata import HubFile, Repo, RequestRecord, default_scenario
from tests.hubserver import HubHandler, HubServer

__all__ = ["FAULT_KINDS", "HubFile", "MockHub", "RequestRecord", "default_hub"]

FAULT_KINDS = ("404", "truncate", "corrupt", "stall")


@dataclass
class _Fault:
    kind: str
    times: int | None


class MockHub:
    """A mock Hugging Face Hub; use it as a context manager (start on enter, stop and join on exit)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []  # (method, percent-decoded path without the query)
        self.records: list[RequestRecord] = []  # the same requests with their query and headers
        self.unhandled: list[tuple[str, str]] = []  # requests no route answered
        self._repos: dict[str, Repo] = {}
        self._faults: dict[tuple[str, str], _Fault] = {}
        self._gets: Counter[tuple[str, str]] = Counter()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.conns: set[socket.socket] = set()
        self.conns_done = threading.Condition(self.lock)
        self._server: HubServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> MockHub:
        """Binds 127.0.0.1 on a free port and serves from a daemon thread (once: a stopped hub stays stopped)."""
        if self._server is not None:
            raise RuntimeError("MockHub is already started")
        self._server = HubServer(("127.0.0.1", 0), HubHandler)
        self._server.hub = self
        # A short poll interval: stop() waits up to one interval for serve_forever to notice.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), name="mockhub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving, ends every open connection (stalled ones too) and joins all threads."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._thread = None
        self.stopping.set()
        server.shutdown()
        with self.lock:
            for conn in self.conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.conns_done.wait_for(lambda: not self.conns, timeout=10)
        server.server_close()
        thread.join(timeout=10)

    def __enter__(self) -> MockHub:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """`http://127.0.0.1:PORT`, for HF_ENDPOINT."""
        if self._server is None:
            raise RuntimeError("start the MockHub first (use it as a context manager)")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # content

    def add_repo(
        self,
        repo_id: str,
        files: list[HubFile],
        *,
        tags: list[str] | None = None,
        base_model: str | None = None,
        pipeline_tag: str | None = None,
        downloads: int = 0,
        likes: int = 0,
    ) -> str:
        """Adds (or replaces) a model repo and returns its 40-hex commit sha (the only revision besides "main")."""
        repo = Repo(repo_id, files, tags or [], base_model, pipeline_tag, downloads, likes)
        with self.lock:
            self._repos[repo_id] = repo
        return repo.sha

    def repo(self, repo_id: str) -> Repo:
        """The stored repo, e.g. for `hub.repo(r).files[path].sha256`."""
        with self.lock:
            return self._repos[repo_id]

    def fault(self, repo_id: str, path: str, kind: str, *, times: int | None = None) -> None:
        """Makes the next `times` GETs of that file (all of them when None) fail in the way `kind` names."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {FAULT_KINDS}")
        if path not in self.repo(repo_id).files:
            raise KeyError(f"{repo_id} has no file {path!r}")
        with self.lock:
            self._faults[(repo_id, path)] = _Fault(kind, times)

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def get_count(self, repo_id: str, path: str) -> int:
        """How many GETs of resolve/ (any revision, faulted or not) asked for that file."""
        with self.lock:
            return self._gets[(repo_id, path)]

    # used by the server (tests/hubserver.py)

    def record(self, record: RequestRecord) -> None:
        with self.lock:
            self.requests.append((record.method, record.path))
            self.records.append(record)

    def find(self, repo_id: str) -> Repo | None:
        with self.lock:
            return self._repos.get(repo_id)

    def all_repos(self) -> list[Repo]:
        with self.lock:
            return list(self._repos.values())

    def take_get(self, repo_id: str, path: str) -> str | None:
        """Counts a GET of the file and returns the fault it gets, if any."""
        with self.lock:
            self._gets[(repo_id, path)] += 1
            fault = self._faults.get((repo_id, path))
            if fault is None:
                return None
            if fault.times is not None:
                if fault.times <= 0:
                    return None
                fault.times -= 1
            return fault.kind


def default_hub() -> MockHub:
    """A MockHub (not started) holding the default scenario; see `tests.hubdata.default_scenario`."""
    hub = MockHub()
    for repo_id, files, kwargs in default_scenario():
        hub.add_repo(repo_id, files, **kwargs)
    return hub
