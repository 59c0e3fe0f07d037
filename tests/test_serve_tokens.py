"""llama-server's routes on ``ogenius serve``: ``/tokenize``, ``/detokenize``, ``/apply-template`` with httpx, the
OpenAI routes without ``/v1``, and what these engine calls share with generations: the API key, a full queue (503),
a cold reload, errors in OpenAI's shape. On SmolLM2: a round trip of "Hello world" and the ChatML prompt."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import smollm2_path, wait_until
from tests.servers import LiveServer, live_server
from tests.test_serve_completions import refused_400

USER = [{"role": "user", "content": "hi"}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with live_server("--engine", "pinky", "--pinky-delay", "0", "--pinky-tokens", "3") as live:
        yield live


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http, timeout=10) as client:
        yield client


@pytest.mark.pinky
def test_tokenize_with_and_without_pieces_and_back(http: httpx.Client) -> None:
    assert http.post("/tokenize", json={"content": "Hi"}).json() == {"tokens": [72, 105]}  # Pinky: UTF-8 bytes
    pieces = http.post("/tokenize", json={"content": "Hé", "with_pieces": True, "add_special": True}).json()
    # A character split across tokens: its pieces are byte values, as llama-server gives them.
    assert pieces == {"tokens": [{"id": 72, "piece": "H"}, {"id": 195, "piece": [195]}, {"id": 169, "piece": [169]}]}
    assert http.post("/detokenize", json={"tokens": [72, 195, 169]}).json() == {"content": "Hé"}
    assert http.post("/detokenize", json={"tokens": []}).json() == {"content": ""}
    named = http.post("/tokenize", json={"content": "x", "model": "pinky", "parse_special": False})
    assert named.json() == {"tokens": [120]}


@pytest.mark.pinky
def test_apply_template_renders_the_conversation_and_its_tools(http: httpx.Client) -> None:
    prompt = http.post("/apply-template", json={"messages": USER}).json()["prompt"]
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    with_tools = http.post("/apply-template", json={"messages": USER, "tools": [WEATHER]}).json()["prompt"]
    assert "get_weather" in with_tools and with_tools.endswith("<|im_start|>assistant\n")


@pytest.mark.pinky
def test_the_openai_routes_answer_without_v1_too(http: httpx.Client) -> None:
    assert http.get("/models").json() == http.get("/v1/models").json()
    chat = http.post("/chat/completions", json={"messages": USER}).json()
    assert chat["choices"][0]["message"]["content"] == "Narf! Narf! Narf!"
    assert http.post("/completions", json={"prompt": "x", "max_tokens": 1}).json()["choices"][0]["text"] == "<think>"
    assert len(http.post("/embeddings", json={"input": "x"}).json()["data"][0]["embedding"]) == 64


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("/tokenize", {}, "content"),
    ("/tokenize", {"content": 5}, "content"),
    ("/tokenize", {"content": "x", "add_special": "yes"}, "add_special"),
    ("/tokenize", {"content": "x", "with_pieces": 1}, "with_pieces"),
    ("/tokenize", {"content": "x", "model": 3}, "model"),
    ("/detokenize", {}, "tokens"),
    ("/detokenize", {"tokens": "72"}, "tokens"),
    ("/detokenize", {"tokens": [72, -1]}, "tokens"),
    ("/detokenize", {"tokens": [72, 999]}, "tokens"),
    ("/detokenize", {"tokens": [True]}, "tokens"),
    ("/apply-template", {}, "messages"),
    ("/apply-template", {"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
    ("/apply-template", {"messages": USER, "tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
    ("/apply-template", {"messages": USER, "add_generation_prompt": False}, "add_generation_prompt"),
]


@pytest.mark.pinky
@pytest.mark.parametrize(("path", "body", "param"), BAD, ids=[f"{b[0]}-{b[2]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_is_a_400_naming_the_field(server: LiveServer, path: str, body: dict[str, Any], param: str) -> None:
    refused_400(server, path, body, param)


@pytest.mark.pinky
def test_other_models_and_bodies_that_are_no_json_objects(http: httpx.Client, server: LiveServer) -> None:
    missing = http.post("/tokenize", json={"content": "x", "model": "llama3"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    for path in ("/tokenize", "/detokenize", "/apply-template", "/v1/embeddings", "/v1/completions"):
        assert http.post(path, content=b"{nope").status_code == 400
        assert http.post(path, content=b'"text"').json()["error"]["message"] == "the request body must be a JSON object"
    assert "Traceback" not in server.log()


@pytest.mark.pinky
def test_the_api_key_guards_these_routes() -> None:
    with live_server("--engine", "pinky", "--pinky-delay", "0", "--api-key", "sesame") as live:
        for path, body in [("/tokenize", {"content": "x"}), ("/v1/embeddings", {"input": "x"}),
                           ("/completions", {"prompt": "x"}), ("/apply-template", {"messages": USER})]:  # fmt: skip
            refused = httpx.post(live.http + path, json=body)
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
            allowed = httpx.post(live.http + path, json=body, headers={"Authorization": "Bearer sesame"})
            assert allowed.status_code == 200, allowed.text
        wrong_host = httpx.post(live.http + "/tokenize", json={"content": "x"}, headers={"Host": "evil.example"})
        assert wrong_host.status_code == 400 and wrong_host.json()["error"]["code"] == "invalid_host"


@pytest.mark.pinky
def test_a_full_queue_is_503_and_an_unloaded_model_reloads_for_an_engine_call() -> None:
    args = ("--engine", "pinky", "--pinky-delay", "0.02", "--pinky-tokens", "30", "--max-queue", "1",
            "--pinky-load-delay", "0.2", "--unload-after", "0.5")  # fmt: skip
    with live_server(*args) as live, httpx.Client(base_url=live.http, timeout=10) as http:
        with http.stream("POST", "/v1/chat/completions", json={"messages": USER, "stream": True}) as running:
            lines = running.iter_lines()
            assert next(lines).startswith("data: ")
            for path, body in [("/tokenize", {"content": "x"}), ("/v1/embeddings", {"input": "x"}),
                               ("/v1/completions", {"prompt": "x"})]:  # fmt: skip
                busy = http.post(path, json=body)
                assert busy.status_code == 503 and busy.headers["retry-after"] == "1", busy.text
                assert busy.json()["error"]["code"] == "server_busy"
            assert [line for line in lines if line][-1] == "data: [DONE]"
        assert wait_until(lambda: not http.get("/health").json()["loaded"])
        assert http.post("/v1/embeddings", json={"input": "cold"}).status_code == 200
        assert live.wait_for_log("NOTICE: Model reload took ")
        assert wait_until(lambda: not http.get("/health").json()["loaded"])
        assert http.post("/tokenize", json={"content": "cold"}).json() == {"tokens": list(b"cold")}


@pytest.mark.pinky
def test_shutdown_during_an_engine_call_answers_503_or_finishes() -> None:
    with live_server("--engine", "pinky", "--pinky-delay", "0") as live:
        results: list[int] = []

        def embed() -> None:
            try:
                results.append(httpx.post(live.http + "/v1/embeddings", json={"input": ["x"] * 2048}).status_code)
            except httpx.HTTPError:
                results.append(0)

        thread = threading.Thread(target=embed)
        thread.start()
        assert live.stop() == 0
        thread.join(10)
        assert results and results[0] in (0, 200, 503)
        assert "Traceback" not in live.log()


# -- the real engine ----------------------------------------------------------------------------------------------


@pytest.mark.real_engine
def test_smollm2_tokens_round_trip_and_its_chatml_template() -> None:
    with live_server("--model", str(smollm2_path()), "--no-unload", "--threads", "2", timeout=120) as live:
        with httpx.Client(base_url=live.http, timeout=30) as http:
            tokens = http.post("/tokenize", json={"content": "Hello world", "with_pieces": True}).json()["tokens"]
            assert "".join(t["piece"] for t in tokens) == "Hello world" and len(tokens) == 2
            ids = [t["id"] for t in tokens]
            assert http.post("/tokenize", json={"content": "Hello world"}).json() == {"tokens": ids}
            assert http.post("/detokenize", json={"tokens": ids}).json() == {"content": "Hello world"}
            special = http.post("/tokenize", json={"content": "<|im_start|>"}).json()["tokens"]
            assert len(special) == 1, "parse_special: the marker is one token"
            prompt = http.post("/apply-template", json={"messages": USER}).json()["prompt"]
            assert "<|im_start|>user\nhi<|im_end|>" in prompt and prompt.endswith("<|im_start|>assistant\n")
            too_big = http.post("/detokenize", json={"tokens": [10**9]})
            assert too_big.status_code == 400 and too_big.json()["error"]["param"] == "tokens"
