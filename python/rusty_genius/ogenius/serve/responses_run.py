"""One Responses API response, from its queued stream to its final object: the path that HTTP (responses_http.py)
and the WebSocket mode (responses_ws.py) share.

Rules:
- The stream is opened at once (a full queue or a bad setting is an ApiError before anything is sent), and
  :meth:`Run.start` waits for its first batch, so an error before the engine begins the request is still a status
  code (or a WebSocket ``error`` event) rather than a failed response.
- Once begun, an engine error or a shutdown ends the response as ``failed`` (responses_encode.py).
- :meth:`Run.cancel` (``POST /v1/responses/{id}/cancel``) asks the engine to stop within a token: the response ends
  as ``cancelled`` with the usage so far (no usage when it had not begun).
- A client that leaves closes the stream under the run: it then ends silently, sending and keeping nothing.
- At its end the response is kept with its conversation: in the shared store when ``store`` is true, in the
  connection's own store when the WebSocket mode gives one. It leaves the running set however it ended.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from rusty_genius.core.errors import GeniusError
from rusty_genius.core.events import Event
from rusty_genius.ogenius.serve.openai_api import ApiError, api_error_of, closing_error
from rusty_genius.ogenius.serve.responses_api import Parsed, wire_error
from rusty_genius.ogenius.serve.responses_encode import ResponseBuilder
from rusty_genius.ogenius.serve.responses_items import messages_of
from rusty_genius.ogenius.serve.responses_store import ResponseStore, Stored, store_of
from rusty_genius.ogenius.serve.service import Service


def response_id() -> str:
    return "resp_" + secrets.token_hex(24)


def shell(service: Service, parsed: Parsed, rid: str) -> dict[str, Any]:
    """The response object of ``parsed`` before anything is generated (the effective sampling values included)."""
    entry = service.served(parsed.chat.model)
    sampling, settings = service.defaults_of(entry).sampling, parsed.chat.settings
    return {"id": rid, "object": "response", "created_at": int(time.time()), "background": False,
            "completed_at": None, "error": None, "incomplete_details": None, "model": entry.id,
            "temperature": settings.get("temperature", sampling.temperature),
            "top_p": settings.get("top_p", sampling.top_p), "store": parsed.store, **parsed.echo}  # fmt: skip


def keep(parsed: Parsed, response: dict[str, Any], store: ResponseStore, local: ResponseStore | None) -> None:
    """Keeps a finished ``response`` of ``parsed`` where it belongs (``store: true``: the shared store; ``local``:
    the connection's own)."""
    if not parsed.store and local is None:
        return
    conversation = parsed.conversation + messages_of(response["output"], {}, "output")
    entry = Stored(response, parsed.items, conversation)
    if parsed.store:
        store.put(entry)
    if local is not None:
        local.put(entry)


def warm_up(service: Service, parsed: Parsed, local: ResponseStore | None) -> list[dict[str, Any]]:
    """The WebSocket mode's ``generate: false``: a completed response with no output, kept so that the next turn
    can continue from it."""
    builder = ResponseBuilder(shell(service, parsed, response_id()))
    events = builder.start() + builder.finish(None)
    keep(parsed, builder.response, store_of(service), local)
    return events


class Run:
    """One response being generated (see the module's rules); its events come from :meth:`start`, then
    :meth:`more` until :attr:`over`."""

    def __init__(
        self, service: Service, parsed: Parsed, local: ResponseStore | None = None, endpoint: str | None = None
    ) -> None:
        self.service = service
        self.parsed = parsed
        self.local = local
        self.store = store_of(service)
        self.id = response_id()
        self.builder = ResponseBuilder(shell(service, parsed, self.id))
        try:
            self.stream = service.open(parsed.chat)
        except ApiError as err:
            raise wire_error(err) from None
        self.generation = service.metrics.generation(endpoint, service.model_of(self.stream))
        """Its metrics; ``endpoint``: the WebSocket's, which counts the request when it ends."""
        self.cancelled = False
        self.over = False
        self._ended = asyncio.Event()
        self.store.running[self.id] = self

    # -- as the store's Running -------------------------------------------------------------------------------------

    @property
    def kept(self) -> bool:
        return self.parsed.store

    @property
    def items(self) -> list[dict[str, Any]]:
        return self.parsed.items

    def snapshot(self) -> dict[str, Any]:
        return self.builder.snapshot()

    def cancel(self) -> None:
        if not self.over and not self.cancelled:
            self.cancelled = True
            self.stream.cancel()

    async def finished(self, timeout: float) -> dict[str, Any]:
        """The response once it ended (as it stands after ``timeout`` seconds)."""
        try:
            await asyncio.wait_for(self._ended.wait(), timeout)
        except asyncio.TimeoutError:  # not yet the builtin TimeoutError on Python 3.10
            return self.snapshot()
        return self.builder.response

    # -- the events -------------------------------------------------------------------------------------------------

    async def start(self) -> list[dict[str, Any]]:
        """The first events (``response.created`` …) once the engine has begun; raises :class:`ApiError` when the
        request fails before that (call :meth:`close` either way)."""
        try:
            batch = await self.stream.batch()
        except GeniusError as err:
            raise wire_error(api_error_of(err, self.parsed.chat.params)) from None
        if not batch and not self.cancelled:
            raise closing_error() if self.service.closing else ApiError(499, "the client closed the request")
        events = self.builder.start()
        return events + (self._take(batch) if batch else self._end(None))

    async def more(self) -> list[dict[str, Any]]:
        """The next events (possibly none); [] once :attr:`over`."""
        if self.over:
            return []
        try:
            batch = await self.stream.batch()
        except GeniusError as err:
            return self._fail(wire_error(api_error_of(err, self.parsed.chat.params)))
        if batch:
            return self._take(batch)
        if self.cancelled:
            return self._end(None)
        if self.service.closing:
            return self._fail(closing_error())
        self.close()  # closed under us: the client left, nobody reads
        return []

    def _take(self, batch: list[Event]) -> list[dict[str, Any]]:
        self.generation.batch(batch)
        events = self.builder.add(batch)
        if batch[-1].kind == "complete":
            events += self._end(batch[-1])
        return events

    def _end(self, end: Event | None, error: ApiError | None = None) -> list[dict[str, Any]]:
        events = self.builder.finish(end, cancelled=self.cancelled, error=error)
        keep(self.parsed, self.builder.response, self.store, self.local)
        self._settle()
        return events

    def _fail(self, error: ApiError) -> list[dict[str, Any]]:
        return self._end(None, error)

    def _settle(self) -> None:
        self.over = True
        self.store.running.pop(self.id, None)
        self._ended.set()

    def close(self) -> None:
        """Stops the stream if it still runs and takes the run out of the running set (call once, at the end)."""
        self.service.done(self.stream)
        if not self.over:
            self._settle()


__all__ = ["Run", "keep", "response_id", "shell", "warm_up"]
