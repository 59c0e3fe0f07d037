"""Run the real huggingface_hub client against a MockHub, in a subprocess.

huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE when it is imported, so a client that must see the
mock hub (and a private cache) has to start in a fresh process with that environment. `run_client` runs a snippet
there and returns what it reported with `emit`.

Names the snippet can use: `api` (an HfApi), `hf_hub_download`, `snapshot_download`, `constants`, `os`,
`sha256(path)`, `emit(key, value)` / `emit(key, **fields)`, `attempt(fn, *args, **kwargs)` (returns
`{"ok": result}` or `{"error": class name, "module", "mro": [class names], "message"}`), plus the keyword arguments
given to `run_client` as globals.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.mockhub import MockHub

_MARK = "MOCKHUB-RESULTS "
_PRELUDE = """
import hashlib, json, os, sys, types
cfg = json.loads(sys.argv[1])
from huggingface_hub import HfApi, constants, file_download, hf_hub_download, snapshot_download
if cfg["download_timeout"] is not None:
    constants.HF_HUB_DOWNLOAD_TIMEOUT = cfg["download_timeout"]  # the variable only takes whole seconds
if cfg["chunk_size"] is not None:
    constants.DOWNLOAD_CHUNK_SIZE = cfg["chunk_size"]
if cfg["fast_retries"]:  # http_get sleeps 1 s before each of its 5 retries; only file_download's sleep is cut
    import time as _time
    file_download.time = types.SimpleNamespace(sleep=lambda s: _time.sleep(min(s, 0.01)))
globals().update(cfg["names"])
api = HfApi()
results = {}

def emit(key, value=None, **fields):
    results[key] = fields if value is None and fields else value

def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

def attempt(fn, *args, **kwargs):
    try:
        return {"ok": fn(*args, **kwargs)}
    except Exception as e:
        t = type(e)
        return {"error": t.__name__, "module": t.__module__, "mro": [c.__name__ for c in t.__mro__],
                "message": str(e)[:500]}

def main():
"""
_EPILOGUE = f"""
main()
print({_MARK!r} + json.dumps(results))
"""


def client_env(hub: MockHub, hf_home: Path, *, offline: bool = False) -> dict[str, str]:
    """The environment of a client of `hub` with its cache in `hf_home`, with no token and no proxy."""
    drop = ("HF_", "HUGGING", "TRANSFORMERS_OFFLINE", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(drop)}
    env.update(
        HF_ENDPOINT=hub.endpoint,
        HF_HOME=str(hf_home),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HUB_ETAG_TIMEOUT="5",
        HF_HUB_DOWNLOAD_TIMEOUT="5",
        NO_PROXY="127.0.0.1,localhost",
    )
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def run_client(
    hub: MockHub,
    tmp_path: Path,
    snippet: str,
    *,
    offline: bool = False,
    fast_retries: bool = False,
    download_timeout: float | None = None,
    chunk_size: int | None = None,
    timeout: float = 60,
    **names: Any,
) -> dict[str, Any]:
    """Runs `snippet` in a huggingface_hub client of `hub` (cache: tmp_path/"hf") and returns what it emitted."""
    cfg = {
        "download_timeout": download_timeout,
        "chunk_size": chunk_size,
        "fast_retries": fast_retries,
        "names": names,
    }
    code = _PRELUDE + textwrap.indent(textwrap.dedent(snippet).strip() or "pass", "    ") + _EPILOGUE
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(cfg)],
        env=client_env(hub, tmp_path / "hf", offline=offline),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(_MARK)]
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"client failed (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    result: dict[str, Any] = json.loads(lines[-1][len(_MARK) :])
    return result


def http_request(
    hub: MockHub, path: str, *, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One raw request (the path is sent exactly as given: no normalisation of "..", "//" or "\\")."""
    port = int(hub.endpoint.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def quote_path(name: str) -> str:
    """A file name as huggingface_hub puts it in a resolve URL (`hf_hub_url` uses `quote(filename)`)."""
    return quote(name)
