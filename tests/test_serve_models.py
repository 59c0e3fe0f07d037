"""``ogenius serve`` with several models, on Pinky (each ``--model NAME`` under ``--engine pinky`` is a Pinky of its
own): listing with states, the request's model picking one, loads on demand and shared, eviction by count that never
takes a busy model, the management routes, per-model metrics, and 404s that name what is served. The official openai
client is the client, unchanged; llama-server's ``test_router.py`` has the eviction cases these follow."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import wait_until
from tests.servers import LiveServer, live_server

pytestmark = pytest.mark.pinky

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def states(http: httpx.Client) -> dict[str, str]:
    return {m["id"]: m["status"] for m in http.get("/v1/models").json()["data"]}


@pytest.fixture
def stack() -> Iterator[contextlib.ExitStack]:
    """Closes the clients a test opens."""
    with contextlib.ExitStack() as clients:
        yield clients


@pytest.fixture(scope="module")
def two() -> Iterator[LiveServer]:
    with live_server(
        "--engine", "pinky", "--model", "alpha", "--model", "beta", "--pinky-delay", "0", "--pinky-tokens", "3",
        "--pinky-load-delay", "0.3",
    ) as server:  # fmt: skip
        yield server


def test_every_model_is_listed_with_its_state_and_the_request_model_picks_one(
    two: LiveServer, stack: contextlib.ExitStack
) -> None:
    http = stack.enter_context(httpx.Client(base_url=two.http, timeout=10))
    listed = http.get("/v1/models").json()["data"]
    assert [m["id"] for m in listed] == ["alpha", "beta"]
    alpha, beta = listed
    assert alpha["default"] is True and beta["default"] is False
    assert "chat" in alpha["capabilities"] and alpha["context_length"] == 4096 and alpha["object"] == "model"
    client = stack.enter_context(openai.OpenAI(base_url=two.base_url, api_key="unused", max_retries=0))
    answer = client.chat.completions.create(model="beta", messages=USER)
    assert answer.model == "beta" and answer.choices[0].message.content == "Narf! Narf! Narf!"
    assert states(http)["beta"] == "loaded"
    assert client.chat.completions.create(messages=USER, model="").model == "alpha"
    assert client.models.retrieve("beta").id == "beta"
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gamma", messages=USER)
    error = missing.value.body
    assert isinstance(error, dict) and error["code"] == "model_not_found"
    assert "'alpha', 'beta'" in error["message"], "the 404 names what is served"
    assert http.get("/health").json()["models"] == ["alpha", "beta"]


def test_streams_to_two_models_interleave(two: LiveServer, stack: contextlib.ExitStack) -> None:
    client = stack.enter_context(openai.OpenAI(base_url=two.base_url, api_key="unused", max_retries=0))

    def ask(model: str) -> tuple[str, str]:
        text, seen = "", set()
        for chunk in client.chat.completions.create(model=model, messages=USER, stream=True):
            seen.add(chunk.model)
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
        [name] = seen
        return name, text

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(ask, ["alpha", "beta", "alpha", "beta"]))
    assert [name for name, _ in results] == ["alpha", "beta", "alpha", "beta"]
    assert all(text == "Narf! Narf! Narf!" for _, text in results)


def test_the_anthropic_responses_and_embedding_apis_pick_the_model_too(
    two: LiveServer, stack: contextlib.ExitStack
) -> None:
    http = stack.enter_context(httpx.Client(base_url=two.http, timeout=10))
    message = http.post("/v1/messages", json={"model": "beta", "max_tokens": 8, "messages": USER}).json()
    assert message["model"] == "beta"
    response = http.post("/v1/responses", json={"model": "beta", "input": "hi"}).json()
    assert response["model"] == "beta" and response["status"] == "completed"
    embedded = http.post("/v1/embeddings", json={"model": "beta", "input": "hi"}).json()
    assert embedded["model"] == "beta" and len(embedded["data"][0]["embedding"]) == 64
    assert http.post("/tokenize", json={"model": "beta", "content": "hi"}).json() == {"tokens": [104, 105]}
    assert http.post("/tokenize", json={"model": "nope", "content": "hi"}).status_code == 404


def test_concurrent_requests_for_an_unloaded_model_share_one_load_and_metrics_are_per_model(
    stack: contextlib.ExitStack,
) -> None:
    with live_server(
        "--engine", "pinky", "--model", "alpha", "--model", "beta", "--pinky-delay", "0", "--pinky-tokens", "2",
        "--pinky-load-delay", "0.5",
    ) as server:  # fmt: skip
        http = stack.enter_context(httpx.Client(base_url=server.http, timeout=10))
        assert states(http) == {"alpha": "loaded", "beta": "unloaded"}
        body = {"model": "beta", "messages": USER}
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda _: http.post("/v1/chat/completions", json=body), range(3)))
        assert [a.status_code for a in answers] == [200] * 3
        samples = {
            (s.name, s.labels.get("model")): s.value
            for family in text_string_to_metric_families(http.get("/metrics").text)
            for s in family.samples
        }
        assert samples[("rusty_genius_model_loads_total", "beta")] == 1, "three requests, one load"
        assert samples[("rusty_genius_model_loaded", "alpha")] == 1 == samples[("rusty_genius_model_loaded", "beta")]
        spent = sum(a.json()["usage"]["completion_tokens"] for a in answers)
        assert samples[("rusty_genius_completion_tokens_total", "beta")] == spent > 0
        assert ("rusty_genius_completion_tokens_total", "alpha") not in samples


def test_a_queued_request_for_another_model_never_evicts_a_busy_one(stack: contextlib.ExitStack) -> None:
    """``--max-loaded 1``: beta waits while alpha streams, then alpha (idle) makes room for it."""
    with live_server(
        "--engine", "pinky", "--model", "alpha", "--model", "beta", "--max-loaded", "1", "--pinky-delay", "0.05",
        "--pinky-tokens", "20", "--pinky-no-think",
    ) as server:  # fmt: skip
        client = stack.enter_context(openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0))
        http = stack.enter_context(httpx.Client(base_url=server.http, timeout=10))
        alpha_text: list[str] = []
        started = threading.Event()

        def stream_alpha() -> None:
            for chunk in client.chat.completions.create(model="alpha", messages=USER, stream=True):
                if chunk.choices and chunk.choices[0].delta.content:
                    started.set()
                    alpha_text.append(chunk.choices[0].delta.content)

        runner = threading.Thread(target=stream_alpha)
        runner.start()
        assert started.wait(5)
        beta = client.chat.completions.create(model="beta", messages=USER, max_tokens=2)  # waits for alpha
        runner.join(10)
        assert "".join(alpha_text).split() == ["Narf!"] * 20, "alpha's answer was never cut"
        assert beta.choices[0].message.content == "Narf! Narf!"
        assert states(http) == {"alpha": "unloaded", "beta": "loaded"}


def test_a_client_that_leaves_while_queued_costs_the_busy_model_nothing(stack: contextlib.ExitStack) -> None:
    with live_server(
        "--engine", "pinky", "--model", "alpha", "--model", "beta", "--max-loaded", "1", "--pinky-delay", "0.05",
        "--pinky-tokens", "20",
    ) as server:  # fmt: skip
        http = stack.enter_context(httpx.Client(base_url=server.http, timeout=10))
        busy = threading.Thread(
            target=lambda: http.post("/v1/chat/completions", json={"model": "alpha", "messages": USER})
        )
        busy.start()
        time.sleep(0.2)
        with pytest.raises(httpx.TimeoutException):
            httpx.post(server.http + "/v1/chat/completions", json={"model": "beta", "messages": USER}, timeout=0.3)
        busy.join(10)
        time.sleep(0.5)
        assert states(http) == {"alpha": "loaded", "beta": "unloaded"}, "nobody waits for beta: alpha stays"


def test_load_unload_and_delete_routes(two: LiveServer, stack: contextlib.ExitStack) -> None:
    http = stack.enter_context(httpx.Client(base_url=two.http, timeout=10))
    unloaded = http.post("/v1/models/unload", json={"model": "beta"})
    assert unloaded.status_code == 200 and unloaded.json()["status"] == "unloaded"
    loaded = http.post("/models/load", json={"model": "beta"})  # llama-server's path, without /v1
    assert loaded.status_code == 200 and loaded.json()["id"] == "beta" and loaded.json()["status"] == "loaded"
    assert http.post("/v1/models/load", json={"model": "gamma"}).status_code == 404
    assert http.post("/v1/models/load", json={}).json()["error"]["param"] == "model"
    refused = http.delete("/v1/models/alpha")
    assert refused.status_code == 409 and "default model" in refused.json()["error"]["message"]
    pulled = http.post("/v1/models/pull", json={"model": "smollm2-135m", "stream": False})
    assert pulled.status_code == 400 and "Pinky" in pulled.json()["error"]["message"]


def test_unloading_a_busy_model_is_a_conflict(stack: contextlib.ExitStack) -> None:
    with live_server(
        "--engine", "pinky", "--model", "alpha", "--pinky-delay", "0.05", "--pinky-tokens", "20"
    ) as server:  # fmt: skip
        http = stack.enter_context(httpx.Client(base_url=server.http, timeout=10))
        busy = threading.Thread(target=lambda: http.post("/v1/chat/completions", json={"messages": USER}))
        busy.start()
        assert wait_until(lambda: server.proc.poll() is None and _running(http) > 0, 5)
        refused = http.post("/v1/models/unload", json={"model": "alpha"})
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "model_busy"
        busy.join(10)
        assert http.post("/v1/models/unload", json={"model": "alpha"}).json()["unloaded"] is True


def _running(http: httpx.Client) -> float:
    for family in text_string_to_metric_families(http.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "rusty_genius_running_sequences":
                return sample.value
    return 0.0


def test_the_management_routes_take_the_api_key(stack: contextlib.ExitStack) -> None:
    with live_server("--engine", "pinky", "--model", "alpha", "--model", "beta", "--api-key", "sk-test") as server:
        http = stack.enter_context(httpx.Client(base_url=server.http, timeout=10))
        for method, path in (("POST", "/v1/models/load"), ("POST", "/v1/models/unload"), ("POST", "/v1/models/pull"),
                             ("DELETE", "/v1/models/beta"), ("GET", "/v1/models")):  # fmt: skip
            refused = http.request(method, path, json={"model": "beta"})
            assert refused.status_code == 401, (method, path)
        key = {"authorization": "Bearer sk-test"}
        assert http.post("/v1/models/load", json={"model": "beta"}, headers=key).json()["status"] == "loaded"
