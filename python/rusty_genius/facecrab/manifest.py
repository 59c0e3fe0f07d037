"""Manifests: what a user (or registry.toml, or the embedded models.toml) says about a model, and what it resolves to.

A :class:`UserManifest` is partial and raw; merged over the embedded defaults it becomes a request that facecrab
resolves into a :class:`ModelSpec`: a repo, a quant, the file (or shard set), and once fetched, local paths with
verified sha256 sums.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from rusty_genius.core.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass(frozen=True, kw_only=True)
class UserManifest:
    """A partial description of a model, as a user, registry.toml or models.toml writes it."""

    name: str | None = None
    repo: str | None = None
    gguf_repo: str | None = None
    quant: str | None = None
    files: tuple[str, ...] = ()
    sha256: tuple[str, ...] = ()
    size: int | None = None
    context_length: int | None = None
    template: str | None = None
    thinks: bool | None = None
    python_package: str | None = None
    default: bool = False
    sampling: dict[str, Any] | None = None
    """Recommended sampling (InferenceConfig keywords such as ``temperature``), used when its GGUF names none."""

    @classmethod
    def from_mapping(cls, data: dict[str, Any], *, where: str) -> UserManifest:
        """Reads a TOML table; unknown keys and wrong types are a :class:`ConfigError` naming ``where``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key in ("files", "sha256"):
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ConfigError(f"{where}: {key} must be a list of strings")
                value = tuple(value)
            if key == "sampling" and not isinstance(value, dict):
                raise ConfigError(f"{where}: sampling must be a table of settings, e.g. {{ temperature = 0.2 }}")
            values[key] = value
        return cls(**values)

    def merged_over(self, base: UserManifest) -> UserManifest:
        """This manifest's set fields over ``base``'s."""
        changes = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name)}
        return dataclasses.replace(base, **changes)


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """A resolved model: where its GGUF lives on the hub and, once fetched, on disk."""

    name: str
    """The alias or repo id the user knows it by."""
    repo: str
    """The model's own repo (may hold safetensors only)."""
    gguf_repo: str
    quant: str
    files: tuple[str, ...]
    """The GGUF file, or every shard of a sharded model in order."""
    sha256: tuple[str, ...] = ()
    size: int = 0
    revision: str | None = None
    paths: tuple[Path, ...] = ()
    context_length: int | None = None
    template: str | None = None
    thinks: bool = False
    owned: bool = True
    """Whether rusty-genius fetched the files (``ogenius rm`` may delete them) or found them (it never does)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        """The file to load (the first shard of a sharded model)."""
        if not self.paths:
            raise ConfigError(f"{self.name} is not downloaded yet")
        return self.paths[0]


@cache
def _embedded() -> tuple[UserManifest, dict[str, UserManifest]]:
    text = resources.files("rusty_genius.facecrab").joinpath("models.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    defaults = UserManifest.from_mapping(data.get("defaults", {}), where="models.toml [defaults]")
    models = {
        alias: UserManifest.from_mapping(table, where=f"models.toml [models.{alias}]").merged_over(defaults)
        for alias, table in data.get("models", {}).items()
    }
    return defaults, {alias: dataclasses.replace(m, name=alias) for alias, m in models.items()}


def defaults() -> UserManifest:
    """The global defaults every manifest is merged over."""
    return _embedded()[0]


def known_models() -> dict[str, UserManifest]:
    """The embedded well-known models, by alias."""
    return dict(_embedded()[1])


def default_model() -> UserManifest:
    """The model used when none is named."""
    return next(m for m in _embedded()[1].values() if m.default)
