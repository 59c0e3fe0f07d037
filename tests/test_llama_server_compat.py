"""llama.cpp's own server tests (tools/server/tests/unit/), ported for the endpoints ``ogenius serve`` has: their
shape and status checks, against ``ogenius serve`` on Pinky (and, marked, on the real model), in this project's
style. Content checks written for stories260K's words are not ported; where this server differs on purpose, the test
asserts what it does instead and docs/llama-server.md says why. Each test names the llama.cpp test it ports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import ResponseCompletedEvent, ResponseTextDeltaEvent, ResponseTextDoneEvent
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import smollm2_path, wait_until
from tests.servers import LiveServer, live_server

pytestmark = pytest.mark.pinky

KEY = "sk-this-is-the-secret-key"
ALIAS = "llama-test-model"
BOOK = [{"role": "system", "content": "Book"}, {"role": "user", "content": "What is the best book"}]


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with live_server("--engine", "pinky", "--alias", ALIAS, "--pinky-delay", "0", "--pinky-tokens", "8") as live:
        yield live


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http, timeout=30) as client:
        yield client


def sse(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]


# -- test_basic.py ------------------------------------------------------------------------------------------------


def test_basic_health_props_models_and_aliases(http: httpx.Client) -> None:
    """test_server_start_simple, test_server_props, test_server_models, test_server_model_aliases_and_tags."""
    assert http.get("/health").status_code == 200
    props = http.get("/props").json()
    assert props["total_slots"] == 1 and props["default_generation_settings"]["n_ctx"] == 4096
    assert props["default_generation_settings"]["params"]["seed"] == -1  # no seed set: llama-server's -1
    assert props["model_alias"] == ALIAS and props["is_sleeping"] is False
    models = http.get("/models").json()["data"]
    assert [m["id"] for m in models] == [ALIAS] and models[0]["aliases"] == ["pinky"]
    assert http.get("/slots").status_code == 404, "no /slots (llama-server answers 501 without --slots)"


# -- test_chat_completion.py --------------------------------------------------------------------------------------


def test_chat_completion_shape(http: httpx.Client) -> None:
    """test_chat_completion: the id's form, system_fingerprint, usage, the assistant message, finish_reason."""
    body = http.post("/chat/completions", json={"max_tokens": 8, "messages": BOOK}).json()
    assert "cmpl" in body["id"] and body["system_fingerprint"].startswith("fp_")
    assert body["model"] == ALIAS
    assert body["usage"]["completion_tokens"] <= 8 and body["usage"]["prompt_tokens"] > 0
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] in ("stop", "length")
    assert {"prompt_n", "predicted_n", "predicted_per_second"} <= set(body["timings"])


def test_chat_completion_stream_shape(http: httpx.Client) -> None:
    """test_chat_completion_stream: a first chunk with the role and null content, no role after, one id, no content
    in the finish chunk, usage (and timings) in a last chunk without choices."""
    request = {"max_tokens": 8, "messages": BOOK, "stream": True, "stream_options": {"include_usage": True}}
    with http.stream("POST", "/chat/completions", json=request) as response:
        chunks = sse(response)
    first, *rest = chunks
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": None}
    assert len({c["id"] for c in chunks}) == 1 and all(c["system_fingerprint"].startswith("fp_") for c in chunks)
    assert all(c["model"] == ALIAS for c in chunks)
    with_choices = [c for c in rest if c["choices"]]
    assert all("role" not in c["choices"][0]["delta"] for c in with_choices)
    finish = with_choices[-1]["choices"][0]
    assert finish["finish_reason"] in ("stop", "length") and "content" not in finish["delta"]
    last = chunks[-1]
    assert last["choices"] == [] and last["usage"]["completion_tokens"] <= 8
    assert {"prompt_per_second", "predicted_per_second", "predicted_n"} <= set(last["timings"])


def test_chat_completion_with_the_openai_library_at_a_base_url_without_v1(server: LiveServer) -> None:
    """test_chat_completion_with_openai_library, and test_openai_library_correct_api_key's base URL (no /v1)."""
    with openai.OpenAI(api_key="dummy", base_url=server.http) as client:
        # llama-server answers any model name (gpt-3.5-turbo here); this server 404s one it does not serve
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="gpt-3.5-turbo", messages=BOOK)  # type: ignore[arg-type]
        res = client.chat.completions.create(model=ALIAS, messages=BOOK)  # type: ignore[arg-type]
    assert res.system_fingerprint is not None and res.choices[0].message.content


