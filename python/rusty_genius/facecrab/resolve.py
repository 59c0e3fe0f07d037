"""What a model name means. This is the one place that decides: the library (``Genius``, the brainstem's
Dispatcher), ``ogenius chat/serve/download/teaser`` and the server's check of a request's ``model`` all ask here.

A name is, in this order:

- ``pinky`` (any case): the stub engine;
- a path ending in ``.gguf`` (any case): that file;
- a registered name (``ogenius list``: downloaded ``name:QUANT`` entries and imported names), exactly;
- an alias from models.toml (any case) or a Hugging Face repo id (the model's own repo or its GGUF repo), each with
  an optional ``:QUANT``;
- nothing: the default model, the one models.toml marks ``default = true`` (no code names it).

Anything else is an :class:`~rusty_genius.UnknownModelError` carrying the close matches.

Rules: resolving never downloads and never opens a model file; it reads models.toml and registry.toml only (and
does not create a registry that is not there yet). :func:`~rusty_genius.facecrab.ensure_model` fetches a
resolution when an entry point wants the files. The key is canonical: every spelling of one model resolves to the
same key, which is the name it is (or will be) registered under and the brainstem's name for it.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rusty_genius.core.errors import ConfigError, GeniusError, UnknownModelError
from rusty_genius.facecrab.manifest import ModelSpec, UserManifest, default_model, defaults, known_models
from rusty_genius.facecrab.quants import quant_of
from rusty_genius.facecrab.registry import Registry

PINKY = "pinky"
"""The stub engine's name."""

Kind = Literal["pinky", "path", "model"]


@dataclass(frozen=True, kw_only=True)
class Resolution:
    """What a model name means, before anything is loaded or fetched."""

    kind: Kind
    """``pinky`` (the stub engine), ``path`` (a GGUF file) or ``model`` (registered, or to fetch by facecrab)."""
    key: str
    """Canonical: ``pinky``, the file's absolute path, or the registry name (``<alias or repo>:<QUANT>``, or the
    name a file was imported under). The brainstem loads a model under this key."""
    label: str
    """The name to show: ``pinky``, the file name, or the key."""
    quant: str | None = None
    """The quantization (of a path: the one its file name states), upper-case; None when unknown."""
    quant_stated: bool = False
    """The name or the caller stated the quant (``name:QUANT``, ``--quant``), rather than taking the model's."""
    asked: str | None = None
    """The name as given; None for the default model."""
    path: Path | None = None
    """Kind ``path``: the file (absolute; not opened yet)."""
    request: UserManifest | None = None
    """Kind ``model``: what to fetch when it is not here; None for an imported file (there is nothing to fetch)."""
    registered: ModelSpec | None = None
    """Kind ``model``: its registry entry when it had one at resolution time."""

    @property
    def model(self) -> str:
        """The key without its ``:QUANT``: the model whatever its quantization."""
        suffix = f":{self.quant}" if self.kind == "model" and self.quant else None
        if suffix and self.key.upper().endswith(suffix.upper()):
            return self.key[: -len(suffix)]
        return self.key

    def same_model(self, other: Resolution) -> bool:
        """Whether ``other`` names this model: the same key, or the same model when ``other`` states no quant."""
        if self.kind != other.kind:
            return False
        if self.kind == "path":
            return self.key == other.key
        if self.key.casefold() == other.key.casefold():
            return True
        return self.kind == "model" and not other.quant_stated and self.model.casefold() == other.model.casefold()


def resolve_model(
    name: str | os.PathLike[str] | None = None, quant: str | None = None, *, registry: Registry | None = None
) -> Resolution:
    """What ``name`` means (see the module docstring); ``quant`` applies to a model name only. Never downloads.

    Raises :class:`~rusty_genius.UnknownModelError` (with the close matches) for a name that names nothing, and
    :class:`~rusty_genius.ConfigError` for a quant given to ``pinky`` or a file, or two different quants.
    """
    if name is None:
        return dataclasses.replace(_named(default_model().name or "", quant, registry), asked=None)
    text = os.fspath(name)
    if not text.strip():
        raise ConfigError(
            f"no model named: use {PINKY!r}, an alias (e.g. {default_model().name!r}), a Hugging Face repo id like "
            "'owner/name', a registered name or a path to a .gguf file"
        )
    if text.lower() == PINKY:
        if quant:
            raise ConfigError(f"--quant {quant} applies to a model name, not to {PINKY} (the stub engine)")
        return Resolution(kind="pinky", key=PINKY, label=PINKY, asked=text)
    if text.lower().endswith(".gguf"):
        if quant:
            raise ConfigError(f"--quant {quant} applies to a model name, not to the file {text}")
        path = Path(os.path.abspath(os.path.expanduser(text)))
        return Resolution(kind="path", key=str(path), label=path.name, quant=quant_of(path.name), asked=text, path=path)
    return _named(text, quant, registry)


