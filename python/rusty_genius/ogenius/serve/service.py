"""What the HTTP and WebSocket apps share: the Genius, the served models, the defaults, and the running streams.

Rules:
- The served models are models.py's :class:`ModelTable`: a request's ``model`` picks one (omitted: the default), an
  unknown name is a 404 that never starts a download. Each is its own model in the Genius (its id is its key there),
  loaded on its first request; placement (which idle model unloads for it) is the brainstem's.
- Each model answers with its own defaults (:meth:`Service.defaults_of`): the schema's, under its recommended
  sampling (sampling.py: its GGUF's ``general.sampling.*``, else its models.toml entry), under the sampling flags
  given to ``ogenius serve``; a request's own settings win over all.
- Listing and health never wake a model (:meth:`Service.state` reads ``Genius.states``).
- Every stream a request opens is tracked (with its model) until it ends, so shutdown can stop them all at once;
  so is every engine call (embeddings, tokens, templates: :meth:`Service.call`), which shutdown cancels.
- A raw completion (``prompt``, OpenAI's legacy completions) opens its choices as a chat request does, through
  :meth:`Genius.generate <rusty_genius.Genius.generate>` instead of ``chat``.
- A request for ``n`` choices opens n streams at once (the engine batches them): choice i samples with
  ``seed + i`` (wrapping at 2**32) when the request or the server's defaults set a seed, else each draws its own.
  If one cannot be opened, those already opened are closed.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from rusty_genius import ChatStream, Genius, InferenceConfig
from rusty_genius.core.config import U32_MAX
from rusty_genius.core.errors import GeniusError
from rusty_genius.ogenius.sampling import model_defaults
from rusty_genius.ogenius.serve.metrics import Metrics
from rusty_genius.ogenius.serve.models import ModelTable, Served
from rusty_genius.ogenius.serve.openai_api import ChatRequest, api_error_of, closing_error
from rusty_genius.ogenius.serve.settings import ServeSettings

T = TypeVar("T")

Recommended = Callable[[Served], Mapping[str, Any]]
"""A model's recommended sampling settings (InferenceConfig keywords)."""


