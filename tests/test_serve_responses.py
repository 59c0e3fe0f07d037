"""OpenAI's Responses API (``/v1/responses``) with the official ``openai`` client unchanged, against a live
``ogenius serve`` on Pinky (and a plain and a streamed response on SmolLM2): the response object, the documented
event order, a tool loop over ``previous_response_id``, ``text.format``, the bounded store (``store: false``,
eviction), retrieve/delete/cancel/input_items, lifecycle (busy, a client that leaves, the API key) and bad input in
OpenAI's error shape."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]
import openai
import pydantic
import pytest
from rusty_genius.ogenius.serve.responses_store import ResponseStore, Stored

from tests.conftest import smollm2_path
from tests.servers import LiveServer, live_server
from tests.test_serve_anthropic import CALL, SCHEMA  # the scripted call to get_weather, and its schema

WEATHER: Any = {"type": "function", "name": "get_weather", "description": "The weather in a city now.",
                "parameters": SCHEMA, "strict": True}  # fmt: skip
NARF3 = "Narf! Narf! Narf!"


@pytest.fixture(scope="module")
def pinky() -> Iterator[LiveServer]:
    with live_server("--engine", "pinky", "--pinky-delay", "0", "--pinky-tokens", "3") as live:
        yield live


@pytest.fixture(scope="module")
def calls() -> Iterator[LiveServer]:
    """A server whose every answer is a thought, then one call to get_weather."""
    with live_server("--engine", "pinky", "--pinky-delay", "0", "--pinky-script", json.dumps(CALL)) as live:
        yield live


def client_of(server: LiveServer, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    error: dict[str, Any] = body["error"]
    return error


@pytest.mark.pinky
def test_create_answers_a_response_with_a_reasoning_item_and_a_message(pinky: LiveServer) -> None:
    with client_of(pinky) as client:
        response = client.responses.create(
            model="pinky", input="Are you pondering?", instructions="Be brief.", metadata={"run": "1"}, user="u1"
        )
    assert response.id.startswith("resp_") and response.object == "response" and response.status == "completed"
    assert response.model == "pinky" and response.instructions == "Be brief." and response.metadata == {"run": "1"}
    assert response.user == "u1" and response.previous_response_id is None
    assert getattr(response, "store") is True  # noqa: B009 - returned, but not declared by the SDK
    reasoning, message = response.output
    assert reasoning.type == "reasoning" and reasoning.id.startswith("rs_") and reasoning.summary == []
    assert reasoning.content is not None and reasoning.content[0].text == "Narf! Poit!"
    assert message.type == "message" and message.id.startswith("msg_") and message.role == "assistant"
    assert message.status == "completed" and response.output_text == NARF3
    usage = response.usage
    assert usage is not None and usage.input_tokens > 0 and usage.output_tokens > 3
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert 0 < usage.output_tokens_details.reasoning_tokens < usage.output_tokens
    assert usage.input_tokens_details.cached_tokens == 0


@pytest.mark.pinky
def test_stream_events_come_in_the_documented_order_with_sequence_numbers(pinky: LiveServer) -> None:
    with client_of(pinky) as client:
        events = list(client.responses.create(model="pinky", input="hi", stream=True))
        with client.responses.stream(model="pinky", input="hi") as stream:
            texts = [e.delta for e in stream if e.type == "response.output_text.delta"]
            final = stream.get_final_response()
    assert [e.sequence_number for e in events] == list(range(len(events)))
    # Deltas that arrive in one batch are one event, in several batches several (timing): compare runs of them.
    kinds = [k for i, k in enumerate(e.type for e in events) if not (k.endswith(".delta") and events[i - 1].type == k)]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    item = ["response.output_item.added", "response.content_part.added"]
    end = ["response.content_part.done", "response.output_item.done"]
    assert kinds[2:-1] == [*item, "response.reasoning_text.delta", "response.reasoning_text.done", *end,
                           *item, "response.output_text.delta", "response.output_text.done", *end]  # fmt: skip
    created, completed = events[0], events[-1]
    assert created.response.status == "in_progress" and created.response.output == []  # type: ignore[union-attr]
    rid = created.response.id  # type: ignore[union-attr]
    assert completed.response.id == rid and completed.response.status == "completed"  # type: ignore[union-attr]
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert [i.id for i in done] == [o.id for o in completed.response.output]  # type: ignore[union-attr]
    for e in events:
        if hasattr(e, "item_id"):  # every content event names its item as the output lists it
            assert e.item_id == done[e.output_index].id and e.content_index == 0  # type: ignore[union-attr]
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == completed.response.output_text == NARF3  # type: ignore[union-attr]
    thought = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    assert thought == "Narf! Poit!"
    assert "".join(texts) == final.output_text == NARF3 and final.status == "completed"


@pytest.mark.pinky
def test_max_output_tokens_ends_the_response_incomplete(pinky: LiveServer) -> None:
    with client_of(pinky) as client:
        response = client.responses.create(model="pinky", input="hi", max_output_tokens=3)
        events = list(client.responses.create(model="pinky", input="hi", max_output_tokens=3, stream=True))
    assert response.status == "incomplete" and response.max_output_tokens == 3
    assert response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None and response.usage.output_tokens == 3
    [thought] = response.output  # three tokens end it inside the thought
    assert thought.type == "reasoning" and thought.status == "incomplete"
    assert events[-1].type == "response.incomplete" and events[-1].response.status == "incomplete"


@pytest.mark.pinky
def test_a_tool_loop_over_previous_response_id(calls: LiveServer) -> None:
    ask: Any = [{"role": "user", "content": "What's the weather in Paris?"}]
    with client_of(calls) as client:
        first = client.responses.create(model="pinky", input=ask, tools=[WEATHER], tool_choice="required")
        reasoning, call = first.output
        assert reasoning.type == "reasoning" and call.type == "function_call" and (call.id or "").startswith("fc_")
        assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"} and call.call_id
        assert first.tools[0].name == "get_weather" and first.tool_choice == "required"  # type: ignore[union-attr]
        events = list(client.responses.create(model="pinky", input=ask, tools=[WEATHER], stream=True))
        pieces = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
        [args_done] = [e for e in events if e.type == "response.function_call_arguments.done"]
        assert json.loads(pieces) == {"city": "Paris"} and args_done.arguments == pieces
        result: Any = [{"type": "function_call_output", "call_id": call.call_id, "output": "21 C, sunny"}]
        second = client.responses.create(
            model="pinky", previous_response_id=first.id, input=result, tools=[WEATHER],
            tool_choice={"type": "function", "name": "get_weather"},
        )  # fmt: skip
        alone = client.responses.create(model="pinky", input=result, tools=[WEATHER])
        items = client.responses.input_items.list(second.id)
    assert second.previous_response_id == first.id and second.status == "completed"
    assert second.usage is not None and alone.usage is not None
    assert second.usage.input_tokens > alone.usage.input_tokens, "the previous conversation is in the prompt"
    assert [i.type for i in items.data] == ["function_call_output"] and items.data[0].id


@pytest.mark.pinky
def test_text_format_json_schema_is_echoed_parsed_by_the_sdk_and_checked() -> None:
    script = json.dumps(['{"city": ', '"Paris"}'])
    with live_server("--engine", "pinky", "--pinky-delay", "0", "--pinky-script", script) as server:

        class City(pydantic.BaseModel):
            city: str

        with client_of(server) as client:
            parsed = client.responses.parse(model="pinky", input="Where?", text_format=City)
            assert parsed.output_parsed == City(city="Paris")
            assert parsed.text is not None and parsed.text.format is not None
            assert parsed.text.format.type == "json_schema"
            fmt: Any = {"format": {"type": "json_schema", "name": "city", "schema": "not a schema"}}
            with pytest.raises(openai.BadRequestError) as caught:
                client.responses.create(model="pinky", input="Where?", text=fmt)
    assert caught.value.body["param"] == "text.format.schema"  # type: ignore[index]


@pytest.mark.pinky
def test_store_false_is_not_kept_and_a_gone_id_is_a_404_that_says_what_to_do(pinky: LiveServer) -> None:
    with client_of(pinky) as client:
        kept = client.responses.create(model="pinky", input="hi")
        unkept = client.responses.create(model="pinky", input="hi", store=False)
        assert getattr(unkept, "store") is False  # noqa: B009 - returned, but not declared by the SDK
        assert client.responses.retrieve(kept.id).id == kept.id
        with pytest.raises(openai.NotFoundError) as missing:
            client.responses.retrieve(unkept.id)
        with pytest.raises(openai.NotFoundError) as gone:
            client.responses.create(model="pinky", input="more", previous_response_id=unkept.id)
    assert unkept.id in missing.value.message
    error = gone.value.body
    assert error["code"] == "previous_response_not_found" and error["param"] == "previous_response_id"  # type: ignore[index]
    assert unkept.id in error["message"] and "whole conversation" in error["message"]  # type: ignore[index]


@pytest.mark.pinky
def test_the_store_evicts_the_least_recently_used_beyond_its_count() -> None:
    with live_server("--engine", "pinky", "--pinky-delay", "0", "--pinky-tokens", "2", "--responses-store", "2") as s:
        with client_of(s) as client:
            a, b = (client.responses.create(model="pinky", input=text) for text in ("a", "b"))
            client.responses.retrieve(a.id)  # a is now more recent than b
            c = client.responses.create(model="pinky", input="c", previous_response_id=a.id)
            assert client.responses.retrieve(a.id).id == a.id and client.responses.retrieve(c.id).id == c.id
            with pytest.raises(openai.NotFoundError):
                client.responses.retrieve(b.id)
            with pytest.raises(openai.NotFoundError):
                client.responses.create(model="pinky", input="d", previous_response_id=b.id)


def _entry(rid: str, text: str) -> Stored:
    return Stored({"id": rid, "object": "response"}, [], [{"role": "user", "content": text}])


@pytest.mark.pinky
def test_the_store_is_bounded_by_bytes_too_and_counts_them_back_on_eviction() -> None:
    store = ResponseStore(max_count=100, max_bytes=1000)
    entries = [_entry(f"resp_{i}", "x" * 200) for i in range(6)]
    size = entries[0].size
    assert 200 < size < 400
    for entry in entries:
        assert store.put(entry)
    assert len(store) == 1000 // size and store.bytes == len(store) * size <= 1000
    assert store.get("resp_0") is None and store.get("resp_5") is not None
    assert not store.put(_entry("resp_big", "x" * 2000)) and store.get("resp_big") is None
    assert store.delete("resp_5") and store.bytes == (len(store)) * size
    assert not store.delete("resp_5")
    with pytest.raises(Exception, match="resp_5"):
        store.previous("resp_5")


def texts_of(items: Any) -> list[str]:
    """The text of each message item's first part."""
    return [item.content[0].text for item in items]


