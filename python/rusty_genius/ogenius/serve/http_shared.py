"""What every HTTP route module shares: JSON and error responses, reading a JSON body (:func:`read_json`, through
request_json.parse_json, the one parser of client JSON), the error wrapper, the disconnect watcher.

Rules:
- One place turns :class:`ApiError` into a response (OpenAI's shape, or Anthropic's on its paths) and anything
  unexpected into a logged 500 without a traceback for the client (:func:`api`); route modules (http.py,
  responses_http.py) import these rather than each other, so the modules form no import cycle.
- A client that leaves is noticed only through the server's ``receive`` (``http.disconnect``): :func:`watch` waits
  on it beside the handler and closes the request's streams, even while they wait in the queue or for a load.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

from blacksheep import Content, Request, Response

from rusty_genius import ChatStream
from rusty_genius.ogenius.serve import anthropic_api
from rusty_genius.ogenius.serve.openai_api import ApiError, dumps
from rusty_genius.ogenius.serve.request_json import parse_json
from rusty_genius.ogenius.serve.security import RECEIVE, Receive, read_body

log = logging.getLogger("rusty_genius.serve")

LOAD_HEADER = b"x-model-load-seconds"
"""Set when the request waited for the model to (re)load: how long the load took."""

Handler = Callable[[Request], Awaitable[Response]]


def json_response(body: object, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None) -> Response:
    return Response(status, headers, Content(b"application/json", dumps(body).encode()))


def error_response(error: ApiError) -> Response:
    return Response(error.status, list(error.headers), Content(b"application/json", error.body()))


def anthropic_error_response(error: ApiError) -> Response:
    status, body = anthropic_api.error_of(error)
    return Response(status, list(error.headers), Content(b"application/json", body))


def load_headers(seconds: float | None) -> list[tuple[bytes, bytes]]:
    """The :data:`LOAD_HEADER` of a request that waited ``seconds`` for the model load (none when it did not)."""
    return [] if seconds is None else [(LOAD_HEADER, f"{seconds:.3f}".encode())]


async def read_json(request: Request, limit: int) -> object:
    """The request's body, read up to ``limit`` bytes (413 beyond), as JSON (400 when it is not, or nests deeper
    than request_json.MAX_DEPTH, or holds a lone surrogate)."""
    return parse_json(await read_body(request, limit))


def api(handler: Handler, anthropic: bool = False) -> Handler:
    """Turns ApiError into its response, and anything unexpected into a logged 500, in OpenAI's shape (or
    Anthropic's)."""
    respond = anthropic_error_response if anthropic else error_response

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as err:
            return respond(err)
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            return respond(ApiError(500, "internal server error", type="server_error"))

    return wrapped


def watch(request: Request, streams: Sequence[ChatStream]) -> asyncio.Task[None] | None:
    """Closes ``streams`` when the client disconnects."""

    def close() -> None:
        for stream in streams:
            stream.close()

    return on_disconnect(request, close)


def on_disconnect(request: Request, act: Callable[[], None]) -> asyncio.Task[None] | None:
    """Calls ``act`` when the client disconnects (the body has been read, so receive() only reports that); cancel the
    returned task once the request is over."""
    receive = cast("Receive | None", request.scope.get(RECEIVE) if request.scope else None)
    if receive is None:
        return None

    async def watcher() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        act()

    return asyncio.get_running_loop().create_task(watcher())


__all__ = [
    "LOAD_HEADER",
    "Handler",
    "anthropic_error_response",
    "api",
    "error_response",
    "json_response",
    "load_headers",
    "on_disconnect",
    "read_json",
    "watch",
]