class Service:
    """The served models behind both listeners."""

    def __init__(
        self,
        genius: Genius,
        table: ModelTable,
        defaults: InferenceConfig,
        settings: ServeSettings,
        *,
        flags: Mapping[str, Any] | None = None,
        recommended: Recommended | None = None,
    ) -> None:
        """``defaults``: the server's config (schema defaults under the flags); ``flags``: the sampling flags that
        were given (they win over a model's recommended sampling); ``recommended``: a model's recommended
        sampling."""
        self.genius = genius
        self.table = table
        self.defaults = defaults
        self._flags = dict(flags or {})
        self._recommended = recommended
        self._defaults: dict[str, InferenceConfig] = {}
        self.settings = settings
        self.closing = False
        self._streams: dict[ChatStream, str] = {}
        self._calls: dict[asyncio.Task[Any], str] = {}
        self._defined: dict[str, Any] = {}  # what each id was defined as in the Genius
        for entry in table.entries:
            genius.define(entry.id, entry.spec)
            self._defined[entry.id] = entry.spec
        self.metrics = Metrics(self)

    # -- models -------------------------------------------------------------------------------------------------

    @property
    def model(self) -> str:
        """The default model's id."""
        return self.table.default.id

    def served(self, name: str | None) -> Served:
        """The model ``name`` names (None: the default); 404 otherwise. Never downloads."""
        entry = self.table.find(name)
        if self._defined.get(entry.id) is not entry.spec:  # new in the registry, or a name now for another file
            self.genius.define(entry.id, entry.spec)
            self._defined[entry.id] = entry.spec
        return entry

    def refresh(self) -> None:
        """Re-reads the registry (after a pull or a removal) and serves what it holds now."""
        for entry in self.table.refresh():
            self.genius.define(entry.id, entry.spec)
            self._defined[entry.id] = entry.spec

    def state(self, entry: Served) -> str:
        """``loaded``, ``loading``, ``unloading`` or ``unloaded``; never loads it."""
        return self.genius.states().get(entry.id, "unloaded")

    @property
    def loaded(self) -> bool:
        """Whether the default model is loaded."""
        return self.state(self.table.default) == "loaded"

    def in_flight_of(self, model: str | None = None) -> int:
        """Requests holding a place in a model's queue (None: in all): streams open and engine calls under way."""
        if model is None:
            return len(self._streams) + len(self._calls)
        return sum(1 for m in self._streams.values() if m == model) + sum(1 for m in self._calls.values() if m == model)

    def model_of(self, stream: ChatStream) -> str:
        """The id of the model ``stream`` runs on."""
        return self._streams.get(stream, self.model)

    def model_card(self, entry: Served | None = None) -> dict[str, Any]:
        """OpenAI's model object, with what a local server adds: its state and what its GGUF says."""
        entry = entry or self.table.default
        facts = entry.facts()
        card: dict[str, Any] = {
            "id": entry.id,
            "object": "model",
            "created": entry.created,
            "owned_by": "rusty-genius",
            "status": self.state(entry),
            "default": entry is self.table.default,
        }
        card.update({k: v for k, v in facts.items() if v is not None and k not in ("metadata", "parallel")})
        if entry.aliases:
            card["aliases"] = list(entry.aliases)
        resident = self.genius.resident_bytes().get(entry.id)
        if resident:
            card["memory"] = resident
        return card

    def defaults_of(self, entry: Served) -> InferenceConfig:
        """The config ``entry`` answers with when a request sets nothing (see the module's rules)."""
        config = self._defaults.get(entry.id)
        if config is None:
            recommended = dict(self._recommended(entry)) if self._recommended is not None else {}
            if not recommended:
                config = self.defaults
            else:
                given = {"show_thinking": self.defaults.behavior.show_thinking, **self._flags}
                config = model_defaults(recommended, given)
            self._defaults[entry.id] = config
        return config

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
        seed = request.settings.get("seed", self.config_of(request).sampling.seed)
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
        entry = self.served(request.model)
        config = self.config_of(request, entry)
        keep_alive = request.keep_alive
        try:
            if prompt is None:
                stream = self.genius.chat(request.messages, config, model=entry.id, keep_alive=keep_alive, **settings)
            else:
                stream = self.genius.generate(
                    prompt, config, suffix=suffix, model=entry.id, keep_alive=keep_alive, **settings
                )
        except GeniusError as err:
            raise api_error_of(err, request.params) from None
        self._streams[stream] = entry.id
        return stream

    def config_of(self, request: ChatRequest, entry: Served | None = None) -> InferenceConfig:
        """The model's defaults with the request's tools and answer format (when it sets them)."""
        defaults = self.defaults_of(entry or self.served(request.model))
        return defaults if request.output is None else dataclasses.replace(defaults, output=request.output)

    async def call(self, model: str | None, work: Callable[[str], Awaitable[T]]) -> T:
        """Runs an engine call of a request naming ``model`` (``work``: an embed, tokenize, template… of
        ``self.genius`` on the model whose id it is given; it loads the model when it is not loaded, and waits its
        turn in the queue); raises :class:`ApiError` for its errors (``work`` may raise its own, naming the request's
        fields), 503 while shutting down. Shutdown cancels it."""
        if self.closing:
            raise closing_error()
        entry = self.served(model)

        async def run() -> T:
            return await work(entry.id)

        task = asyncio.ensure_future(run())
        self._calls[task] = entry.id
        try:
            return await task
        except GeniusError as err:
            raise api_error_of(err) from None
        except asyncio.CancelledError:
            if self.closing and task.cancelled():
                raise closing_error() from None
            raise
        finally:
            self._calls.pop(task, None)
            task.cancel()

    def done(self, stream: ChatStream) -> None:
        """Stops ``stream`` if it still runs and forgets it (call once its request is over, however it ended)."""
        self._streams.pop(stream, None)
        if not stream.finished:
            stream.close()

    def close_all(self) -> None:
        """Shutdown: refuse new requests and stop every running generation now."""
        self.closing = True
        for stream in list(self._streams):
            stream.close()
        for task in list(self._calls):
            task.cancel()
