"""Anthropic's Messages API (``/v1/messages``, ``/v1/messages/count_tokens``) with the official ``anthropic`` client
unchanged, against a live ``ogenius serve`` on Pinky (and one tool call on SmolLM2): text, streaming, thinking blocks,
a tool_use → tool_result round trip, token counting, ``x-api-key`` auth and errors in Anthropic's shape."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import jsonschema  # type: ignore[import-untyped]
import pytest

from tests.servers import LiveServer, live_server

USER: Any = [{"role": "user", "content": "What's the weather in Paris?"}]
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER: Any = {"name": "get_weather", "description": "The weather in a city now.", "input_schema": SCHEMA}
CALL = ["<think>", "The user wants", " the weather.", "</think>", "<tool_call>\n", '{"name": "get_weather", ',
        '"arguments": {"city": ', '"Paris"}}', "\n</tool_call>"]  # fmt: skip


@pytest.fixture(scope="module")
def pinky() -> Iterator[LiveServer]:
    with live_server("--engine", "pinky", "--pinky-delay", "0") as live:
        yield live


@pytest.fixture(scope="module")
def calls() -> Iterator[LiveServer]:
    """A server whose every answer is a thought, then one call to get_weather."""
    with live_server("--engine", "pinky", "--pinky-delay", "0", "--pinky-script", json.dumps(CALL)) as live:
        yield live


def client_of(server: LiveServer, key: str = "unused") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.http, api_key=key, max_retries=0)


@pytest.mark.pinky
def test_create_answers_a_message_with_a_thinking_and_a_text_block(pinky: LiveServer) -> None:
    with client_of(pinky) as client:
        message = client.messages.create(model="pinky", max_tokens=64, messages=USER)
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert message.model == "pinky"
    kinds = [block.type for block in message.content]
    assert kinds == ["thinking", "text"]
    thinking, text = message.content
    assert thinking.type == "thinking" and thinking.thinking
    assert text.type == "text" and "Narf" in text.text
    assert message.stop_reason in ("end_turn", "max_tokens") and message.stop_sequence is None
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


@pytest.mark.pinky
def test_max_tokens_ends_with_stop_reason_max_tokens(pinky: LiveServer) -> None:
    with client_of(pinky) as client:
        message = client.messages.create(
            model="pinky",
            max_tokens=3,
            messages=USER,
            thinking={"type": "disabled"},
            extra_body={"temperature": 0.5, "top_k": 4},
        )
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 3


@pytest.mark.pinky
def test_a_stop_sequence_is_named_as_the_stop_reason_streamed_and_not(pinky: LiveServer) -> None:
    with client_of(pinky) as client:
        message = client.messages.create(model="pinky", max_tokens=64, messages=USER, stop_sequences=["zzz", "rf! N"])
        with client.messages.stream(model="pinky", max_tokens=64, messages=USER, stop_sequences=["rf! N"]) as stream:
            final = stream.get_final_message()
        plain = client.messages.create(model="pinky", max_tokens=64, messages=USER, stop_sequences=["zzz"])
    for ended in (message, final):
        assert (ended.stop_reason, ended.stop_sequence) == ("stop_sequence", "rf! N")
        assert ended.content[-1].text == "Na"  # type: ignore[union-attr]
    assert (plain.stop_reason, plain.stop_sequence) == ("end_turn", None)


@pytest.mark.pinky
def test_stream_text_stream_and_final_message_match_create(pinky: LiveServer) -> None:
    with client_of(pinky) as client:
        whole = client.messages.create(model="pinky", max_tokens=64, messages=USER)
        with client.messages.stream(model="pinky", max_tokens=64, messages=USER) as stream:
            texts = list(stream.text_stream)
            final = stream.get_final_message()
    assert "".join(texts) == final.content[-1].text == whole.content[-1].text  # type: ignore[union-attr]
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == whole.content[0].thinking  # type: ignore[union-attr]
    assert final.stop_reason == whole.stop_reason
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens == whole.usage.input_tokens


@pytest.mark.pinky
def test_raw_stream_events_come_in_anthropic_order(pinky: LiveServer) -> None:
    with client_of(pinky) as client:
        events = list(client.messages.create(model="pinky", max_tokens=16, messages=USER, stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    starts = [e for e in events if e.type == "content_block_start"]
    assert [e.index for e in starts] == [0, 1]
    assert [e.content_block.type for e in starts] == ["thinking", "text"]
    deltas = {e.delta.type for e in events if e.type == "content_block_delta"}
    assert deltas == {"thinking_delta", "text_delta"}


@pytest.mark.pinky
def test_tool_use_then_tool_result_round_trip(calls: LiveServer) -> None:
    with client_of(calls) as client:
        message = client.messages.create(model="pinky", max_tokens=256, messages=USER, tools=[WEATHER])
        assert message.stop_reason == "tool_use"
        thinking, use = message.content
        assert thinking.type == "thinking" and thinking.thinking == "The user wants the weather."
        assert use.type == "tool_use" and use.name == "get_weather" and use.input == {"city": "Paris"} and use.id
        with client.messages.stream(
            model="pinky", max_tokens=256, messages=USER, tools=[WEATHER], tool_choice={"type": "any"}
        ) as stream:
            streamed = stream.get_final_message()
        assert [b.type for b in streamed.content] == ["thinking", "tool_use"]
        assert streamed.content[1].input == {"city": "Paris"}  # type: ignore[union-attr]
        history: Any = [
            *USER,
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in message.content]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": use.id, "content": [{"type": "text", "text": "21 C"}]},
                {"type": "text", "text": "And tomorrow?"},
            ]},
        ]  # fmt: skip
        again = client.messages.create(
            model="pinky", max_tokens=256, messages=history, tools=[WEATHER], tool_choice={"type": "auto"}
        )
        assert again.stop_reason == "tool_use"
        failed: Any = [*history[:2], {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": use.id, "content": "no network", "is_error": True}]}]  # fmt: skip
        assert client.messages.create(model="pinky", max_tokens=8, messages=failed).type == "message"


@pytest.mark.pinky
def test_count_tokens_counts_the_prompt(pinky: LiveServer) -> None:
    with client_of(pinky) as client:
        short = client.messages.count_tokens(model="pinky", messages=[{"role": "user", "content": "hi"}])
        long = client.messages.count_tokens(
            model="pinky", system="Be brief.", messages=[{"role": "user", "content": "hi there, how are you today?"}]
        )
        used = client.messages.create(model="pinky", max_tokens=4, messages=[{"role": "user", "content": "hi"}])
    assert short.input_tokens > 0 and long.input_tokens > short.input_tokens
    assert short.input_tokens == used.usage.input_tokens + (used.usage.cache_read_input_tokens or 0)


@pytest.mark.pinky
def test_a_full_queue_is_529_overloaded_and_an_oversized_body_413_in_anthropic_shape() -> None:
    args = ("--engine", "pinky", "--pinky-delay", "0.02", "--pinky-tokens", "30", "--max-queue", "1")
    with live_server(*args, "--max-body-bytes", "4096") as server, client_of(server) as client:
        with client.messages.stream(model="pinky", max_tokens=64, messages=USER) as running:
            next(iter(running.text_stream))
            with pytest.raises(anthropic.APIStatusError) as busy:
                client.messages.create(model="pinky", max_tokens=8, messages=USER)
            final = running.get_final_message()
        with pytest.raises(anthropic.APIStatusError) as big:
            client.messages.create(model="pinky", max_tokens=8, messages=[{"role": "user", "content": "x" * 5000}])
    assert busy.value.status_code == 529 and isinstance(busy.value, anthropic.InternalServerError)
    assert busy.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert busy.value.response.headers["retry-after"] == "1"
    assert final.stop_reason == "end_turn" and final.content[-1].text.count("Narf!") == 30  # type: ignore[union-attr]
    assert big.value.status_code == 413
    assert big.value.body["error"]["type"] == "request_too_large"  # type: ignore[index]


@pytest.mark.pinky
def test_x_api_key_is_accepted_and_a_wrong_key_is_an_authentication_error() -> None:
    with live_server("--engine", "pinky", "--pinky-delay", "0", "--api-key", "sekrit") as server:
        with client_of(server, "sekrit") as client:
            assert client.messages.create(model="pinky", max_tokens=4, messages=USER).type == "message"
        with client_of(server, "wrong") as client, pytest.raises(anthropic.AuthenticationError) as caught:
            client.messages.create(model="pinky", max_tokens=4, messages=USER)
        assert caught.value.status_code == 401
        assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
        bearer = httpx.post(
            server.http + "/v1/messages",
            headers={"authorization": "Bearer sekrit"},
            json={"model": "pinky", "max_tokens": 4, "messages": USER},
        )
        assert bearer.status_code == 200


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("missing max_tokens", {"messages": USER}, "max_tokens"),
    ("unknown block", {"max_tokens": 4, "messages": [{"role": "user", "content": [{"type": "holo", "x": 1}]}]},
     "holo"),
    ("tool_result without tool_use_id", {"max_tokens": 4, "messages": [
        {"role": "user", "content": [{"type": "tool_result", "content": "21 C"}]}]}, "tool_use_id"),
    ("bad role", {"max_tokens": 4, "messages": [{"role": "system", "content": "x"}]}, "role"),
    ("bad tool_choice", {"max_tokens": 4, "messages": USER, "tool_choice": {"type": "some"}}, "tool_choice"),
    ("tool_choice names no tool", {"max_tokens": 4, "messages": USER, "tools": [WEATHER],
                                   "tool_choice": {"type": "tool", "name": "nope"}}, "nope"),
    ("bad schema", {"max_tokens": 4, "messages": USER, "tools": [{"name": "f", "input_schema": 3}]}, "input_schema"),
    ("bad thinking", {"max_tokens": 4, "messages": USER, "thinking": {"type": "maybe"}}, "thinking"),
]  # fmt: skip


@pytest.mark.pinky
@pytest.mark.parametrize(("what", "body", "named"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_400_in_anthropic_shape(pinky: LiveServer, what: str, body: dict[str, Any], named: str) -> None:
    response = httpx.post(pinky.http + "/v1/messages", json={"model": "pinky", **body})
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert named in error["error"]["message"]
    with client_of(pinky) as client:  # the server still answers
        assert client.messages.create(model="pinky", max_tokens=2, messages=USER).type == "message"


IMAGE: Any = [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": ""}}]}]


@pytest.mark.pinky
def test_sdk_raises_bad_request_and_not_found_in_anthropic_shape(pinky: LiveServer) -> None:
    with client_of(pinky) as client:
        with pytest.raises(anthropic.BadRequestError) as caught:
            client.messages.create(model="pinky", max_tokens=4, messages=IMAGE)
        assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
        with pytest.raises(anthropic.NotFoundError) as missing:
            client.messages.create(model="claude-sonnet-4-5", max_tokens=4, messages=USER)
        assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    not_json = httpx.post(pinky.http + "/v1/messages", content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.real_engine
def test_smollm2_tool_choice_any_gives_a_tool_use_that_follows_the_schema() -> None:
    with live_server("--model", "smollm2-135m", "--parallel", "1", timeout=120) as server, client_of(server) as client:
        # One call (a small model left free to call again repeats the call until max_tokens), greedy.
        message = client.messages.create(
            model="smollm2-135m", max_tokens=128, messages=USER, tools=[WEATHER],
            tool_choice={"type": "any", "disable_parallel_tool_use": True}, extra_body={"temperature": 0},
        )  # fmt: skip
    assert message.stop_reason == "tool_use"
    uses = [b for b in message.content if b.type == "tool_use"]
    assert uses and uses[0].name == "get_weather"
    jsonschema.validate(uses[0].input, SCHEMA)


@pytest.mark.pinky
def test_readme_anthropic_example_runs_against_a_pinky_server(pinky: LiveServer) -> None:
    import subprocess
    import sys

    from tests.test_docs_and_cli import readme_block

    code = readme_block("anthropic.Anthropic(").replace("http://127.0.0.1:8080", pinky.http)
    code = code.replace('"smollm2-135m"', '"pinky"')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Narf" in out.stdout
