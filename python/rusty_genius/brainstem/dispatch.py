"""The brainstem's message interface: BrainstemInput in, BrainstemOutput out.

For callers that speak in messages (a server, another process, and :class:`~rusty_genius.Genius`'s own model
management): each input yields its outputs; errors come out as :class:`ErrorOutput` records, never as exceptions, so
one bad request cannot stop the loop that serves the others.

Rules: blocking work (reading the registry, a download and its verification) runs on a worker thread, so the loop
keeps serving while it lasts. A download whose caller stops listening is stopped at its next chunk (its partial file
is discarded by huggingface_hub; nothing is registered).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import TYPE_CHECKING

import anyio.to_thread

from rusty_genius.brainstem.orchestrator import Brainstem
from rusty_genius.brainstem.protocol import (
    BrainstemInput,
    BrainstemOutput,
    Cancel,
    Download,
    Downloaded,
    ErrorInfo,
    ErrorOutput,
    EventOutput,
    Infer,
    LoadModel,
    Notice,
    Remove,
    Removed,
    Shutdown,
    Status,
    StatusReport,
    Unload,
)
from rusty_genius.core.errors import BusyError, DownloadError, EngineClosedError, GeniusError
from rusty_genius.core.events import TokenStream
from rusty_genius.core.progress import DownloadProgress
from rusty_genius.engines import key_of, loadable

if TYPE_CHECKING:
    from rusty_genius.facecrab import ModelSpec


class Dispatcher:
    """Serves BrainstemInput messages with a :class:`Brainstem` (model names as :class:`~rusty_genius.Genius` takes
    them, resolved by facecrab: ``"pinky"``, aliases, repo ids, registered names, ``.gguf`` paths).

    ``brainstem``: None until there is one (:meth:`attach`); meanwhile ``Download`` and ``Status`` are served and the
    other messages answer :class:`EngineClosedError`. ``key``: how a model name becomes a registered brainstem key,
    when the owner decides that (a :class:`~rusty_genius.Genius` maps every name to Pinky with ``engine="pinky"``);
    default: facecrab's resolver."""

    def __init__(self, brainstem: Brainstem | None = None, *, key: Callable[[str | None], str] | None = None) -> None:
        self._brainstem = brainstem
        self._key_fn = key
        self._running: dict[str, TokenStream] = {}

    @property
    def brainstem(self) -> Brainstem:
        if self._brainstem is None:
            raise EngineClosedError("not started: there is no brainstem to serve this message yet")
        return self._brainstem

    def attach(self, brainstem: Brainstem | None) -> None:
        """Serves with ``brainstem`` from now on (None: with none)."""
        self._brainstem = brainstem

    def _keyed(self, model: str | None) -> str:
        """The registered brainstem key of ``model``: as the owner maps names, or as :meth:`_key` does."""
        return self._key(model) if self._key_fn is None else self._key_fn(model)

    def _key(self, model: str | None) -> str:
        """The brainstem key of a model name (its canonical key: every spelling of one model shares it)."""
        spec = loadable(model)
        key = key_of(spec)
        self.brainstem.register(key, spec._load)
        return key

    async def handle(self, message: BrainstemInput) -> AsyncGenerator[BrainstemOutput, None]:
        request_id = message.request_id if isinstance(message, Infer) else None
        try:
            if isinstance(message, LoadModel):
                key = self._keyed(message.model)
                await self.brainstem.preload(key)
                yield Notice("loaded", key, f"{key} is loaded")
            elif isinstance(message, Infer):
                engine, release = await self.brainstem.hold(self._keyed(message.model))
                try:
                    stream = engine.chat(message.messages, message.config, on_done=release)
                except BaseException:
                    release()
                    raise
                self._running[message.request_id] = stream
                try:
                    async for event in stream:
                        yield EventOutput(message.request_id, event)
                finally:
                    self._running.pop(message.request_id, None)
            elif isinstance(message, Cancel):
                running = self._running.get(message.request_id)
                if running is not None:
                    running.cancel()
            elif isinstance(message, Unload):
                key = self._keyed(message.model)  # a name that names nothing is an UnknownModelError
                if await self.brainstem.unload(key):
                    yield Notice("unloaded", key, f"{key} is unloaded")
            elif isinstance(message, Shutdown):
                for stream in list(self._running.values()):
                    stream.close()
                await self.brainstem.aclose()
            elif isinstance(message, Download):
                async with aclosing(self._download(message)) as outputs:
                    async for output in outputs:
                        yield output
            elif isinstance(message, Status):
                yield await self._status()
            elif isinstance(message, Remove):
                yield await self._remove(message)
        except GeniusError as err:
            yield ErrorOutput(request_id, ErrorInfo.of(err))

    async def _status(self) -> StatusReport:
        from rusty_genius import facecrab  # huggingface_hub: not for `import rusty_genius`
        from rusty_genius.facecrab.resolve import registered_models  # a registry not there yet is not created

        registered = await anyio.to_thread.run_sync(lambda: registered_models(facecrab.Registry()))
        loaded = self._brainstem.loaded() if self._brainstem is not None else []
        return StatusReport(tuple(spec for _, spec in sorted(registered.items())), tuple(loaded))

    async def _remove(self, message: Remove) -> Removed:
        """Unloads the model if it is loaded and idle (never one that requests hold), then unregisters it."""
        from rusty_genius import facecrab  # huggingface_hub: not for `import rusty_genius`

        if self._brainstem is not None:
            key = self._keyed(message.model)
            if key in self._brainstem.loaded() and not await self._brainstem.unload(key):
                raise BusyError(f"{message.model} is still unloading; try again shortly")
        removal = await anyio.to_thread.run_sync(
            lambda: facecrab.remove_model(message.model, delete_files=message.delete_files)
        )
        return Removed(removal.spec.name, removal.spec, tuple(map(str, removal.deleted)), tuple(map(str, removal.kept)))

    async def _download(self, message: Download) -> AsyncGenerator[DownloadProgress | Downloaded, None]:
        """facecrab's fetch on a worker thread; its progress comes back through the loop as it happens."""
        from rusty_genius import facecrab  # huggingface_hub: not for `import rusty_genius`

        loop = asyncio.get_running_loop()
        updates: asyncio.Queue[DownloadProgress | None] = asyncio.Queue()
        abandoned = threading.Event()

        def on_progress(progress: DownloadProgress) -> None:  # on the worker thread
            if abandoned.is_set():
                raise DownloadError("the download was cancelled")
            loop.call_soon_threadsafe(updates.put_nowait, progress)

        def fetch() -> ModelSpec:
            return facecrab.ensure_model(message.model, message.quant, on_progress=on_progress)

        job = asyncio.ensure_future(anyio.to_thread.run_sync(fetch))
        job.add_done_callback(lambda _: updates.put_nowait(None))
        try:
            while (progress := await updates.get()) is not None:
                yield progress
            spec = await job
        finally:
            if not job.done():  # the caller left: stop the fetch at its next chunk, and let it end unobserved
                abandoned.set()
                job.add_done_callback(lambda done: done.cancelled() or done.exception())
        yield Downloaded(spec.name, spec)
