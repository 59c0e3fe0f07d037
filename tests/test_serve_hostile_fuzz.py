"""Every request field of every endpoint of ``ogenius serve`` given wrong values, then random JSON bodies (a
bounded, reproducible ``hypothesis`` run): each answer is a 200 or a 4xx that names the field in the client's
terms, never a 500, never Python's own words, and the server (the same process) keeps answering with nothing
logged as a traceback. The targeted cases of issue 19 are in test_serve_hostile.py."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.servers import LiveServer, live_server

pytestmark = pytest.mark.pinky

USER = [{"role": "user", "content": "hi"}]
WRONG = {  # name: raw JSON (json.dumps would not write NaN, 1e999 or a lone surrogate)
    "object": '{"a": [{"b": null}]}',
    "list": '[[1], {"x": 2}]',
    "string": '"seven"',
    "negative": "-1",
    "huge": str(10**30),
    "infinite": "1e999",
    "nan": "NaN",
    "surrogate": '"\\ud800"',
    "bool": "true",
}
LEAKS = re.compile(
    r"Traceback|not accepted \(|NoneType|\b(Overflow|UnicodeEncode|UnicodeDecode|Type|Value|Key|Attribute|Index|"
    r"Recursion|Runtime|Assertion)Error\b|\bNone\b|\bTrue\b|\bFalse\b|\ban? (str|int|float|dict|tuple|bool)\b"
)
"""What a message must not say: Python's exceptions and spellings (the client wrote null, true, a string...)."""

CHAT_FIELDS = {  # field: the WRONG values it accepts (the others must be refused)
    "messages": set(), "messages[0].content": {"string"}, "messages[0].role": set(), "model": set(),
    "temperature": set(), "top_p": set(), "top_k": set(), "min_p": set(), "repeat_penalty": set(),
    "presence_penalty": {"negative"}, "frequency_penalty": {"negative"}, "seed": set(), "max_tokens": set(),
    "max_completion_tokens": set(), "n": set(), "stop": {"string"}, "grammar": {"string"}, "logit_bias": set(),
    "stream": {"bool"}, "stream_options": {"object"}, "keep_alive": {"negative", "huge"}, "logprobs": {"bool"},
    "top_logprobs": set(), "tools": set(), "tool_choice": set(), "parallel_tool_calls": {"bool"},
    "response_format": set(), "reasoning_effort": set(), "include_reasoning": {"bool"},
    "chat_template_kwargs": {"object"}, "enable_thinking": {"bool"}, "thinking_budget": {"negative"},
    "thinking_budget_tokens": {"negative"},
}  # fmt: skip
ENDPOINTS: dict[str, tuple[dict[str, Any], dict[str, set[str]]]] = {
    "/v1/chat/completions": ({"messages": USER, "max_tokens": 2}, CHAT_FIELDS),
    "/v1/messages": ({"messages": USER, "max_tokens": 2}, {
        "messages": set(), "messages[0].content": {"string"}, "messages[0].role": set(), "model": set(),
        "max_tokens": set(), "temperature": set(), "top_p": set(), "top_k": set(), "stop_sequences": set(),
        "stream": {"bool"}, "system": {"string"}, "tools": set(), "tool_choice": set(), "thinking": set(),
        "keep_alive": {"negative", "huge"},
    }),
    "/v1/responses": ({"input": "hi", "max_output_tokens": 2}, {
        "input": {"string"}, "instructions": {"string"}, "max_output_tokens": set(), "temperature": set(),
        "top_p": set(), "tools": set(), "tool_choice": set(), "text": {"object"}, "reasoning": {"object"},
        "store": {"bool"},
        "previous_response_id": set(), "metadata": set(), "parallel_tool_calls": {"bool"}, "stream": {"bool"},
        "truncation": set(), "background": set(), "model": set(), "seed": set(), "top_k": set(), "stop": {"string"},
        "user": {"string"},
    }),
    "/v1/completions": ({"prompt": "hi", "max_tokens": 2}, {
        "prompt": {"string"}, "suffix": set(), "echo": {"bool"}, "logprobs": set(), "best_of": set(), "n": set(),
        "max_tokens": set(), "temperature": set(), "stop": {"string"}, "json_schema": {"object"}, "seed": set(),
        "user": {"string"}, "model": set(), "logit_bias": set(),
    }),
    "/v1/embeddings": ({"input": "hi"}, {
        "input": {"string"}, "dimensions": set(), "encoding_format": set(), "user": {"string"},
        "keep_alive": {"negative", "huge"}, "model": set(),
    }),
    "/tokenize": ({"content": "hi"}, {
        "content": {"string"}, "add_special": {"bool"}, "parse_special": {"bool"}, "with_pieces": {"bool"},
    }),
    "/detokenize": ({"tokens": [104, 105]}, {"tokens": set()}),
}  # fmt: skip


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with live_server("--engine", "pinky", "--pinky-delay", "0", "--pinky-tokens", "4") as live:
        yield live


