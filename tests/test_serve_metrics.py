"""``GET /metrics`` (docs/metrics.md): Prometheus text that prometheus_client's parser reads, counters that move as
requests of every API run (HTTP and WebSocket), histograms that get observations, gauges read without waking an
unloaded model, and the API key the server's other routes take."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import websockets.sync.client
from prometheus_client.parser import text_string_to_metric_families
from rusty_genius import _native

from tests.conftest import smollm2_path, wait_until
from tests.servers import LiveServer, live_server

USER = [{"role": "user", "content": "hi"}]
CHAT = {"messages": USER, "max_tokens": 4}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(http: httpx.Client) -> Samples:
    response = http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests(samples: Samples, endpoint: str, method: str, status: int) -> float:
    return value(samples, "rusty_genius_requests_total", endpoint=endpoint, method=method, status=str(status))


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with live_server("--engine", "pinky", "--pinky-delay", "0.002", "--pinky-tokens", "8") as live:
        yield live


@pytest.mark.pinky
def test_counters_and_histograms_move_as_every_api_runs(server: LiveServer) -> None:
    with httpx.Client(base_url=server.http, timeout=10) as http:
        before = scrape(http)
        assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
        with http.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as streamed:
            assert streamed.status_code == 200 and streamed.read()
        assert http.post("/v1/completions", json={"prompt": "once", "max_tokens": 4}).status_code == 200
        assert http.post("/v1/responses", json={"input": "hi", "max_output_tokens": 4}).status_code == 200
        anthropic = {"model": "pinky", "max_tokens": 4, "messages": USER}
        assert http.post("/v1/messages", json=anthropic).status_code == 200
        assert http.post("/v1/embeddings", json={"input": "hi"}).status_code == 200
        assert http.post("/v1/chat/completions", json={"messages": "nope"}).status_code == 400
        assert http.get("/v1/models/no-such-model").status_code == 404
        assert http.get("/no/such/path").status_code == 404
        with websockets.sync.client.connect(server.ws) as ws:
            ws.recv(timeout=5)  # hello
            ws.send(json.dumps({"type": "chat", "id": 1, "messages": USER, "max_tokens": 4}))
            while json.loads(ws.recv(timeout=5))["type"] != "done":
                pass
            ws.send(json.dumps({"type": "chat", "id": 2, "messages": USER, "temperature": "hot"}))
            assert json.loads(ws.recv(timeout=5))["type"] == "error"
            ws.send(json.dumps({"type": "chat", "id": True, "messages": USER}))  # no usable id: refused too
            assert json.loads(ws.recv(timeout=5))["type"] == "error"
        with websockets.sync.client.connect(server.ws + "/v1/responses") as ws:
            ws.send(json.dumps({"type": "response.create", "model": "pinky", "input": "hi", "max_output_tokens": 4}))
            while json.loads(ws.recv(timeout=5))["type"] not in ("response.completed", "response.incomplete"):
                pass
        # A WebSocket request is counted once its handler ends, just after its last frame went out.
        ws_done = (("ws", "WS", 200), ("ws:/v1/responses", "WS", 200))
        assert wait_until(lambda: all(requests(scrape(http), *k) > requests(before, *k) for k in ws_done))
        after = scrape(http)

    def moved(endpoint: str, method: str, status: int) -> float:
        return requests(after, endpoint, method, status) - requests(before, endpoint, method, status)

    assert moved("/v1/chat/completions", "POST", 200) == 2
    assert moved("/v1/completions", "POST", 200) == 1
    assert moved("/v1/responses", "POST", 200) == 1
    assert moved("/v1/messages", "POST", 200) == 1
    assert moved("/v1/embeddings", "POST", 200) == 1
    assert moved("/v1/chat/completions", "POST", 400) == 1
    assert moved("/v1/models/*", "GET", 404) == 1  # the route template, never the raw path
    assert moved("other", "GET", 404) == 1
    assert moved("ws", "WS", 200) == 1 and moved("ws", "WS", 400) == 2
    assert moved("ws:/v1/responses", "WS", 200) == 1
    assert moved("/metrics", "GET", 200) >= 1  # the first scrape, counted once its response started

    generations = 7  # chat twice, completions, responses, messages, ws chat, ws response
    for name in ("rusty_genius_time_to_first_token_seconds_count", "rusty_genius_prompt_tokens_total"):
        assert value(after, name, model="pinky") > value(before, name, model="pinky")
    ttft = "rusty_genius_time_to_first_token_seconds_count"
    assert value(after, ttft, model="pinky") - value(before, ttft, model="pinky") == generations
    itl = "rusty_genius_inter_token_latency_seconds_count"
    assert value(after, itl, model="pinky") > value(before, itl, model="pinky")
    completion = "rusty_genius_completion_tokens_total"
    assert value(after, completion, model="pinky") - value(before, completion, model="pinky") == 4 * generations
    assert ("rusty_genius_cached_prompt_tokens_total", frozenset({("model", "pinky")})) in after
    assert value(after, "rusty_genius_model_loads_total", model="pinky") == 1  # the load at startup
    assert value(after, "rusty_genius_model_load_seconds_count", model="pinky") == 1
    assert value(after, "rusty_genius_model_loaded", model="pinky") == 1
    assert value(after, "rusty_genius_parallel_sequences", model="pinky") == 1
    assert value(after, "rusty_genius_running_sequences", model="pinky") == 0
    assert value(after, "rusty_genius_queue_depth", model="pinky") == 0


@pytest.mark.pinky
def test_scrapes_and_health_never_wake_an_unloaded_model_and_loads_unloads_are_counted() -> None:
    args = ("--engine", "pinky", "--pinky-delay", "0", "--pinky-load-delay", "0.1", "--unload-after", "0.3")
    with live_server(*args) as live, httpx.Client(base_url=live.http, timeout=10) as http:
        assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
        assert wait_until(lambda: not http.get("/health").json()["loaded"])
        for _ in range(3):
            samples = scrape(http)
            assert http.get("/health").json()["loaded"] is False
        assert http.get("/v1/models").json()["data"][0]["status"] == "unloaded"
        assert value(samples, "rusty_genius_model_loaded", model="pinky") == 0
        assert value(samples, "rusty_genius_parallel_sequences", model="pinky") == 0
        assert value(samples, "rusty_genius_model_unloads_total", model="pinky") == 1
        assert value(samples, "rusty_genius_model_loads_total", model="pinky") == 1

        assert http.post("/v1/chat/completions", json=CHAT).status_code == 200  # a cold reload
        samples = scrape(http)
        assert value(samples, "rusty_genius_model_loads_total", model="pinky") == 2
        assert value(samples, "rusty_genius_model_load_seconds_count", model="pinky") == 2
        assert value(samples, "rusty_genius_model_load_seconds_sum", model="pinky") >= 0.2


@pytest.mark.pinky
def test_metrics_take_the_api_key_when_one_is_set_and_refusals_are_counted() -> None:
    with live_server("--engine", "pinky", "--api-key", "sekrit") as live:
        with httpx.Client(base_url=live.http, timeout=10) as anonymous:
            assert anonymous.get("/metrics").status_code == 401  # as llama-server's /metrics and Ollama
            assert anonymous.get("/health").status_code == 200
        headers = {"authorization": "Bearer sekrit"}
        with httpx.Client(base_url=live.http, timeout=10, headers=headers) as http:
            samples = scrape(http)
    assert requests(samples, "/metrics", "GET", 401) == 1
    assert requests(samples, "/health", "GET", 200) == 1


@pytest.fixture(scope="module")
def real_server() -> Iterator[LiveServer]:
    with live_server("--model", str(smollm2_path()), "--temperature", "0", "--no-unload") as live:
        yield live


@pytest.mark.real_engine
def test_token_counters_and_cached_prompt_tokens_move_on_the_real_model(real_server: LiveServer) -> None:
    body = {"messages": [{"role": "user", "content": "Name three colours."}], "max_tokens": 8}
    with httpx.Client(base_url=real_server.http, timeout=60) as http:
        label = http.get("/v1/models").json()["data"][0]["id"]
        before = scrape(http)
        usages = [http.post("/v1/chat/completions", json=body).json()["usage"] for _ in range(2)]
        after = scrape(http)

    def moved(name: str) -> float:
        return value(after, name, model=label) - value(before, name, model=label)

    assert moved("rusty_genius_prompt_tokens_total") == sum(u["prompt_tokens"] for u in usages) > 0
    assert moved("rusty_genius_completion_tokens_total") == sum(u["completion_tokens"] for u in usages) > 0
    cached = sum(u["prompt_tokens_details"]["cached_tokens"] for u in usages)
    assert moved("rusty_genius_cached_prompt_tokens_total") == cached > 0, "the same prompt again reuses the cache"
    assert moved("rusty_genius_time_to_first_token_seconds_count") == 2
    estimate = _native.estimate_memory(str(smollm2_path()))["total"]  # the server's own options: the defaults
    assert value(after, "rusty_genius_model_resident_bytes", model=label) == estimate
    assert value(after, "rusty_genius_model_loads_total", model=label) == 1
