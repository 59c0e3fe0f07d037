"""Tools, structured outputs and reasoning controls through the facade: the config schema refuses what the engine
cannot enforce (naming the field), OpenAI's forms and pydantic models become one Output, and Pinky's scripted calls
come back as events, as ``Answer.tool_calls`` and, for a JSON format, as ``Answer.parsed``."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from enum import Enum
from typing import Any, Literal

import pydantic
import pytest
from rusty_genius import (
    Answer,
    ConfigError,
    Event,
    Genius,
    InferenceConfig,
    Output,
    Pinky,
    Reasoning,
    RequestError,
    Tool,
    ToolCall,
)
from rusty_genius.core.output import ToolChoiceLike

from tests.conftest import USER

pytestmark = pytest.mark.pinky

WEATHER = Tool(
    name="get_weather",
    description="The weather in a city now.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
OPENAI_WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {"name": "get_weather", "description": "The weather in a city now.", "parameters": WEATHER.parameters},
}
CALL = Pinky.tool_call("get_weather", {"city": "Paris"})


class Weather(pydantic.BaseModel):
    city: str
    temperature: float


class Color(Enum):
    RED = "red"


def get_time(city: str, unit: Literal["h12", "h24"] = "h24", zones: list[str] | None = None) -> str:
    """The local time in a city.

    Longer notes that the model does not need.
    """
    return "12:00"


# -- the schema refuses what the engine cannot enforce, naming the field ------------------------------------------


@pytest.mark.parametrize(
    ("make", "field", "message"),
    [
        (lambda: Output(tools=[Tool(name="get weather")]), "tools", "get weather"),
        (lambda: Output(tools=[Tool(name="x" * 65)]), "tools", "64"),
        (lambda: Output(tools=[Tool(name="")]), "tools", "name"),
        (lambda: Output(tools=[WEATHER, Tool(name="get_weather")]), "tools", "unique"),
        (lambda: Output(tools=[WEATHER], tool_name="get_time"), "tool_choice", "get_time"),
        (lambda: Output(tool_choice="required"), "tool_choice", "at least one tool"),
        (lambda: Output(tools=[WEATHER], tool_choice="sometimes"), "tool_choice", "sometimes"),
        (lambda: Output(response_format="json_schema"), "response_format", "schema"),
        (lambda: Output(response_format="xml"), "response_format", "xml"),
        (lambda: Reasoning(reasoning_effort="extreme"), "reasoning_effort", "low"),
        (lambda: Reasoning(thinking_budget=-1), "thinking_budget", "-1"),
        (lambda: InferenceConfig.of(thinking_budget=-5), "thinking_budget", "-5"),
    ],
    ids=[
        "space-in-name",
        "long-name",
        "empty-name",
        "duplicate-names",
        "choice-names-absent-tool",
        "required-no-tools",
        "unknown-choice",
        "json-schema-without-schema",
        "unknown-format",
        "bad-effort",
        "negative-budget",
        "negative-budget-flat",
    ],
)
def test_the_engine_refuses_with_the_field(make: Any, field: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        make()
    assert err.value.field == field


def test_a_schema_the_engine_cannot_enforce_names_its_exact_path() -> None:
    bad = Tool(name="b", parameters={"type": "object", "properties": {"x": {"type": "no-such-type"}}})
    with pytest.raises(ConfigError) as err:
        Output(tools=[WEATHER, bad])
    assert err.value.field == "tools"
    # The path goes down to the schema of the tool at fault; the cause (from the constraint engine) names the rest.
    assert "tools[1].function.parameters" in str(err.value) and "no-such-type" in str(err.value), str(err.value)


def test_the_facade_refuses_before_queueing(fast_genius_sync: Genius) -> None:
    with pytest.raises(ConfigError) as err:
        fast_genius_sync.chat(USER, tools=[WEATHER], tool_choice="get_time")
    assert err.value.field == "tool_choice"
    with pytest.raises(ConfigError) as err:
        fast_genius_sync.chat(USER, reasoning_effort="maximal")
    assert err.value.field == "reasoning_effort"


# -- OpenAI's forms, functions and pydantic models become one Output (no engine run) ----------------------------


def test_tools_from_openai_dicts_in_both_forms() -> None:
    assert Tool.from_openai(OPENAI_WEATHER) == WEATHER
    assert Tool.from_openai({"type": "function", **OPENAI_WEATHER["function"]}) == WEATHER
    assert Tool.from_openai(OPENAI_WEATHER["function"]) == WEATHER
    bare = Tool.from_openai({"type": "function", "function": {"name": "now"}})
    assert bare.parameters == {"type": "object", "properties": {}} and bare.description is None
    assert WEATHER.to_openai() == OPENAI_WEATHER


@pytest.mark.parametrize(
    ("tool", "message"),
    [
        ("get_weather", "must be an object"),
        ({"type": "web_search"}, "only 'function' tools"),
        ({"type": "function", "function": "get_weather"}, "'function' must be an object"),
        ({"type": "function", "function": {"description": "no name"}}, r"tools\[3\]\.function\.name"),
        ({"type": "function", "function": {"name": "f", "parameters": []}}, r"tools\[3\]\.function\.parameters"),
        ({"description": "neither"}, "needs 'type': 'function'"),
    ],
)
def test_bad_tool_shapes_name_the_tool(tool: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        Tool.from_openai(tool, where="tools[3]")
    assert err.value.field == "tools"


def test_a_plain_function_is_a_tool() -> None:
    tool = Tool.from_function(get_time)
    assert tool.name == "get_time" and tool.description == "The local time in a city."
    assert tool.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"enum": ["h12", "h24"]},
            "zones": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]},
        },
        "required": ["city"],
    }

    def paint(color: Color, weather: Weather, coats: int = 1) -> None: ...

    schema = Tool.from_function(paint).parameters
    assert schema["properties"]["color"] == {"enum": ["red"]}
    assert schema["properties"]["weather"]["properties"]["city"] == {"title": "City", "type": "string"}
    assert schema["properties"]["coats"] == {"type": "integer"} and schema["required"] == ["color", "weather"]


def test_output_updated_reads_every_form() -> None:
    out = Output().updated(tools=[WEATHER, OPENAI_WEATHER["function"] | {"name": "other"}, get_time])
    assert [t.name for t in out.tools] == ["get_weather", "other", "get_time"]
    assert isinstance(out.tools, tuple)
    choices: list[tuple[ToolChoiceLike, tuple[str, str | None]]] = [
        ("auto", ("auto", None)),
        ("none", ("none", None)),
        ("required", ("required", None)),
        ("get_time", ("required", "get_time")),
        ({"type": "function", "function": {"name": "other"}}, ("required", "other")),
        ({"type": "function", "name": "other"}, ("required", "other")),
        (get_time, ("required", "get_time")),
        (WEATHER, ("required", "get_weather")),
    ]
    for choice, expected in choices:
        chosen = out.updated(tool_choice=choice)
        assert (chosen.tool_choice, chosen.tool_name) == expected, choice
    assert Output(tools=[WEATHER], tool_name="get_weather").tool_choice == "required"
    assert out.updated(parallel_tool_calls=False).parallel_tool_calls is False
    assert out.updated() is out


def test_response_formats_in_every_form() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert Output().updated(response_format={"type": "json_object"}).response_format == "json_object"
    assert Output().updated(response_format="json_object").response_format == "json_object"
    openai = Output().updated(
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    )
    assert (openai.response_format, openai.json_schema, openai.schema_name, openai.strict) == (
        "json_schema", schema, "answer", True,
    )  # fmt: skip
    bare = Output().updated(response_format=schema)
    assert (bare.response_format, bare.json_schema, bare.schema_name) == ("json_schema", schema, "response")
    model = Output().updated(response_format=Weather)
    assert model.response_format == "json_schema" and model.schema_name == "Weather"
    assert model.json_schema == Weather.model_json_schema()
    back = model.updated(response_format={"type": "text"})
    assert (back.response_format, back.json_schema) == ("text", None)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (42, "an integer is not accepted"),
        ({"type": "json_schema"}, "json_schema: must be an object"),
        ({"type": "json_schema", "json_schema": {"name": 1, "schema": {}}}, "name: must be a string"),
        ({"type": "json_schema", "json_schema": {"name": "n", "schema": []}}, "schema: must be a JSON schema"),
        ({"type": "json_schema", "json_schema": {"schema": {}, "strict": "yes"}}, "strict: must be true or false"),
    ],
)
def test_bad_response_formats_name_the_field(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        Output().updated(response_format=value)  # type: ignore[arg-type]
    assert err.value.field == "response_format"


def test_bad_tool_choices_and_tool_lists_name_the_field() -> None:
    with pytest.raises(ConfigError) as err:
        Output().updated(tool_choice={"type": "function"})
    assert err.value.field == "tool_choice"
    with pytest.raises(ConfigError) as err:
        Output().updated(tool_choice=3)  # type: ignore[arg-type]
    assert err.value.field == "tool_choice"
    for tools in (OPENAI_WEATHER, "get_weather", [3]):
        with pytest.raises(ConfigError) as err:
            Output().updated(tools=tools)  # type: ignore[arg-type]
        assert err.value.field == "tools"


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Sequence[Any], InferenceConfig]]:
    """The messages and configs that reach ``_native.Engine.chat`` through Genius."""
    seen: list[tuple[Sequence[Any], InferenceConfig]] = []
    original = Genius._open

    def spy(held: Any, messages: Sequence[Any], config: InferenceConfig) -> Any:
        seen.append((messages, config))
        return original(held, messages, config)

    monkeypatch.setattr(Genius, "_open", staticmethod(spy))
    return seen


@pytest.fixture
def fast_genius_sync() -> Iterator[Genius]:
    with Genius(engine=Pinky(delay=0, reply_tokens=2)) as g:
        yield g


def test_the_facade_sends_one_complete_config(
    fast_genius_sync: Genius, sent: list[tuple[Sequence[Any], InferenceConfig]]
) -> None:
    g = fast_genius_sync
    list(g.chat(USER))
    list(
        g.chat(
            USER,
            InferenceConfig.of(max_tokens=50),
            tools=[OPENAI_WEATHER],
            tool_choice="get_weather",
            parallel_tool_calls=False,
            response_format=Weather,
            enable_thinking=False,
            reasoning_effort="low",
            thinking_budget=32,
        )
    )
    assert sent[0][1] == InferenceConfig()
    config = sent[1][1]
    assert config.behavior.max_tokens == 50
    assert config.reasoning == Reasoning(enable_thinking=False, reasoning_effort="low", thinking_budget=32)
    assert config.output == Output(
        tools=[WEATHER],
        tool_name="get_weather",
        parallel_tool_calls=False,
        response_format="json_schema",
        json_schema=Weather.model_json_schema(),
        schema_name="Weather",
    )
    # Through config alone, too.
    through = dataclasses.replace(InferenceConfig(), output=Output(tools=[WEATHER]))
    list(g.chat(USER, through))
    assert sent[2][1] == through


def test_messages_pass_through_and_tool_call_objects_become_dicts(
    fast_genius_sync: Genius, sent: list[tuple[Sequence[Any], InferenceConfig]]
) -> None:
    call = ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')
    as_dicts: list[dict[str, Any]] = [
        *USER,
        {"role": "assistant", "content": None, "tool_calls": [call.to_openai()], "reasoning_content": "hmm"},
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": '{"celsius": 21}'},
    ]
    list(fast_genius_sync.chat(as_dicts, tools=[WEATHER]))
    assert sent[-1][0] is as_dicts, "dict messages reach the engine as they are"
    as_objects = [*as_dicts[:1], {**as_dicts[1], "tool_calls": [call]}, as_dicts[2]]
    list(fast_genius_sync.chat(as_objects, tools=[WEATHER]))
    assert list(sent[-1][0]) == as_dicts
    assert as_objects[1]["tool_calls"] == [call], "the caller's messages are not changed"


def test_pydantic_is_never_imported_by_the_package() -> None:
    code = "import sys, rusty_genius; rusty_genius.Output(); print('pydantic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_tool_call_helpers() -> None:
    call = ToolCall(id="c", name="f", arguments='{"a": [1, 2]}')
    assert call.json() == call.parsed_arguments() == {"a": [1, 2]}
    assert call.to_openai() == {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a": [1, 2]}'}}
    assert CALL == '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


# -- Pinky's scripted calls through the facade ---------------------------------------------------------------------


def scripted(*pieces: str) -> Pinky:
    return Pinky(delay=0, script=list(pieces))


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]


@pytest.mark.anyio
async def test_a_scripted_call_is_an_answer_with_tool_calls() -> None:
    async with Genius(engine=scripted(CALL)) as g:
        answer = await g.complete(USER, tools=[WEATHER])
    assert answer.finish_reason == "tool_calls"
    assert answer.content.strip() == "" and "<tool_call>" not in answer.content
    [call] = answer.tool_calls
    assert call.name == "get_weather" and isinstance(call.id, str) and call.id
    assert call.json() == {"city": "Paris"}
    assert answer.parsed is None
    assert answer.message == {"role": "assistant", "content": answer.content, "tool_calls": [call.to_openai()]}


@pytest.mark.anyio
async def test_without_tools_the_same_text_is_content() -> None:
    async with Genius(engine=scripted(CALL)) as g:
        answer = await g.complete(USER)
    assert answer.tool_calls == [] and answer.finish_reason == "stop"
    assert answer.content == CALL


@pytest.mark.anyio
async def test_the_streamed_events_of_calls() -> None:
    two = scripted("Let me look. ", CALL, "\n", Pinky.tool_call("get_weather", {"city": "Lyon"}))
    async with Genius(engine=two) as g:
        events = [ev async for ev in g.chat(USER, tools=[OPENAI_WEATHER])]
    calls = [e for e in events if e.kind.startswith("tool_call_")]
    assert kinds(events)[0] == "process_start" and events[-1].kind == "complete"
    assert events[-1].finish_reason == "tool_calls"
    assert "".join(e.text or "" for e in events if e.kind == "content").strip() == "Let me look."
    for index, city in enumerate(["Paris", "Lyon"]):
        mine = [e for e in calls if e.index == index]
        assert mine[0].kind == "tool_call_start" and mine[-1].kind == "tool_call_stop"
        assert {e.kind for e in mine[1:-1]} == {"tool_call_delta"}
        assert mine[0].name == "get_weather" and mine[0].id
        assert json.loads("".join(e.text or "" for e in mine[1:-1])) == {"city": city}
        assert all(e.id is None and e.name is None for e in mine[1:])
    starts = [e for e in calls if e.kind == "tool_call_start"]
    assert [e.index for e in starts] == [0, 1] and starts[0].id != starts[1].id
    assert all(e.index is None for e in events if not e.kind.startswith("tool_call_"))


def test_complete_sync_assembles_calls_in_order() -> None:
    script = [CALL, Pinky.tool_call("get_time", {"city": "Lyon"})]
    with Genius(engine=Pinky(delay=0, script=script)) as g:
        answer = g.complete_sync(USER, tools=[WEATHER, get_time])
    assert [(c.name, c.json()) for c in answer.tool_calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"city": "Lyon"}),
    ]


@pytest.mark.anyio
async def test_a_second_turn_sends_the_calls_and_their_results_back() -> None:
    answerer = Pinky(delay=0, reply_tokens=2, think=False)
    async with Genius(engine=scripted(CALL), max_loaded=2) as g:
        first = await g.complete(USER, tools=[WEATHER])
        [call] = first.tool_calls
        result = {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": '{"celsius": 21}'}
        second = await g.complete([*USER, first.message, result], tools=[WEATHER], model=answerer)
        assert second.finish_reason == "stop" and second.content == "Narf! Narf!"
        # ToolCall objects in place of the dicts, as a caller may keep them.
        again = {"role": "assistant", "content": None, "tool_calls": first.tool_calls}
        assert (await g.complete([*USER, again, result], model=answerer)).content == "Narf! Narf!"
        with pytest.raises(RequestError, match="tool_call_id"):
            await g.complete([*USER, first.message, {"role": "tool", "content": "21"}], model=answerer)


# -- structured output: Answer.parsed -----------------------------------------------------------------------------

JSON_ANSWER = ('{"city": "Paris", ', '"temperature": 21.5}')


@pytest.mark.anyio
async def test_parsed_is_the_pydantic_model() -> None:
    async with Genius(engine=scripted(*JSON_ANSWER)) as g:
        answer = await g.complete(USER, response_format=Weather)
    assert answer.parsed == Weather(city="Paris", temperature=21.5)
    assert answer.content == "".join(JSON_ANSWER) and answer.finish_reason == "stop"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "weather", "schema": Weather.model_json_schema()}},
        Weather.model_json_schema(),
    ],
    ids=["json_object", "openai-json-schema", "bare-schema"],
)
async def test_parsed_is_the_decoded_json(response_format: dict[str, Any]) -> None:
    async with Genius(engine=scripted(*JSON_ANSWER)) as g:
        answer = await g.complete(USER, response_format=response_format)
    assert answer.parsed == {"city": "Paris", "temperature": 21.5}


@pytest.mark.anyio
async def test_parsed_is_none_for_text_and_for_what_does_not_validate() -> None:
    async with Genius(engine=scripted(*JSON_ANSWER)) as g:
        assert (await g.complete(USER)).parsed is None
    async with Genius(engine=scripted('{"city": "Paris"}')) as g:
        short: Answer = await g.complete(USER, response_format=Weather)
    assert short.parsed is None and short.content == '{"city": "Paris"}', "kept as it came, nothing invented"
