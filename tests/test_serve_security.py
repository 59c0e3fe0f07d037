"""Security defaults of ``ogenius serve`` (DESIGN.md §6): Host allow-list, Origin checks, the API key, loopback by
default, bind failures, and clean shutdown on signals."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import websockets

from tests.servers import SERVE, LiveServer, live_server

pytestmark = pytest.mark.pinky

KEY = "sk-test-0123456789"
USER: Any = [{"role": "user", "content": "hi"}]
CHAT = {"messages": USER, "max_tokens": 4}


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with live_server("--engine", "pinky", "--pinky-delay", "0", "--allow-origin", "http://app.test:3000") as live:
        yield live


@pytest.fixture(scope="module")
def keyed() -> Iterator[LiveServer]:
    with live_server("--engine", "pinky", "--pinky-delay", "0", "--api-key", KEY) as live:
        yield live


def test_foreign_host_headers_are_refused(server: LiveServer) -> None:
    with httpx.Client(base_url=server.http) as http:
        for host in ("evil.example", "evil.example:%d" % server.http_port, "localhost.evil.example"):
            response = http.get("/health", headers={"Host": host})
            assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_host", host
        for host in ("localhost:%d" % server.http_port, "127.0.0.1", "[::1]:1", "app.localhost"):
            assert http.get("/health", headers={"Host": host}).status_code == 200, host


def test_cross_origin_requests_are_refused_and_cors_is_never_a_wildcard(server: LiveServer) -> None:
    page = f"http://127.0.0.1:{server.http_port}"
    with httpx.Client(base_url=server.http) as http:
        refused = http.post("/v1/chat/completions", json=CHAT, headers={"Origin": "https://evil.example"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "origin_not_allowed"
        same = http.post("/v1/chat/completions", json=CHAT, headers={"Origin": page})
        assert same.status_code == 200 and "access-control-allow-origin" not in same.headers
        sibling = http.get("/v1/models", headers={"Origin": f"http://localhost:{server.http_port}"})
        assert sibling.headers["access-control-allow-origin"] == f"http://localhost:{server.http_port}"
        allowed = http.options(
            "/v1/chat/completions",
            headers={"Origin": "http://app.test:3000", "Access-Control-Request-Method": "POST"},
        )
        assert allowed.status_code == 204
        assert allowed.headers["access-control-allow-origin"] == "http://app.test:3000"
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        for response in (refused, same, sibling, allowed):
            assert response.headers.get("access-control-allow-origin") != "*"


def test_websocket_origin_admits_the_page_on_addr_and_refuses_others(server: LiveServer) -> None:
    async def check() -> None:
        for origin in (f"http://127.0.0.1:{server.http_port}", f"http://localhost:{server.http_port}"):
            async with websockets.connect(server.ws, origin=websockets.Origin(origin)) as ws:
                assert json.loads(await ws.recv())["type"] == "hello"
        for origin in ("https://evil.example", f"http://127.0.0.1:{server.http_port + 1}", "null"):
            with pytest.raises(websockets.InvalidStatus) as info:
                async with websockets.connect(server.ws, origin=websockets.Origin(origin)):
                    pass
            assert info.value.response.status_code == 403, origin
        with pytest.raises(websockets.InvalidStatus) as info:
            async with websockets.connect(server.ws, additional_headers={"Host": "evil.example"}):
                pass
        assert info.value.response.status_code == 400

    asyncio.run(check())


def test_the_api_key_is_required_on_v1_and_checked(keyed: LiveServer) -> None:
    with httpx.Client(base_url=keyed.http) as http:
        missing = http.post("/v1/chat/completions", json=CHAT)
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = http.get("/v1/models", headers={"Authorization": "Bearer sk-wrong"})
        assert wrong.status_code == 401
        assert http.get("/health").status_code == 200, "health stays public"
        assert http.get("/v1/ws-info").json()["auth"] == "bearer"
        good = http.post("/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {KEY}"})
        assert good.status_code == 200
    with openai.OpenAI(base_url=keyed.base_url, api_key=KEY, max_retries=0) as client:
        assert client.chat.completions.create(model="pinky", messages=USER).choices[0].message.content
    with openai.OpenAI(base_url=keyed.base_url, api_key="sk-wrong", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
    assert KEY not in keyed.log(), "the key is never logged"


def test_the_websocket_takes_the_key_as_a_header_or_an_auth_frame(keyed: LiveServer) -> None:
    chat = json.dumps({"type": "chat", "id": 1, "messages": USER, "max_tokens": 4})

    async def check() -> None:
        async with websockets.connect(keyed.ws, additional_headers={"Authorization": f"Bearer {KEY}"}) as ws:
            assert json.loads(await ws.recv())["auth"] == "ok"
        with pytest.raises(websockets.InvalidStatus) as info:
            async with websockets.connect(keyed.ws, additional_headers={"Authorization": "Bearer nope"}):
                pass
        assert info.value.response.status_code == 401
        async with websockets.connect(keyed.ws) as ws:
            assert json.loads(await ws.recv())["auth"] == "required"
            await ws.send(chat)
            assert json.loads(await ws.recv())["error"]["code"] == "invalid_api_key"
            await ws.send(json.dumps({"type": "auth", "api_key": KEY}))
            assert json.loads(await ws.recv()) == {"type": "auth", "auth": "ok"}
            await ws.send(chat)
            while json.loads(await ws.recv())["type"] != "done":
                pass
        async with websockets.connect(keyed.ws) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "auth", "api_key": "nope"}))
            assert json.loads(await ws.recv())["error"]["code"] == "invalid_api_key"
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008

    asyncio.run(check())


def run_serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SERVE, *args], capture_output=True, text=True, timeout=30, check=False)


def test_a_non_loopback_bind_needs_an_api_key() -> None:
    out = run_serve("--engine", "pinky", "--addr", "0.0.0.0:0", "--ws-addr", "127.0.0.1:0")
    assert out.returncode == 2
    assert "refusing to listen on 0.0.0.0:0 (--addr) without an API key" in out.stderr
    out = run_serve("--engine", "pinky", "--ws-addr", "0.0.0.0:0", "--addr", "127.0.0.1:0")
    assert out.returncode == 2 and "(--ws-addr)" in out.stderr


def test_a_non_loopback_bind_with_a_key_serves() -> None:
    with live_server("--engine", "pinky", "--addr", "0.0.0.0:0", env={"OGENIUS_API_KEY": KEY}) as live:
        assert "API key required" in live.log()
        port = live.http_port
        with httpx.Client() as http:
            assert http.get(f"http://127.0.0.1:{port}/v1/models").status_code == 401
            ok = http.get(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {KEY}"})
            assert ok.status_code == 200


@pytest.mark.parametrize("taken", ["--addr", "--ws-addr"])
def test_a_port_that_cannot_be_bound_exits_non_zero_and_leaves_nothing_listening(taken: str) -> None:
    with socket.socket() as blocker, socket.socket() as spare:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        spare.bind(("127.0.0.1", 0))
        spare_port = spare.getsockname()[1]
        spare.close()
        other = "--ws-addr" if taken == "--addr" else "--addr"
        out = run_serve(
            "--engine", "pinky", taken, f"127.0.0.1:{blocker.getsockname()[1]}", other, f"127.0.0.1:{spare_port}"
        )  # fmt: skip
    assert out.returncode != 0
    assert "cannot listen on 127.0.0.1:" in out.stderr and f"({taken})" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    with socket.socket() as probe:  # the other port was given back
        probe.bind(("127.0.0.1", spare_port))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_both_listeners_cleanly_even_mid_stream(sig: int) -> None:
    with live_server("--engine", "pinky", "--pinky-delay", "0.05", "--pinky-tokens", "200") as live:
        with httpx.Client(base_url=live.http, timeout=10) as http:
            with http.stream("POST", "/v1/chat/completions", json={"messages": USER, "stream": True}) as response:
                lines = response.iter_lines()
                next(lines)
                live.proc.send_signal(sig)
                rest = [line for line in lines if line]
        assert live.proc.wait(10) == 0, live.log()
        assert "server_shutting_down" in rest[-1]
        assert f"shutting down ({signal.Signals(sig).name})" in live.log()
        for port in (live.http_port, live.ws_port):
            with socket.socket() as probe:
                assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_the_serve_command_line_help_names_every_flag() -> None:
    out = subprocess.run([*SERVE, "--help"], capture_output=True, text=True, timeout=30, check=True)
    for flag in ("--addr", "--ws-addr", "--unload-after", "--no-unload", "--api-key", "--engine", "--max-tokens"):
        assert flag in out.stdout
    bad = subprocess.run([*SERVE, "--addr", "nowhere"], capture_output=True, text=True, timeout=30, check=False)
    assert bad.returncode == 2 and "HOST:PORT" in bad.stderr
    both = subprocess.run(
        [*SERVE, "--unload-after", "5", "--no-unload"], capture_output=True, text=True, timeout=30, check=False
    )
    assert both.returncode == 2 and sys.platform != "win32"
