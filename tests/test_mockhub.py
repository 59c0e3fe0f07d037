"""The mock hub against the real huggingface_hub client, so tests of facecrab can trust it.

huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE at import time, so every client runs in a subprocess
(`run_client`) with its own environment. What the client does on each fault is asserted as observed, so that a
change of behaviour in a new huggingface_hub version shows up here first.
"""

from __future__ import annotations

import hashlib
import socket
import time
from pathlib import Path

import pytest

from tests.hubclient import http_request, quote_path, run_client
from tests.mockhub import HubFile, MockHub, default_hub

pytestmark = pytest.mark.pinky

GGUF_REPO = "Qwen/Qwen2.5-1.5B-Instruct-GGUF"
Q4 = "qwen2.5-1.5b-instruct-q4_k_m.gguf"  # 3 MiB
Q8 = "qwen2.5-1.5b-instruct-q8_0.gguf"  # small
HOSTILE = ["../evil-q4_k_m.gguf", "/abs-q4_k_m.gguf", "sub\\win-q4_k_m.gguf", "C:drive-q4_k_m.gguf"]


def sha256_of(hub: MockHub, repo: str, path: str) -> str:
    return hub.repo(repo).files[path].sha256


def test_model_info_tree_and_errors(tmp_path: Path) -> None:
    with default_hub() as hub:
        out = run_client(
            hub,
            tmp_path,
            """
            info = api.model_info(REPO, files_metadata=True)
            emit("info", sha=info.sha, base=info.card_data.base_model, tags=info.tags,
                 siblings={s.rfilename: [s.size, s.lfs and s.lfs.sha256] for s in info.siblings})
            emit("at_sha", id=api.model_info(REPO, revision=info.sha).id)
            emit("tree", {f.path: [f.size, f.blob_id, f.lfs and f.lfs.sha256] for f in api.list_repo_tree(REPO)})
            emit("unknown_repo", **attempt(api.model_info, "nobody/nothing"))
            emit("unknown_rev", **attempt(api.model_info, REPO, revision="v9"))
            emit("tree_unknown_repo", **attempt(lambda: list(api.list_repo_tree("nobody/nothing"))))
        """,
            REPO=GGUF_REPO,
        )
        repo = hub.repo(GGUF_REPO)
        assert out["info"]["sha"] == repo.sha and out["at_sha"]["id"] == GGUF_REPO
        assert out["info"]["base"] == "Qwen/Qwen2.5-1.5B-Instruct"
        assert {"gguf", "base_model:quantized:Qwen/Qwen2.5-1.5B-Instruct"} <= set(out["info"]["tags"])
        for path, f in repo.files.items():
            lfs = f.sha256 if f.file.lfs else None
            assert out["info"]["siblings"][path] == [f.size, lfs]
            assert out["tree"][path] == [f.size, f.blob_oid, lfs]
        readme = repo.files["README.md"].file.data  # a non-LFS file's oid is its git blob sha1
        assert out["tree"]["README.md"][1] == hashlib.sha1(b"blob %d\0" % len(readme) + readme).hexdigest()
        assert out["unknown_repo"]["error"] == out["tree_unknown_repo"]["error"] == "RepositoryNotFoundError"
        assert out["unknown_rev"]["error"] == "RevisionNotFoundError"
        assert hub.unhandled == []


