"""The server's pieces in-process: addresses, keep_alive durations, Host/Origin/key policy, error mapping, SSE encoding
of batched events."""

from __future__ import annotations

import json

import pytest
from rusty_genius import (
    BusyError,
    ConfigError,
    ContextOverflowError,
    EngineError,
    Genius,
    HibernateAfter,
    Immediate,
    InferenceConfig,
    KeepAlive,
    Output,
    Pinky,
    RequestError,
)
from rusty_genius.ogenius.serve.encode import ChunkEncoder
from rusty_genius.ogenius.serve.openai_api import ApiError, api_error_of, parse_chat, parse_keep_alive
from rusty_genius.ogenius.serve.security import Policy, split_host
from rusty_genius.ogenius.serve.settings import Address, AddressError, ServeSettings

from tests.conftest import USER

pytestmark = pytest.mark.pinky


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("127.0.0.1:8080", "127.0.0.1", 8080), ("[::1]:80", "::1", 80), ("9000", "127.0.0.1", 9000),
     ("LocalHost:0", "localhost", 0), ("0.0.0.0:1", "0.0.0.0", 1)],
)  # fmt: skip
def test_addresses(text: str, host: str, port: int) -> None:
    assert Address.parse(text) == Address(host, port)


@pytest.mark.parametrize("text", ["nowhere", "::1:80", "host:99999", "host:", ":80", "[::1]80"])
def test_bad_addresses(text: str) -> None:
    with pytest.raises(AddressError):
        Address.parse(text)


def test_loopback_and_the_key_rule() -> None:
    assert Address("127.0.0.1", 1).is_loopback and Address("localhost", 1).is_loopback
    assert Address("::1", 1).is_loopback and not Address("0.0.0.0", 1).is_loopback
    ServeSettings().check()
    with pytest.raises(AddressError, match="without an API key"):
        ServeSettings(addr=Address("0.0.0.0", 80)).check()
    ServeSettings(addr=Address("0.0.0.0", 80), api_key="k").check()
    with pytest.raises(AddressError, match="own port"):
        ServeSettings(addr=Address("127.0.0.1", 80), ws_addr=Address("127.0.0.1", 80)).check()


@pytest.mark.parametrize(
    ("value", "strategy"),
    [(None, None), (0, Immediate()), ("0", Immediate()), (-1, KeepAlive()), ("-1", KeepAlive()), ("-5m", KeepAlive()),
     (10, HibernateAfter(10)), ("10", HibernateAfter(10)), ("5m", HibernateAfter(300)), ("1h30m", HibernateAfter(5400)),
     ("1.5s", HibernateAfter(1.5)), ("250ms", HibernateAfter(0.25))],
)  # fmt: skip
def test_keep_alive_durations(value: object, strategy: object) -> None:
    assert parse_keep_alive(value) == strategy


@pytest.mark.parametrize("value", ["soon", "5 m", "m5", True, [], {}, float("inf"), "1d"])
def test_bad_keep_alive(value: object) -> None:
    with pytest.raises(ApiError) as info:
        parse_keep_alive(value)
    assert info.value.status == 400 and info.value.param == "keep_alive"


