"""HTTP errors and edge cases with httpx: OpenAI's error shape and codes, caps, busy, disconnects, concurrency."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.servers import LiveServer, live_server

pytestmark = pytest.mark.pinky

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with live_server("--engine", "pinky", "--pinky-delay", "0", "--pinky-tokens", "3", "--max-body-bytes", "4096") as s:
        yield s


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http, timeout=10) as client:
        yield client


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    error: dict[str, Any] = body["error"]
    return error


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": []}, "messages"),
        ({}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages"),
        ({"messages": USER, "temperature": "hot"}, "temperature"),
        ({"messages": USER, "temperature": True}, "temperature"),
        ({"messages": USER, "top_p": 3}, "top_p"),
        ({"messages": USER, "max_tokens": 0}, "max_tokens"),
        ({"messages": USER, "max_completion_tokens": 1.5}, "max_completion_tokens"),
        ({"messages": USER, "max_completion_tokens": 0}, "max_completion_tokens"),
        ({"messages": USER, "seed": -1}, "seed"),
        ({"messages": USER, "stop": 5}, "stop"),
        ({"messages": USER, "stream": "yes"}, "stream"),
        ({"messages": USER, "stream_options": {"include_usage": 1}}, "stream_options.include_usage"),
        ({"messages": USER, "n": 9}, "n"),
        ({"messages": USER, "n": 0}, "n"),
        ({"messages": USER, "logit_bias": {"tok": 1}}, "logit_bias"),
        ({"messages": USER, "logit_bias": {"3": 101}}, "logit_bias"),
        ({"messages": USER, "response_format": {"type": "xml"}}, "response_format.type"),
        ({"messages": USER, "tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
        ({"messages": USER, "keep_alive": "soon"}, "keep_alive"),
        ({"messages": USER, "presence_penalty": 9}, "presence_penalty"),
    ],
)
def test_invalid_requests_are_400_naming_the_field(http: httpx.Client, body: dict[str, Any], param: str) -> None:
    error = error_of(http.post("/v1/chat/completions", json=body), 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error


def test_unparseable_json_and_non_objects_are_400(http: httpx.Client) -> None:
    error_of(http.post("/v1/chat/completions", content=b"{nope"), 400)
    error_of(http.post("/v1/chat/completions", content=b"[1, 2]"), 400)
    error_of(http.post("/v1/chat/completions", content=b"\xff\xfe"), 400)


def test_unknown_fields_are_ignored_and_text_parts_are_joined(http: httpx.Client) -> None:
    body = {
        "model": "pinky",
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "be "}, {"type": "text", "text": "brief"}]},
            {"role": "user", "content": "hi", "name": "brain"},
            {"role": "assistant", "content": None, "tool_calls": []},
            {"role": "user", "content": "again"},
        ],
        "tools": [],
        "user": "someone",
        "metadata": {"a": "b"},
        "reasoning_effort": "low",
        "made_up": [1, 2, 3],
        "n": 1,
        "response_format": {"type": "text"},
    }
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Narf! Narf! Narf!"


def test_include_reasoning_false_drops_the_reasoning(http: httpx.Client) -> None:
    message = http.post("/v1/chat/completions", json={"messages": USER, "include_reasoning": False}).json()
    assert message["choices"][0]["message"] == {"role": "assistant", "content": "Narf! Narf! Narf!"}


def test_unknown_model_routes_and_methods_are_404(http: httpx.Client) -> None:
    error = error_of(http.post("/v1/chat/completions", json={"model": "llama3", "messages": USER}), 404)
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert error_of(http.get("/v1/nothing"), 404)["code"] == "not_found"
    error_of(http.get("/v1/models/llama3"), 404)
    error_of(http.get("/v1/chat/completions"), 404)


def test_bodies_over_the_cap_are_413_declared_or_not(http: httpx.Client) -> None:
    big = {"messages": [{"role": "user", "content": "x" * 5000}]}
    assert error_of(http.post("/v1/chat/completions", json=big), 413)["code"] == "request_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        data = json.dumps(big).encode()
        for i in range(0, len(data), 1000):
            yield data[i : i + 1000]

    assert error_of(http.post("/v1/chat/completions", content=chunks()), 413)["code"] == "request_too_large"


def test_health_models_and_ws_info(http: httpx.Client, server: LiveServer) -> None:
    assert http.get("/health").json() == {"status": "ok", "model": "pinky", "loaded": True, "models": ["pinky"]}
    [card] = http.get("/v1/models").json()["data"]
    assert card["id"] == "pinky" and card["status"] == "loaded" and card["object"] == "model"
    info = http.get("/v1/ws-info").json()
    assert info["url"] == server.ws + "/"
    assert info["auth"] == "none" and info["protocol"] == 1
    assert "ogenius serve" in http.get("/").text


def test_sse_headers_and_the_done_marker(http: httpx.Client) -> None:
    with http.stream("POST", "/v1/chat/completions", json={"messages": USER, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": None}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert "usage" not in chunks[-1], "usage only with stream_options.include_usage"
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}


def test_a_full_queue_answers_503_with_retry_after_and_leaves_the_running_request_alone() -> None:
    with live_server(
        "--engine", "pinky", "--pinky-delay", "0.02", "--pinky-tokens", "30", "--max-queue", "1"
    ) as server:
        with httpx.Client(base_url=server.http, timeout=10) as http:
            with http.stream("POST", "/v1/chat/completions", json={"messages": USER, "stream": True}) as running:
                lines = running.iter_lines()
                assert next(lines).startswith("data: ")
                busy = http.post("/v1/chat/completions", json={"messages": USER})
                error = error_of(busy, 503)
                assert error["code"] == "server_busy" and busy.headers["retry-after"] == "1"
                rest = [line for line in lines if line]
            assert rest[-1] == "data: [DONE]"
            content = "".join(
                json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                for line in rest[:-1]
                if "choices" in line
            )
            assert content == " ".join(["Narf!"] * 30)


def test_a_client_that_leaves_stops_its_generation_stream_or_not() -> None:
    # 200 tokens at 20 ms: 4 s of work each. Requests queue FIFO, so the last request is quick only if the
    # abandoned ones were stopped.
    with live_server("--engine", "pinky", "--pinky-delay", "0.02", "--pinky-tokens", "200") as server:
        with httpx.Client(base_url=server.http, timeout=10) as http:
            with http.stream("POST", "/v1/chat/completions", json={"messages": USER, "stream": True}) as response:
                lines = response.iter_lines()
                for _ in range(3):
                    next(lines)
            with pytest.raises(httpx.ReadTimeout):
                http.post("/v1/chat/completions", json={"messages": USER}, timeout=0.3)
            started = time.monotonic()
            answer = http.post("/v1/chat/completions", json={"messages": USER, "max_tokens": 3})
            assert answer.status_code == 200
            assert time.monotonic() - started < 1.5, "an abandoned generation was still running"


def test_concurrent_clients_never_interrupt_each_other() -> None:
    with live_server("--engine", "pinky", "--pinky-delay", "0.002", "--pinky-tokens", "40") as server:
        results: list[str] = []

        def one() -> None:
            with httpx.Client(base_url=server.http, timeout=20) as http:
                with http.stream("POST", "/v1/chat/completions", json={"messages": USER, "stream": True}) as r:
                    parts = [
                        json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                        for line in r.iter_lines()
                        if line.startswith("data: {")
                    ]
                results.append("".join(parts))

        threads = [threading.Thread(target=one) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert results == [" ".join(["Narf!"] * 40)] * 4
