"""The engines a :class:`~rusty_genius.Genius` can run, and how a user's choice becomes one."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rusty_genius import _native
from rusty_genius.core.paths import config_dir

if TYPE_CHECKING:
    from rusty_genius.facecrab.resolve import Resolution

Message = Mapping[str, Any]
"""A chat message: ``{"role": "system" | "user" | "assistant" | "tool", "content": str}``, as OpenAI's. An assistant
message that called functions has ``tool_calls`` (``[{"id", "type": "function", "function": {"name", "arguments":
str}}]``, or :class:`~rusty_genius.ToolCall` objects; its ``content`` may then be None or absent) and may keep its
reasoning in ``reasoning_content``; a ``tool`` message answers a call: ``{"role": "tool", "tool_call_id", "name",
"content"}``."""


def key_of(spec: Loadable) -> str:
    """The brainstem's name for a loadable model."""
    if isinstance(spec, Pinky):
        if spec == _DEFAULT_PINKY:
            return "pinky"
        return "pinky-" + hashlib.sha1(repr(spec).encode(), usedforsecurity=False).hexdigest()[:8]
    if isinstance(spec, Brain):
        return os.fspath(spec.model_path)
    return spec.resolution.key


@dataclass(frozen=True, kw_only=True)
class Pinky:
    """Pinky, the stub engine: no weights, deterministic "Narf!" answers, for testing clients and the stack.

    By default each answer is a short ``<think>`` block then ``reply_tokens`` "Narf!" tokens, ``delay`` seconds
    apart. ``script`` replays the given pieces instead (``bytes`` pieces may split a UTF-8 character, ``str``
    pieces may split a tag). ``fail_after`` makes every answer fail with :class:`EngineError` after that many
    tokens. ``pre_open_think`` acts like a chat template that opens ``<think>`` in the prompt. ``parallel``: answers
    generated at once, sharing each step's ``delay`` as a batched model does (more requests queue).

    A script may call functions: when the request offers tools, its output is read for calls as a Qwen/Hermes
    model's is, so a piece ``<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>``
    (what :meth:`tool_call` writes) becomes ``tool_call_*`` events and the answer finishes with ``tool_calls``::

        Pinky(script=[Pinky.tool_call("get_weather", {"city": "Paris"})])
    """

    delay: float = 0.005
    reply_tokens: int = 24
    think: bool = True
    script: Sequence[str | bytes] | None = None
    fail_after: int | None = None
    pre_open_think: bool = False
    load_delay: float = 0.0
    """Seconds a load takes (to test what callers see during one)."""
    parallel: int = 1
    name: str = ""
    """A label: Pinkies of different names are different models (a server serves several side by side)."""

    @staticmethod
    def tool_call(name: str, arguments: Mapping[str, Any] | None = None) -> str:
        """The text a model writes to call ``name`` with ``arguments`` (Qwen/Hermes form), for a Pinky ``script``:
        ``<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>``."""
        call = json.dumps({"name": name, "arguments": dict(arguments or {})}, ensure_ascii=False)
        return f"<tool_call>\n{call}\n</tool_call>"

    def _load(self) -> _native.Engine:
        return _native.Engine.pinky(
            delay=self.delay,
            reply_tokens=self.reply_tokens,
            think=self.think,
            script=None if self.script is None else list(self.script),
            fail_after=self.fail_after,
            pre_open_think=self.pre_open_think,
            load_delay=self.load_delay,
            parallel=self.parallel,
        )


PROMPT_LOOKUP_DRAFT_MAX = 4
"""``draft_max`` of prompt lookup by default: measured on the test model (2 CPU threads, an edit-this-text request,
``scripts/bench.sh ceiling --only f --draft-max 2,4,8,16``), drafts of up to 4 tokens decode 1.21x as fast as none,
2 1.12x, 8 1.09x, 16 0.93x."""

DEFAULT_KV_STORE_SIZE = 2 << 30
"""Bytes the KV store may take on disk by default (every model's saved conversations together)."""


def default_kv_store() -> Path:
    """Where :class:`Brain` saves conversations by default: ``kv-store`` in the folder of the registry
    (``$RUSTY_GENIUS_HOME``, else ``$XDG_CONFIG_HOME/rusty-genius``, else ``~/.config/rusty-genius``), one
    subfolder per model and cache settings."""
    return config_dir() / "kv-store"


