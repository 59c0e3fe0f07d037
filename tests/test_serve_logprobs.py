"""``logprobs`` / ``top_logprobs`` on ``/v1/chat/completions``: the official openai client, unchanged, against a live
``ogenius serve`` on Pinky (non-streamed and streamed entries, n choices, tools, the WebSocket's ``logprobs`` frames,
the 400s, the library's ``Answer.logprobs``), and on SmolLM2 that greedy tokens are the argmax of a proper
distribution and spell the answer."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from rusty_genius import Genius, Pinky

from tests.conftest import smollm2_path
from tests.servers import LiveServer, live_server

USER: Any = [{"role": "user", "content": "Are you pondering what I'm pondering?"}]
NARF4 = "Narf! Narf! Narf! Narf!"
WEATHER: Any = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}
CALL = [
    "Let me check.",
    "<tool_call>\n",
    '{"name": "get_weather", ',
    '"arguments": {"city": "Paris"}}',
    "\n</tool_call>",
]
SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with live_server("--engine", "pinky", "--pinky-delay", "0", "--pinky-tokens", "4", "--parallel", "2") as live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as c:
        yield c


def _tokens(entries: Any) -> str:
    return "".join(e.token for e in entries)


@pytest.mark.pinky
def test_non_streamed_logprobs_spell_the_content_and_leave_out_the_reasoning(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model="pinky", messages=USER, logprobs=True, top_logprobs=3)
    [choice] = answer.choices
    assert choice.message.content == NARF4
    assert getattr(choice.message, "reasoning_content") == "Narf! Poit!"  # noqa: B009 - not declared by the SDK
    assert choice.logprobs is not None and choice.logprobs.content is not None
    assert choice.logprobs.refusal is None
    entries = choice.logprobs.content
    assert [e.token for e in entries] == ["Narf!", " Narf!", " Narf!", " Narf!"]
    for e in entries:
        assert e.logprob == 0.0 and e.bytes == list(e.token.encode())
        # Pinky is certain of its piece: the one alternative it reports, whatever k >= 1 asks.
        assert [(t.token, t.logprob, t.bytes) for t in e.top_logprobs] == [(e.token, 0.0, e.bytes)]

    plain = client.chat.completions.create(model="pinky", messages=USER)
    assert plain.choices[0].logprobs is None, "not asked, null"
    bare = client.chat.completions.create(model="pinky", messages=USER, logprobs=True)
    bare_lp = bare.choices[0].logprobs
    assert bare_lp is not None and bare_lp.content is not None
    assert _tokens(bare_lp.content) == NARF4
    assert all(e.top_logprobs == [] for e in bare_lp.content), "top_logprobs absent: no alternatives"


@pytest.mark.pinky
def test_streamed_chunks_carry_the_logprobs_of_their_tokens(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="pinky", messages=USER, logprobs=True, top_logprobs=1, stream=True, stream_options={"include_usage": True}
    )
    content, tokens = [], []
    for chunk in stream:
        if not chunk.choices:
            continue
        [choice] = chunk.choices
        content.append(choice.delta.content or "")
        if choice.logprobs is not None and choice.logprobs.content:
            tokens += choice.logprobs.content
            assert choice.delta.content, "logprobs ride on the content chunk of their tokens"
            assert "".join(content).endswith(_tokens(choice.logprobs.content))
    assert "".join(content) == NARF4 == _tokens(tokens)
    assert all(len(t.top_logprobs) == 1 for t in tokens)

    for chunk in client.chat.completions.create(model="pinky", messages=USER, stream=True):
        assert all(c.logprobs is None for c in chunk.choices), "not asked, null in every chunk"


@pytest.mark.pinky
def test_each_of_n_choices_has_its_logprobs(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model="pinky", messages=USER, n=2, logprobs=True)
    assert [c.index for c in answer.choices] == [0, 1]
    for choice in answer.choices:
        assert choice.logprobs is not None and _tokens(choice.logprobs.content) == choice.message.content == NARF4
    streamed: dict[int, list[Any]] = {0: [], 1: []}
    for chunk in client.chat.completions.create(model="pinky", messages=USER, n=2, logprobs=True, stream=True):
        for part in chunk.choices:
            if part.logprobs is not None and part.logprobs.content:
                streamed[part.index] += part.logprobs.content
    assert {i: _tokens(entries) for i, entries in streamed.items()} == {0: NARF4, 1: NARF4}


@pytest.mark.pinky
@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": False, "top_logprobs": 0}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 2.5}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": "3"}, "top_logprobs"),
        ({"logprobs": "yes"}, "logprobs"),
    ],
)
def test_bad_logprobs_fields_are_400_naming_the_field(client: openai.OpenAI, fields: Any, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="pinky", messages=USER, extra_body=fields)
    assert refused.value.status_code == 400
    assert refused.value.body is not None and refused.value.body["param"] == param  # type: ignore[index]


@pytest.mark.pinky
def test_logprobs_with_tools_report_the_call_tokens_and_keep_the_call_whole() -> None:
    with live_server("--engine", "pinky", "--pinky-delay", "0", "--pinky-script", json.dumps(CALL)) as live:
        with openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0) as client:
            answer = client.chat.completions.create(model="pinky", messages=USER, tools=[WEATHER], logprobs=True)
            [choice] = answer.choices
            assert choice.finish_reason == "tool_calls" and choice.message.tool_calls is not None
            [call] = choice.message.tool_calls
            assert call.type == "function" and json.loads(call.function.arguments) == {"city": "Paris"}
            assert choice.logprobs is not None and choice.logprobs.content is not None
            assert _tokens(choice.logprobs.content) == "".join(CALL), "the call's tokens are reported too"
            tokens = []
            for chunk in client.chat.completions.create(
                model="pinky", messages=USER, tools=[WEATHER], logprobs=True, stream=True
            ):
                for part in chunk.choices:
                    if part.logprobs is not None and part.logprobs.content:
                        tokens += part.logprobs.content
            assert _tokens(tokens) == "".join(CALL), "tokens after the last content ride on the finish chunk"


@pytest.mark.pinky
def test_the_websocket_sends_logprobs_frames_before_their_content(server: LiveServer) -> None:
    import websockets

    async def go(fields: dict[str, Any]) -> list[dict[str, Any]]:
        async with websockets.connect(server.ws) as ws:
            await ws.recv()  # hello
            await ws.send(json.dumps({"type": "chat", "id": "q", "messages": USER, **fields}))
            frames: list[dict[str, Any]] = []
            while not frames or frames[-1]["type"] not in ("done", "error"):
                frames.append(json.loads(await ws.recv()))
            return frames

    frames = asyncio.run(go({"logprobs": True, "top_logprobs": 2}))
    kinds = [f["type"] for f in frames]
    assert kinds[-1] == "done" and "logprobs" in kinds
    content = "".join(f["delta"] for f in frames if f["type"] == "content")
    entries = [e for f in frames if f["type"] == "logprobs" for e in f["content"]]
    assert content == NARF4 == "".join(e["token"] for e in entries)
    for i, kind in enumerate(kinds):
        if kind == "logprobs":
            assert kinds[i + 1] == "content", kinds
    assert entries[0] == {
        "token": "Narf!", "logprob": 0.0, "bytes": list(b"Narf!"),
        "top_logprobs": [{"token": "Narf!", "logprob": 0.0, "bytes": list(b"Narf!")}],
    }  # fmt: skip
    assert "logprobs" not in [f["type"] for f in asyncio.run(go({}))]
    [error] = asyncio.run(go({"top_logprobs": 1}))
    assert error["type"] == "error" and error["error"]["param"] == "top_logprobs" and error["error"]["status"] == 400


@pytest.mark.pinky
def test_the_library_answer_carries_the_logprobs() -> None:
    with Genius(Pinky(delay=0, reply_tokens=2, think=False)) as g:
        answer = g.complete_sync(USER, logprobs=5)
        assert [e.kind for e in answer.logprobs] == ["token_logprob"] * 2
        assert "".join(e.text or "" for e in answer.logprobs) == answer.content == "Narf! Narf!"
        assert answer.logprobs[0].logprob == 0.0 and answer.logprobs[0].token_bytes == b"Narf!"
        assert answer.logprobs[0].top_logprobs == [("Narf!", 0.0, b"Narf!")]
        assert g.complete_sync(USER).logprobs == []
        kinds = [ev.kind for ev in g.chat(USER, logprobs=0)]
        assert kinds.index("token_logprob") < kinds.index("content"), "a token's logprob precedes its text"


# -- the real engine ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2() -> Iterator[LiveServer]:
    with live_server("--model", str(smollm2_path()), "--no-unload", "--threads", "2") as live:
        yield live


@pytest.mark.real_engine
def test_greedy_tokens_are_each_the_argmax_of_a_proper_distribution(smollm2: LiveServer) -> None:
    question: Any = [{"role": "user", "content": "Name a primary color."}]
    with openai.OpenAI(base_url=smollm2.base_url, api_key="unused", max_retries=0) as client:
        greedy: Any = {"model": SMOLLM2, "messages": question, "temperature": 0, "max_tokens": 12, "logprobs": True}
        answer = client.chat.completions.create(**greedy, top_logprobs=5)
        [choice] = answer.choices
        assert choice.logprobs is not None and choice.logprobs.content
        entries = choice.logprobs.content
        assert _tokens(entries) == choice.message.content
        assert answer.usage is not None and len(entries) == answer.usage.completion_tokens, "one per token"
        for e in entries:
            top = [t.logprob for t in e.top_logprobs]
            assert len(top) == 5 and top == sorted(top, reverse=True), top
            assert e.logprob <= 0.0 and e.logprob == max(top) == top[0], (e.token, e.logprob, top)
            assert e.top_logprobs[0].token == e.token and e.top_logprobs[0].bytes == e.bytes
            assert bytes(e.bytes or []).decode("utf-8", "replace") == e.token
            assert sum(math.exp(lp) for lp in top) <= 1.0 + 1e-4

        streamed = []
        for chunk in client.chat.completions.create(**greedy, top_logprobs=5, stream=True):
            for part in chunk.choices:
                if part.logprobs is not None and part.logprobs.content:
                    streamed += part.logprobs.content
        assert [(e.token, round(e.logprob, 4)) for e in streamed] == [(e.token, round(e.logprob, 4)) for e in entries]

        # Sampled, a token's logprob is still a probability of the raw distribution (it need not be the argmax).
        sampled = client.chat.completions.create(**{**greedy, "temperature": 1.0}, seed=7, top_logprobs=2)
        sampled_lp = sampled.choices[0].logprobs
        assert sampled_lp is not None and sampled_lp.content
        assert _tokens(sampled_lp.content) == sampled.choices[0].message.content
        assert all(e.logprob <= 0.0 and e.logprob <= e.top_logprobs[0].logprob for e in sampled_lp.content)
