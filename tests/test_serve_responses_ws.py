"""OpenAI's Responses WebSocket mode (``/v1/responses`` on ``--ws-addr``) with the ``websockets`` client and the
official ``openai`` client's ``responses.connect()``: lanes by ``stream_id`` (several responses at once on one
socket, one after another on one lane), ``previous_response_id`` chains kept per connection even with
``store: false``, the ``generate: false`` warm-up, cancel by id, bad messages answered with ``error`` events on a
socket that stays usable, and the API key."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.servers import LiveServer, live_server

pytestmark = [pytest.mark.pinky, pytest.mark.anyio]

NARF = "Narf!"
END = ("response.completed", "response.incomplete", "response.failed")


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    # Two sequences at once, 20 ms a token: a 10-token answer takes ~0.25 s, so two lanes visibly overlap.
    args = ("--engine", "pinky", "--pinky-delay", "0.02", "--pinky-tokens", "10", "--parallel", "2")
    with live_server(*args) as live:
        yield live


def create(**body: Any) -> str:
    return json.dumps({"type": "response.create", "model": "pinky", **body})


async def event(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(message, str)
    data: dict[str, Any] = json.loads(message)
    return data


async def until_end(ws: ClientConnection, lane: str | None = None) -> list[dict[str, Any]]:
    """The events of ``lane`` up to its terminal event or error (other lanes' events are dropped)."""
    events = []
    while True:
        e = await event(ws)
        if e.get("stream_id") == lane:
            events.append(e)
            if e["type"] in END or e["type"] == "error":
                return events


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")


async def test_two_lanes_run_at_once_on_one_socket_each_in_order(server: LiveServer) -> None:
    async with websockets.connect(server.ws + "/v1/responses") as ws:
        await ws.send(create(input="hi", stream_id="a"))
        await ws.send(create(input="hi", stream_id="b", max_output_tokens=4))
        by_lane: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
        order = []
        while not all(es and es[-1]["type"] in END for es in by_lane.values()):
            e = await event(ws)
            by_lane[e["stream_id"]].append(e)
            order.append(e["stream_id"] if e["type"] not in END else "end")
    for lane, events in by_lane.items():
        assert [e["sequence_number"] for e in events] == list(range(len(events))), lane
        assert events[0]["type"] == "response.created" and events[0]["response"]["status"] == "in_progress"
    assert text_of(by_lane["a"]) == " ".join([NARF] * 10)
    assert by_lane["a"][-1]["type"] == "response.completed" and by_lane["b"][-1]["type"] == "response.incomplete"
    assert by_lane["b"][-1]["response"]["usage"]["output_tokens"] == 4
    assert by_lane["a"][0]["response"]["id"] != by_lane["b"][0]["response"]["id"]
    assert set(order[: order.index("end")]) == {"a", "b"}, "both lanes streamed before either finished"


async def test_one_lane_runs_its_responses_one_after_another(server: LiveServer) -> None:
    async with websockets.connect(server.ws + "/v1/responses") as ws:
        await ws.send(create(input="one"))
        await ws.send(create(input="two"))
        kinds: list[str] = []
        while kinds.count("response.completed") < 2:
            e = await event(ws)
            assert "stream_id" not in e
            kinds.append(e["type"])
    assert kinds.index("response.completed") < kinds.index("response.created", 1)


async def test_a_chain_of_store_false_responses_lives_on_its_connection_only(server: LiveServer) -> None:
    async with websockets.connect(server.ws + "/v1/responses") as ws:
        await ws.send(create(input="hi", store=False, max_output_tokens=2))
        first = (await until_end(ws))[-1]["response"]
        assert first["store"] is False
        await ws.send(create(input="hi", max_output_tokens=2))
        alone = (await until_end(ws))[-1]["response"]
        await ws.send(create(input="hi", previous_response_id=first["id"], store=False, max_output_tokens=2))
        second = (await until_end(ws))[-1]["response"]
    assert second["previous_response_id"] == first["id"] and second["status"] == "incomplete"
    assert second["usage"]["input_tokens"] > alone["usage"]["input_tokens"], "the first turn is in the prompt"
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{server.base_url}/responses/{first['id']}")).status_code == 404
    async with websockets.connect(server.ws + "/v1/responses") as other:
        await other.send(create(input="hi", previous_response_id=first["id"], stream_id="x"))
        [error] = await until_end(other, "x")
    assert error["type"] == "error" and error["status"] == 404
    assert error["error"]["code"] == "previous_response_not_found" and first["id"] in error["error"]["message"]


async def test_generate_false_warms_up_a_response_to_continue_from(server: LiveServer) -> None:
    async with websockets.connect(server.ws + "/v1/responses") as ws:
        await ws.send(create(input="You are terse.", generate=False, store=False))
        warm = await until_end(ws)
        assert [e["type"] for e in warm] == ["response.created", "response.in_progress", "response.completed"]
        assert warm[-1]["response"]["output"] == []
        await ws.send(create(input="hi", previous_response_id=warm[-1]["response"]["id"], max_output_tokens=3))
        events = await until_end(ws)
    assert events[-1]["response"]["previous_response_id"] == warm[-1]["response"]["id"]


async def test_cancel_by_id_over_http_ends_a_socket_response_cancelled() -> None:
    args = ("--engine", "pinky", "--pinky-delay", "0.02", "--pinky-tokens", "200")
    with live_server(*args) as server:
        async with websockets.connect(server.ws + "/v1/responses") as ws:
            await ws.send(create(input="hi", stream_id="long"))
            created = await event(ws)
            while (await event(ws))["type"] != "response.output_text.delta":
                pass
            async with httpx.AsyncClient() as http:
                cancel = await http.post(f"{server.base_url}/responses/{created['response']['id']}/cancel")
            events = await until_end(ws, "long")
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"
    end = events[-1]
    assert end["type"] == "response.incomplete" and end["response"]["status"] == "cancelled"
    assert end["response"]["usage"]["output_tokens"] < 100


BAD: list[tuple[str, str, int, str | None]] = [
    ("not JSON", "{nope", 400, "invalid_json"),
    ("not an object", "[1]", 400, "invalid_frame"),
    ("unknown type", json.dumps({"type": "response.steer", "input": "x"}), 400, "invalid_event"),
    ("bad input", create(input=3), 400, None),
    ("unknown item", create(input=[{"type": "computer_call"}]), 400, None),
    ("unknown model", create(model="gpt-5", input="hi"), 404, "model_not_found"),
    ("bad stream_id", create(input="hi", stream_id=7), 400, None),
]


@pytest.mark.parametrize(("what", "message", "status", "code"), BAD, ids=[b[0] for b in BAD])
async def test_a_bad_message_gets_an_error_event_and_the_socket_stays_usable(
    server: LiveServer, what: str, message: str, status: int, code: str | None
) -> None:
    async with websockets.connect(server.ws + "/v1/responses") as ws:
        await ws.send(message)
        error = await event(ws)
        assert error["type"] == "error" and error["status"] == status, error
        assert set(error["error"]) == {"message", "type", "param", "code"} and error["error"]["code"] == code
        await ws.send(create(input="hi", max_output_tokens=2))
        assert (await until_end(ws))[-1]["type"] == "response.incomplete"
    assert "Traceback" not in server.log()


# The client's sync connect() opens the socket outside a context manager, which websockets 17.1+ warns about.
@pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning")
def test_the_openai_clients_connect_drives_the_socket(server: LiveServer) -> None:
    with (
        openai.OpenAI(
            base_url=server.base_url, api_key="unused", websocket_base_url=server.ws + "/v1", max_retries=0
        ) as client,
        client.responses.connect() as connection,
    ):
        connection.send({"type": "response.create", "model": "pinky", "input": "hi"})
        kinds: list[str] = []
        deltas: list[str] = []
        for e in connection:
            kinds.append(e.type)
            if e.type == "response.output_text.delta":
                deltas.append(e.delta)
            if e.type in ("response.completed", "response.incomplete", "error"):
                break
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "".join(deltas) == " ".join([NARF] * 10)


async def test_the_api_key_goes_in_the_upgrade_or_an_auth_message() -> None:
    with live_server("--engine", "pinky", "--pinky-delay", "0", "--api-key", "sekrit") as server:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(server.ws + "/v1/responses", additional_headers={"authorization": "Bearer no"})
        assert refused.value.response.status_code == 401
        headers = {"authorization": "Bearer sekrit"}
        async with websockets.connect(server.ws + "/v1/responses", additional_headers=headers) as ws:
            await ws.send(create(input="hi", max_output_tokens=2))
            assert (await until_end(ws))[-1]["type"] == "response.incomplete"
        async with websockets.connect(server.ws + "/v1/responses") as ws:
            await ws.send(create(input="hi", max_output_tokens=2))
            assert (await event(ws))["error"]["code"] == "invalid_api_key"
            await ws.send(json.dumps({"type": "auth", "api_key": "sekrit"}))
            assert (await event(ws)) == {"type": "auth", "auth": "ok"}
            await ws.send(create(input="hi", max_output_tokens=2))
            assert (await until_end(ws))[-1]["type"] == "response.incomplete"


async def test_leaving_stops_the_sockets_responses() -> None:
    # 200 tokens at 20 ms: 4 s of work; one sequence, so the HTTP request is quick only if the socket's was stopped.
    with live_server("--engine", "pinky", "--pinky-delay", "0.02", "--pinky-tokens", "200") as server:
        async with websockets.connect(server.ws + "/v1/responses") as ws:
            await ws.send(create(input="hi"))
            while (await event(ws))["type"] != "response.output_text.delta":
                pass
        async with httpx.AsyncClient(timeout=10) as http:
            started = asyncio.get_running_loop().time()
            quick = await http.post(f"{server.base_url}/responses", json={"input": "hi", "max_output_tokens": 3})
            assert quick.status_code == 200
            assert asyncio.get_running_loop().time() - started < 1.5
