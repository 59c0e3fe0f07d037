"""Tool calls, structured outputs and reasoning controls on the real engine (SmolLM2-135M and two variants of it).

SmolLM2's own template is plain ChatML, without tools: the engine describes the tools in a system message and the
constraint (``tool_choice`` required or named, ``response_format``) makes even a 135M model answer in shape. The
variants (see :mod:`tests.ggufvariants`) swap in Qwen2.5-Instruct's real template, which renders the tools itself
inside ``<tools>``, and a ChatML template whose generation prompt pre-opens ``<think>``, for the thinking budget.
Every request is greedy and short; each model is loaded once per module.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from rusty_genius import Brain, Event, Genius, InferenceConfig, Tool

from tests.conftest import smollm2_path
from tests.ggufvariants import VARIANTS, chat_template, qwen25_template, think_prefilled, variant

pytestmark = pytest.mark.real_engine

WEATHER = Tool(
    name="get_weather",
    description="The current weather in a city.",
    parameters={
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "The city's name"},
            "unit": {"type": "string", "enum": ["c", "f"]},
        },
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
)
TIME = Tool(
    name="get_time",
    description="The current time in a timezone.",
    parameters={
        "type": "object",
        "properties": {"timezone": {"type": "string", "description": "An IANA timezone, e.g. Europe/Paris"}},
        "required": ["timezone"],
        "additionalProperties": False,
    },
)
ASK_WEATHER = [{"role": "user", "content": "What is the weather like in Paris today?"}]
PROFILE = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "address": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 24},
                "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
            },
            "required": ["city", "zip"],
            "additionalProperties": False,
        },
        "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b", "c"]}, "minItems": 1, "maxItems": 3},
        "rating": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["name", "address", "tags", "rating"],
    "additionalProperties": False,
}
ASK_PROFILE = [{"role": "user", "content": "Make up a customer profile for a bakery in Lyon, as JSON."}]
COLOR = {
    "type": "object",
    "properties": {"color": {"type": "string", "enum": ["red", "green", "blue"]}},
    "required": ["color"],
    "additionalProperties": False,
}
ASK_COLOR = [{"role": "user", "content": "What color is the sky on a clear day?"}]
GREEDY: dict[str, Any] = {"temperature": 0, "seed": 7}
# The tokens the engine feeds to close a thought over its budget ("\n</think>\n\n"), with slack for how they split.
CLOSE_SLACK = 4


def open_genius(path: Path) -> Genius:
    # No KV store: a conversation an earlier test saved would be restored into these prompts, and a cache computed in
    # other batches can flip a near tie in the greedy answers asserted here (README, continuous batching).
    return Genius(engine=Brain(model_path=path, threads=2, context_size=2048, kv_store=False))


@pytest.fixture(scope="module")
def smol() -> Iterator[Genius]:
    with open_genius(smollm2_path()) as g:
        yield g


@pytest.fixture(scope="module")
def qwen_templated() -> Iterator[Genius]:
    """SmolLM2 with Qwen2.5-Instruct's chat template (tools rendered by the template in ``<tools>``)."""
    with open_genius(variant(smollm2_path(), VARIANTS, qwen25_template())) as g:
        yield g


@pytest.fixture(scope="module")
def thinking() -> Iterator[Genius]:
    """SmolLM2 with its ChatML template, the generation prompt ending in ``<think>\\n``."""
    src = smollm2_path()
    with open_genius(variant(src, VARIANTS, think_prefilled(chat_template(src)))) as g:
        yield g


def run(g: Genius, messages: list[dict[str, Any]], **request: Any) -> list[Event]:
    return list(g.chat(messages, **GREEDY, **request))


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]


def text_of(events: list[Event], kind: str) -> str:
    return "".join(e.text or "" for e in events if e.kind == kind)


def done(events: list[Event]) -> Event:
    assert events and events[-1].kind == "complete", kinds(events)
    return events[-1]


def prompt_tokens(events: list[Event]) -> int:
    usage = done(events).usage
    assert usage is not None
    return usage.prompt_tokens


def completion_tokens(events: list[Event]) -> int:
    usage = done(events).usage
    assert usage is not None
    return usage.completion_tokens