def test_list_models_search_and_filter(tmp_path: Path) -> None:
    with default_hub() as hub:
        out = run_client(
            hub,
            tmp_path,
            """
            ids = lambda **kw: [m.id for m in api.list_models(**kw)]
            emit("search", ids(search="qwen2.5-3b"))
            emit("quantized", ids(filter="base_model:quantized:Qwen/Qwen2.5-3B-Instruct", limit=5))
            emit("two_filters", ids(filter=["gguf", "base_model:quantized:Qwen/Qwen2.5-1.5B-Instruct"]))
            emit("author", ids(author="bartowski", filter="gguf"))
            emit("none", ids(search="llama-70b"))
            emit("limit", ids(filter="gguf", sort="downloads", limit=2))
            full = next(iter(api.list_models(search="SmolLM2", full=True)))
            emit("full", siblings=[s.rfilename for s in full.siblings], sha=full.sha)
            emit("compact_siblings", next(iter(api.list_models(search="SmolLM2"))).siblings)
        """,
        )
    assert out["search"] == ["Qwen/Qwen2.5-3B-Instruct", "bartowski/Qwen2.5-3B-Instruct-GGUF"]
    assert out["quantized"] == ["bartowski/Qwen2.5-3B-Instruct-GGUF"]
    assert out["two_filters"] == ["Qwen/Qwen2.5-1.5B-Instruct-GGUF"]
    assert out["author"] == ["bartowski/Qwen2.5-3B-Instruct-GGUF"]
    assert out["none"] == []
    assert out["limit"] == ["Qwen/Qwen2.5-1.5B-Instruct-GGUF", "bartowski/Qwen2.5-3B-Instruct-GGUF"]
    assert out["full"]["siblings"] == ["SmolLM2-135M-Instruct.Q4_1.gguf", "README.md"]
    assert out["compact_siblings"] is None


def test_download_lands_in_cache_once_and_offline_reads_it(tmp_path: Path) -> None:
    with default_hub() as hub:
        out = run_client(
            hub,
            tmp_path,
            """
            first = hf_hub_download(REPO, Q4)
            emit("first", path=first, sha=sha256(first), blob=os.path.realpath(first))
            emit("second", hf_hub_download(REPO, Q4))
        """,
            REPO=GGUF_REPO,
            Q4=Q4,
        )
        sha = hub.repo(GGUF_REPO).sha
        assert out["first"]["sha"] == sha256_of(hub, GGUF_REPO, Q4)
        cache = tmp_path / "hf" / "hub" / "models--Qwen--Qwen2.5-1.5B-Instruct-GGUF"
        assert out["first"]["path"] == out["second"] == str(cache / "snapshots" / sha / Q4)
        assert out["first"]["blob"] == str(cache / "blobs" / sha256_of(hub, GGUF_REPO, Q4))
        assert (cache / "refs" / "main").read_text() == sha
        assert hub.get_count(GGUF_REPO, Q4) == 1  # the second call only sent a HEAD
        assert hub.requests.count(("HEAD", f"/{GGUF_REPO}/resolve/main/{Q4}")) == 2

        before = len(hub.requests)
        offline = run_client(
            hub,
            tmp_path,
            """
            emit("cached", **attempt(hf_hub_download, REPO, Q4))
            emit("uncached", **attempt(hf_hub_download, REPO, Q8))
        """,
            offline=True,
            REPO=GGUF_REPO,
            Q4=Q4,
            Q8=Q8,
        )
        assert offline["cached"]["ok"] == out["second"]
        assert offline["uncached"]["error"] == "LocalEntryNotFoundError"
        assert "EntryNotFoundError" in offline["uncached"]["mro"]
        assert len(hub.requests) == before  # offline means no request at all


def test_missing_file_404_fault_and_unknown_repo(tmp_path: Path) -> None:
    with default_hub() as hub:
        hub.fault(GGUF_REPO, Q8, "404")
        out = run_client(
            hub,
            tmp_path,
            """
            emit("missing", **attempt(hf_hub_download, REPO, "nope.gguf"))
            emit("fault", **attempt(hf_hub_download, REPO, Q8))
            emit("repo", **attempt(hf_hub_download, "nobody/nothing", "x.gguf"))
        """,
            REPO=GGUF_REPO,
            Q8=Q8,
        )
        assert out["missing"]["error"] == out["fault"]["error"] == "RemoteEntryNotFoundError"
        assert {"EntryNotFoundError", "HfHubHTTPError"} <= set(out["fault"]["mro"])
        assert out["repo"]["error"] == "RepositoryNotFoundError"
        assert hub.get_count(GGUF_REPO, Q8) == 1 and hub.get_count(GGUF_REPO, "nope.gguf") == 0
        assert cache_files(tmp_path, "blobs") == []  # nothing partial is left behind


