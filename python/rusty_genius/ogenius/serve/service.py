"""What the HTTP and WebSocket apps share: the Genius, the served model, the defaults, and the running streams.

Rules:
- The served model is the one ``ogenius serve`` resolved at startup; a request naming another model gets 404 and
  never starts a download (DESIGN.md §6). Omitting ``model`` means the served one. A request's ``model`` names the
  served one when it is the listed id, or when facecrab's resolver makes the same model of it (an alias, a repo id,
  with or without the quant); resolving reads models.toml and registry.toml, never the network.
- Listing and health never wake the model (:meth:`Service.model_card` reads ``Genius.is_loaded``).
- Every stream a request opens is tracked until it ends, so shutdown can stop them all at once; so is every engine
  call (embeddings, tokens, templates: :meth:`Service.call`), which shutdown cancels.
- A raw completion (``prompt``, OpenAI's legacy completions) opens its choices as a chat request does, through
  :meth:`Genius.generate <rusty_genius.Genius.generate>` instead of ``chat``.
- A request for ``n`` choices opens n streams at once (the engine batches them): choice i samples with
  ``seed + i`` (wrapping at 2**32) when the request or the server's defaults set a seed, else each draws its own.
  If one cannot be opened, those already opened are closed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from rusty_genius import Brain, ChatStream, Genius, InferenceConfig
from rusty_genius.core.config import U32_MAX
from rusty_genius.core.errors import GeniusError
from rusty_genius.ogenius.flags import ModelChoice
from rusty_genius.ogenius.serve.metrics import Metrics
from rusty_genius.ogenius.serve.openai_api import ApiError, ChatRequest, api_error_of, closing_error
from rusty_genius.ogenius.serve.settings import ServeSettings

T = TypeVar("T")


class Service:
    """One served model behind both listeners."""

    def __init__(self, genius: Genius, choice: ModelChoice, defaults: InferenceConfig, settings: ServeSettings) -> None:
        self.genius = genius
        self.model = choice.label
        self.choice = choice
        self._named: dict[str, bool] = {}  # request model names already checked (each check may read registry.toml)
        self.defaults = defaults
        self.settings = settings
        self.created = _created(choice)
        self.closing = False
        self._streams: set[ChatStream] = set()
        self._calls: set[asyncio.Task[Any]] = set()
        self.metrics = Metrics(self)

    # -- models -------------------------------------------------------------------------------------------------

    def check_model(self, name: str | None) -> None:
        """Raises 404 unless ``name`` names the served model (or is omitted): its id, or any name facecrab resolves
        to it (with or without its ``:QUANT``). Never downloads."""
        if name and name.lower() != self.model.lower() and not self._names_served(name):
            raise ApiError(
                404,
                f"The model '{name}' does not exist on this server; it serves '{self.model}'.",
                code="model_not_found",
                param="model",
            )

    def _names_served(self, name: str) -> bool:
        known = self._named.get(name)
        if known is None:
            if len(self._named) >= _NAMES_KEPT:
                self._named.clear()
            known = self._named[name] = _same_model(self.choice, name)
        return known

    @property
    def loaded(self) -> bool:
        return self.genius.is_loaded()

    @property
    def in_flight(self) -> int:
        """Requests holding a place in the model's queue: streams open and engine calls under way."""
        return len(self._streams) + len(self._calls)

    def model_card(self) -> dict[str, Any]:
        return {
            "id": self.model,
            "object": "model",
            "created": self.created,
            "owned_by": "rusty-genius",
            "status": "loaded" if self.loaded else "unloaded",
        }

    # -- requests -----------------------------------------------------------------------------------------------

    def open(self, request: ChatRequest) -> ChatStream:
        """Queues a request (its first choice); raises :class:`ApiError` (bad settings, busy, shutting down)."""
        return self._open(request, request.settings)

    def open_choices(
        self, request: ChatRequest, *, prompt: str | None = None, suffix: str | None = None
    ) -> list[ChatStream]:
        """Queues the ``request.n`` choices of a request; raises :class:`ApiError` as :meth:`open` does, after
        closing the choices already queued. ``prompt``: a raw completion of it (``request.messages`` unused), with
        ``suffix`` to fill in the middle."""
        if request.n == 1:
            return [self._open(request, request.settings, prompt, suffix)]
        seed = request.settings.get("seed", self.defaults.sampling.seed)
        streams: list[ChatStream] = []
        try:
            for i in range(request.n):
                settings = (
                    request.settings if seed is None else {**request.settings, "seed": (seed + i) % (U32_MAX + 1)}
                )
                streams.append(self._open(request, settings, prompt, suffix))
        except BaseException:
            for stream in streams:
                self.done(stream)
            raise
        return streams

    def _open(
        self, request: ChatRequest, settings: dict[str, Any], prompt: str | None = None, suffix: str | None = None
    ) -> ChatStream:
        if self.closing:
            raise closing_error()
        self.check_model(request.model)
        config = self.config_of(request)
        try:
            if prompt is None:
                stream = self.genius.chat(request.messages, config, keep_alive=request.keep_alive, **settings)
            else:
                keep_alive = request.keep_alive
                stream = self.genius.generate(prompt, config, suffix=suffix, keep_alive=keep_alive, **settings)
        except GeniusError as err:
            raise api_error_of(err, request.params) from None
        self._streams.add(stream)
        return stream

    def config_of(self, request: ChatRequest) -> InferenceConfig:
        """The server's defaults with the request's tools and answer format (when it sets them)."""
        return self.defaults if request.output is None else dataclasses.replace(self.defaults, output=request.output)

    async def call(self, model: str | None, work: Callable[[], Awaitable[T]]) -> T:
        """Runs an engine call of a request naming ``model`` (``work``: an embed, tokenize, template… of
        ``self.genius``; it loads the model when it is not loaded, and waits its turn in the queue); raises
        :class:`ApiError` for its errors (``work`` may raise its own, naming the request's fields), 503 while shutting
        down. Shutdown cancels it."""
        if self.closing:
            raise closing_error()
        self.check_model(model)

        async def run() -> T:
            return await work()

        task = asyncio.ensure_future(run())
        self._calls.add(task)
        try:
            return await task
        except GeniusError as err:
            raise api_error_of(err) from None
        except asyncio.CancelledError:
            if self.closing and task.cancelled():
                raise closing_error() from None
            raise
        finally:
            self._calls.discard(task)
            task.cancel()

    def done(self, stream: ChatStream) -> None:
        """Stops ``stream`` if it still runs and forgets it (call once its request is over, however it ended)."""
        self._streams.discard(stream)
        if not stream.finished:
            stream.close()

    def close_all(self) -> None:
        """Shutdown: refuse new requests and stop every running generation now."""
        self.closing = True
        for stream in list(self._streams):
            stream.close()
        for task in list(self._calls):
            task.cancel()


_NAMES_KEPT = 256
"""Request model names whose check is remembered (clients repeat theirs; a flood of new names only costs lookups)."""


def _same_model(choice: ModelChoice, name: str) -> bool:
    """Whether ``name`` names the model ``choice`` serves, as facecrab's resolver sees it."""
    # Imported here: facecrab pulls in huggingface_hub, which serving Pinky does not otherwise need.
    from rusty_genius import facecrab

    try:
        return facecrab.names_model(name, choice.resolution or facecrab.resolve_model(choice.label))
    except GeniusError:  # the registry could not be read, or the label names nothing: only the id itself matches
        return False


def _created(choice: ModelChoice) -> int:
    """OpenAI's ``created``: the model file's modification time (the server's start for Pinky)."""
    if isinstance(choice.engine, Brain):
        try:
            return int(os.stat(choice.engine.model_path).st_mtime)
        except OSError:
            pass
    return int(time.time())