def calls_of(events: list[Event]) -> list[tuple[str, str, str]]:
    """``(id, name, arguments)`` per call, checking the events' shape on the way: each call is one start (with an id
    and a name), its deltas, then one stop, all under its index; calls numbered from 0 in order."""
    calls: list[tuple[str, str, list[str]]] = []
    open_index: int | None = None
    for e in events:
        if e.kind == "tool_call_start":
            assert open_index is None, f"call {e.index} starts inside call {open_index}: {kinds(events)}"
            assert e.index == len(calls), (e.index, len(calls))
            assert e.id and e.name, (e.id, e.name)
            calls.append((e.id, e.name, []))
            open_index = e.index
        elif e.kind == "tool_call_delta":
            assert open_index is not None and e.index == open_index, (e.index, open_index)
            calls[open_index][2].append(e.text or "")
        elif e.kind == "tool_call_stop":
            assert open_index is not None and e.index == open_index, (e.index, open_index)
            open_index = None
    assert open_index is None, f"call {open_index} never stopped"
    assert len({i for i, _n, _p in calls}) == len(calls), "two calls share an id"
    return [(i, n, "".join(parts)) for i, n, parts in calls]


def assert_valid_call(call: tuple[str, str, str], tool: Tool) -> dict[str, Any]:
    _id, name, arguments = call
    assert name == tool.name
    decoded = json.loads(arguments)
    jsonschema.validate(decoded, dict(tool.parameters))
    assert isinstance(decoded, dict)
    return decoded


def assert_one_call(events: list[Event], tool: Tool) -> dict[str, Any]:
    """The events are one valid call to ``tool`` and nothing else: no call syntax left in the content."""
    calls = calls_of(events)
    assert len(calls) == 1, calls
    arguments = assert_valid_call(calls[0], tool)
    assert done(events).finish_reason == "tool_calls"
    content = text_of(events, "content")
    assert "<tool_call>" not in content and "</tool_call>" not in content, content
    assert kinds(events)[0] == "process_start"
    return arguments


# -- tool_choice on SmolLM2's own (tool-less) template -----------------------------------------------------------


def test_required_tool_choice_gives_one_call_valid_against_its_schema(smol: Genius) -> None:
    events = run(smol, ASK_WEATHER, tools=[WEATHER], tool_choice="required", parallel_tool_calls=False, max_tokens=96)
    arguments = assert_one_call(events, WEATHER)
    assert arguments["unit"] in ("c", "f") and arguments["city"].strip()


@pytest.mark.anyio
async def test_streamed_call_deltas_concatenate_to_the_complete_answer(smol: Genius) -> None:
    request: dict[str, Any] = {
        "tools": [WEATHER], "tool_choice": "required", "parallel_tool_calls": False, "max_tokens": 96, **GREEDY,
    }  # fmt: skip
    streamed = [ev async for ev in smol.chat(ASK_WEATHER, **request)]
    answer = smol.complete_sync(ASK_WEATHER, **request)
    deltas = [e.text or "" for e in streamed if e.kind == "tool_call_delta"]
    assert len(deltas) > 1, f"the arguments came in one piece, not streamed: {deltas}"
    assert answer.finish_reason == "tool_calls"
    [call] = answer.tool_calls
    assert "".join(deltas) == call.arguments
    [(call_id, name, _)] = calls_of(streamed)
    assert name == call.name == WEATHER.name
    assert call_id and call.id
    jsonschema.validate(call.json(), dict(WEATHER.parameters))


def test_a_named_function_is_the_one_called(smol: Genius) -> None:
    # The question is about the weather; the request names the other function.
    events = run(
        smol, ASK_WEATHER, tools=[WEATHER, TIME], tool_choice="get_time", parallel_tool_calls=False, max_tokens=96
    )
    assert_one_call(events, TIME)
    openai_form = run(
        smol, ASK_WEATHER, tools=[WEATHER, TIME], tool_choice={"type": "function", "function": {"name": "get_time"}},
        parallel_tool_calls=False, max_tokens=96,
    )  # fmt: skip
    same = [(name, arguments) for _id, name, arguments in calls_of(events)]
    assert [(n, a) for _i, n, a in calls_of(openai_form)] == same, "the OpenAI form of a named choice means the same"