@pytest.mark.pinky
def test_retrieve_delete_cancel_and_input_items_of_a_stored_response(pinky: LiveServer) -> None:
    items: Any = [{"role": "user", "content": "one"}, {"role": "user", "content": "two"},
                  {"role": "user", "content": "three"}]  # fmt: skip
    with client_of(pinky) as client:
        response = client.responses.create(model="pinky", input=items)
        assert client.responses.retrieve(response.id).output_text == response.output_text
        cancelled = client.responses.cancel(response.id)
        assert cancelled.status == "completed" and cancelled.id == response.id, "a finished response is unchanged"
        newest = client.responses.input_items.list(response.id)
        assert texts_of(newest.data) == ["three", "two", "one"]
        page = client.responses.input_items.list(response.id, order="asc", limit=2)
        assert texts_of(page.data) == ["one", "two"] and page.has_more
        rest = client.responses.input_items.list(response.id, order="asc", after=page.data[-1].id)
        assert texts_of(rest.data) == ["three"] and not rest.has_more
        error_of(httpx.get(f"{pinky.base_url}/responses/{response.id}/input_items?limit=0"), 400)
        deleted = httpx.delete(f"{pinky.base_url}/responses/{response.id}")
        assert deleted.json() == {"id": response.id, "object": "response", "deleted": True}
        for method, tail in (("GET", ""), ("DELETE", ""), ("POST", "/cancel"), ("GET", "/input_items")):
            gone = error_of(httpx.request(method, f"{pinky.base_url}/responses/{response.id}{tail}"), 404)
            assert response.id in gone["message"] and gone["code"] == "response_not_found"