@pytest.mark.parametrize(
    "messages",
    [
        None, "string", [123], [{}], [{"role": 123}], [{"role": "system", "content": 123}],
        [{"role": "system", "content": "test"}, {}],
    ],
)  # fmt: skip
def test_invalid_chat_completion_req(http: httpx.Client, messages: object) -> None:
    """test_invalid_chat_completion_req (llama-server also accepts 500; this server answers 400)."""
    res = http.post("/chat/completions", json={"messages": messages})
    assert res.status_code == 400 and "error" in res.json()


@pytest.mark.parametrize(
    ("response_format", "ok"),
    [
        ({"type": "json_object"}, True),
        ({"type": "json_schema", "json_schema": {"schema": {"const": "foooooo"}}}, True),
        ({"type": "sound"}, False),
        ({"type": "json_object", "schema": 123}, False),
        ({"type": "json_object", "schema": {"type": 123}}, False),
        ({"type": "json_object", "schema": {"type": "hiccup"}}, False),
    ],
)
def test_completion_with_response_format_statuses(
    http: httpx.Client, response_format: dict[str, Any], ok: bool
) -> None:
    """test_completion_with_response_format: which formats are taken and which are a 400."""
    res = http.post("/chat/completions", json={"max_tokens": 4, "messages": BOOK, "response_format": response_format})
    assert res.status_code == (200 if ok else 400), res.text
    if not ok:
        assert "error" in res.json()


# -- llama-server's request extensions: honoured, or refused naming the field (never ignored) ---------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mirostat", 2), ("typical_p", 0.5), ("xtc_probability", 0.5), ("dry_multiplier", 0.8), ("top_n_sigma", 1.0),
        ("dynatemp_range", 0.5), ("repeat_last_n", 128), ("samplers", ["top_k"]), ("cache_prompt", False),
        ("timings_per_token", True), ("return_progress", True), ("ignore_eos", True), ("n_keep", 10),
        ("id_slot", 0), ("lora", [{"id": 0, "scale": 1.0}]), ("n_probs", 100),
    ],
)  # fmt: skip
def test_extensions_that_cannot_be_honoured_are_a_400_naming_the_field(
    http: httpx.Client, field: str, value: object
) -> None:
    for path in ("/chat/completions", "/completions"):
        body: dict[str, Any] = {"max_tokens": 2, field: value}
        body.update({"messages": BOOK} if path == "/chat/completions" else {"prompt": "Hello"})
        res = http.post(path, json=body)
        assert res.status_code == 400, (path, field, res.text)
        error = res.json()["error"]
        assert error["param"] == field and field in error["message"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mirostat", 0), ("mirostat_tau", 5.0), ("typical_p", 1.0), ("xtc_probability", 0.0), ("xtc_threshold", 0.1),
        ("dry_multiplier", 0.0), ("dry_base", 1.75), ("top_n_sigma", -1.0), ("dynatemp_range", 0.0),
        ("repeat_last_n", 64), ("cache_prompt", True), ("timings_per_token", False), ("ignore_eos", False),
        ("id_slot", -1), ("n_keep", 0),
    ],
)  # fmt: skip
def test_extensions_at_their_off_values_are_taken(http: httpx.Client, field: str, value: object) -> None:
    res = http.post("/chat/completions", json={"max_tokens": 2, "messages": BOOK, field: value})
    assert res.status_code == 200, res.text


def test_n_predict_n_probs_and_json_schema_are_honoured(http: httpx.Client) -> None:
    body = http.post("/chat/completions", json={"n_predict": 2, "messages": BOOK}).json()
    assert body["usage"]["completion_tokens"] <= 2 and body["choices"][0]["finish_reason"] == "length"
    probs = http.post("/chat/completions", json={"max_tokens": 2, "messages": BOOK, "n_probs": 3}).json()
    assert probs["choices"][0]["logprobs"] is not None, "n_probs asks for logprobs (Pinky has none to give)"
    both = {"messages": BOOK, "json_schema": {"type": "object"}, "response_format": {"type": "json_object"}}
    assert http.post("/chat/completions", json=both).json()["error"]["param"] == "json_schema"


