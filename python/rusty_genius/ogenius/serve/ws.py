"""The WebSocket app on ``--ws-addr``: several conversations per socket, typed JSON frames (docs/websocket.md); the
path ``/v1/responses`` is OpenAI's Responses WebSocket mode instead (responses_ws.py).

Rules:
- The handler's own loop is the receiver (ws_session.SocketSession, shared with responses_ws.py); each
  conversation is a task that reads its stream in batches and sends frames. A disconnect only surfaces inside
  ``receive``: the receiver then closes every stream of the socket, so each generation stops within a token, and
  waits for the tasks.
- ``cancel`` stops one conversation: a running one through ``ChatStream.cancel`` (it still ends with ``done``,
  finish_reason ``cancelled``, with usage); one still queued or waiting for the model load at once (``done`` with
  usage null), without waiting for its turn.
- A bad frame gets an ``error`` frame and the socket stays open; only a failed ``auth`` closes it.
- A chat frame takes the HTTP body's fields (openai_api, tools_api: tools, response_format, reasoning controls);
  a tool call streams as ``tool_call`` (index, call_id, name), ``tool_call_delta`` (index, a piece of the arguments
  JSON) and ``tool_call_end`` (index) frames, and ``done`` then says ``finish_reason: "tool_calls"``. A
  conversation is one choice: ``n`` other than 1 is refused (one chat frame per choice instead).
- ``logprobs``/``top_logprobs`` as over HTTP: a ``logprobs`` frame (``content``: the entries of encode.py) comes
  right before the ``content`` frame that carries its tokens' text; entries still waiting at the end come before
  ``done``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from typing import Any

from blacksheep import Application, Router, WebSocket

from rusty_genius import ChatStream
from rusty_genius.core.errors import GeniusError, shown
from rusty_genius.core.events import Event
from rusty_genius.ogenius.serve import encode, responses_ws
from rusty_genius.ogenius.serve.metrics import Generation
from rusty_genius.ogenius.serve.openai_api import ApiError, ChatRequest, api_error_of, closing_error, dumps, parse_chat
from rusty_genius.ogenius.serve.security import Policy
from rusty_genius.ogenius.serve.service import Service
from rusty_genius.ogenius.serve.ws_session import SocketSession

log = logging.getLogger("rusty_genius.serve")

PROTOCOL = 1


@dataclass(eq=False)
class _Conversation:
    id: Any
    chat: ChatRequest
    stream: ChatStream
    head: str
    """``{"id":<id>,"type":`` with the id already encoded."""
    generation: Generation
    task: asyncio.Task[None] | None = None
    cancelled: bool = False
    running: bool = False
    """Its task has begun."""
    started: bool = False
    """The engine has begun it (its first event arrived)."""
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    """Logprob entries not sent yet (they go just before the next content frame, or ``done``)."""


def error_frame(error: ApiError, request_id: Any = None) -> str:
    return dumps({"type": "error", "id": request_id, "error": {**error.to_dict(), "status": error.status}})


class Connection(SocketSession):
    """One accepted socket."""

    def __init__(self, ws: WebSocket, service: Service, policy: Policy) -> None:
        super().__init__(ws, service, policy)
        self.conversations: dict[str, _Conversation] = {}

    def error(self, error: ApiError, ref: Any = None) -> str:
        return error_frame(error, ref)

    def ref(self, frame: dict[str, Any]) -> Any:
        return frame.get("id")

    async def greet(self) -> None:
        await self.send(
            dumps(
                {
                    "type": "hello",
                    "protocol": PROTOCOL,
                    "model": self.service.model,
                    "status": "loaded" if self.service.loaded else "unloaded",
                    "auth": "ok" if self.authenticated else "required",
                }
            )
        )

    def streams(self) -> list[ChatStream]:
        return [conv.stream for conv in self.conversations.values()]

    def live_tasks(self) -> list[asyncio.Task[None]]:
        return [conv.task for conv in self.conversations.values() if conv.task is not None]

    async def stop_all(self) -> None:
        await super().stop_all()
        self.conversations.clear()

    # -- frames from the client ---------------------------------------------------------------------------------

    async def dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "ping":
            await self.send('{"type":"pong"}')
        elif await self.gate(frame, frame.get("id")):
            pass  # an auth frame, or a frame before the needed one
        elif kind == "chat":
            await self._chat(frame)
        elif kind == "cancel":
            self._cancel(frame.get("id"))
        else:
            error = ApiError(
                400, f"unknown frame type {shown(kind)}; use chat, cancel, auth or ping", code="invalid_frame"
            )
            await self.send(error_frame(error, frame.get("id")))

    async def _chat(self, frame: dict[str, Any]) -> None:
        request_id = frame.get("id")
        try:
            stream, chat = self._open(frame, request_id)
        except ApiError as err:
            self.service.metrics.ws_request("ws", err.status)  # every refusal counts, as on HTTP
            await self.send(error_frame(err, request_id))
            return
        key = json.dumps(request_id)
        head = '{"id":' + key + ',"type":'
        generation = self.service.metrics.generation("ws", self.service.model_of(stream))
        conv = _Conversation(request_id, chat, stream, head, generation)
        self.conversations[key] = conv
        conv.task = asyncio.get_running_loop().create_task(self._converse(key, conv))

    def _open(self, frame: dict[str, Any], request_id: Any) -> tuple[ChatStream, ChatRequest]:
        """Checks a chat frame and queues its request; raises ApiError when it is refused."""
        if not (isinstance(request_id, str) and 0 < len(request_id) <= 256) and not (
            isinstance(request_id, int) and not isinstance(request_id, bool)
        ):
            raise ApiError(400, "a chat frame needs an 'id': a string (up to 256 characters) or an integer", param="id")
        key = json.dumps(request_id)
        if key in self.conversations:
            raise ApiError(400, f"conversation {key} is still running", code="duplicate_id", param="id")
        if len(self.conversations) >= self.service.settings.max_conversations_per_socket:
            limit = self.service.settings.max_conversations_per_socket
            raise ApiError(429, f"at most {limit} conversations at once per socket", code="too_many_conversations")
        chat = parse_chat(frame)
        if chat.n != 1:
            raise ApiError(400, "'n' must be 1 on the WebSocket: send one chat frame per choice", param="n")
        return self.service.open(chat), chat

    def _cancel(self, request_id: Any) -> None:
        conv = self.conversations.get(json.dumps(request_id))
        if conv is None or conv.cancelled:
            return  # already finished: the client's cancel crossed our done
        conv.cancelled = True
        if conv.started:
            conv.stream.cancel()  # the engine stops within a token and still reports usage
            return
        # Queued behind other requests or waiting for the model load: end it now rather than in its turn. Closing
        # ends a queued stream's wait at once; a wait for the load (which others may share) needs the task cancelled.
        loading = conv.running and conv.stream.cold
        conv.stream.close()
        if loading and conv.task is not None:
            conv.task.cancel()

    # -- frames to the client -----------------------------------------------------------------------------------

    async def _converse(self, key: str, conv: _Conversation) -> None:
        stream = conv.stream
        conv.running = True
        try:
            if stream.cold:
                model = self.service.model_of(stream)
                await self.send(conv.head + '"loading","model":' + encode_basestring(model) + "}")
            while self.open:
                try:
                    events = await stream.batch()
                except GeniusError as err:
                    error = api_error_of(err, conv.chat.params)
                    conv.generation.end(error.status)
                    await self.send(error_frame(error, conv.id))
                    return
                if not events:
                    await self._done_without_usage(conv)
                    return
                conv.started = True
                conv.generation.batch(events)
                for frame in self._frames(conv, events):
                    await self.send(frame)
                if events[-1].kind == "complete":
                    return
        except asyncio.CancelledError:
            if conv.cancelled and self.open:
                await self._done_without_usage(conv)
            else:
                raise
        finally:
            self.conversations.pop(key, None)
            self.service.done(stream)
            conv.generation.end()

    async def _done_without_usage(self, conv: _Conversation) -> None:
        """The stream ended before ``complete``: cancelled before it started, or closed by the shutdown."""
        if self.service.closing and not conv.cancelled:
            await self.send(error_frame(closing_error(), conv.id))
            return
        done = {"type": "done", "id": conv.id, "finish_reason": "cancelled", "usage": None, "timings": None}
        await self.send(dumps({**done, "load_seconds": conv.stream.load_seconds}))

    def _frames(self, conv: _Conversation, events: list[Event]) -> list[str]:
        """The frames for a batch: deltas merged while of one kind (and one tool call), tool-call starts and ends,
        then ``done`` if the batch completes the stream."""
        frames: list[str] = []
        key: str | int = ""  # "content", "thought_delta", or the index of the call whose arguments these are
        texts = list[str]()
        for ev in events:
            k: str | int = ev.kind
            if k == "token_logprob":
                if conv.chat.logprobs:
                    conv.logprobs.append(encode.logprob_item(ev))
                continue
            if k == "tool_call_delta":
                k = ev.index or 0  # set on every tool_call_* event
            elif k != "content" and k != "thought_delta":
                if texts:
                    self._delta(conv, key, texts, frames)
                    texts = []
                if k == "tool_call_start":
                    frames.append(
                        conv.head + '"tool_call","index":' + str(ev.index) + ',"call_id":'
                        + encode_basestring(ev.id or "") + ',"name":' + encode_basestring(ev.name or "") + "}"
                    )  # fmt: skip
                elif k == "tool_call_stop":
                    frames.append(conv.head + '"tool_call_end","index":' + str(ev.index) + "}")
                elif k == "complete":
                    if conv.logprobs:
                        frames.append(self._logprobs(conv))
                    frames.append(self._done(conv, ev))
                continue
            if k != key and texts:
                self._delta(conv, key, texts, frames)
                texts = []
            key = k
            texts.append(ev.text or "")
        if texts:
            self._delta(conv, key, texts, frames)
        return frames

    @staticmethod
    def _delta(conv: _Conversation, key: str | int, texts: list[str], frames: list[str]) -> None:
        """Appends the delta frame of ``texts`` to ``frames``, after the logprobs waiting for a content frame."""
        if isinstance(key, int):
            name = '"tool_call_delta","index":' + str(key)
        else:
            name = '"content"' if key == "content" else '"thinking"'
            if key == "content" and conv.logprobs:
                frames.append(Connection._logprobs(conv))
        frames.append(conv.head + name + ',"delta":' + encode_basestring("".join(texts)) + "}")

    @staticmethod
    def _logprobs(conv: _Conversation) -> str:
        entries, conv.logprobs = conv.logprobs, []
        return conv.head + '"logprobs","content":' + dumps(entries) + "}"

    @staticmethod
    def _done(conv: _Conversation, end: Event) -> str:
        body = {
            "type": "done",
            "id": conv.id,
            "finish_reason": end.finish_reason or "stop",
            "usage": encode.usage_dict(end.usage) if end.usage else None,
            "timings": encode.timings_dict(end.timings, end.usage) if end.timings else None,
            "load_seconds": conv.stream.load_seconds,
        }
        return dumps(body)


def build(service: Service, policy: Policy) -> Application:
    """The WebSocket app (wrap it in security.Guard before serving)."""
    router = Router()  # its own, as in http.py
    app = Application(router=router)

    async def socket(ws: WebSocket) -> None:
        await Connection(ws, service, policy).run()

    async def responses_socket(ws: WebSocket) -> None:
        await responses_ws.ResponsesSocket(ws, service, policy).run()

    router.add_ws("/", socket)
    router.add_ws("/v1/ws", socket)
    router.add_ws(responses_ws.PATH, responses_socket)  # OpenAI's Responses WebSocket mode (docs/responses.md)
    return app
