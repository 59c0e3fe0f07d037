"""Tools, tool_choice, response_format and the reasoning controls of ``/v1/chat/completions``, with the official openai
client unchanged against a live ``ogenius serve`` on Pinky (whose script holds a Hermes ``<tool_call>`` or JSON
text), the 400s of bad tool input, and the WebSocket's tool-call frames."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pydantic
import pytest
import websockets

from tests.servers import LiveServer, live_server

pytestmark = pytest.mark.pinky

USER: Any = [{"role": "user", "content": "What's the weather in Paris?"}]
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city now.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CALL = ["<think>", "The user wants", " the weather.", "</think>", "<tool_call>\n", '{"name": "get_weather", ',
        '"arguments": {"city": ', '"Paris"}}', "\n</tool_call>"]  # fmt: skip
REPORT = ['{"city": ', '"Paris", ', '"temperature_c": 21}']


@pytest.fixture(scope="module")
def calls() -> Iterator[LiveServer]:
    """A server whose every answer is a thought, then one call to get_weather."""
    with live_server("--engine", "pinky", "--pinky-delay", "0", "--pinky-script", json.dumps(CALL)) as live:
        yield live


@pytest.fixture(scope="module")
def reports() -> Iterator[LiveServer]:
    """A server whose every answer is a JSON weather report."""
    with live_server("--engine", "pinky", "--pinky-delay", "0", "--pinky-script", json.dumps(REPORT)) as live:
        yield live


def client_of(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def tool_calls_of(answer: Any) -> list[Any]:
    calls: list[Any] = answer.choices[0].message.tool_calls or []
    return calls


def test_a_tool_call_comes_back_in_message_tool_calls_with_finish_reason_tool_calls(calls: LiveServer) -> None:
    with client_of(calls) as client:
        answer = client.chat.completions.create(model="pinky", messages=USER, tools=[WEATHER])
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert getattr(choice.message, "reasoning_content") == "The user wants the weather."  # noqa: B009
    [call] = tool_calls_of(answer)
    assert call.type == "function" and call.id
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


def test_streamed_tool_call_deltas_concatenate_to_the_non_streamed_arguments(calls: LiveServer) -> None:
    with client_of(calls) as client:
        whole = client.chat.completions.create(model="pinky", messages=USER, tools=[WEATHER], tool_choice="auto")
        stream = client.chat.completions.create(
            model="pinky", messages=USER, tools=[WEATHER], stream=True, parallel_tool_calls=False
        )
        firsts: list[Any] = []
        pieces: list[str] = []
        content: list[str] = []
        finish: list[str] = []
        for chunk in stream:
            for choice in chunk.choices:
                content.append(choice.delta.content or "")
                for delta in choice.delta.tool_calls or []:
                    assert delta.index == 0
                    if delta.id is not None:
                        firsts.append(delta)
                    pieces.append((delta.function and delta.function.arguments) or "")
                if choice.finish_reason:
                    finish.append(choice.finish_reason)
    [first] = firsts
    assert first.type == "function" and first.function is not None and first.function.name == "get_weather"
    assert first.function.arguments == ""
    [call] = tool_calls_of(whole)
    assert "".join(pieces) == call.function.arguments
    assert "".join(content) == "" and finish == ["tool_calls"]


def test_a_forced_function_and_the_reasoning_controls_are_accepted(calls: LiveServer) -> None:
    with client_of(calls) as client:
        answer = client.chat.completions.create(
            model="pinky",
            messages=USER,
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            reasoning_effort="high",
            extra_body={"chat_template_kwargs": {"enable_thinking": True}, "thinking_budget_tokens": 64},
        )
    assert answer.choices[0].finish_reason == "tool_calls"


def test_without_tools_the_call_syntax_is_plain_content(calls: LiveServer) -> None:
    with client_of(calls) as client:
        answer = client.chat.completions.create(model="pinky", messages=USER)
    assert answer.choices[0].finish_reason == "stop" and "<tool_call>" in (answer.choices[0].message.content or "")


def test_a_second_turn_with_the_call_and_its_result_gets_an_answer(calls: LiveServer, reports: LiveServer) -> None:
    with client_of(calls) as client:
        first = client.chat.completions.create(model="pinky", messages=USER, tools=[WEATHER])
    [call] = tool_calls_of(first)
    turn: Any = [
        *USER,
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "The user wants the weather.",
            "tool_calls": [call.model_dump(exclude_none=True)],
        },
        {"role": "tool", "tool_call_id": call.id, "content": [{"type": "text", "text": '{"temperature_c": 21}'}]},
    ]
    with client_of(reports) as client:
        second = client.chat.completions.create(model="pinky", messages=turn, tools=[WEATHER])
    assert second.choices[0].finish_reason == "stop"
    assert json.loads(second.choices[0].message.content or "") == {"city": "Paris", "temperature_c": 21}


def test_response_format_json_schema_is_accepted_and_the_content_is_json(reports: LiveServer) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "temperature_c": {"type": "integer"}},
        "required": ["city", "temperature_c"],
        "additionalProperties": False,
    }
    with client_of(reports) as client:
        formats: list[Any] = [
            {"type": "json_schema", "json_schema": {"name": "report", "schema": schema, "strict": True}},
            {"type": "json_object"},
        ]
        for fmt in formats:
            answer = client.chat.completions.create(model="pinky", messages=USER, response_format=fmt)
            assert json.loads(answer.choices[0].message.content or "")["city"] == "Paris"


class Report(pydantic.BaseModel):
    city: str
    temperature_c: int


def test_the_client_s_parse_with_a_pydantic_model(reports: LiveServer) -> None:
    with client_of(reports) as client:
        answer = client.chat.completions.parse(model="pinky", messages=USER, response_format=Report)
    assert answer.choices[0].message.parsed == Report(city="Paris", temperature_c=21)


def _tool(**function: Any) -> dict[str, Any]:
    return {"type": "function", "function": function}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": {"name": "f"}}, "tools"),
        ({"tools": ["f"]}, "tools[0]"),
        ({"tools": [{"type": "code_interpreter"}]}, "tools[0].type"),
        ({"tools": [{"type": "function"}]}, "tools[0].function"),
        ({"tools": [WEATHER, _tool(description="no name")]}, "tools[1].function.name"),
        ({"tools": [_tool(name="get weather!")]}, "tools[0].function.name"),
        ({"tools": [_tool(name="f", parameters={"type": "string"})]}, "tools[0].function.parameters"),
        ({"tools": [_tool(name="f", parameters=[1])]}, "tools[0].function.parameters"),
        ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "f"}}},
         "tool_choice.function.name"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [WEATHER], "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "r"}}},
         "response_format.json_schema.schema"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"response_format": "json"}, "response_format"),
        ({"reasoning_effort": 3}, "reasoning_effort"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"chat_template_kwargs": {"enable_thinking": "no"}}, "chat_template_kwargs.enable_thinking"),
        ({"thinking_budget_tokens": -5}, "thinking_budget_tokens"),
        ({"thinking_budget_tokens": 1.5}, "thinking_budget_tokens"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logit_bias": {"42": "5"}}, "logit_bias"),
        ({"messages": [*USER, {"role": "tool", "content": "21"}]}, "messages[1].tool_call_id"),
        ({"messages": [*USER, {"role": "assistant", "tool_calls": [{"id": "c", "function": {}}]}]},
         "messages[1].tool_calls[0].function.name"),
        ({"messages": [*USER, {"role": "assistant", "tool_calls": {"id": "c"}}]}, "messages[1].tool_calls"),
    ],
)  # fmt: skip
def test_bad_tool_input_is_400_naming_the_path(calls: LiveServer, extra: dict[str, Any], param: str) -> None:
    with httpx.Client(base_url=calls.http, timeout=10) as http:
        response = http.post("/v1/chat/completions", json={"messages": USER, **extra})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == param, error
        if "." in param or "[" in param:
            assert param in error["message"], error
        assert http.get("/health").json()["status"] == "ok"


def test_a_schema_the_engine_cannot_enforce_is_400_not_500(calls: LiveServer) -> None:
    bad = _tool(name="f", parameters={"type": "object", "properties": {"x": {"type": "string", "pattern": "(?<=a)b"}}})
    with httpx.Client(base_url=calls.http, timeout=10) as http:
        response = http.post("/v1/chat/completions", json={"messages": USER, "tools": [bad]})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"].startswith("tools"), response.text


@pytest.mark.anyio
async def test_websocket_tool_call_frames(calls: LiveServer) -> None:
    async with websockets.connect(calls.ws) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"
        await ws.send(json.dumps({"type": "chat", "id": "w", "messages": USER, "tools": [WEATHER]}))
        frames: list[dict[str, Any]] = []
        while not frames or frames[-1]["type"] not in ("done", "error"):
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
    kinds = [f["type"] for f in frames]
    assert "content" not in kinds and kinds[-1] == "done", frames
    start = next(f for f in frames if f["type"] == "tool_call")
    assert start["index"] == 0 and start["name"] == "get_weather" and start["call_id"] and start["id"] == "w"
    arguments = "".join(f["delta"] for f in frames if f["type"] == "tool_call_delta")
    assert json.loads(arguments) == {"city": "Paris"}
    assert kinds.index("tool_call") < kinds.index("tool_call_delta") < kinds.index("tool_call_end")
    assert frames[-1]["finish_reason"] == "tool_calls"
    assert "".join(f["delta"] for f in frames if f["type"] == "thinking") == "The user wants the weather."