CacheType = Literal["f16", "q8_0", "q4_0"]
"""A KV-cache element type, as llama.cpp's ``--cache-type-k``/``-v`` name them."""
SpecType = Literal["none", "ngram-simple", "draft"]
"""Speculative decoding, as llama-server's ``--spec-type`` names it: ``ngram-simple`` is prompt lookup, ``draft`` a
draft model."""
FlashAttention = Literal["auto", "on", "off"]
"""Flash attention: ``auto`` lets llama.cpp decide (on with the CPU backend, and always with a quantized V cache)."""


@dataclass(frozen=True, kw_only=True)
class Brain:
    """Brain, the real engine: a GGUF model run by llama.cpp.

    The file is checked before llama.cpp reads it (a missing, truncated or corrupted file raises
    :class:`ModelLoadError`). ``gpu_layers``: layers to offload (default: all when built with a GPU backend, else
    none). ``threads``: CPU threads (default: physical cores). ``context_size``: context window in tokens (default:
    the smaller of the model's trained context and 4096; each parallel sequence has a whole one).
    ``batch_size``: tokens per decode step. ``ubatch_size``: tokens llama.cpp computes at once, at most
    ``batch_size`` (default: the batch; a smaller one needs a smaller compute buffer). ``parallel``: requests
    generated at once from one context by continuous batching (default: up to 4, as many as their caches fit in
    memory; more requests queue).

    ``cache_type_k`` / ``cache_type_v``: the KV cache's element types, ``"f16"`` (default), ``"q8_0"`` (53 % of the
    memory, answers close to f16's) or ``"q4_0"`` (28 %, lossier); with less memory per sequence the default
    ``parallel`` can run more of them. A quantized V cache needs flash attention: ``flash_attention`` is ``"auto"``
    (default, llama.cpp's: on where the backend supports it), ``"on"`` or ``"off"`` (with a quantized V cache, a
    :class:`ConfigError` naming both options). ``mmap``: map the file rather than read it (default, llama.cpp's);
    ``mlock``: lock the weights in RAM so they are never swapped out.

    ``kv_store``: where conversations survive an unload or a restart. When the model is unloaded or closed, each
    sequence's KV cache holding at least 16 tokens is saved there; a later request whose prompt begins the same way
    has that beginning restored instead of read again (``usage.cached_prompt_tokens`` counts it, and
    ``usage.restored_prompt_tokens`` says how much came from the store). ``True`` (default): ``kv-store`` beside the
    registry (:func:`default_kv_store`); a path: that folder; ``False``: off. ``kv_store_size``: bytes the store may
    take on disk, every model's files together (default 2 GiB; 0: nothing is saved); the least recently used go
    first. See the README's "Conversations survive unload and restart".

    ``spec_type``: speculative decoding. ``"none"`` (default) or ``"ngram-simple"``: prompt lookup, no second model;
    each step feeds the next token with up to ``draft_max`` tokens that followed its last words earlier in the
    conversation, and keeps those the model would have picked anyway, so the answer is the model's own and text that
    repeats the prompt (edits, code, quotes) comes faster. ``draft_max`` defaults to 4 for prompt lookup (on a CPU a
    longer unchecked guess costs more than it saves: 4 measured 1.21x, 16 0.93x on an edit) and 16 for a draft
    model (whose unsure guesses end a draft anyway). It drafts while at most two requests are generating;
    ``usage.draft_tokens`` / ``usage.accepted_draft_tokens`` count the drafts. ``draft_model``: a smaller GGUF with the
    model's vocabulary that guesses instead (``spec_type`` becomes ``"draft"``; its guesses below 75 % likely end a
    draft). A bad value raises :class:`ConfigError` naming the option when the model loads.
    """

    model_path: str | os.PathLike[str]
    gpu_layers: int | None = None
    threads: int | None = None
    context_size: int | None = None
    batch_size: int = 512
    parallel: int | None = None
    ubatch_size: int | None = None
    cache_type_k: CacheType = "f16"
    cache_type_v: CacheType = "f16"
    flash_attention: FlashAttention = "auto"
    mmap: bool = True
    mlock: bool = False
    kv_store: str | os.PathLike[str] | bool = True
    kv_store_size: int = DEFAULT_KV_STORE_SIZE
    spec_type: SpecType = "none"
    draft_max: int | None = None
    draft_model: str | os.PathLike[str] | None = None

    def _load(self) -> _native.Engine:
        return _native.Engine.brain(
            os.fspath(self.model_path),
            gpu_layers=self.gpu_layers,
            threads=self.threads,
            mmap=self.mmap,
            mlock=self.mlock,
            kv_store=self._kv_store_dir(),
            kv_store_size=self.kv_store_size,
            spec_type="draft" if self.draft_model is not None and self.spec_type == "none" else self.spec_type,
            draft_max=self._draft_max(),
            draft_model=None if self.draft_model is None else os.fspath(self.draft_model),
            **self._sizing(),
        )

    def _kv_store_dir(self) -> str | None:
        """The store's folder, None when it is off; a bad option raises :class:`ConfigError` naming it."""
        from rusty_genius.core.errors import ConfigError

        size = self.kv_store_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ConfigError(f"invalid kv_store_size = {size!r}: must be a number of bytes >= 0", "kv_store_size")
        if self.kv_store is False or size == 0:
            return None
        if self.kv_store is True:
            return os.fspath(default_kv_store())
        if isinstance(self.kv_store, (str, os.PathLike)) and os.fspath(self.kv_store):
            return os.fspath(self.kv_store)
        raise ConfigError(
            f"invalid kv_store = {self.kv_store!r}: must be True (the default folder), False (off) or a folder",
            "kv_store",
        )

    def _draft_max(self) -> int:
        if self.draft_max is not None:
            return self.draft_max
        return 16 if self.draft_model is not None or self.spec_type == "draft" else PROMPT_LOOKUP_DRAFT_MAX

    def _sizing(self) -> dict[str, Any]:
        """The options its memory depends on, as :func:`_native.estimate_memory` takes them."""
        return {
            "context_size": self.context_size,
            "parallel": self.parallel,
            "batch_size": self.batch_size,
            "ubatch_size": self.ubatch_size,
            "cache_type_k": self.cache_type_k,
            "cache_type_v": self.cache_type_v,
            "flash_attention": self.flash_attention,
        }

    def _footprint(self) -> int:
        """Bytes it takes loaded, estimated from its GGUF header with the engine's own context and parallel rules."""
        return int(_native.estimate_memory(os.fspath(self.model_path), **self._sizing())["total"])


