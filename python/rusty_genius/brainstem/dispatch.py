"""The brainstem's message interface: BrainstemInput in, BrainstemOutput out.

For callers that speak in messages (a server, another process): each input yields its outputs; errors come out as
:class:`ErrorOutput` records, never as exceptions, so one bad request cannot stop the loop that serves the others.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from rusty_genius.brainstem.orchestrator import Brainstem
from rusty_genius.brainstem.protocol import (
    BrainstemInput,
    BrainstemOutput,
    Cancel,
    ErrorInfo,
    ErrorOutput,
    EventOutput,
    Infer,
    LoadModel,
    Notice,
    Shutdown,
    Unload,
)
from rusty_genius.core.errors import GeniusError
from rusty_genius.core.events import TokenStream
from rusty_genius.engines import key_of, loadable


class Dispatcher:
    """Serves BrainstemInput messages with a :class:`Brainstem` (model names as :class:`~rusty_genius.Genius` takes
    them: ``"pinky"``, aliases, repo ids, ``.gguf`` paths)."""

    def __init__(self, brainstem: Brainstem) -> None:
        self.brainstem = brainstem
        self._running: dict[str, TokenStream] = {}

    def _key(self, model: str) -> str:
        spec = loadable(model)
        key = key_of(spec)
        self.brainstem.register(key, spec._load)
        return key

    async def handle(self, message: BrainstemInput) -> AsyncIterator[BrainstemOutput]:
        request_id = message.request_id if isinstance(message, Infer) else None
        try:
            if isinstance(message, LoadModel):
                key = self._key(message.model)
                await self.brainstem.preload(key)
                yield Notice("loaded", key, f"{key} is loaded")
            elif isinstance(message, Infer):
                engine, release = await self.brainstem.hold(self._key(message.model))
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
                key = key_of(loadable(message.model))
                if await self.brainstem.unload(key):
                    yield Notice("unloaded", key, f"{key} is unloaded")
            elif isinstance(message, Shutdown):
                for stream in list(self._running.values()):
                    stream.close()
                await self.brainstem.aclose()
        except GeniusError as err:
            yield ErrorOutput(request_id, ErrorInfo.of(err))