def cache_files(tmp_path: Path, kind: str) -> list[str]:
    root = tmp_path / "hf" / "hub"
    return sorted(p.name for p in root.glob(f"models--*/{kind}/**/*") if not p.is_dir())


def test_truncate_retries_then_raises_and_a_rerun_is_whole(tmp_path: Path) -> None:
    with default_hub() as hub:
        hub.fault(GGUF_REPO, Q4, "truncate")
        fail = run_client(
            hub,
            tmp_path,
            """
            emit("r", **attempt(hf_hub_download, REPO, Q4))
        """,
            fast_retries=True,
            REPO=GGUF_REPO,
            Q4=Q4,
        )
        # huggingface_hub retries a broken body 5 times (1 s apart unpatched), then lets httpx's error escape.
        assert fail["r"]["error"] == "RemoteProtocolError" and fail["r"]["module"].startswith("httpx")
        assert hub.get_count(GGUF_REPO, Q4) == 6
        assert cache_files(tmp_path, "blobs") == []

        hub.clear_faults()
        ok = run_client(hub, tmp_path, "emit('r', sha256(hf_hub_download(REPO, Q4)))", REPO=GGUF_REPO, Q4=Q4)
        assert ok["r"] == sha256_of(hub, GGUF_REPO, Q4)


@pytest.mark.parametrize(("chunk", "resumed"), [(None, False), (64 * 1024, True)])
def test_one_truncation_is_retried_in_the_same_call(tmp_path: Path, chunk: int | None, resumed: bool) -> None:
    """With its default 10 MiB chunks, the client keeps nothing of a body cut before the first chunk and starts
    over; with small chunks it resumes with `Range: bytes=N-` and the hub answers 206."""
    with default_hub() as hub:
        hub.fault(GGUF_REPO, Q4, "truncate", times=1)
        out = run_client(hub, tmp_path, "emit('r', sha256(hf_hub_download(REPO, Q4)))",
                         fast_retries=True, chunk_size=chunk, REPO=GGUF_REPO, Q4=Q4)  # fmt: skip
        assert out["r"] == sha256_of(hub, GGUF_REPO, Q4)
        assert hub.get_count(GGUF_REPO, Q4) == 2
        gets = [r for r in hub.records if r.method == "GET" and r.path.endswith(Q4)]
        size = len(hub.repo(GGUF_REPO).files[Q4].file.data)
        assert gets[1].headers.get("Range") == (f"bytes={size // 2}-" if resumed else None)


def test_corrupt_bytes_are_not_detected_by_the_client(tmp_path: Path) -> None:
    """huggingface_hub checks the size, not the sha256: a corrupted body lands in the cache under the expected
    sha256 and later calls return it without a GET. Callers must verify, and repair with force_download."""
    with default_hub() as hub:
        hub.fault(GGUF_REPO, Q8, "corrupt")
        out = run_client(
            hub,
            tmp_path,
            """
            p = hf_hub_download(REPO, Q8)
            emit("first", sha=sha256(p), size=os.path.getsize(p), blob=os.path.basename(os.path.realpath(p)))
            emit("again", sha256(hf_hub_download(REPO, Q8)))
        """,
            REPO=GGUF_REPO,
            Q8=Q8,
        )
        good = sha256_of(hub, GGUF_REPO, Q8)
        assert out["first"]["sha"] != good and out["first"]["blob"] == good
        assert out["first"]["size"] == len(hub.repo(GGUF_REPO).files[Q8].file.data)
        assert out["again"] == out["first"]["sha"] and hub.get_count(GGUF_REPO, Q8) == 1
        hub.clear_faults()
        fixed = run_client(hub, tmp_path, "emit('r', sha256(hf_hub_download(REPO, Q8, force_download=True)))",
                           REPO=GGUF_REPO, Q8=Q8)  # fmt: skip
        assert fixed["r"] == good


