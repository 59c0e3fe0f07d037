"""OpenAI's Responses API over HTTP: ``POST /v1/responses`` (JSON, or SSE with ``stream: true``),
``GET``/``DELETE /v1/responses/{id}``, ``POST /v1/responses/{id}/cancel`` and ``GET /v1/responses/{id}/input_items``.
Parsing is responses_api.py, encoding responses_encode.py, the run responses_run.py, the memory responses_store.py.

Rules:
- The chat-completions path, route for route: the body is read up to ``--max-body-bytes``, checked, queued; the
  response starts once the first event arrives, so a full queue, a bad setting or a prompt too long for the context
  still get their status code; a client that leaves stops its generation (http_shared.watch); errors are OpenAI's
  ``{"error": {message, type, param, code}}``, never a 500 for bad input.
- ``cancel``: a running response (by id, made over HTTP or the WebSocket mode, stored or not) is stopped within a
  token and answered once it has ended, with status ``cancelled`` (as it stands after :data:`CANCEL_WAIT` seconds);
  a finished stored response is answered unchanged, as OpenAI answers a second cancel; any other id is a 404.
- ``GET`` of a running stored response answers it as it stands (``in_progress``); ``DELETE`` of one is a 400
  (cancel it first); a deleted response answers ``{"id", "object": "response", "deleted": true}``.
- ``input_items``: the response's own input items (not those of the responses it continues), each with an ``id``;
  ``order`` ``desc`` (default) or ``asc``, ``limit`` 1 to 100 (default 20), ``after`` an item id.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from blacksheep import Request, Response, Router, StreamedContent

from rusty_genius.ogenius.serve import responses_api
from rusty_genius.ogenius.serve.http_shared import api, json_response, load_headers, read_json, watch
from rusty_genius.ogenius.serve.openai_api import ApiError
from rusty_genius.ogenius.serve.responses_encode import sse
from rusty_genius.ogenius.serve.responses_run import Run
from rusty_genius.ogenius.serve.responses_store import ResponseStore, Stored, store_of
from rusty_genius.ogenius.serve.service import Service

PATH = "/v1/responses"
CANCEL_WAIT = 10.0
"""Seconds a cancel waits for the response to end before answering it as it stands."""


class Create:
    """``POST /v1/responses``."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.store = store_of(service)

    async def __call__(self, request: Request) -> Response:
        data = await read_json(request, self.service.settings.max_body)
        parsed = responses_api.parse(data, self.store.previous)
        run = Run(self.service, parsed)
        watcher = watch(request, [run.stream])
        handed_over = False
        try:
            first = await run.start()
            headers = load_headers(run.stream.load_seconds)
            if parsed.chat.stream:
                headers += [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
                response = Response(200, headers, StreamedContent(b"text/event-stream", _sse(run, first, watcher)))
                handed_over = True
                return response
            while not run.over:
                await run.more()
            return json_response(run.builder.response, headers=headers)
        finally:
            if not handed_over:
                _stop(run, watcher)


def _sse(
    run: Run, first: list[dict[str, Any]], watcher: asyncio.Task[None] | None
) -> Callable[[], AsyncIterator[bytes]]:
    """The response body: one write per batch of ready events (BlackSheep wants an async generator function)."""

    async def body() -> AsyncIterator[bytes]:
        events = first
        try:
            while True:
                if events:
                    yield sse(events)
                if run.over:
                    return
                events = await run.more()
        finally:
            _stop(run, watcher)

    return body


def _stop(run: Run, watcher: asyncio.Task[None] | None) -> None:
    if watcher is not None:
        watcher.cancel()
    run.close()


def _id(request: Request) -> str:
    return str(request.route_values.get("response_id", ""))


def add_routes(router: Router, service: Service) -> None:
    """The Responses API's routes on the HTTP app's router."""
    store = store_of(service)

    async def retrieve(request: Request) -> Response:
        rid = _id(request)
        running = store.running.get(rid)
        if running is not None and running.kept:
            return json_response(running.snapshot())
        return json_response(_stored(store, rid).response)

    async def delete(request: Request) -> Response:
        rid = _id(request)
        running = store.running.get(rid)
        if running is not None and running.kept:
            raise ApiError(400, f"Response '{rid}' is still running: cancel it first (POST {PATH}/{rid}/cancel)")
        if not store.delete(rid):
            raise store.missing(rid)
        return json_response({"id": rid, "object": "response", "deleted": True})

    async def cancel(request: Request) -> Response:
        rid = _id(request)
        running = store.running.get(rid)
        if running is not None:
            running.cancel()
            return json_response(await running.finished(CANCEL_WAIT))
        return json_response(_stored(store, rid).response)

    async def input_items(request: Request) -> Response:
        rid = _id(request)
        running = store.running.get(rid)
        items = running.items if running is not None and running.kept else _stored(store, rid).items
        return json_response(_page(items, request))

    for path in (PATH, PATH.removeprefix("/v1")):  # also without /v1, as llama-server serves it
        router.add_post(path, api(Create(service)))
        router.add_get(path + "/{response_id}", api(retrieve))
        router.add_delete(path + "/{response_id}", api(delete))
        router.add_post(path + "/{response_id}/cancel", api(cancel))
        router.add_get(path + "/{response_id}/input_items", api(input_items))


def _stored(store: ResponseStore, rid: str) -> Stored:
    entry = store.get(rid)
    if entry is None:
        raise store.missing(rid)
    return entry


def _page(items: list[dict[str, Any]], request: Request) -> dict[str, Any]:
    """One page of ``items`` as OpenAI lists them (``order``, ``limit``, ``after`` from the query)."""
    query = {k: v[-1] for k, v in request.query.items() if v}
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise ApiError(400, "'order' must be 'asc' or 'desc'", param="order")
    limit_text = query.get("limit", "20")
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= 100:
        raise ApiError(400, "'limit' must be an integer from 1 to 100", param="limit")
    ordered = items if order == "asc" else items[::-1]
    after = query.get("after")
    if after is not None:
        ids = [item.get("id") for item in ordered]
        if after not in ids:
            raise ApiError(400, f"'after': no input item '{after}' in this response", param="after")
        ordered = ordered[ids.index(after) + 1 :]
    data = ordered[: int(limit_text)]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": len(ordered) > len(data)}  # fmt: skip


__all__ = ["CANCEL_WAIT", "PATH", "Create", "add_routes"]