def names_model(name: str, model: Resolution, *, registry: Registry | None = None) -> bool:
    """Whether ``name`` names ``model``: its key or label with or without the quant (what a server lists and
    clients send back), or any name that resolves to the same model. Never downloads."""
    listed = {model.label} if model.kind == "path" else {model.key, model.label, model.model}
    if name == model.key or name.casefold() in {n.casefold() for n in listed}:  # a file's path: its exact case
        return True
    try:
        return model.same_model(resolve_model(name, registry=registry))
    except ConfigError:  # a name that names nothing (UnknownModelError is a ConfigError)
        return False


def _named(name: str, quant: str | None, registry: Registry | None) -> Resolution:
    models = registered_models(registry or Registry())
    base, stated = _split(name, quant)
    spec = models.get(name)
    if spec is not None and (quant is None or quant.upper() == spec.quant.upper()):
        # A registered name, exactly: its own entry, whatever an alias or repo of that spelling would mean.
        said = quant is not None or bool(spec.quant and name.upper().endswith(f":{spec.quant.upper()}"))
        return Resolution(
            kind="model", key=name, label=name, quant=spec.quant or None, quant_stated=said, asked=name,
            request=_lookup(base, stated) or _request_of(spec), registered=spec,
        )  # fmt: skip
    request = _lookup(base, stated)
    if request is None:
        raise UnknownModelError(_unknown(name), name=name, matches=close_matches(name, models))
    key = registry_key(request)
    return Resolution(
        kind="model", key=key, label=key, quant=request.quant or None, quant_stated=stated is not None, asked=name,
        request=request, registered=models.get(key),
    )  # fmt: skip


def _split(name: str, quant: str | None) -> tuple[str, str | None]:
    """``name:QUANT`` into its parts; ``quant`` (from a flag) must agree with a quant in the name."""
    base, colon, suffix = name.rpartition(":")
    if not (colon and base and suffix):
        return name, quant.upper() if quant else None
    if quant and quant.upper() != suffix.upper():
        raise ConfigError(f"{name} names the quant {suffix.upper()}, but --quant asks for {quant.upper()}")
    return base, suffix.upper()


def _request_of(spec: ModelSpec) -> UserManifest | None:
    """How to fetch a registered model again when its name is neither an alias nor a repo id (None: imported)."""
    if not spec.repo:
        return None
    return UserManifest(repo=spec.repo, gguf_repo=spec.gguf_repo or None, quant=spec.quant or None).merged_over(
        defaults()
    )


def registry_key(request: UserManifest) -> str:
    """The name a model is registered under: ``<alias or repo>:<QUANT>``."""
    return f"{request.name or request.repo}:{(request.quant or '').upper()}"


def registered_models(registry: Registry) -> dict[str, ModelSpec]:
    """The registry's models; a registry that does not exist yet is empty (and is not created)."""
    return registry.models() if registry.path.is_file() else {}


def _lookup(name: str, quant: str | None) -> UserManifest | None:
    """An alias (case-insensitive) or a repo id like ``owner/name``, with an optional quant; None otherwise."""
    embedded = known_models()
    lowered = {alias.lower(): m for alias, m in embedded.items()}
    # A model's own repo or the repo its GGUF files live in both name it.
    by_repo = {r.lower(): m for m in lowered.values() for r in (m.gguf_repo, m.repo) if r}
    found = lowered.get(name.lower()) or by_repo.get(name.lower())
    if found is None:
        if name.count("/") != 1 or not all(name.split("/")):
            return None
        found = UserManifest(name=name, repo=name).merged_over(defaults())
    if quant and quant.upper() != (found.quant or "").upper():
        # Another quant than the manifest's: its pinned file list and hashes no longer apply.
        found = dataclasses.replace(found, quant=quant.upper(), files=(), sha256=(), size=None, python_package=None)
    return found


def request_for(name: str, quant: str | None = None) -> UserManifest:
    """What an alias (case-insensitive) or a repo id like ``owner/name`` asks for, with an optional quant.

    Raises :class:`~rusty_genius.UnknownModelError` when ``name`` is neither."""
    found = _lookup(name, quant)
    if found is None:
        raise UnknownModelError(_unknown(name), name=name, matches=close_matches(name))
    return found


def _unknown(name: str) -> str:
    aliases = ", ".join(sorted(known_models()))
    return (
        f"unknown model {name!r}: name a Hugging Face repo like 'owner/name', a registered name, a .gguf file, "
        f"{PINKY!r} or one of {aliases}"
    )


def close_matches(name: str, models: dict[str, ModelSpec] | None = None) -> list[str]:
    """Known model names (aliases, their repos, registered names) that look like ``name``, best first."""
    known: set[str] = set()
    for alias, manifest in known_models().items():
        known.add(alias)
        if manifest.repo:
            known.add(manifest.repo)
    if models is None:
        try:
            models = registered_models(Registry())
        except (GeniusError, OSError):
            models = {}
    aliases = {k.lower() for k in known}
    # A registered ``alias:QUANT`` is already suggested by its alias.
    known.update(m for m in models if m.rpartition(":")[0].lower() not in aliases)
    lowered = {k.lower(): k for k in known}
    matches = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.6)
    return [lowered[m] for m in matches]