# -- test_security.py ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed() -> Iterator[LiveServer]:
    with live_server("--engine", "pinky", "--api-key", KEY, "--pinky-delay", "0", "--pinky-tokens", "4") as live:
        yield live


def test_security_public_endpoints_and_api_keys(keyed: LiveServer) -> None:
    """test_access_public_endpoint (/health; /models differs: it takes the key here), test_incorrect_api_key,
    test_correct_api_key, test_correct_api_key_anthropic_header, test_access_static_assets_without_api_key (/)."""
    with httpx.Client(base_url=keyed.http, timeout=30) as http:
        assert http.get("/health").status_code == 200 and http.get("/").status_code == 200
        assert http.get("/models").status_code == 401, "deliberate: the model list takes the key"
        body = {"prompt": "I believe the meaning of life is", "max_tokens": 4}
        for headers in ({}, {"Authorization": "Bearer invalid-key"}):
            res = http.post("/completions", json=body, headers=headers)
            assert res.status_code == 401 and res.json()["error"]["type"] == "authentication_error"
        assert http.post("/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        assert http.post("/completions", json=body, headers={"X-Api-Key": KEY}).status_code == 200


def test_security_cors_is_for_allowed_origins_only(keyed: LiveServer) -> None:
    """test_cors_options: llama-server reflects any origin; this server refuses origins it was not told to allow."""
    with httpx.Client(base_url=keyed.http, timeout=30) as http:
        preflight = {"Origin": "http://web.mydomain.fr", "Access-Control-Request-Method": "POST"}
        assert http.options("/completions", headers=preflight).status_code == 403
    with live_server("--engine", "pinky", "--allow-origin", "http://web.mydomain.fr") as allowed:
        res = httpx.options(allowed.http + "/completions", headers=preflight, timeout=30)
        assert res.status_code == 204
        assert res.headers["access-control-allow-origin"] == "http://web.mydomain.fr"
        assert "POST" in res.headers["access-control-allow-methods"]


# -- test_sleep.py ------------------------------------------------------------------------------------------------


def test_sleep_wake_and_read_only_endpoints_never_wake() -> None:
    """test_server_sleep and test_server_sleep_read_only_endpoints: --unload-after is llama-server's
    --sleep-idle-seconds; /health, /props, /models and /metrics answer while asleep and never wake the model."""
    with live_server("--engine", "pinky", "--unload-after", "1", "--pinky-delay", "0", "--pinky-tokens", "2") as s:
        with httpx.Client(base_url=s.http, timeout=30) as http:
            assert wait_until(lambda: http.get("/props").json()["is_sleeping"], 10)
            for path in ("/health", "/models", "/metrics"):
                assert http.get(path).status_code == 200
            assert http.get("/props").json()["is_sleeping"] is True, "reading never wakes it"
            assert http.post("/completions", json={"prompt": "Hello", "n_predict": 1}).status_code == 200
            assert http.get("/props").json()["is_sleeping"] is False
            samples = {
                s.name: s.value
                for family in text_string_to_metric_families(http.get("/metrics").text)
                for s in family.samples
            }
            assert samples["rusty_genius_completion_tokens_total"] >= 1


# -- test_tokenize.py, test_embedding.py: shapes ------------------------------------------------------------------


def test_tokenize_detokenize_and_embedding_shapes(http: httpx.Client) -> None:
    """test_tokenize_detokenize, test_tokenize_with_pieces, test_embedding_single / _multiple (shapes)."""
    tokens = http.post("/tokenize", json={"content": "What is the capital of France ?"}).json()["tokens"]
    assert http.post("/detokenize", json={"tokens": tokens}).json()["content"] == "What is the capital of France ?"
    pieces = http.post("/tokenize", json={"content": "é", "with_pieces": True}).json()["tokens"]
    assert all({"id", "piece"} == set(p) for p in pieces)
    one = http.post("/embeddings", json={"input": "I believe the meaning of life is"}).json()
    assert one["object"] == "list" and len(one["data"]) == 1 and len(one["data"][0]["embedding"]) > 1
    many = http.post("/v1/embeddings", json={"input": ["a", "b", "c"]}).json()
    assert [d["index"] for d in many["data"]] == [0, 1, 2] and many["usage"]["prompt_tokens"] > 0


# -- the real model ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real() -> Iterator[LiveServer]:
    with live_server("--model", str(smollm2_path()), "--parallel", "1", "--temperature", "0", timeout=120) as live:
        yield live


@pytest.mark.real_engine
def test_grammar_and_json_schema_on_the_real_model(real: LiveServer) -> None:
    """test_completion_with_grammar and test_completion_with_json_schema (the constraint shapes the answer)."""
    with httpx.Client(base_url=real.http, timeout=60) as http:
        grammar = {
            "max_tokens": 6,
            "messages": [{"role": "user", "content": "Say anything"}],
            "grammar": 'root ::= "a"{5,5}',
        }
        assert http.post("/chat/completions", json=grammar).json()["choices"][0]["message"]["content"] == "aaaaa"
        schema = {"max_tokens": 6, "messages": BOOK, "json_schema": {"const": "42"}}
        assert http.post("/chat/completions", json=schema).json()["choices"][0]["message"]["content"] == '"42"'
        text = http.post("/completions", json={"prompt": "Hello", "max_tokens": 6, "json_schema": {"const": "42"}})
        assert text.json()["choices"][0]["text"] == '"42"'


@pytest.mark.real_engine
def test_logprobs_shapes_on_the_real_model(real: LiveServer) -> None:
    """test_logprobs: the tokens' texts make the content, logprobs <= 0, bytes present."""
    with openai.OpenAI(api_key="dummy", base_url=real.base_url) as client:
        res = client.chat.completions.create(
            messages=BOOK,  # type: ignore[arg-type]
            model=real_model(real),
            max_tokens=5,
            logprobs=True,
            top_logprobs=10,
        )
        content = res.choices[0].logprobs.content if res.choices[0].logprobs else None
        assert content and "".join(t.token for t in content) == res.choices[0].message.content
        assert all(t.logprob <= 0 and t.bytes is not None and t.top_logprobs for t in content)
    with httpx.Client(base_url=real.http, timeout=60) as http:
        body = http.post("/chat/completions", json={"max_tokens": 3, "messages": BOOK, "n_probs": 3}).json()
        entries = body["choices"][0]["logprobs"]["content"]
        assert entries and all(len(e["top_logprobs"]) == 3 for e in entries), "n_probs: llama-server's top_logprobs"


def real_model(server: LiveServer) -> str:
    return str(httpx.get(server.http + "/v1/models", timeout=30).json()["data"][0]["id"])


@pytest.mark.real_engine
def test_context_overflow_carries_llama_servers_sizes(real: LiveServer) -> None:
    """test_ctx_shift's overflow case (context shift itself is not available: the prompt is refused, with
    n_prompt_tokens and n_ctx beside OpenAI's context_length_exceeded)."""
    with httpx.Client(base_url=real.http, timeout=60) as http:
        long = " ".join(["word"] * 5000)
        res = http.post("/chat/completions", json={"messages": [{"role": "user", "content": long}], "max_tokens": 4})
        assert res.status_code == 400
        error = res.json()["error"]
        assert error["code"] == "context_length_exceeded" and error["n_prompt_tokens"] > error["n_ctx"] == 4096
        assert http.get("/health").json()["status"] == "ok"


# -- test_compat_anthropic.py -------------------------------------------------------------------------------------


def test_anthropic_messages_basic_stream_count_and_tool_results(http: httpx.Client) -> None:
    """test_anthropic_messages_basic, _streaming, test_anthropic_count_tokens, test_anthropic_tool_result_with_text
    (the model is named: this server 404s a model it does not serve, where llama-server takes "test")."""
    say = {"model": ALIAS, "max_tokens": 50, "messages": [{"role": "user", "content": "Say hello"}]}
    body = http.post("/v1/messages", json=say).json()
    assert body["type"] == "message" and body["role"] == "assistant" and body["content"][-1]["type"] == "text"
    assert body["stop_reason"] in ("end_turn", "max_tokens") and "timings" not in body
    usage = body["usage"]
    assert all(isinstance(usage[k], int) for k in ("input_tokens", "output_tokens", "cache_read_input_tokens"))
    with http.stream("POST", "/v1/messages", json={**say, "stream": True}) as response:
        events = sse(response)
    kinds = [e["type"] for e in events]
    for kind in ("message_start", "content_block_start", "content_block_delta", "content_block_stop"):
        assert kind in kinds
    assert kinds[-2:] == ["message_delta", "message_stop"] and "timings" not in events[-1]
    start = events[0]["message"]
    assert start["content"] == [] and start["usage"]["input_tokens"] > 0
    assert all(
        e["delta"]["type"] in ("text_delta", "thinking_delta") for e in events if e["type"] == "content_block_delta"
    )
    assert events[-2]["delta"]["stop_reason"] in ("end_turn", "max_tokens") and events[-2]["usage"]["output_tokens"] > 0
    counted = http.post("/v1/messages/count_tokens", json={"model": ALIAS, "messages": say["messages"]}).json()
    assert set(counted) == {"input_tokens"} and counted["input_tokens"] > 0
    call = {"type": "tool_use", "id": "tool_1", "name": "get_weather", "input": {"location": "Paris"}}
    result = {"type": "tool_result", "tool_use_id": "tool_1", "content": "Sunny", "is_error": True}
    tool_turns = [
        {"role": "user", "content": "What's the weather?"},
        {"role": "assistant", "content": [call]},
        {"role": "user", "content": [{"type": "text", "text": "Here are the results:"}, result]},
    ]
    answered = http.post("/v1/messages", json={"model": ALIAS, "max_tokens": 20, "messages": tool_turns})
    assert answered.status_code == 200 and answered.json()["content"]


# -- test_compat_oai_responses.py ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text_format", "status"),
    [
        ({"type": "json_schema", "name": "test", "schema": {"const": "foooooo"}}, 200),
        ({"type": "json_object"}, 200),
        ({"type": "text"}, 200),
        ({"type": "json_schema", "name": "test"}, 400),
    ],
)
def test_responses_with_text_format_statuses(http: httpx.Client, text_format: dict[str, Any], status: int) -> None:
    """test_responses_with_text_format: which formats are taken, and a json_schema without a schema is a 400."""
    for path in ("/v1/responses", "/responses"):
        body = {"model": ALIAS, "input": "Write an example", "max_output_tokens": 10, "text": {"format": text_format}}
        res = http.post(path, json=body)
        assert res.status_code == status, (path, res.text)


