"""``ogenius serve`` against hostile or careless input (issue 19): deeply nested JSON on every route and on both
WebSocket protocols, frames before the key, lone surrogates and huge numbers, the context-overflow numbers. Each
case asserts the status and body shape, that the socket stays usable, that the server still answers ``/health``,
and that its log holds no traceback. The field-by-field sweep and the property run are in test_serve_hostile_fuzz.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets
from rusty_genius import ContextOverflowError
from rusty_genius.ogenius.serve import anthropic_api, responses_ws, ws
from rusty_genius.ogenius.serve.openai_api import api_error_of
from rusty_genius.ogenius.serve.request_json import MAX_DEPTH, parse_json, too_deep
from websockets.asyncio.client import ClientConnection

from tests.servers import LiveServer, live_server

pytestmark = [pytest.mark.pinky, pytest.mark.anyio]

KEY = "sk-hostile-test"
USER = [{"role": "user", "content": "hi"}]
DEEP = "[" * 1000 + "]" * 1000  # about 2 KB
ROUTES: dict[str, dict[str, Any]] = {  # route: a valid body for it (a key "x" holds the deep value)
    "/v1/chat/completions": {"messages": USER, "max_tokens": 2},
    "/v1/messages": {"messages": USER, "max_tokens": 2},
    "/v1/messages/count_tokens": {"messages": USER},
    "/v1/responses": {"input": "hi", "max_output_tokens": 2},
    "/v1/completions": {"prompt": "hi", "max_tokens": 2},
    "/v1/embeddings": {"input": "hi"},
    "/tokenize": {"content": "hi"},
    "/apply-template": {"messages": USER},
}


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with live_server("--engine", "pinky", "--pinky-delay", "0.01", "--pinky-tokens", "6") as live:
        yield live


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http, timeout=10) as client:
        yield client


def healthy(server: LiveServer) -> None:
    """The server still answers, and nothing it logged was a traceback."""
    assert httpx.get(server.http + "/health", timeout=5).json()["status"] == "ok"
    assert server.proc.poll() is None
    assert "Traceback" not in server.log()


def with_raw(body: dict[str, Any], field: str, raw: str) -> bytes:
    """``body`` with ``field`` set to ``raw`` JSON text (which json.dumps would not write: NaN, 1e999, "\\ud800")."""
    return json.dumps({**body, field: "@raw@"}).replace('"@raw@"', raw).encode()


def with_deep(body: dict[str, Any], deep: str) -> bytes:
    return with_raw(body, "x", deep)


def test_deep_json_is_a_400_in_each_api_shape_and_the_limit_itself_passes(
    server: LiveServer, http: httpx.Client
) -> None:
    at_limit = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)  # inside the body's own object: MAX_DEPTH levels
    over = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    for route, body in ROUTES.items():
        for deep in (DEEP, over):
            answer = http.post(route, content=with_deep(body, deep), headers={"content-type": "application/json"})
            assert answer.status_code == 400, (route, answer.text)
            message = f"the request body nests arrays and objects deeper than {MAX_DEPTH} levels"
            if route.startswith("/v1/messages"):
                assert answer.json() == {
                    "type": "error",
                    "error": {"type": "invalid_request_error", "message": message},
                }
            else:
                assert answer.json()["error"] == {"message": message, "type": "invalid_request_error", "param": None,
                                                  "code": None}  # fmt: skip
        accepted = http.post(route, content=with_deep(body, at_limit), headers={"content-type": "application/json"})
        assert accepted.status_code == 200, (route, accepted.text)
    healthy(server)


def test_the_depth_scan_skips_strings_and_leaves_unpaired_brackets_to_the_parser() -> None:
    assert not too_deep(json.dumps({"a": "[" * 5000}), MAX_DEPTH)
    assert too_deep('{"a": "\\"", "b": ' + DEEP + "}", MAX_DEPTH)
    assert not too_deep("[" * 5000, MAX_DEPTH)  # never closed: json.loads refuses it (RecursionError caught)
    for text in ("[" * 5000, "{" * 100, '{"a": [}'):
        with pytest.raises(Exception, match=r"not valid JSON|deeper than") as refused:
            parse_json(text)
        assert getattr(refused.value, "status", None) == 400
    with pytest.raises(Exception, match="not valid UTF-8"):
        parse_json(b'{"a": "\xed\xa0\x80"}')  # a surrogate as raw bytes: not UTF-8


def chain(links: int) -> dict[str, Any]:
    """A flat schema whose ``$defs`` refer to one another ``links`` deep: small text, deep to compile."""
    defs: dict[str, Any] = {f"a{i}": {"anyOf": [{"$ref": f"#/$defs/a{i + 1}"}]} for i in range(links)}
    return {"$ref": "#/$defs/a0", "$defs": {**defs, f"a{links}": {"type": "string"}}}


def test_what_passes_the_depth_limit_cannot_recurse_deeply_downstream(server: LiveServer, http: httpx.Client) -> None:
    """A grammar string or a chain of schema references nests without nesting the JSON: the engine refuses them
    before llama.cpp or llguidance recurse through them (each crashed the process with a few thousand levels)."""
    fmt = {"type": "json_schema", "json_schema": {"name": "deep", "schema": chain(3000)}}
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", **chain(3000)}}}
    refused = {
        "response_format.json_schema.schema": {"messages": USER, "response_format": fmt},
        "tools[0].function.parameters": {"messages": USER, "tools": [tool]},
        "grammar": {"messages": USER, "grammar": "root ::= " + "(" * 8000 + '"a"' + ")" * 8000},
    }
    for param, body in refused.items():
        answer = http.post("/v1/chat/completions", json=body)
        assert answer.status_code == 400 and answer.json()["error"]["param"] == param, answer.text
        assert "deeper than 128" in answer.json()["error"]["message"] or "at most 128 deep" in answer.text
    tree = {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#"}}}}  # recursion is fine
    fine = {"type": "json_schema", "json_schema": {"name": "tree", "schema": tree}}
    assert http.post("/v1/chat/completions", json={"messages": USER, "response_format": fine}).status_code == 200
    assert http.post("/v1/chat/completions", json={"messages": USER, "response_format": {**fmt, "json_schema": {
        "name": "ok", "schema": chain(30)}}}).status_code == 200  # fmt: skip
    healthy(server)


async def frame(socket: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), timeout))
    return data


async def until(socket: ClientConnection, done: Any) -> dict[str, Any]:
    """Frames up to the first for which ``done(frame)`` holds (frames of other conversations are dropped)."""
    while not done(f := await frame(socket)):
        pass
    return f


async def test_bad_frames_get_error_frames_and_leave_the_socket_and_its_conversations_alone(
    server: LiveServer,
) -> None:
    bad = {
        '{"x": ' + DEEP + "}": ("invalid_json", None, f"deeper than {MAX_DEPTH} levels"),
        "{nope": ("invalid_json", None, "not valid JSON"),
        '{"type": "chat", "id": "s", "messages": [{"role": "user", "content": "\\ud800"}]}': (
            None, "s", "messages[0].content holds a lone surrogate (U+D800); send valid Unicode text"),
        '{"type": {"a": [1]}}': ("invalid_frame", None, 'unknown frame type {"a": [1]}'),
        '{"type": "chat", "id": "t", "messages": "hi", "seed": 1e999}': (None, "t", "'messages' must be"),
        "[1]": ("invalid_frame", None, "a frame must be a JSON object"),
    }  # fmt: skip
    async with websockets.connect(server.ws) as socket:
        await frame(socket)  # hello
        await socket.send(json.dumps({"type": "chat", "id": "long", "messages": USER, "max_tokens": 40}))
        for text, (code, ref, message) in bad.items():
            await socket.send(text)
            error = await until(socket, lambda f: f["type"] == "error")
            assert error["id"] == ref and error["error"]["code"] == code and message in error["error"]["message"]
            assert error["error"]["status"] == 400
        await socket.send(json.dumps({"type": "chat", "id": "after", "messages": USER, "max_tokens": 3}))
        ended = {(await until(socket, lambda f: f["type"] in ("done", "error")))["id"] for _ in range(2)}
        assert ended == {"long", "after"}  # the conversation running across the bad frames finished too
    async with websockets.connect(server.ws + responses_ws.PATH) as socket:
        await socket.send('{"type": "response.create", "x": ' + DEEP + "}")
        error = await frame(socket)
        assert error["type"] == "error" and error["status"] == 400 and error["error"]["code"] == "invalid_json"
        await socket.send('{"type": "response.create", "stream_id": "a", "input": "\\udfff"}')
        error = await frame(socket)
        assert error["stream_id"] == "a" and error["error"]["param"] == "input"
        assert error["error"]["message"] == "input holds a lone surrogate (U+DFFF); send valid Unicode text"
        await socket.send(json.dumps({"type": "response.create", "input": "hi", "max_output_tokens": 3}))
        assert (await until(socket, lambda e: e["type"].startswith("response.") and "response" in e and
                            e["response"]["status"] != "in_progress"))["type"] == "response.incomplete"  # fmt: skip
    healthy(server)


@pytest.fixture(scope="module")
def keyed() -> Iterator[LiveServer]:
    with live_server("--engine", "pinky", "--pinky-delay", "0", "--pinky-tokens", "3", "--api-key", KEY) as live:
        yield live


async def test_a_socket_without_the_key_has_nothing_but_a_small_auth_frame_parsed(keyed: LiveServer) -> None:
    for path, ref in (("/", "id"), (responses_ws.PATH, "stream_id")):
        async with websockets.connect(keyed.ws + path) as socket:
            if path == "/":
                assert (await frame(socket))["auth"] == "required"
            # Too deep, too long, not JSON, or any other frame: the same refusal, the socket stays open.
            for text in ('{"x": ' + DEEP + "}", json.dumps({"type": "auth", "api_key": "k" * 5000}), "{nope",
                         json.dumps({"type": "chat", ref: "q", "messages": USER}), '{"a": {"b": [1]}}'):  # fmt: skip
                await socket.send(text)
                error = (await frame(socket))["error"]
                assert error["code"] == "invalid_api_key" and error["message"].startswith('send {"type": "auth"')
            await socket.send(json.dumps({"type": "auth", "api_key": KEY}))
            assert await frame(socket) == {"type": "auth", "auth": "ok"}
            # Authenticated, a frame is read in full again.
            await socket.send('{"x": ' + "[" * 10 + "]" * 10 + "}")
            assert (await frame(socket))["error"]["code"] in ("invalid_frame", "invalid_event")
    healthy(keyed)


@pytest.mark.parametrize(
    ("route", "field", "raw", "message"),
    [
        ("/v1/chat/completions", "seed", str(10**30),
         "'seed' must be an integer from 0 to 4294967295 (got 1000000000000000000000000000000)"),
        ("/v1/chat/completions", "stop", '["a", "\\ud800"]', "stop[1] holds a lone surrogate (U+D800); send valid "
         "Unicode text"),
        ("/v1/chat/completions", "messages", '[{"role": "user", "content": "\\ud800"}]',
         "messages[0].content holds a lone surrogate (U+D800); send valid Unicode text"),
        ("/v1/chat/completions", "temperature", "NaN", "'temperature' must be a number between 0 and 100 (got NaN)"),
        ("/v1/chat/completions", "max_completion_tokens", "1e999",
         "'max_completion_tokens' must be an integer from 1 to 4294967295 (got Infinity)"),
        ("/v1/messages", "top_k", str(2**64),
         "'top_k' must be an integer from 0 to 4294967295 (got 18446744073709551616)"),
        ("/v1/responses", "max_output_tokens", "0",
         "'max_output_tokens' must be an integer from 1 to 4294967295 (got 0)"),
        ("/v1/completions", "prompt", '"\\udbff"', "prompt holds a lone surrogate (U+DBFF); send valid Unicode text"),
        ("/v1/embeddings", "dimensions", str(10**30), "'dimensions' must be an integer from 1 to 4294967295"),
        ("/tokenize", "content", '"a\\ud800b"', "content holds a lone surrogate (U+D800); send valid Unicode text"),
    ],
)  # fmt: skip
def test_the_issues_examples_say_which_field_what_is_wrong_and_what_is_accepted(
    http: httpx.Client, route: str, field: str, raw: str, message: str
) -> None:
    answer = http.post(route, content=with_raw(ROUTES[route], field, raw))
    assert answer.status_code == 400, answer.text
    if route.startswith("/v1/messages"):
        assert answer.json()["error"]["message"] == message
    else:
        error = answer.json()["error"]
        assert error["message"] == message and error["param"] == message.split(" ")[0].strip("'")


def test_a_context_overflow_carries_its_numbers_in_every_error_shape() -> None:
    err = ContextOverflowError("the prompt is 100 tokens but the context holds 64")
    assert err.prompt_tokens is None and err.context_size is None  # raised by hand: no numbers
    assert api_error_of(err).to_dict()["code"] == "context_length_exceeded"
    assert "n_ctx" not in api_error_of(err).to_dict()
    err.prompt_tokens, err.context_size = 100, 64  # as the engine sets them
    error = api_error_of(err, {})
    sizes = {"n_prompt_tokens": 100, "n_ctx": 64}
    assert error.status == 400 and error.to_dict() == {
        "message": str(err),
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
        **sizes,
    }
    assert json.loads(error.body())["error"]["n_ctx"] == 64
    status, body = anthropic_api.error_of(error)
    message = f"messages: {err}"  # Anthropic's errors have no param: the message names it
    assert status == 400 and json.loads(body)["error"] == {"type": "invalid_request_error", "message": message, **sizes}
    assert json.loads(ws.error_frame(error, "q"))["error"]["n_prompt_tokens"] == 100
    assert json.loads(responses_ws.error_event(error))["error"]["n_ctx"] == 64
