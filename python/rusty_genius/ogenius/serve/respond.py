"""One way to answer a generation over HTTP, for every API that generates (chat completions, Anthropic messages,
legacy completions): wait for the first events, then stream them as SSE or gather them into one JSON body. Each API
brings its :class:`Encoding`; the flow, the disconnect handling and the cleanup are here once.

Rules:
- The response starts once the first events of some choice arrive, so a full queue, a bad setting or a prompt too
  long for the context still get a proper status code (an :class:`ApiError`, through the API's ``error_of``); an
  error after that is written in the stream by the encoding.
- A client that leaves closes every stream of the request (``watch``); the streams are stopped and forgotten however
  the request ends (:func:`stop`): by the handler when it answers without streaming, by the SSE body otherwise.
- One write per batch of ready events; the encoding's ``end`` is written with the last one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol

from blacksheep import Request, Response, StreamedContent

from rusty_genius.core.errors import GeniusError
from rusty_genius.core.events import Event
from rusty_genius.ogenius.serve.choices import Choices
from rusty_genius.ogenius.serve.http_shared import json_response, load_headers, watch
from rusty_genius.ogenius.serve.openai_api import ApiError, closing_error
from rusty_genius.ogenius.serve.service import Service

SSE_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]

ErrorOf = Callable[[GeniusError], ApiError]
"""How an engine error becomes the API's error (which request field it names)."""


class Encoding(Protocol):
    """How one API writes a generation: as SSE (``start``, a ``batch`` per batch of one choice's events, ``end``
    once every choice completed, ``error``) or as one JSON body (``whole``)."""

    def start(self) -> bytes: ...

    def batch(self, index: int, events: Sequence[Event]) -> bytes: ...

    def end(self, ends: Sequence[Event]) -> bytes: ...

    def error(self, error: ApiError) -> bytes: ...

    def whole(self, events: Sequence[Sequence[Event]]) -> object: ...


async def respond(
    service: Service, request: Request, choices: Choices, stream: bool, encoding: Encoding, error_of: ErrorOf
) -> Response:
    """The response to a request whose ``choices`` are queued; takes charge of stopping them."""
    watcher = watch(request, choices.streams)
    choices.on_batch = service.metrics.generation(model=service.model_of(choices.streams[0])).batch
    handed_over = False
    try:
        first = await next_batch(service, choices, error_of)
        headers = load_headers(choices.load_seconds)
        if stream:
            body = _sse(service, choices, first, watcher, encoding, error_of)
            response = Response(200, SSE_HEADERS + headers, StreamedContent(b"text/event-stream", body))
            handed_over = True
            return response
        events: list[list[Event]] = [[] for _ in range(choices.n)]
        index, batch = first
        events[index].extend(batch)
        while not choices.done:
            index, batch = await next_batch(service, choices, error_of)
            events[index].extend(batch)
        return json_response(encoding.whole(events), headers=headers)
    finally:
        if not handed_over:
            stop(service, choices, watcher)


async def next_batch(service: Service, choices: Choices, error_of: ErrorOf) -> tuple[int, list[Event]]:
    """The next batch before the response started: errors become ApiError."""
    try:
        index, batch = await choices.next()
    except GeniusError as err:
        raise error_of(err) from None
    if not batch:  # closed under us: shutdown, or the client left (then nobody reads this)
        raise closing_error() if service.closing else ApiError(499, "the client closed the request")
    return index, batch


def _sse(
    service: Service,
    choices: Choices,
    first: tuple[int, list[Event]],
    watcher: asyncio.Task[None] | None,
    encoding: Encoding,
    error_of: ErrorOf,
) -> Callable[[], AsyncIterator[bytes]]:
    """The streamed body (BlackSheep wants an async generator function)."""

    async def body() -> AsyncIterator[bytes]:
        index, events = first
        try:
            out = encoding.start()
            while True:
                out += encoding.batch(index, events)
                if choices.done:
                    yield out + encoding.end([end for end in choices.ends if end is not None])
                    return
                if out:
                    yield out
                try:
                    index, events = await choices.next()
                except GeniusError as err:
                    yield encoding.error(error_of(err))
                    return
                if not events:
                    if service.closing:
                        yield encoding.error(closing_error())
                    return
                out = b""
        finally:
            stop(service, choices, watcher)

    return body


def stop(service: Service, choices: Choices, watcher: asyncio.Task[None] | None) -> None:
    if watcher is not None:
        watcher.cancel()
    choices.close()
    for stream in choices.streams:
        service.done(stream)
