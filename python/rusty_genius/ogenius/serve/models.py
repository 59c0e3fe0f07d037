"""The models ``ogenius serve`` serves, and what it tells clients about each (``GET /v1/models``).

Rules:
- The table holds, in this order: every model named with ``--model`` (the first is the default; none: the embedded
  default), every ``.gguf`` in ``--models-dir`` (first shards only), then every model in registry.toml. Each has
  the id clients send: a registered model's registry name (``smollm2-135m:Q4_1``), a file's name, a Pinky's name.
  An id listed twice (a ``--model`` that is also registered) is listed once, first come; one file under two
  names is two models (each loads apart, as named).
- A request's ``model`` picks an entry: its id (any case), or any name facecrab's resolver makes the same model of
  (an alias, a repo id, with or without the quant). Omitted: the default. Anything else is a 404 that names what is
  served, and never starts a download. A name not found re-reads registry.toml first when the file changed (a model
  pulled by ``ogenius download`` in another shell is served without a restart).
- Each entry is its own model in the Genius (``Genius.define``): loaded, placed and unloaded apart from the others.
- What an entry tells clients (context length, capabilities, size, quantization, memory estimate) comes from its
  GGUF header, read once per file version, never by loading it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rusty_genius import Brain, Pinky, _native
from rusty_genius.core.errors import GeniusError
from rusty_genius.ogenius.serve.openai_api import ApiError

if TYPE_CHECKING:  # facecrab pulls in huggingface_hub, which serving Pinky does not need
    from rusty_genius.facecrab import Resolution


@dataclass
class Served:
    """One model the server answers for."""

    id: str
    spec: Brain | Pinky
    resolution: Resolution | None = None
    """facecrab's :class:`Resolution` of it (None for Pinky and ``--models-dir`` files)."""
    registered: bool = False
    """It is in registry.toml (``DELETE /v1/models/{id}`` may remove it)."""
    aliases: tuple[str, ...] = ()
    """More names it answers to (``--alias``; its resolved name when an alias became its id)."""
    created: int = field(default_factory=lambda: int(time.time()))
    _facts: tuple[tuple[str, float], dict[str, Any]] | None = field(default=None, repr=False)

    @property
    def path(self) -> Path | None:
        return Path(self.spec.model_path) if isinstance(self.spec, Brain) else None

    def facts(self) -> dict[str, Any]:
        """What its GGUF header says, for listings (cached per file version; {} when it cannot be read)."""
        if isinstance(self.spec, Pinky):
            return PINKY_FACTS
        path = self.path
        assert path is not None
        try:
            version = (str(path), path.stat().st_mtime)
        except OSError:
            return {}
        if self._facts is None or self._facts[0] != version:
            self._facts = (version, _gguf_facts(self.spec))
        return self._facts[1]


PINKY_FACTS: dict[str, Any] = {
    "context_length": 4096,
    "capabilities": ["chat", "completion", "tools", "thinking", "embeddings"],
    "size": 0,
    "quantization": None,
    "architecture": "pinky",
    "memory": 0,
    "parallel": 1,
}

FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS",
    20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M",
    28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
}  # fmt: skip
"""llama.cpp's ``llama_ftype`` (``general.file_type``) by number."""


def _gguf_facts(spec: Brain) -> dict[str, Any]:
    try:
        info = _native.check_gguf(os.fspath(spec.model_path))
    except GeniusError:
        return {}
    meta: dict[str, Any] = info.get("metadata") or {}
    arch = info.get("architecture") or ""
    template = meta.get("tokenizer.chat_template")
    embedding_only = bool(info.get("embedding_only"))  # the engine's own rule (rust/cortex/src/footprint.rs)
    capabilities = ["embeddings"] if embedding_only else ["chat", "completion", "embeddings"]
    if not embedding_only and isinstance(template, str):
        if "tools" in template:
            capabilities.append("tools")
        if "<think>" in template or "enable_thinking" in template or "reasoning_content" in template:
            capabilities.append("thinking")
    if not embedding_only and "tokenizer.ggml.fim_pre_token_id" in meta:
        capabilities.append("infill")
    quant = FILE_TYPES.get(meta.get("general.file_type", -1))
    trained = info.get("context_length")
    memory: int | None = None
    context: int | None
    parallel: int | None
    estimate = getattr(_native, "estimate_memory", None)
    if estimate is not None:
        try:
            sized = estimate(os.fspath(spec.model_path), **spec._sizing())
            memory, context = int(sized["total"]), int(sized["context_size"])
            parallel = int(sized["parallel"])
        except GeniusError:
            context, parallel = trained, None
    else:
        context, parallel = spec.context_size or (min(trained, 4096) if trained else None), spec.parallel
    return {
        "context_length": context,
        "trained_context_length": trained,
        "capabilities": capabilities,
        "size": info.get("file_size"),
        "quantization": quant,
        "architecture": arch or None,
        "memory": memory,
        "parallel": parallel,
        "metadata": meta,
    }


_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