@dataclass(frozen=True)
class _Named:
    """A model by name (alias, ``owner/repo`` or a registered name) as facecrab resolved it; found or fetched by
    facecrab when loaded."""

    resolution: Resolution

    def _load(self) -> _native.Engine:
        # Imported here: facecrab pulls in huggingface_hub, which `import rusty_genius` should not pay for.
        from rusty_genius import facecrab

        return Brain(model_path=facecrab.ensure_model(self.resolution).path)._load()

    def _footprint(self) -> int:
        registered = self.resolution.registered
        return Brain(model_path=registered.path)._footprint() if registered is not None and registered.paths else 0


_DEFAULT_PINKY = Pinky()

EngineSpec = str | os.PathLike[str] | Pinky | Brain


Loadable = Pinky | Brain | _Named


def loadable(engine: EngineSpec | None) -> Loadable:
    """What a user's engine or model choice means: a :class:`Pinky` or :class:`Brain` as given; a name (None: the
    default model) as facecrab's resolver decides. Never downloads."""
    if isinstance(engine, (Pinky, Brain)):
        return engine
    # Imported here: facecrab pulls in huggingface_hub, which `import rusty_genius` should not pay for.
    from rusty_genius.facecrab.resolve import resolve_model

    return loadable_of(resolve_model(engine))


def loadable_of(resolution: Resolution) -> Loadable:
    """The engine for a resolved name (its :func:`key_of` is the resolution's key)."""
    if resolution.kind == "pinky":
        return Pinky()
    if resolution.kind == "path" and resolution.path is not None:
        return Brain(model_path=resolution.path)
    return _Named(resolution)
