"""Models that are already on this machine: the embedded default shipped by a PyPI package, and imported files."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

from rusty_genius import _native
from rusty_genius.core.errors import ModelLoadError
from rusty_genius.facecrab.download import sha256_of
from rusty_genius.facecrab.manifest import ModelSpec, UserManifest
from rusty_genius.facecrab.quants import quant_of


def from_package(request: UserManifest) -> ModelSpec | None:
    """The request's file from its ``python_package`` (located without importing it), if installed and verified."""
    if not request.python_package or len(request.files) != 1:
        return None
    spec = importlib.util.find_spec(request.python_package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / request.files[0]
    if not path.is_file() or (request.size and path.stat().st_size != request.size):
        return None
    if request.sha256 and sha256_of(path) != request.sha256[0]:
        raise ModelLoadError(f"{path} does not match the sha256 in models.toml; reinstall {request.python_package}")
    return ModelSpec(
        name=request.name or path.stem,
        repo=request.repo or "",
        gguf_repo=request.gguf_repo or request.repo or "",
        quant=request.quant or "",
        files=request.files,
        sha256=request.sha256,
        size=path.stat().st_size,
        paths=(path,),
        context_length=request.context_length,
        template=request.template,
        thinks=bool(request.thinks),
        owned=False,
    )


def imported(path: Path, name: str) -> ModelSpec:
    """A spec for an existing GGUF file (header checked, hashed); rusty-genius does not own it."""
    path = path.expanduser().resolve()
    header = _native.check_gguf(str(path))
    spec = ModelSpec(
        name=name,
        repo="",
        gguf_repo="",
        quant=quant_of(path.name) or "",
        files=(path.name,),
        sha256=(sha256_of(path),),
        size=path.stat().st_size,
        paths=(path,),
        context_length=header.get("context_length"),
        owned=False,
    )
    return dataclasses.replace(spec, extra={"architecture": header.get("architecture") or ""})
