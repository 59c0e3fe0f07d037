"""The WebSocket protocol (docs/websocket.md) with the ``websockets`` client: frames, several conversations on one
socket, cancel by id, disconnects, errors, the frame cap."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.servers import LiveServer, live_server

pytestmark = [pytest.mark.pinky, pytest.mark.anyio]

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    # 20 ms a token: a 40-token answer takes ~1 s, long enough to cancel or leave in the middle.
    with live_server(
        "--engine", "pinky", "--pinky-delay", "0.02", "--pinky-tokens", "40", "--max-body-bytes", "2048"
    ) as live:
        yield live


async def frame(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(message, str)
    data: dict[str, Any] = json.loads(message)
    return data


async def until_done(ws: ClientConnection, request_id: Any) -> list[dict[str, Any]]:
    """Frames of ``request_id`` up to its ``done`` or ``error`` (frames of other ids are dropped)."""
    frames = []
    while True:
        f = await frame(ws)
        if f.get("id") == request_id:
            frames.append(f)
            if f["type"] in ("done", "error"):
                return frames


def text_of(frames: list[dict[str, Any]], kind: str) -> str:
    return "".join(f["delta"] for f in frames if f["type"] == kind)


async def test_hello_then_thinking_content_and_done_with_usage(server: LiveServer) -> None:
    async with websockets.connect(server.ws) as ws:
        hello = await frame(ws)
        assert hello == {"type": "hello", "protocol": 1, "model": "pinky", "status": "loaded", "auth": "ok"}
        await ws.send(json.dumps({"type": "chat", "id": "r1", "messages": USER, "max_tokens": 10}))
        frames = await until_done(ws, "r1")
    assert text_of(frames, "thinking") == "Narf! Poit!"
    assert text_of(frames, "content") == "Narf! Narf! Narf!"
    done = frames[-1]
    assert done["type"] == "done" and done["finish_reason"] == "length"
    assert done["usage"]["completion_tokens"] == 10 and "cached_tokens" in done["usage"]["prompt_tokens_details"]
    assert done["load_seconds"] is None and done["timings"]["predicted_n"] == 10


async def test_several_conversations_share_a_socket_and_cancel_stops_only_one(server: LiveServer) -> None:
    async with websockets.connect(server.ws + "/v1/ws") as ws:
        await frame(ws)
        await ws.send(json.dumps({"type": "chat", "id": "keep", "messages": USER, "max_tokens": 10}))
        await ws.send(json.dumps({"type": "chat", "id": 7, "messages": USER, "max_tokens": 10}))
        await ws.send(json.dumps({"type": "chat", "id": "stop", "messages": USER}))
        by_id: dict[Any, list[dict[str, Any]]] = {"keep": [], 7: [], "stop": []}
        cancelled = False
        while not all(f and f[-1]["type"] == "done" for f in by_id.values()):
            f = await frame(ws)
            by_id[f["id"]].append(f)
            if f["id"] == "stop" and f["type"] == "content" and not cancelled:
                await ws.send(json.dumps({"type": "cancel", "id": "stop"}))
                cancelled = True
    for rid in ("keep", 7):
        assert by_id[rid][-1]["finish_reason"] == "length"
        assert text_of(by_id[rid], "content") == "Narf! Narf! Narf!"
    stopped = by_id["stop"]
    assert stopped[-1]["finish_reason"] == "cancelled"
    assert stopped[-1]["usage"]["completion_tokens"] < 40
    assert text_of(stopped, "content").count("Narf!") < 40


async def test_cancel_while_queued_ends_at_once(server: LiveServer) -> None:
    async with websockets.connect(server.ws) as ws:
        await frame(ws)
        await ws.send(json.dumps({"type": "chat", "id": "long", "messages": USER}))
        await ws.send(json.dumps({"type": "chat", "id": "queued", "messages": USER}))
        await ws.send(json.dumps({"type": "cancel", "id": "queued"}))
        started = time.monotonic()
        [done] = [f for f in await until_done(ws, "queued") if f["type"] == "done"]
        assert done["finish_reason"] == "cancelled"
        assert time.monotonic() - started < 0.5, "a queued conversation waited for the one before it"
        await ws.send(json.dumps({"type": "cancel", "id": "long"}))
        assert (await until_done(ws, "long"))[-1]["finish_reason"] == "cancelled"


async def test_a_disconnect_stops_the_socket_s_generations(server: LiveServer) -> None:
    async with websockets.connect(server.ws) as ws:
        await frame(ws)
        await ws.send(json.dumps({"type": "chat", "id": "a", "messages": USER}))
        await ws.send(json.dumps({"type": "chat", "id": "b", "messages": USER}))
        while (await frame(ws))["type"] != "content":
            pass
    # Both 1 s answers were stopped: a new one is not queued behind them.
    async with websockets.connect(server.ws) as ws:
        await frame(ws)
        started = time.monotonic()
        await ws.send(json.dumps({"type": "chat", "id": "next", "messages": USER, "max_tokens": 3}))
        assert (await until_done(ws, "next"))[-1]["type"] == "done"
        assert time.monotonic() - started < 1.0, "an abandoned generation was still running"


@pytest.mark.parametrize(
    ("sent", "code", "param"),
    [
        ("{not json", "invalid_json", None),
        ("[1]", "invalid_frame", None),
        ('{"type": "dance", "id": "x"}', "invalid_frame", None),
        ('{"type": "chat", "messages": [{"role": "user", "content": "hi"}]}', None, "id"),
        ('{"type": "chat", "id": "x", "messages": []}', None, "messages"),
        ('{"type": "chat", "id": "x", "messages": [{"role": "user", "content": "hi"}], "top_p": 7}', None, "top_p"),
        ('{"type": "chat", "id": "x", "model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]}',
         "model_not_found", "model"),
    ],
)  # fmt: skip
async def test_bad_frames_get_an_error_frame_and_the_socket_stays_open(
    server: LiveServer, sent: str, code: str | None, param: str | None
) -> None:
    async with websockets.connect(server.ws) as ws:
        await frame(ws)
        await ws.send(sent)
        error = await frame(ws)
        assert error["type"] == "error", error
        assert error["error"]["code"] == code and error["error"]["param"] == param, error
        assert error["error"]["status"] in (400, 404)
        await ws.send('{"type": "ping"}')
        assert await frame(ws) == {"type": "pong"}


async def test_a_duplicate_running_id_is_refused(server: LiveServer) -> None:
    async with websockets.connect(server.ws) as ws:
        await frame(ws)
        chat = json.dumps({"type": "chat", "id": "same", "messages": USER, "max_tokens": 30})
        await ws.send(chat)
        await ws.send(chat)
        frames = await until_done(ws, "same")
        assert frames[-1]["type"] == "error" and frames[-1]["error"]["code"] == "duplicate_id"
        assert (await until_done(ws, "same"))[-1]["type"] == "done"


async def test_a_message_over_the_cap_closes_the_socket_with_1009(server: LiveServer) -> None:
    async with websockets.connect(server.ws) as ws:
        await frame(ws)
        await ws.send(json.dumps({"type": "chat", "id": "big", "messages": [{"role": "user", "content": "x" * 4000}]}))
        with pytest.raises(websockets.ConnectionClosed) as info:
            await frame(ws)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