@pytest.mark.pinky
def test_cancel_stops_a_running_response_which_ends_cancelled() -> None:
    with live_server("--engine", "pinky", "--pinky-delay", "0.02", "--pinky-tokens", "200") as server:
        with client_of(server) as client:
            stream = client.responses.create(model="pinky", input="hi", stream=True)
            events = iter(stream)
            created = next(events)
            assert created.type == "response.created"
            rid = created.response.id
            while next(events).type != "response.output_text.delta":
                pass
            running = client.responses.retrieve(rid)
            current: Any = running.output[-1]
            assert running.status == "in_progress" and current.status == "in_progress"
            started = time.monotonic()
            cancelled = client.responses.cancel(rid)
            assert time.monotonic() - started < 2
            rest = list(events)
            stored = client.responses.retrieve(rid)
    assert cancelled.status == "cancelled" and cancelled.usage is not None
    assert cancelled.usage.output_tokens < 100
    assert rest[-1].type == "response.incomplete" and rest[-1].response.status == "cancelled"
    assert stored.status == "cancelled" and stored.output_text == cancelled.output_text


BAD: list[tuple[str, Any, str]] = [
    ("not an object", [1, 2], ""),
    ("input not a list", {"input": 3}, "input"),
    ("empty input", {"input": []}, "input"),
    ("malformed item", {"input": ["hi"]}, "input[0]"),
    ("unknown item type", {"input": [{"type": "web_search_call", "id": "ws_1"}]}, "input[0].type"),
    ("wrong content type", {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
     "input[0].content[0]"),
    ("bad role", {"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
    ("output without call_id", {"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
    ("wrong temperature type", {"input": "hi", "temperature": "hot"}, "temperature"),
    ("wrong max_output_tokens type", {"input": "hi", "max_output_tokens": "ten"}, "max_output_tokens"),
    ("non-function tool", {"input": "hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
    ("tool without name", {"input": "hi", "tools": [{"type": "function", "parameters": {}}]}, "tools[0].name"),
    ("tool_choice names no tool", {"input": "hi", "tools": [WEATHER],
                                   "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice.name"),
    ("bad text.format type", {"input": "hi", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
    ("bad effort", {"input": "hi", "reasoning": {"effort": "extreme"}}, "reasoning.effort"),
    ("background", {"input": "hi", "background": True}, "background"),
    ("bad metadata", {"input": "hi", "metadata": {"n": 1}}, "metadata"),
    ("bad store", {"input": "hi", "store": "no"}, "store"),
]  # fmt: skip


@pytest.mark.pinky
@pytest.mark.parametrize(("what", "body", "param"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_400_in_openai_shape_naming_the_field(
    pinky: LiveServer, what: str, body: Any, param: str
) -> None:
    error = error_of(httpx.post(pinky.base_url + "/responses", json=body), 400)
    assert error["type"] == "invalid_request_error" and error["param"] == (param or None)
    if param:
        assert param.split("[")[0].split(".")[0] in error["message"]
    with client_of(pinky) as client:  # the server still answers
        assert client.responses.create(model="pinky", input="hi").status == "completed"
    assert "Traceback" not in pinky.log()


@pytest.mark.pinky
def test_not_json_a_gone_previous_response_and_an_unknown_model(pinky: LiveServer) -> None:
    not_json = httpx.post(pinky.base_url + "/responses", content=b"{", headers={"content-type": "application/json"})
    assert "not valid JSON" in error_of(not_json, 400)["message"]
    gone = error_of(httpx.post(pinky.base_url + "/responses", json={"input": "hi", "previous_response_id": "x"}), 404)
    assert gone["code"] == "previous_response_not_found" and "'x'" in gone["message"]
    with client_of(pinky) as client, pytest.raises(openai.NotFoundError) as missing:
        client.responses.create(model="gpt-5", input="hi")
    assert missing.value.body["param"] == "model"  # type: ignore[index]


@pytest.mark.pinky
def test_a_full_queue_is_503_and_the_running_response_goes_on() -> None:
    args = ("--engine", "pinky", "--pinky-delay", "0.01", "--pinky-tokens", "30", "--max-queue", "1")
    with live_server(*args) as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
        with http.stream("POST", "/responses", json={"input": "hi", "stream": True}) as running:
            lines = running.iter_lines()
            assert next(lines) == "event: response.created"
            busy = http.post("/responses", json={"input": "hi"})
            assert error_of(busy, 503)["code"] == "server_busy" and busy.headers["retry-after"] == "1"
            rest = [line for line in lines if line.startswith("data: ")]
    end = json.loads(rest[-1][6:])
    assert end["type"] == "response.completed" and end["response"]["status"] == "completed"
    assert end["response"]["output"][-1]["content"][0]["text"] == " ".join(["Narf!"] * 30)


@pytest.mark.pinky
def test_a_client_that_leaves_stops_its_generation_streamed_or_not() -> None:
    # 200 tokens at 20 ms: 4 s of work each. Requests queue in order, so the last one is quick only if the
    # abandoned ones were stopped.
    with live_server("--engine", "pinky", "--pinky-delay", "0.02", "--pinky-tokens", "200") as server:
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            with http.stream("POST", "/responses", json={"input": "hi", "stream": True}) as response:
                lines = response.iter_lines()
                for _ in range(3):
                    next(lines)
            with pytest.raises(httpx.ReadTimeout):
                http.post("/responses", json={"input": "hi"}, timeout=0.3)
            started = time.monotonic()
            quick = http.post("/responses", json={"input": "hi", "max_output_tokens": 3})
            assert quick.status_code == 200 and quick.json()["status"] == "incomplete"
            assert time.monotonic() - started < 1.5, "an abandoned generation was still running"


@pytest.mark.pinky
def test_the_api_key_is_required_and_concurrent_responses_do_not_interfere() -> None:
    args = ("--engine", "pinky", "--pinky-delay", "0.002", "--pinky-tokens", "20", "--api-key", "sekrit")
    with live_server(*args) as server:
        with client_of(server, "wrong") as client, pytest.raises(openai.AuthenticationError):
            client.responses.create(model="pinky", input="hi")
        texts: list[str] = []

        def one() -> None:
            with client_of(server, "sekrit") as c:
                texts.append("".join(e.delta for e in c.responses.create(model="pinky", input="hi", stream=True)
                                     if e.type == "response.output_text.delta"))  # fmt: skip

        threads = [threading.Thread(target=one) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert texts == [" ".join(["Narf!"] * 20)] * 3


@pytest.mark.pinky
def test_readme_responses_example_runs_against_a_pinky_server(pinky: LiveServer) -> None:
    import subprocess
    import sys

    from tests.test_docs_and_cli import readme_block

    code = readme_block("client.responses.create(").replace("http://127.0.0.1:8080", pinky.http)
    code = code.replace('"smollm2-135m"', '"pinky"')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert NARF3 in out.stdout


@pytest.mark.real_engine
def test_smollm2_answers_a_plain_response_and_a_streamed_json_schema_one() -> None:
    with live_server("--model", str(smollm2_path()), "--temperature", "0", "--no-unload", timeout=120) as server:
        with client_of(server) as client:  # no model named: the served one
            plain = client.responses.create(input="Name a primary color.", max_output_tokens=16)
            fmt: Any = {"format": {"type": "json_schema", "name": "city", "schema": SCHEMA, "strict": True}}
            events = list(client.responses.create(
                input="Name a city in France as JSON.", max_output_tokens=96, text=fmt, stream=True,
            ))  # fmt: skip
    assert plain.status in ("completed", "incomplete") and plain.output_text.strip()
    assert plain.usage is not None and 0 < plain.usage.output_tokens <= 16
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1]
    assert final.type == "response.completed", final.type
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == final.response.output_text
    jsonschema.validate(json.loads(text), SCHEMA)