def gguf_files(directory: Path) -> list[Path]:
    """The loadable ``.gguf`` files of ``directory`` and its subfolders (a sharded model by its first shard; no
    ``mmproj`` projectors), sorted."""
    found = []
    for path in sorted(directory.rglob("*")):
        name = path.name.lower()
        if not name.endswith(".gguf") or "mmproj" in name or not path.is_file():
            continue
        shard = _SHARD.search(path.name)
        if shard is None or int(shard.group(1)) == 1:
            found.append(path)
    return found


class ModelTable:
    """The served models: ``entries`` (the default first) and how a request's model name finds one."""

    def __init__(self, entries: list[Served], *, registry: bool, brain: dict[str, Any] | None = None) -> None:
        """``registry``: also serve every registered model (not with Pinky); ``brain``: the load options
        (context_size, parallel, threads) of every Brain the registry adds."""
        self._fixed = list(entries)
        self._use_registry = registry
        self._brain = brain or {}
        self._registry_version: float | None = None
        self._names: dict[str, str | None] = {}  # request names already resolved → entry id (None: no entry)
        self.entries: list[Served] = []
        self.refresh()

    @property
    def default(self) -> Served:
        return self._fixed[0]

    @property
    def serves_registry(self) -> bool:
        return self._use_registry

    def is_fixed(self, entry: Served) -> bool:
        """Whether ``entry`` was named on the command line (``--model``, ``--models-dir``): served whatever the
        registry says."""
        return any(e is entry for e in self._fixed)

    def refresh(self) -> list[Served]:
        """Re-reads registry.toml; returns the entries added (to define in the Genius). Entries that left the
        registry are no longer served."""
        entries = list(self._fixed)
        if self._use_registry:
            entries += self._registered()
        unique: list[Served] = []
        for entry in entries:
            if all(e.id.casefold() != entry.id.casefold() for e in unique):
                unique.append(entry)
        before = {e.id for e in self.entries}
        self.entries = unique
        self._names.clear()
        return [e for e in unique if e.id not in before]

    def _registered(self) -> list[Served]:
        from rusty_genius import facecrab  # huggingface_hub: only when the registry is served
        from rusty_genius.facecrab.resolve import registered_models

        registry = facecrab.Registry()
        self._registry_version = _mtime(registry)
        try:
            models = registered_models(registry)
        except GeniusError:
            return []
        served = []
        for name, spec in sorted(models.items()):
            if not spec.paths:
                continue
            try:
                resolution = facecrab.resolve_model(name, registry=registry)
                created = int(spec.paths[0].stat().st_mtime)
            except (GeniusError, OSError):
                continue
            brain = Brain(model_path=spec.paths[0], **self._brain)
            served.append(Served(name, brain, resolution, registered=True, created=created))
        return served

    def registry_changed(self) -> bool:
        if not self._use_registry:
            return False
        from rusty_genius import facecrab

        return _mtime(facecrab.Registry()) != self._registry_version

    def find(self, name: str | None) -> Served:
        """The entry ``name`` names (None or empty: the default); 404 otherwise. Never downloads."""
        if not name:
            return self.default
        found = self._lookup(name)
        if found is None and self.registry_changed():
            self.refresh()
            found = self._lookup(name)
        if found is None:
            ids = [e.id for e in self.entries]
            shown = ", ".join(f"'{i}'" for i in ids[:8]) + (f" and {len(ids) - 8} more" if len(ids) > 8 else "")
            raise ApiError(
                404,
                f"The model '{name}' does not exist on this server; it serves {shown} (GET /v1/models lists them; "
                "POST /v1/models/pull downloads another).",
                code="model_not_found",
                param="model",
            )
        return found

    def _lookup(self, name: str) -> Served | None:
        if name in self._names:
            return self.by_id(self._names[name])
        folded = name.casefold()
        found = next(
            (e for e in self.entries if e.id.casefold() == folded or folded in (a.casefold() for a in e.aliases)), None
        )
        if found is None:
            found = next((e for e in self.entries if _names(name, e)), None)
        if len(self._names) >= NAMES_KEPT:
            self._names.clear()
        self._names[name] = found.id if found else None
        return found

    def by_id(self, model_id: str | None) -> Served | None:
        return next((e for e in self.entries if e.id == model_id), None)


NAMES_KEPT = 256
"""Request model names whose lookup is remembered (clients repeat theirs; a flood of new names only costs lookups)."""


def _names(name: str, entry: Served) -> bool:
    """Whether ``name`` names ``entry``'s model as facecrab's resolver sees it (Pinky: by its id alone)."""
    if isinstance(entry.spec, Pinky):
        return False
    from rusty_genius import facecrab

    try:
        if entry.resolution is None:  # resolved once, from its id (never downloads)
            entry.resolution = facecrab.resolve_model(entry.id)
        return facecrab.names_model(name, entry.resolution)
    except GeniusError:  # the registry could not be read, or the id names nothing: only the id itself matches
        return False


def _mtime(registry: Any) -> float | None:
    try:
        return float(os.stat(registry.path).st_mtime_ns)
    except (OSError, AttributeError):
        return None


def served_pinky(pinky: Pinky, names: list[str]) -> list[Served]:
    """Pinky under each of ``names`` (none: as ``pinky``), each a model of its own."""
    return [Served(n, dataclasses.replace(pinky, name=n)) for n in names] if names else [Served("pinky", pinky)]


__all__ = ["ModelTable", "Served", "gguf_files", "served_pinky"]
