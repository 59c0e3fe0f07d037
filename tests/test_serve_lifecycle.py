"""Lifecycle through the brainstem: idle unload, cold reload with the NOTICE line and the load time told to the client,
per-request keep_alive, and listing that never wakes the model."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import wait_until
from tests.servers import live_server

pytestmark = pytest.mark.pinky

USER = [{"role": "user", "content": "hi"}]
CHAT = {"messages": USER, "max_tokens": 4}


def test_idle_unload_then_a_cold_reload_logs_the_notice_and_tells_the_client() -> None:
    args = ("--engine", "pinky", "--pinky-delay", "0", "--pinky-load-delay", "0.2", "--unload-after", "0.3")
    with live_server(*args) as live, httpx.Client(base_url=live.http, timeout=10) as http:
        warm = http.post("/v1/chat/completions", json=CHAT)
        assert warm.status_code == 200 and "x-model-load-seconds" not in warm.headers
        assert wait_until(lambda: not http.get("/health").json()["loaded"])
        for _ in range(3):  # listing and health never wake it
            assert http.get("/v1/models").json()["data"][0]["status"] == "unloaded"
            assert http.get("/health").json()["loaded"] is False
            time.sleep(0.05)
        assert "NOTICE" not in live.log()

        cold = http.post("/v1/chat/completions", json=CHAT)
        assert cold.status_code == 200
        assert float(cold.headers["x-model-load-seconds"]) >= 0.2
        assert live.wait_for_log("NOTICE: Model reload took ")
        assert "Increase --unload-after or use --no-unload to avoid delay." in live.log()
        assert http.get("/v1/models").json()["data"][0]["status"] == "loaded"

        assert wait_until(lambda: not http.get("/health").json()["loaded"])
        with http.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as streamed:
            assert float(streamed.headers["x-model-load-seconds"]) >= 0.2
            assert [line for line in streamed.iter_lines() if line][-1] == "data: [DONE]"


def test_a_cold_websocket_request_gets_a_loading_frame_and_the_load_time() -> None:
    args = ("--engine", "pinky", "--pinky-delay", "0", "--pinky-load-delay", "0.2", "--unload-after", "0.2")

    async def check(ws_url: str) -> None:
        async with websockets.connect(ws_url) as ws:
            assert json.loads(await ws.recv())["status"] == "unloaded"
            await ws.send(json.dumps({"type": "chat", "id": "c", "messages": USER, "max_tokens": 4}))
            frames: list[dict[str, Any]] = []
            while not frames or frames[-1]["type"] != "done":
                frames.append(json.loads(await ws.recv()))
        assert frames[0] == {"id": "c", "type": "loading", "model": "pinky"}
        assert frames[-1]["load_seconds"] >= 0.2

    with live_server(*args) as live, httpx.Client(base_url=live.http) as http:
        assert wait_until(lambda: not http.get("/health").json()["loaded"])
        asyncio.run(check(live.ws))
        assert live.wait_for_log("NOTICE: Model reload took ")


def test_cancel_while_the_model_loads_ends_at_once() -> None:
    args = ("--engine", "pinky", "--pinky-load-delay", "1.0", "--unload-after", "0")

    async def check(ws_url: str) -> None:
        async with websockets.connect(ws_url) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "chat", "id": "c", "messages": USER}))
            assert json.loads(await ws.recv())["type"] == "loading"
            started = time.monotonic()
            await ws.send(json.dumps({"type": "cancel", "id": "c"}))
            done = json.loads(await ws.recv())
            assert done["type"] == "done" and done["finish_reason"] == "cancelled" and done["usage"] is None
            assert time.monotonic() - started < 0.5

    with live_server(*args) as live:  # --unload-after 0: loads on demand, unloads after each request
        asyncio.run(check(live.ws))


def test_keep_alive_per_request_overrides_the_server_default() -> None:
    with live_server("--engine", "pinky", "--pinky-delay", "0", "--no-unload") as live:
        with httpx.Client(base_url=live.http, timeout=10) as http:
            assert http.post("/v1/chat/completions", json={**CHAT, "keep_alive": 0}).status_code == 200
            assert wait_until(lambda: not http.get("/health").json()["loaded"]), "keep_alive 0 unloads after it"
            assert http.post("/v1/chat/completions", json={**CHAT, "keep_alive": "300ms"}).status_code == 200
            assert http.get("/health").json()["loaded"]
            assert wait_until(lambda: not http.get("/health").json()["loaded"])
            assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
            time.sleep(0.5)
            assert http.get("/health").json()["loaded"], "a request without keep_alive restores --no-unload"

    with live_server("--engine", "pinky", "--pinky-delay", "0", "--unload-after", "0.2") as live:
        with httpx.Client(base_url=live.http, timeout=10) as http:
            assert http.post("/v1/chat/completions", json={**CHAT, "keep_alive": "-1"}).status_code == 200
            time.sleep(0.5)
            assert http.get("/health").json()["loaded"], "negative keep_alive keeps it loaded"