@pytest.mark.parametrize("times", [None, 1])
def test_stall_times_out_instead_of_hanging(tmp_path: Path, times: int | None) -> None:
    with default_hub() as hub:
        hub.fault(GGUF_REPO, Q4, "stall", times=times)
        start = time.monotonic()
        out = run_client(hub, tmp_path, "emit('r', **attempt(lambda: sha256(hf_hub_download(REPO, Q4))))",
                         fast_retries=True, download_timeout=0.3, REPO=GGUF_REPO, Q4=Q4)  # fmt: skip
        assert time.monotonic() - start < 15
    if times is None:  # 1 try + 5 retries, each ending in a read timeout
        assert out["r"]["error"] == "ReadTimeout" and out["r"]["module"].startswith("httpx")
        assert hub.get_count(GGUF_REPO, Q4) == 6
    else:
        assert out["r"]["ok"] == sha256_of(hub, GGUF_REPO, Q4) and hub.get_count(GGUF_REPO, Q4) == 2


def test_stop_ends_a_stalled_connection() -> None:
    hub = default_hub()
    with hub:
        hub.fault(GGUF_REPO, Q4, "stall")
        port = int(hub.endpoint.rsplit(":", 1)[1])
        conn = socket.create_connection(("127.0.0.1", port))
        conn.sendall(f"GET /{GGUF_REPO}/resolve/main/{Q4} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        conn.recv(1024)  # headers (and maybe body) arrived: the handler is now stalled
        stopped = time.monotonic()
    assert time.monotonic() - stopped < 3
    conn.settimeout(5)
    while conn.recv(1 << 20):  # the hub closed the connection: the client sees EOF, not a hang
        pass
    conn.close()


def test_hostile_names_are_listed_and_served_as_is(tmp_path: Path) -> None:
    repo_id = "evil/Hostile-GGUF"
    with default_hub() as hub:
        names = [*HOSTILE, "ok-q8_0.gguf"]
        out = run_client(
            hub,
            tmp_path,
            """
            emit("flat", [f.path for f in api.list_repo_tree(REPO)])
            emit("recursive", [f.path for f in api.list_repo_tree(REPO, recursive=True)])
            emit("files", api.list_repo_files(REPO))
            for name in NAMES:
                emit(name, **attempt(lambda: sha256(hf_hub_download(REPO, name))))
        """,
            REPO=repo_id,
            NAMES=names,
        )
        assert out["flat"] == out["recursive"] == out["files"] == names
        for name in names:  # the hub serves every name, quoted as the client quotes it
            status, _, body = http_request(hub, f"/{repo_id}/resolve/main/{quote_path(name)}")
            assert status == 200 and hashlib.sha256(body).hexdigest() == sha256_of(hub, repo_id, name)
    # huggingface_hub 2.4 refuses "..", absolute and drive names itself; a backslash is only a character on Linux.
    for name in ("../evil-q4_k_m.gguf", "/abs-q4_k_m.gguf", "C:drive-q4_k_m.gguf"):
        assert out[name]["error"] == "ValueError", out[name]
    assert out["sub\\win-q4_k_m.gguf"]["ok"] == sha256_of(hub, repo_id, "sub\\win-q4_k_m.gguf")
    assert out["ok-q8_0.gguf"]["ok"] == sha256_of(hub, repo_id, "ok-q8_0.gguf")


def test_snapshot_download_of_shards(tmp_path: Path) -> None:
    with default_hub() as hub:
        out = run_client(
            hub,
            tmp_path,
            """
            d = snapshot_download("acme/Sharded-GGUF", allow_patterns=["*q4_k_m-*-of-*.gguf"])
            emit("r", {n: sha256(os.path.join(d, n)) for n in sorted(os.listdir(d))})
        """,
        )
        repo = hub.repo("acme/Sharded-GGUF")
    assert out["r"] == {n: repo.files[n].sha256 for n in repo.files if "-of-" in n}


def test_resolve_headers_and_ranges() -> None:
    with MockHub() as hub:
        data = bytes(range(256)) * 40
        sha = hub.add_repo("me/r", [HubFile("m.gguf", data), HubFile("c.json", b"{}", lfs=False)])
        _, head, body = http_request(hub, "/me/r/resolve/main/m.gguf", method="HEAD")
        assert body == b"" and head["x-repo-commit"] == sha and "x-xet-hash" not in head
        digest = hashlib.sha256(data).hexdigest()
        assert head["etag"] == head["x-linked-etag"] == f'"{digest}"'
        assert head["x-linked-size"] == head["content-length"] == str(len(data)) and head["accept-ranges"] == "bytes"
        _, small, _ = http_request(hub, f"/me/r/resolve/{sha}/c.json", method="HEAD")
        assert small["etag"] == f'"{hashlib.sha1(b"blob 2" + bytes(1) + b"{}").hexdigest()}"'
        assert "x-linked-etag" not in small and "x-linked-size" not in small

        size = len(data)
        for spec, start, end in [("bytes=1000-", 1000, size), ("bytes=10-19", 10, 20), ("bytes=-5", size - 5, size)]:
            status, headers, body = http_request(hub, "/me/r/resolve/main/m.gguf", headers={"Range": spec})
            assert status == 206 and body == data[start:end], spec
            assert headers["content-range"] == f"bytes {start}-{end - 1}/{len(data)}"
        status, headers, _ = http_request(hub, "/me/r/resolve/main/m.gguf", headers={"Range": f"bytes={len(data)}-"})
        assert status == 416 and headers["content-range"] == f"bytes */{len(data)}"
        assert http_request(hub, "/me/r/resolve/main/m.gguf", headers={"Range": "bytes=0-1,5-6"})[0] == 200

        hub.fault("me/r", "m.gguf", "truncate")  # a resumed request past the cut gets headers and no bytes
        conn = socket.create_connection(("127.0.0.1", int(hub.endpoint.rsplit(":", 1)[1])), timeout=5)
        conn.sendall(b"GET /me/r/resolve/main/m.gguf HTTP/1.1\r\nHost: x\r\nRange: bytes=9000-\r\n\r\n")
        received = b"".join(iter(lambda: conn.recv(65536), b""))
        conn.close()
        assert received.startswith(b"HTTP/1.1 206") and received.endswith(b"\r\n\r\n")
        assert hub.get_count("me/r", "m.gguf") == 6


def test_errors_and_unhandled_routes_are_visible() -> None:
    with MockHub() as hub:
        hub.add_repo("me/r", [HubFile("m.gguf", b"GGUF")])
        cases = {
            "/nobody/x/resolve/main/m.gguf": "RepoNotFound",
            "/me/r/resolve/v2/m.gguf": "RevisionNotFound",
            "/me/r/resolve/main/other.gguf": "EntryNotFound",
            "/api/models/nobody/x": "RepoNotFound",
            "/api/models/me/r/tree/main/no-such-dir": "EntryNotFound",
        }
        for path, code in cases.items():
            status, headers, body = http_request(hub, path)
            assert (status, headers.get("x-error-code")) == (404, code), path
            assert body.startswith(b'{"error": ')
        assert http_request(hub, "/api/spaces/me/r")[0] == 404
        assert http_request(hub, "/api/models/me/r", method="DELETE")[0] == 404
        assert hub.unhandled == [("GET", "/api/spaces/me/r"), ("DELETE", "/api/models/me/r")]
        assert ("GET", "/api/spaces/me/r") in hub.requests
        with pytest.raises(KeyError):
            hub.fault("me/r", "missing.gguf", "404")
        with pytest.raises(ValueError):
            hub.fault("me/r", "m.gguf", "explode")


def test_lifecycle() -> None:
    hub = MockHub()
    with pytest.raises(RuntimeError):
        _ = hub.endpoint
    with hub:
        port = int(hub.endpoint.rsplit(":", 1)[1])
        assert http_request(hub, "/api/models")[0] == 200
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