def test_parse_chat_maps_fields_to_settings() -> None:
    chat = parse_chat(
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": "s"},
                {"role": "user", "content": [{"type": "text", "text": "q"}]},
            ],
            "max_tokens": 5,
            "max_completion_tokens": 7,
            "stop": "END",
            "seed": 3.0,
            "temperature": 1,
            "stream": True,
            "stream_options": {"include_usage": True},
            "include_reasoning": False,
            "logit_bias": {"42": -100, "7": 2.5},
            "n": 3,
        }
    )
    assert chat.messages == [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    assert chat.settings == {
        "max_tokens": 7, "stop": ("END",), "seed": 3, "temperature": 1.0, "show_thinking": False,
        "logit_bias": {42: -100.0, 7: 2.5},
    }  # fmt: skip
    assert chat.params["max_tokens"] == "max_completion_tokens" and chat.params["logit_bias"] == "logit_bias"
    assert chat.model == "m" and chat.stream and chat.include_usage and chat.n == 3
    config = InferenceConfig.of(**chat.settings)
    assert config.sampling.logit_bias == {7: 2.5, 42: -100.0} and list(config.sampling.logit_bias) == [7, 42]
    assert parse_chat({"messages": USER, "logit_bias": {}, "n": None}).settings.get("logit_bias") is None


@pytest.mark.parametrize(
    ("extra", "param"),
    [({"n": 0}, "n"), ({"n": 9}, "n"), ({"n": 1.5}, "n"), ({"n": "2"}, "n"), ({"n": True}, "n"),
     ({"logit_bias": [1, 2]}, "logit_bias"), ({"logit_bias": {"x": 1}}, "logit_bias"),
     ({"logit_bias": {"-3": 1}}, "logit_bias"), ({"logit_bias": {"3": "1"}}, "logit_bias"),
     ({"logit_bias": {"3": None}}, "logit_bias"), ({"logit_bias": {"3": True}}, "logit_bias")],
)  # fmt: skip
def test_parse_chat_refuses_bad_n_and_logit_bias(extra: dict[str, object], param: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_chat({"messages": USER, **extra})
    assert info.value.status == 400 and info.value.param == param, info.value.message


def test_usage_of_several_choices_counts_the_prompt_once() -> None:
    from rusty_genius.ogenius.serve.encode import completion, total_usage

    with Genius(engine=Pinky(delay=0, reply_tokens=2, think=False)) as g:
        first = list(g.chat(USER))
        second = list(g.chat(USER, max_tokens=1))
    one, two = first[-1].usage, second[-1].usage
    assert one is not None and two is not None
    usage = total_usage([first[-1], second[-1]])
    assert usage is not None and usage["prompt_tokens"] == one.prompt_tokens
    assert usage["completion_tokens"] == one.completion_tokens + two.completion_tokens
    assert usage["total_tokens"] == one.prompt_tokens + one.completion_tokens + two.completion_tokens
    body = completion("pinky", first, second)
    assert [c["index"] for c in body["choices"]] == [0, 1] and body["usage"] == usage
    assert [c["finish_reason"] for c in body["choices"]] == ["stop", "length"]
    encoder = ChunkEncoder("pinky", include_usage=True, choices=2)
    out = encoder.start() + encoder.deltas(second, 1) + encoder.finish_choice(second[-1], 1)
    out += encoder.deltas(first, 0) + encoder.finish_choice(first[-1], 0) + encoder.close([first[-1], second[-1]])
    text = out.decode()
    assert text.endswith("data: [DONE]\n\n")
    chunks = [json.loads(line[6:]) for line in text.split("\n\n") if line.startswith("data: {")]
    assert [c["choices"][0]["index"] for c in chunks[:2]] == [0, 1], "a role chunk per choice"
    for i, answer in enumerate(["Narf! Narf!", "Narf!"]):
        mine = [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["index"] == i]
        assert "".join(c["delta"].get("content") or "" for c in mine).strip() == answer.strip(), mine
        assert [c["finish_reason"] for c in mine if c["finish_reason"]] == [["stop", "length"][i]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == usage


def test_parse_chat_reads_tools_the_format_reasoning_and_tool_messages() -> None:
    chat = parse_chat(
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": None, "reasoning_content": "r", "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}]},
                {"role": "tool", "tool_call_id": "c1", "name": "f", "content": [{"type": "text", "text": "1"}]},
            ],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {
                "type": "object", "properties": {"x": {"type": "integer"}}}}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "parallel_tool_calls": False,
            "response_format": {"type": "json_schema", "json_schema": {
                "name": "r", "schema": {"type": "object"}, "strict": True}},
            "reasoning_effort": "none",
            "thinking_budget_tokens": -1,
        }
    )  # fmt: skip
    assert chat.messages[1] == {
        "role": "assistant", "content": "", "reasoning_content": "r",
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}],
    }  # fmt: skip
    assert chat.messages[2] == {"role": "tool", "content": "1", "tool_call_id": "c1", "name": "f"}
    out = chat.output
    assert out is not None and [t.name for t in out.tools] == ["f"]
    assert out.tool_choice == "required" and out.tool_name == "f" and not out.parallel_tool_calls
    assert out.response_format == "json_schema" and out.schema_name == "r" and out.strict
    assert chat.settings["enable_thinking"] is False and chat.settings["thinking_budget"] is None
    assert chat.params["enable_thinking"] == "reasoning_effort"
    InferenceConfig.of(**chat.settings)
    assert parse_chat({"messages": USER}).output is None


