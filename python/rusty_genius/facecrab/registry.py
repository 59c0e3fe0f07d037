"""registry.toml: the models this machine has, by name.

Rules: every change is a read-modify-write under a file lock, written atomically (temp file in the same directory,
fsync, rename, fsync of the directory), so two processes never lose each other's entries and a crash never leaves
half a file. A registry that does not parse is moved aside (``registry.toml.corrupt-<time>``) with a warning and
rebuilt from the GGUF files in the Hugging Face cache: never silently emptied.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tomli_w
from filelock import FileLock

from rusty_genius.facecrab.manifest import ModelSpec
from rusty_genius.facecrab.paths import config_dir
from rusty_genius.facecrab.rebuild import models_in_cache

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

log = logging.getLogger("rusty_genius.facecrab")

_LIST_FIELDS = ("files", "sha256")


def _to_table(spec: ModelSpec) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        if f.name == "name" or value is None or value == {}:
            continue
        if f.name == "paths":
            value = [str(p) for p in value]
        elif f.name in _LIST_FIELDS:
            value = list(value)
        table[f.name] = value
    return table


def _from_table(name: str, table: dict[str, Any]) -> ModelSpec:
    known = {f.name for f in dataclasses.fields(ModelSpec)}
    values = {k: v for k, v in table.items() if k in known and k != "name"}
    values["paths"] = tuple(Path(p) for p in table.get("paths", ()))
    for key in _LIST_FIELDS:
        values[key] = tuple(table.get(key, ()))
    return ModelSpec(name=name, **values)


class Registry:
    """The registry file of one config directory (default: :func:`config_dir`)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or config_dir()
        self.path = self.directory / "registry.toml"
        self._lock = FileLock(str(self.directory / "registry.toml.lock"))

    def models(self) -> dict[str, ModelSpec]:
        """Every registered model, by name."""
        with self._locked():
            return self._read()

    def get(self, name: str) -> ModelSpec | None:
        return self.models().get(name)

    def put(self, spec: ModelSpec) -> None:
        """Adds or replaces ``spec`` under its name."""
        self.update(lambda models: {**models, spec.name: spec})

    def remove(self, name: str) -> ModelSpec | None:
        """Unregisters ``name``; returns what was registered."""
        removed: list[ModelSpec] = []

        def drop(models: dict[str, ModelSpec]) -> dict[str, ModelSpec]:
            if name in models:
                removed.append(models.pop(name))
            return models

        self.update(drop)
        return removed[0] if removed else None

    def update(self, change: Callable[[dict[str, ModelSpec]], dict[str, ModelSpec]]) -> None:
        """Applies ``change`` to the registered models and writes the result, all under the lock."""
        with self._locked():
            self._write(change(self._read()))

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            yield

    def _read(self) -> dict[str, ModelSpec]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            data = tomllib.loads(text)
            return {name: _from_table(name, table) for name, table in data.get("models", {}).items()}
        except (tomllib.TOMLDecodeError, TypeError, AttributeError, ValueError) as err:
            aside = self.path.with_name(f"registry.toml.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(self.path, aside)
            log.warning(
                "registry %s is corrupt (%s); moved it to %s and rebuilt it from the cache", self.path, err, aside
            )
            models = models_in_cache()
            self._write(models)
            return models

    def _write(self, models: dict[str, ModelSpec]) -> None:
        text = tomli_w.dumps({"models": {name: _to_table(spec) for name, spec in sorted(models.items())}})
        fd, tmp = tempfile.mkstemp(prefix=".registry-", suffix=".toml", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if hasattr(os, "O_DIRECTORY"):
            dir_fd = os.open(self.directory, os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
