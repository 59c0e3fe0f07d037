"""Connection limits on a live server (docs/limits.md): header and idle timeouts, the cap per listener, running out
of descriptors; and the accept-error log throttle on its own."""

from __future__ import annotations

import asyncio
import http.client
import logging
import socket
import subprocess
import time
from contextlib import ExitStack

import httpx
import pytest
import websockets
from rusty_genius.ogenius.serve.limits import ACCEPT_ERROR, AcceptErrors
from websockets.sync.client import connect as ws_connect

from tests.servers import SERVE, LiveServer, live_server

pytestmark = pytest.mark.pinky

UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def connect(port: int, send: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(send)
    return sock


def is_open(sock: socket.socket) -> bool:
    """True while the server has neither closed ``sock`` nor sent anything on it."""
    sock.setblocking(False)
    try:
        return not sock.recv(1, socket.MSG_PEEK)  # b"": closed; data: answered
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(5)


def read_to_close(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes ``sock`` (raises after 5 s of silence)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def health(server: LiveServer) -> int:
    # `Connection: close`: the server has dropped this connection before the client has read the answer.
    try:
        return httpx.get(server.http + "/health", headers={"Connection": "close"}, timeout=1).status_code
    except httpx.TransportError:
        return 0


def until_healthy(server: LiveServer, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while health(server) != 200:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_slow_headers_stalled_bodies_idle_keep_alive_and_deaf_websockets_are_closed_but_a_long_answer_is_not() -> None:
    # 25 tokens 0.1 s apart: a 2.5 s stream, longer than both timeouts and the ping round (1 s + 1 s).
    args = ("--engine", "pinky", "--pinky-delay", "0.1", "--pinky-tokens", "25")
    with live_server(*args, "--header-timeout", "1", "--idle-timeout", "1") as server, ExitStack() as stack:
        silent = stack.enter_context(connect(server.http_port))
        slow = stack.enter_context(connect(server.http_port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"))
        head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n"
        stalled_body = stack.enter_context(connect(server.http_port, head + b'{"messages": ['))
        slow_upgrade = stack.enter_context(connect(server.ws_port, UPGRADE[:60]))
        kept = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=5)
        stack.callback(kept.close)
        kept.request("GET", "/health")
        assert kept.getresponse().read() and kept.sock is not None
        deaf = stack.enter_context(connect(server.ws_port, UPGRADE))  # completes the handshake, never answers a ping
        assert deaf.recv(12) == b"HTTP/1.1 101"
        live = stack.enter_context(ws_connect(server.ws))  # answers pings: stays
        waiting = [silent, slow, stalled_body, slow_upgrade, kept.sock]
        time.sleep(0.5)
        assert all(is_open(sock) for sock in waiting)

        chat = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
        with httpx.stream("POST", server.http + "/v1/chat/completions", json=chat, timeout=10) as stream:
            lines = [line for line in stream.iter_lines() if line]
        assert lines[-1] == "data: [DONE]" and len(lines) > 25

        for sock in waiting:
            assert read_to_close(sock) == b"", sock  # closed without an answer
        assert read_to_close(deaf).endswith(b"keepalive ping timeout")  # its close frame (1011) says why
        assert live.ping().wait(2)
        upgrade = stack.enter_context(connect(server.http_port, UPGRADE))  # on --addr: plain HTTP, nothing logged
        assert upgrade.recv(12) == b"HTTP/1.1 200"
        time.sleep(0.1)
        assert "Traceback" not in server.log() and "upgrade" not in server.log().lower()


def test_connections_over_the_cap_get_503_until_slots_free_on_either_listener() -> None:
    args = ("--engine", "pinky", "--max-connections", "3", "--header-timeout", "3")
    with live_server(*args) as server, ExitStack() as stack:
        idle = [stack.enter_context(connect(server.http_port)) for _ in range(2)]
        assert health(server) == 200  # the third slot
        idle.append(stack.enter_context(connect(server.http_port)))
        over = stack.enter_context(connect(server.http_port))  # sends nothing: answered after a short wait
        busy = httpx.get(server.http + "/health", timeout=5)  # answered at once
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert busy.json()["error"]["code"] == "server_busy"
        assert "3 at once" in busy.json()["error"]["message"]

        with ExitStack() as ws_idle:  # the WebSocket listener counts its own
            for _ in range(3):
                ws_idle.enter_context(connect(server.ws_port))
            with pytest.raises(websockets.InvalidStatus) as refused, ws_connect(server.ws, open_timeout=5):
                pass
            assert refused.value.response.status_code == 503
        # Closed by the client: the slots free as soon as the server reads the close.
        deadline = time.monotonic() + 3
        while True:
            try:
                with ws_connect(server.ws, open_timeout=5):
                    break
            except websockets.InvalidStatus:
                assert time.monotonic() < deadline
                time.sleep(0.05)

        answer = read_to_close(over)
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n") and b"server_busy" in answer
        assert until_healthy(server, timeout=6)  # the header timeout dropped the idle ones: a flood cannot stay
        assert all(read_to_close(sock) == b"" for sock in idle)
        assert "Traceback" not in server.log()


def test_out_of_descriptors_the_server_logs_one_line_and_recovers() -> None:
    with live_server("--engine", "pinky", open_files=64) as server:
        flood = [connect(server.http_port) for _ in range(100)]
        try:
            assert server.wait_for_log("cannot accept connections", timeout=5)
            time.sleep(1.5)  # asyncio retries the accept each second: more failures, no more lines
            assert server.proc.poll() is None
        finally:
            for sock in flood:
                sock.close()
        assert until_healthy(server, timeout=5)
        log = server.log()
    assert log.count("cannot accept connections") == 1, log
    assert "EMFILE (Too many open files)" in log
    assert "Traceback" not in log and ACCEPT_ERROR not in log
    assert "may need 576 open files, more than this process may open (64)" in log  # told at startup


def test_accept_errors_are_one_line_then_a_count_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    async def flood() -> None:
        loop = asyncio.get_running_loop()
        handler = AcceptErrors(interval=0.1)
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        with listener:
            context = {"message": ACCEPT_ERROR, "exception": OSError(24, "Too many open files"), "socket": listener}
            for _ in range(1000):
                handler(loop, context)
            await asyncio.sleep(0.15)  # the interval ends: one line with the count, and counting goes on
            assert len(lines()) == 2
            await asyncio.sleep(0.15)  # an interval without failures ends silently, and counting stops
            handler(loop, context)  # so the next failure is a line of its own
            await asyncio.sleep(0.15)
            handler(loop, {"message": "something else"})  # anything else: the default handler

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "rusty_genius.serve"]

    with caplog.at_level(logging.WARNING):
        asyncio.run(flood())
    first, count, again = lines()
    assert "127.0.0.1:" in first and "EMFILE (Too many open files)" in first and first == again
    assert "999 more times in 0.1s" in count
    assert any(r.name == "asyncio" and r.getMessage() == "something else" for r in caplog.records)


@pytest.mark.parametrize(
    ("flag", "value"), [("--header-timeout", "0"), ("--idle-timeout", "x"), ("--max-connections", "0")]
)
def test_bad_limit_flags_get_a_usage_message(flag: str, value: str) -> None:
    out = subprocess.run([*SERVE, flag, value], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and flag in out.stderr and "Traceback" not in out.stderr
