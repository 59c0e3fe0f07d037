"""The public facade: :class:`Genius` loads an engine and streams chat answers from it."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType

import anyio.to_thread

from rusty_genius import _native
from rusty_genius.core.config import InferenceConfig
from rusty_genius.core.errors import ConfigError, EngineClosedError
from rusty_genius.core.events import TokenStream

Message = Mapping[str, str]
"""A chat message: ``{"role": "system" | "user" | "assistant" | "tool", "content": str}``."""


@dataclass(frozen=True, kw_only=True)
class Pinky:
    """Pinky, the stub engine: no weights, deterministic "Narf!" answers, for testing clients and the stack.

    By default each answer is a short ``<think>`` block then ``reply_tokens`` "Narf!" tokens, ``delay`` seconds
    apart. ``script`` replays the given pieces instead (``bytes`` pieces may split a UTF-8 character, ``str``
    pieces may split a tag). ``fail_after`` makes every answer fail with :class:`EngineError` after that many
    tokens. ``pre_open_think`` acts like a chat template that opens ``<think>`` in the prompt.
    """

    delay: float = 0.005
    reply_tokens: int = 24
    think: bool = True
    script: Sequence[str | bytes] | None = None
    fail_after: int | None = None
    pre_open_think: bool = False

    def _load(self) -> _native.Engine:
        return _native.Engine.pinky(
            delay=self.delay,
            reply_tokens=self.reply_tokens,
            think=self.think,
            script=None if self.script is None else list(self.script),
            fail_after=self.fail_after,
            pre_open_think=self.pre_open_think,
        )


@dataclass(frozen=True, kw_only=True)
class Brain:
    """Brain, the real engine: a GGUF model run by llama.cpp.

    The file is checked before llama.cpp reads it (a missing, truncated or corrupted file raises
    :class:`ModelLoadError`). ``gpu_layers``: layers to offload (default: all when built with a GPU backend, else
    none). ``threads``: CPU threads (default: physical cores). ``context_size``: context window in tokens (default:
    the smaller of the model's trained context and 4096). ``batch_size``: prompt tokens per decode step.
    """

    model_path: str | os.PathLike[str]
    gpu_layers: int | None = None
    threads: int | None = None
    context_size: int | None = None
    batch_size: int = 512

    def _load(self) -> _native.Engine:
        return _native.Engine.brain(
            os.fspath(self.model_path),
            gpu_layers=self.gpu_layers,
            threads=self.threads,
            context_size=self.context_size,
            batch_size=self.batch_size,
        )


@dataclass(frozen=True)
class _Named:
    """A model by name (alias, ``owner/repo`` or a registered name), found or fetched by facecrab when loaded."""

    name: str

    def _load(self) -> _native.Engine:
        from rusty_genius import facecrab

        return Brain(model_path=facecrab.ensure_model(self.name).path)._load()


EngineSpec = str | os.PathLike[str] | Pinky | Brain


def _spec(engine: EngineSpec) -> Pinky | Brain | _Named:
    if isinstance(engine, (Pinky, Brain)):
        return engine
    if engine == "pinky":
        return Pinky()
    name = os.fspath(engine)
    if name.endswith(".gguf"):
        return Brain(model_path=engine)
    if name:
        return _Named(name)
    raise ConfigError(
        "no engine named: use 'pinky', a model name (e.g. 'smollm2-135m' or 'Qwen/Qwen2.5-1.5B-Instruct'), a path "
        "to a .gguf file, rusty_genius.Pinky(...) or rusty_genius.Brain(model_path=...)"
    )


class Genius:
    """A loaded engine you can chat with.

    Use it as an async context manager (the engine loads on entry and is closed on exit)::

        async with Genius(engine="pinky") as g:
            async for ev in g.chat([{"role": "user", "content": "hi"}]):
                if ev.kind == "content":
                    print(ev.text, end="")

    or as a plain context manager with ``for`` instead of ``async for``. Streams are asyncio-only for ``async
    for``; a ``for`` loop works anywhere and releases the GIL while it waits.
    """

    def __init__(self, engine: EngineSpec = "pinky") -> None:
        """``engine``: ``"pinky"``; a model name (an alias such as ``"smollm2-135m"``, a Hugging Face repo id, or a
        name registered with ``ogenius import``), found or downloaded when the engine starts; a path to a ``.gguf``
        file; or a :class:`Pinky` / :class:`Brain`."""
        self._spec = _spec(engine)
        self._engine: _native.Engine | None = None

    @property
    def engine(self) -> _native.Engine:
        """The loaded native engine (its ``busy``, ``generated_tokens`` and ``completed_requests`` counters)."""
        if self._engine is None:
            raise EngineClosedError("Genius is not started; use 'async with Genius(...) as g' or call start()")
        return self._engine

    async def start(self) -> None:
        """Loads the engine (in a worker thread, so the event loop keeps running). Idempotent."""
        if self._engine is None:
            self._engine = await anyio.to_thread.run_sync(self._spec._load)

    def start_sync(self) -> None:
        """Blocking form of :meth:`start`."""
        if self._engine is None:
            self._engine = self._spec._load()

    def chat(self, messages: Sequence[Message], config: InferenceConfig | None = None) -> TokenStream:
        """Queues a chat request and returns its stream of events; iterate it with ``async for`` or ``for``.

        Breaking out of the loop (or closing or dropping the stream) stops the generation within one token.
        """
        return self.engine.chat(messages, config)

    async def aclose(self) -> None:
        """Stops any generation and unloads the engine. Idempotent."""
        engine, self._engine = self._engine, None
        if engine is not None:
            await anyio.to_thread.run_sync(engine.close)

    def close(self) -> None:
        """Blocking form of :meth:`aclose`."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()

    async def __aenter__(self) -> Genius:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __enter__(self) -> Genius:
        self.start_sync()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
