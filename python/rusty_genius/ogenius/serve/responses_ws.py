"""OpenAI's Responses API WebSocket mode, on ``--ws-addr`` at ``/v1/responses``: ``response.create`` messages in
(the ``POST /v1/responses`` body, ``stream`` implied), the SSE stream's events out as JSON text frames. The typed-frame
protocol of docs/websocket.md keeps the other paths (ws.py dispatches on the path).

Rules:
- Lanes, as OpenAI's ``stream_id``: responses on one lane (the same ``stream_id``, or none) run one after another in
  the order sent; responses on different lanes run at once (the engine batches them). Every event of a response
  echoes its ``stream_id`` when the message gave one.
- ``previous_response_id`` looks in the connection's own responses first (the last :data:`KEPT` of them, kept even
  with ``store: false``, for the life of the socket, as OpenAI's connection-local cache), then in the shared store.
  It is resolved when the response starts, so it may name the response before it on the same lane.
- ``generate: false`` keeps the input as a response to continue from and generates nothing (a warm-up).
- A bad message, a bad request or a refused one (busy, unknown model, unknown previous response) gets an ``error``
  event (``status``, ``error``: {type, code, message, param}, and the ``stream_id``) and the socket stays open; an
  error after the response began ends it as ``response.failed``. Never a close with 1011, never a traceback.
- Security as on the other paths of the listener (security.Guard: Host, Origin; a wrong key refuses the upgrade).
  A socket opened without the key (browsers cannot send headers) sends ``{"type": "auth", "api_key": ...}`` first,
  as in docs/websocket.md; a wrong key there closes it (1008).
- At most ``max_conversations_per_socket`` responses queued or running per socket (429 beyond). Leaving closes
  every stream of the socket within a token.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from blacksheep import WebSocket

from rusty_genius import ChatStream
from rusty_genius.core.errors import shown
from rusty_genius.ogenius.serve import responses_api
from rusty_genius.ogenius.serve.openai_api import ApiError, dumps
from rusty_genius.ogenius.serve.responses_run import Run, warm_up
from rusty_genius.ogenius.serve.responses_store import ResponseStore, store_of
from rusty_genius.ogenius.serve.security import Policy
from rusty_genius.ogenius.serve.service import Service
from rusty_genius.ogenius.serve.ws_session import SocketSession

log = logging.getLogger("rusty_genius.serve")

PATH = "/v1/responses"
ENDPOINT = "ws:" + PATH
"""The ``endpoint`` label of its requests in the metrics."""
KEPT = 16
"""Responses a connection keeps for itself (stored or not), most recent first."""


def error_event(error: ApiError, stream_id: str | None = None) -> str:
    body: dict[str, Any] = {"type": "error", "status": error.status, "error": error.to_dict()}
    if stream_id is not None:
        body["stream_id"] = stream_id
    return dumps(body)


class ResponsesSocket(SocketSession):
    """One accepted socket on :data:`PATH`."""

    NOUN = "message"

    def __init__(self, ws: WebSocket, service: Service, policy: Policy) -> None:
        super().__init__(ws, service, policy)
        self.store = store_of(service)
        self.local = ResponseStore(KEPT, service.settings.responses_store_bytes)
        self.lanes: dict[str, asyncio.Task[None]] = {}
        """The last response of each lane (by ``stream_id``; "" when none was given)."""
        self.tasks: set[asyncio.Task[None]] = set()
        self.runs: set[Run] = set()

    def error(self, error: ApiError, ref: Any = None) -> str:
        return error_event(error, ref)

    def ref(self, frame: dict[str, Any]) -> Any:
        stream_id = frame.get("stream_id")
        return stream_id if isinstance(stream_id, str) and 0 < len(stream_id) <= 256 else None

    def streams(self) -> list[ChatStream]:
        return [run.stream for run in self.runs]

    def live_tasks(self) -> list[asyncio.Task[None]]:
        return list(self.tasks)

    def release(self) -> None:
        for run in list(self.runs):
            run.close()

    async def dispatch(self, frame: dict[str, Any]) -> None:
        stream_id = frame.get("stream_id")
        if stream_id is not None and not (isinstance(stream_id, str) and 0 < len(stream_id) <= 256):
            error = ApiError(400, "'stream_id' must be a string of 1 to 256 characters", param="stream_id")
            await self.send(error_event(error))
            return
        kind = frame.get("type")
        if await self.gate(frame, stream_id):
            return  # an auth message, or a message before the needed one
        if kind != "response.create":
            error = ApiError(400, f"unknown event type {shown(kind)}: this socket takes response.create", param="type",
                             code="invalid_event")  # fmt: skip
            await self.send(error_event(error, stream_id))
        elif len(self.tasks) >= self.service.settings.max_conversations_per_socket:
            limit = self.service.settings.max_conversations_per_socket
            error = ApiError(429, f"at most {limit} responses queued or running per socket", code="too_many_responses")
            await self.send(error_event(error, stream_id))
        else:
            lane = stream_id or ""
            task = asyncio.get_running_loop().create_task(self._respond(frame, stream_id, self.lanes.get(lane)))
            self.lanes[lane] = task
            self.tasks.add(task)
            task.add_done_callback(self._forget(lane))

    def _forget(self, lane: str) -> Callable[[asyncio.Task[None]], None]:
        def forget(task: asyncio.Task[None]) -> None:
            self.tasks.discard(task)
            if self.lanes.get(lane) is task:
                del self.lanes[lane]

        return forget

    async def _respond(self, frame: dict[str, Any], stream_id: str | None, before: asyncio.Task[None] | None) -> None:
        if before is not None:
            await asyncio.wait([before])  # the lane's order; its outcome is its own
        try:
            await self._generate(frame, stream_id)
        except Exception:  # a bug: said to the client and logged, as http_shared.api does; the socket goes on
            log.exception("a WebSocket response failed")
            await self.send(error_event(ApiError(500, "internal server error", type="server_error"), stream_id))

    async def _generate(self, frame: dict[str, Any], stream_id: str | None) -> None:
        try:
            parsed = responses_api.parse(frame, lambda rid: self.store.previous(rid, self.local), websocket=True)
            if not parsed.generate:
                await self._send_events(warm_up(self.service, parsed, self.local), stream_id)
                return
            run = Run(self.service, parsed, self.local, endpoint=ENDPOINT)
        except ApiError as err:
            self.service.metrics.ws_request(ENDPOINT, err.status)
            await self.send(error_event(err, stream_id))
            return
        self.runs.add(run)
        try:
            try:
                events = await run.start()
            except ApiError as err:
                run.generation.end(err.status)
                await self.send(error_event(err, stream_id))
                return
            while self.open:
                await self._send_events(events, stream_id)
                if run.over:
                    return
                events = await run.more()
        finally:
            self.runs.discard(run)
            run.close()
            run.generation.end()

    async def _send_events(self, events: list[dict[str, Any]], stream_id: str | None) -> None:
        for event in events:
            await self.send(dumps(event if stream_id is None else {**event, "stream_id": stream_id}))


__all__ = ["KEPT", "PATH", "ResponsesSocket", "error_event"]