_OK_TOOL = {"type": "function", "function": {"name": "ok"}}


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ({"tools": [_OK_TOOL, {"type": "function", "function": {"name": "get weather!"}}]}, "tools[1].function.name"),
        ({"tools": [_OK_TOOL, {"type": "function", "function": {"description": "x"}}]}, "tools[1].function.name"),
        ({"tools": [_OK_TOOL, {"type": "code_interpreter"}]}, "tools[1].type"),
        ({"tools": [_OK_TOOL, {"type": "function", "function": {"name": "f", "strict": 1}}]},
         "tools[1].function.strict"),
        ({"tools": [_OK_TOOL, {"type": "function", "function": {"name": "f", "parameters": []}}]},
         "tools[1].function.parameters"),
        # Refused by the engine's own check, which names the path in its message only.
        ({"tools": [_OK_TOOL, {"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]},
         "tools[1].function.parameters"),
        ({"tools": [_OK_TOOL, "f"]}, "tools[1]"),
        ({"tools": [_OK_TOOL], "tool_choice": {"type": "function", "function": {"name": "f"}}},
         "tool_choice.function.name"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}}},
         "response_format.json_schema.name"),
        ({"response_format": {"type": "json_object", "schema": []}}, "response_format.schema"),
    ],
)  # fmt: skip
def test_the_server_and_the_library_name_the_same_path(extra: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as err:
        Output().updated(**extra)  # type: ignore[arg-type]
    assert err.value.path == path and err.value.field == path.split(".")[0].split("[")[0], err.value
    with pytest.raises(ApiError) as api:
        parse_chat({"messages": USER, **extra})
    assert (api.value.status, api.value.param, api.value.message) == (400, path, str(err.value))


@pytest.mark.anyio
async def test_tool_call_events_encode_as_openai_streams_and_returns_them() -> None:
    from rusty_genius.core.config import Output, Tool
    from rusty_genius.ogenius.serve.encode import completion

    script = ["<tool_call>\n", '{"name": "f", ', '"arguments": {"x": ', "1}}", "\n</tool_call>"]
    config = InferenceConfig(output=Output(tools=(Tool(name="f"),)))
    async with Genius(engine=Pinky(delay=0, script=script)) as g:
        events = [ev async for ev in g.chat(USER, config)]
    body = completion("pinky", events)
    [call] = body["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "f" and json.loads(call["function"]["arguments"]) == {"x": 1}
    assert body["choices"][0]["message"]["content"] is None and body["choices"][0]["finish_reason"] == "tool_calls"
    encoder = ChunkEncoder("pinky", include_usage=False)
    out = (encoder.deltas(events) + encoder.finish(events[-1])).decode()
    chunks = [json.loads(line[6:]) for line in out.split("\n\n") if line.startswith("data: {")]
    deltas = [d for c in chunks for d in c["choices"][0]["delta"].get("tool_calls", [])]
    assert deltas[0] == {"index": 0, "id": call["id"], "type": "function", "function": {"name": "f", "arguments": ""}}
    assert "".join(d["function"]["arguments"] for d in deltas[1:]) == call["function"]["arguments"]
    assert all(set(d) == {"index", "function"} for d in deltas[1:])
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_host_origin_and_key_policy() -> None:
    policy = Policy(ServeSettings(addr=Address("127.0.0.1", 8080), api_key="secret", allow_hosts=("box.lan",)))
    assert split_host("[::1]:8080") == ("::1", 8080) and split_host("Box.LAN.") == ("box.lan", None)
    for host in ("localhost", "127.0.0.1", "::1", "box.lan", "10.0.0.2", "x.localhost"):
        assert policy.host_ok(host), host
    for host in ("", "evil.example", "localhost.evil.example", "box.lan.evil"):
        assert not policy.host_ok(host), host
    assert policy.origin_ok("http://127.0.0.1:8080", "127.0.0.1", 8081), "the page on --addr, at the WS port"
    assert policy.origin_ok("http://localhost:8080", "127.0.0.1", 8081), "a loopback sibling of the page"
    assert policy.origin_ok("https://box.lan", "box.lan", None), "same origin behind a proxy"
    assert not policy.origin_ok("http://localhost:3000", "127.0.0.1", 8081)
    assert not policy.origin_ok("http://evil.example:8080", "127.0.0.1", 8081)
    assert not policy.origin_ok("http://10.0.0.9:8080", "127.0.0.1", 8081)
    assert not policy.origin_ok("null", "127.0.0.1", 8081)
    assert policy.key_ok("Bearer secret") and policy.key_ok("bearer  secret ")
    assert not policy.key_ok("Bearer secre") and not policy.key_ok("") and not policy.key_ok("Basic secret")


def test_errors_map_to_openai_statuses() -> None:
    busy = api_error_of(BusyError("full"))
    assert busy.status == 503 and busy.code == "server_busy" and (b"retry-after", b"1") in busy.headers
    config = api_error_of(
        ConfigError("invalid max_tokens = 0: must be at least 1", field="max_tokens"),
        {"max_tokens": "max_completion_tokens"},
    )
    assert config.status == 400 and config.param == "max_completion_tokens"
    assert api_error_of(ContextOverflowError("too long")).code == "context_length_exceeded"
    assert api_error_of(RequestError("bad role")).param == "messages"
    assert api_error_of(EngineError("boom")).status == 500
    assert json.loads(busy.body()) == {
        "error": {"message": "full", "type": "server_error", "param": None, "code": "server_busy"}
    }


@pytest.mark.anyio
async def test_batches_merge_into_few_chunks_and_an_error_comes_after_the_events_before_it() -> None:
    async with Genius(engine=Pinky(delay=0, reply_tokens=50)) as g:
        stream = g.chat(USER)
        encoder = ChunkEncoder("pinky", include_usage=False)
        out = b""
        while events := await stream.batch():
            out += encoder.deltas(events)
            if events[-1].kind == "complete":
                out += encoder.finish(events[-1])
        chunks = [json.loads(line[6:]) for line in out.decode().split("\n\n") if line.startswith("data: {")]
        content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks if c["choices"])
        assert content == " ".join(["Narf!"] * 50) and reasoning == "Narf! Poit!"
        assert len(chunks) < 20, "ready events leave together"
        assert stream.finished and await stream.batch() == []

    async with Genius(engine=Pinky(delay=0, fail_after=6, think=False)) as g:
        stream = g.chat(USER)
        seen: list[str | None] = []
        with pytest.raises(EngineError, match="injected failure"):
            while events := await stream.batch():
                seen.extend(e.text for e in events if e.kind == "content")
        assert len(seen) == 6


def test_add_command_wires_serve_into_a_command_line() -> None:
    import argparse

    from rusty_genius.ogenius.serve import add_command
    from rusty_genius.ogenius.serve.cli import run, settings_of

    parser = argparse.ArgumentParser(prog="ogenius")
    add_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve", "--engine", "pinky", "--addr", "0.0.0.0:9", "--api-key", "k", "--no-unload"])
    assert args.run is run and args.no_unload and args.unload_after == 300.0
    settings = settings_of(args)
    assert settings.addr == Address("0.0.0.0", 9) and settings.ws_addr == Address("127.0.0.1", 8081)
    settings.check()
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--unload-after", "-1"])


@pytest.mark.anyio
async def test_the_guard_refuses_a_header_sent_twice() -> None:
    from typing import Any

    from rusty_genius.ogenius.serve.security import Guard

    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app must not be reached")

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(message)

    guard = Guard(app, Policy(ServeSettings()), 1024)
    headers = [(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1:8080"), (b"origin", b"https://evil.example")]
    await guard({"type": "http", "path": "/health", "method": "GET", "headers": headers}, receive, send)
    assert sent[0]["status"] == 400


def test_the_served_model_answers_to_its_name_with_or_without_its_quant() -> None:
    from rusty_genius import Brain
    from rusty_genius.ogenius.serve.models import ModelTable, Served
    from rusty_genius.ogenius.serve.service import Service

    table = ModelTable([Served("smollm2-135m:Q4_1", Brain(model_path="unused.gguf"))], registry=False)
    service = Service(Genius(engine=Pinky()), table, InferenceConfig(), ServeSettings())
    for name in (None, "", "smollm2-135m:Q4_1", "SmolLM2-135M", "smollm2-135m"):
        service.served(name)
    with pytest.raises(ApiError) as err:
        service.served("smollm2-135m:Q8_0")
    assert err.value.status == 404
