"""Fetching a resolved model into the standard Hugging Face cache, and proving the bytes are the hub's.

Files go through ``hf_hub_download`` (so models fetched by other tools are found, never fetched twice, and
HF_TOKEN / HF_HOME / HF_HUB_OFFLINE behave as everywhere else). Progress: given an ``on_progress`` callback, the
bytes are reported to it (through a silent tqdm class handed to huggingface_hub, which calls ``update`` per chunk)
and nothing is printed; without one, huggingface_hub shows its own bar on stderr as it does everywhere. Every file is
then hashed and compared with the hub's LFS sha256: a mismatch deletes the cached copy and raises, so nothing
unverified is ever registered.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import os
from functools import cache
from pathlib import Path

from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

from rusty_genius import _native
from rusty_genius.core.errors import DownloadError, OfflineError
from rusty_genius.core.progress import DownloadProgress, OnProgress
from rusty_genius.facecrab.manifest import ModelSpec
from rusty_genius.facecrab.paths import safe_repo_path

_CHUNK = 1 << 20


@cache
def transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's own error base class (huggingface_hub has used requests, httpx and httpx2)."""
    found: list[type[BaseException]] = [HfHubHTTPError, OSError]
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def describe(err: BaseException) -> str:
    """A transport error in a few words: no connection, a timeout, or the HTTP status."""
    response = getattr(err, "response", None)
    status = getattr(response, "status_code", None)
    if status is not None:
        return f"HTTP {status}"
    name = type(err).__name__
    if "Timeout" in name:
        return "timed out"
    if "Connect" in name or isinstance(err, ConnectionError):
        return f"no connection: {err}"
    return f"{name}: {err}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def discard(path: Path) -> None:
    """Removes a cached file and the blob it links to."""
    blob = Path(os.path.realpath(path))
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)


def cached_path(spec: ModelSpec, filename: str) -> Path | None:
    found = try_to_load_from_cache(spec.gguf_repo, filename, revision=spec.revision)
    return Path(found) if isinstance(found, str) else None


def _reporter(model: str, filename: str, on_progress: OnProgress) -> type:
    """A class to pass as ``hf_hub_download(tqdm_class=...)``: huggingface_hub makes one "bar" per file and calls
    ``update`` with each chunk's size; this one draws nothing and reports the bytes to ``on_progress``."""

    class Reporter:
        def __init__(self, *, total: float | None = None, initial: float = 0, **_: object) -> None:
            self.total = total
            self.n = int(initial)

        def update(self, n: float | None = 1) -> None:
            self.n += int(n or 0)  # negative after a retry that starts over
            on_progress(DownloadProgress(model, filename, self.n, None if self.total is None else int(self.total)))

        def update_transfer(self, n: int) -> None:
            """Xet downloads also count network bytes; the bytes written (``update``) are the progress here."""

        def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
            """The speed huggingface_hub would show; not reported."""

        def close(self) -> None:
            pass

        def __enter__(self) -> Reporter:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    return Reporter


def fetch(spec: ModelSpec, on_progress: OnProgress | None = None, *, model: str | None = None) -> ModelSpec:
    """Downloads (or finds in the cache) every file of ``spec``, verifies it, and returns ``spec`` with its paths.

    ``on_progress`` gets the bytes of each file that is downloaded, as :class:`DownloadProgress` of ``model``
    (default: ``spec.name``)."""
    paths: list[Path] = []
    owned = False
    for i, filename in enumerate(spec.files):
        safe_repo_path(filename)
        owned = owned or cached_path(spec, filename) is None
        bar = None if on_progress is None else _reporter(model or spec.name, filename, on_progress)
        try:
            path = Path(hf_hub_download(spec.gguf_repo, filename, revision=spec.revision, tqdm_class=bar))
        except (OfflineModeIsEnabled, LocalEntryNotFoundError) as err:
            raise OfflineError(
                f"{spec.gguf_repo}/{filename} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; "
                "unset it (or connect) and download again"
            ) from err
        except EntryNotFoundError as err:
            raise DownloadError(f"{spec.gguf_repo} no longer has {filename}") from err
        except transport_errors() as err:
            raise DownloadError(
                f"downloading {spec.gguf_repo}/{filename} from {constants.ENDPOINT} failed ({describe(err)}); "
                "check the network and run it again"
            ) from err
        if spec.sha256:
            actual = sha256_of(path)
            if actual != spec.sha256[i]:
                discard(path)
                raise DownloadError(
                    f"{spec.gguf_repo}/{filename} does not match the hub's sha256 (expected {spec.sha256[i]}, got "
                    f"{actual}); the bad copy was deleted, run it again"
                )
        paths.append(path)
    _native.check_gguf(str(paths[0]))
    return dataclasses.replace(spec, paths=tuple(paths), owned=owned)