def test_parallel_calls_are_numbered_and_each_is_valid(smol: Genius) -> None:
    ask = [{"role": "user", "content": "What are the weather and the time in Paris and in Tokyo?"}]
    events = run(smol, ask, tools=[WEATHER, TIME], tool_choice="required", max_tokens=160)
    assert done(events).finish_reason == "tool_calls", text_of(events, "tool_call_delta")
    calls = calls_of(events)
    assert len(calls) >= 2, calls
    tools = {WEATHER.name: WEATHER, TIME.name: TIME}
    for call in calls:
        assert_valid_call(call, tools[call[1]])
    assert not text_of(events, "content").strip(), text_of(events, "content")


def test_a_second_turn_answers_from_the_tool_result(smol: Genius) -> None:
    first = smol.complete_sync(
        ASK_WEATHER, tools=[WEATHER], tool_choice="required", parallel_tool_calls=False, max_tokens=96, **GREEDY
    )
    [call] = first.tool_calls
    result = {"city": call.json()["city"], "temperature": 18, "unit": call.json()["unit"], "sky": "sunny"}
    messages = [
        *ASK_WEATHER,
        first.message,
        {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": json.dumps(result)},
    ]
    assert messages[1]["tool_calls"][0]["id"] == call.id
    second = run(smol, messages, tools=[WEATHER], tool_choice="none", max_tokens=48)
    assert done(second).finish_reason in ("stop", "length")
    assert text_of(second, "content").strip(), kinds(second)
    assert not calls_of(second)
    assert "18" in text_of(second, "content"), "greedy SmolLM2 repeats the temperature the tool gave"
    # The call and its result are part of the prompt now (JSON takes well under 6 characters a token).
    plain = prompt_tokens(run(smol, ASK_WEATHER, max_tokens=1))
    assert prompt_tokens(second) > plain + (len(call.arguments) + len(json.dumps(result))) // 6


def test_tool_choice_none_answers_in_prose_with_the_tools_hidden(smol: Genius) -> None:
    events = run(smol, ASK_WEATHER, tools=[WEATHER, TIME], tool_choice="none", max_tokens=32)
    assert not [k for k in kinds(events) if k.startswith("tool_call")], kinds(events)
    assert done(events).finish_reason in ("stop", "length")
    assert text_of(events, "content").strip()
    plain = run(smol, ASK_WEATHER, max_tokens=32)
    assert prompt_tokens(events) == prompt_tokens(plain), "tool_choice none does not show the tools"
    assert text_of(events, "content") == text_of(plain, "content")


# -- response formats ---------------------------------------------------------------------------------------------


def test_a_json_schema_answer_parses_and_validates(smol: Genius) -> None:
    response_format = {"type": "json_schema", "json_schema": {"name": "profile", "schema": PROFILE, "strict": True}}
    answer = smol.complete_sync(ASK_PROFILE, response_format=response_format, max_tokens=160, **GREEDY)
    assert answer.finish_reason == "stop", answer.content
    decoded = json.loads(answer.content)
    jsonschema.validate(decoded, PROFILE)
    assert answer.parsed == decoded
    assert not answer.tool_calls


def test_a_json_object_answer_is_an_object(smol: Genius) -> None:
    events = run(smol, ASK_PROFILE, response_format={"type": "json_object"}, max_tokens=160)
    assert done(events).finish_reason == "stop", text_of(events, "content")
    assert isinstance(json.loads(text_of(events, "content")), dict)


# -- a real tool-calling template (Qwen2.5's) ---------------------------------------------------------------------


def qwen_tools_system_prompt(tools: list[Tool]) -> str:
    """What Qwen2.5's template writes in its system turn for ``tools`` (tools as Hugging Face renders ``tojson``:
    ``json.dumps`` with its default separators, keys in order)."""
    listed = "".join("\n" + json.dumps(t.to_openai(), ensure_ascii=False) for t in tools)
    return (
        "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n# Tools\n\nYou may call one or more "
        "functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> "
        f"XML tags:\n<tools>{listed}\n</tools>\n\nFor each function call, return a json object with function name and "
        'arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": '
        "<args-json-object>}\n</tool_call>"
    )


def test_the_qwen_template_renders_the_tools_and_the_call_is_parsed(qwen_templated: Genius) -> None:
    events = run(
        qwen_templated, ASK_WEATHER, tools=[WEATHER], tool_choice="required", parallel_tool_calls=False, max_tokens=96
    )
    assert_one_call(events, WEATHER)

    without = prompt_tokens(run(qwen_templated, ASK_WEATHER, max_tokens=1))
    offered = prompt_tokens(run(qwen_templated, ASK_WEATHER, tools=[WEATHER, TIME], max_tokens=1))
    assert offered > without + 60, (offered, without)
    # The template, not the engine, wrote the tools: the same text given as a system message (which the template
    # writes as it is when there are no tools) is exactly as many tokens.
    by_hand = [{"role": "system", "content": qwen_tools_system_prompt([WEATHER, TIME])}, *ASK_WEATHER]
    assert prompt_tokens(run(qwen_templated, by_hand, max_tokens=1)) == offered


# -- reasoning: a pre-opened thought, its budget, then a constrained answer ---------------------------------------


def think_and_answer(g: Genius, budget: int) -> list[Event]:
    config = InferenceConfig.of(temperature=0, seed=7, max_tokens=budget + 64, thinking_budget=budget)
    return list(g.chat(ASK_COLOR, config, response_format={"type": "json_schema", "json_schema": {"schema": COLOR}}))


def test_a_thinking_budget_closes_the_thought_and_the_answer_follows_the_schema(thinking: Genius) -> None:
    short = think_and_answer(thinking, 8)
    seen = kinds(short)
    assert seen[:2] == ["process_start", "thought_start"], seen
    stop = seen.index("thought_stop")
    assert "thought_delta" in seen[:stop], seen
    assert set(seen[1:stop]) == {"thought_start", "thought_delta"}, seen
    assert set(seen[stop + 1 : -1]) == {"content"}, seen
    assert done(short).finish_reason == "stop"
    thought, content = text_of(short, "thought_delta"), text_of(short, "content")
    assert thought.strip() and "</think>" not in thought and "<think>" not in thought, thought
    assert "think>" not in content, content
    jsonschema.validate(json.loads(content), COLOR)

    # The budget bounds the thought: what a budget adds over none is at most the budget (and the close tag).
    at_once = think_and_answer(thinking, 0)
    jsonschema.validate(json.loads(text_of(at_once, "content")), COLOR)
    assert not text_of(at_once, "thought_delta").strip()
    long = think_and_answer(thinking, 64)
    jsonschema.validate(json.loads(text_of(long, "content")), COLOR)
    base = completion_tokens(at_once)
    assert completion_tokens(short) - base <= 8 + CLOSE_SLACK, (completion_tokens(short), base)
    assert completion_tokens(long) - base <= 64 + CLOSE_SLACK, (completion_tokens(long), base)
    assert len(text_of(long, "thought_delta")) > len(thought), "a larger budget gives a longer thought"

    # The facade's flat settings mean the same, and the Answer keeps the thought apart from the parsed JSON.
    answer = thinking.complete_sync(
        ASK_COLOR, temperature=0, seed=7, max_tokens=72, thinking_budget=8, response_format=COLOR
    )
    assert (answer.thinking, answer.content) == (thought, content)
    assert answer.parsed == json.loads(content)
    assert answer.message["reasoning_content"] == thought


def test_hidden_thinking_still_closes_at_the_budget(thinking: Genius) -> None:
    config = InferenceConfig.of(temperature=0, seed=7, max_tokens=72, thinking_budget=8, show_thinking=False)
    events = list(thinking.chat(ASK_COLOR, config, response_format={"type": "json_object"}))
    assert not [k for k in kinds(events) if k.startswith("thought")], kinds(events)
    assert done(events).finish_reason == "stop"
    assert isinstance(json.loads(text_of(events, "content")), dict)