def test_responses_with_the_openai_library_streamed_and_not(server: LiveServer) -> None:
    """test_responses_with_openai_library and test_responses_stream_with_openai_library: resp_ and msg_ ids, one
    message id across the stream's events, the deltas make output_text."""
    with openai.OpenAI(api_key="dummy", base_url=server.base_url) as client:
        res = client.responses.create(model=ALIAS, input=BOOK, max_output_tokens=8)  # type: ignore[arg-type]
        assert res.id.startswith("resp_") and str(res.output[-1].id).startswith("msg_") and res.output_text
        gathered, ids, completed = "", set(), None
        for event in client.responses.create(model=ALIAS, input=BOOK, max_output_tokens=64, stream=True):  # type: ignore[arg-type]
            if isinstance(event, ResponseTextDeltaEvent):
                ids.add(event.item_id)
                gathered += event.delta
            elif isinstance(event, ResponseTextDoneEvent):
                ids.add(event.item_id)
            elif isinstance(event, ResponseCompletedEvent):
                completed = event.response
        assert completed is not None and completed.id.startswith("resp_") and gathered == completed.output_text
        assert len(ids) == 1 and next(iter(ids)).startswith("msg_")


def test_responses_refuse_the_extensions_they_cannot_honour(http: httpx.Client) -> None:
    """test_responses_stream_with_llama_telemetry asks for per-token timings and prompt progress: refused, naming
    the field, as on chat; json_schema (llama-server's) works here too."""
    base = {"model": ALIAS, "input": "This is a test", "max_output_tokens": 8}
    for field in ("timings_per_token", "return_progress"):
        res = http.post("/responses", json={**base, field: True})
        assert res.status_code == 400 and res.json()["error"]["param"] == field
    assert http.post("/responses", json={**base, "json_schema": {"type": "object"}}).status_code == 200