@pytest.fixture(scope="module")
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http, timeout=10) as client:
        yield client


def body_with(base: dict[str, Any], field: str, raw: str) -> bytes:
    """``base`` with ``field`` (``a``, ``a[0].b``) set to ``raw`` JSON text."""
    body = json.loads(json.dumps(base))
    *path, last = re.findall(r"[^.\[\]]+", field)
    place: Any = body
    for step in path:
        place = place[int(step)] if step.isdigit() else place[step]
    place[int(last) if last.isdigit() else last] = "@raw@"
    return json.dumps(body).replace('"@raw@"', raw).encode()


def error_text(route: str, answer: httpx.Response) -> tuple[str, str]:
    """The message and the field an error names (Anthropic's shape has no param: the message names it)."""
    body = answer.json()
    if route.startswith("/v1/messages"):
        assert body["type"] == "error" and set(body["error"]) >= {"type", "message"}, body
        return body["error"]["message"], ""
    assert set(body["error"]) >= {"message", "type", "param", "code"}, body
    return body["error"]["message"], body["error"]["param"] or ""


@pytest.mark.parametrize("route", list(ENDPOINTS))
def test_every_field_refuses_wrong_values_by_name_and_in_the_clients_terms(
    server: LiveServer, http: httpx.Client, route: str
) -> None:
    base, fields = ENDPOINTS[route]
    for field, accepted in fields.items():
        name = re.findall(r"[A-Za-z_]+", field)[-1]  # the field's own name: "content" of messages[0].content
        for kind, raw in WRONG.items():
            answer = http.post(route, content=body_with(base, field, raw))
            if kind in accepted:
                assert answer.status_code == 200, (field, kind, answer.text)
                continue
            assert 400 <= answer.status_code < 500, (field, kind, answer.text)
            message, param = error_text(route, answer)
            assert name in param or name in message, (field, kind, message, param)
            assert not LEAKS.search(message), (field, kind, message)
    assert server.proc.poll() is None and "Traceback" not in server.log()


# -- random bodies ------------------------------------------------------------------------------------------------

KEYS = sorted({k for _, fields in ENDPOINTS.values() for k in fields if "." not in k} | {"role", "content", "type"})
WORDS = ["user", "assistant", "system", "tool", "function", "text", "input_text", "auto", "required", "none",
         "json_object", "json_schema", "object", "string", "low", "high", "5m", "x", "", "\ud800"]  # fmt: skip
SCALARS = (
    st.none() | st.booleans() | st.integers(-3, 40) | st.integers(-(2**70), 2**70) | st.floats(-3, 3)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6) | st.sampled_from(WORDS)
)  # fmt: skip
NAMES = st.sampled_from(KEYS) | st.text(max_size=4)
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=4), max_leaves=12
)
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(WORDS[:4]) | VALUES},
    optional={"content": st.text(max_size=8) | VALUES, "tool_calls": VALUES, "tool_call_id": VALUES},
)
RANDOM_ROUTES = ["/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1/completions", "/v1/embeddings"]


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, Any]:
    """A route and a body: mostly its valid base with a few fields set to random values (so the checks past the
    first are reached), sometimes random messages, sometimes any JSON at all."""
    route = draw(st.sampled_from(RANDOM_ROUTES))
    base, fields = ENDPOINTS[route]
    shape = draw(st.integers(0, 9))
    if shape == 0:
        return route, draw(VALUES)
    body = dict(base)
    if shape <= 2 and "messages" in body:
        body["messages"] = draw(st.lists(MESSAGE, max_size=3))
    names = st.sampled_from([f for f in fields if "." not in f and "[" not in f]) | NAMES
    body.update(draw(st.dictionaries(names, VALUES, max_size=4)))
    return route, body


@given(request=requests())
@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip
def test_random_bodies_get_a_200_or_a_4xx_and_the_server_goes_on(
    server: LiveServer, http: httpx.Client, request: tuple[str, Any]
) -> None:
    route, body = request
    pid = server.proc.pid
    answer = http.post(route, content=json.dumps(body, allow_nan=True).encode())
    assert answer.status_code == 200 or 400 <= answer.status_code < 500, (route, body, answer.text)
    if answer.status_code != 200:
        message, _ = error_text(route, answer)
        assert not LEAKS.search(message), (route, body, message)
    assert server.proc.poll() is None and server.proc.pid == pid
    assert http.get("/health").status_code == 200
    assert "Traceback" not in server.log(), server.log()[-3000:]
