"""``n`` choices and ``logit_bias`` on ``/v1/chat/completions``: the official openai client, unchanged, against a live
``ogenius serve`` on Pinky (indexes, finishes, usage, the 400s, disconnects), the server's pieces in-process (seeds,
a failing choice), and on SmolLM2 that a bias of -100 bans a token and +100 forces one."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from rusty_genius import Brain, ConfigError, EngineError, Genius, InferenceConfig, Pinky

from tests.conftest import smollm2_path
from tests.servers import LiveServer, live_server

USER: Any = [{"role": "user", "content": "Are you pondering what I'm pondering?"}]
NARF3 = "Narf! Narf! Narf!"
WEATHER: Any = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}
CALL = ["<tool_call>\n", '{"name": "get_weather", ', '"arguments": {"city": ', '"Paris"}}', "\n</tool_call>"]


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with live_server(
        "--engine", "pinky", "--pinky-delay", "0.002", "--pinky-tokens", "3", "--parallel", "4"
    ) as live:  # fmt: skip
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as c:
        yield c


# -- n choices ----------------------------------------------------------------------------------------------------


@pytest.mark.pinky
def test_n_choices_non_streamed_have_every_index_and_usage_counts_the_prompt_once(client: openai.OpenAI) -> None:
    one = client.chat.completions.create(model="pinky", messages=USER)
    three = client.chat.completions.create(model="pinky", messages=USER, n=3, seed=11)
    assert [c.index for c in three.choices] == [0, 1, 2]
    for choice in three.choices:
        assert choice.message.content == NARF3 and choice.finish_reason == "stop"
        assert getattr(choice.message, "reasoning_content") == "Narf! Poit!"  # noqa: B009 - not declared by the SDK
    assert one.usage is not None and three.usage is not None
    assert three.usage.prompt_tokens == one.usage.prompt_tokens
    assert three.usage.completion_tokens == 3 * one.usage.completion_tokens
    assert three.usage.total_tokens == three.usage.prompt_tokens + three.usage.completion_tokens


@pytest.mark.pinky
def test_n_choices_streamed_interleave_each_with_its_finish_and_one_usage_at_the_end(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="pinky", messages=USER, n=3, stream=True, stream_options={"include_usage": True}
    )
    content: dict[int, list[str]] = {0: [], 1: [], 2: []}
    finishes: dict[int, list[str]] = {0: [], 1: [], 2: []}
    roles: list[int] = []
    usage: list[Any] = []
    ids = set()
    for chunk in stream:
        ids.add(chunk.id)
        if chunk.usage is not None:
            assert chunk.choices == [] and not usage, "one usage chunk, choices empty"
            usage.append(chunk.usage)
            continue
        assert not usage, "the usage chunk comes last"
        [choice] = chunk.choices
        if choice.delta.role:
            roles.append(choice.index)
        content[choice.index].append(choice.delta.content or "")
        if choice.finish_reason:
            finishes[choice.index].append(choice.finish_reason)
    assert len(ids) == 1 and sorted(roles) == [0, 1, 2]
    assert {i: "".join(parts) for i, parts in content.items()} == {0: NARF3, 1: NARF3, 2: NARF3}
    assert finishes == {0: ["stop"], 1: ["stop"], 2: ["stop"]}
    [total] = usage
    single = client.chat.completions.create(model="pinky", messages=USER).usage
    assert single is not None and total.prompt_tokens == single.prompt_tokens
    assert total.completion_tokens == 3 * single.completion_tokens


@pytest.mark.pinky
def test_n_choices_interleave_as_they_arrive() -> None:
    body = {"messages": USER, "n": 2, "stream": True}
    with live_server("--engine", "pinky", "--pinky-delay", "0.01", "--pinky-tokens", "20", "--parallel", "2") as live:
        with httpx.Client(base_url=live.http, timeout=10) as http:
            with http.stream("POST", "/v1/chat/completions", json=body) as response:
                chunks = [
                    json.loads(line[6:])["choices"][0]
                    for line in response.iter_lines()
                    if line.startswith("data: {") and '"choices":[{' in line
                ]
    first_finish = next(i for i, c in enumerate(chunks) if c["finish_reason"])
    texts = {c["index"] for c in chunks[:first_finish] if c["delta"].get("content")}
    assert texts == {0, 1}, "both choices stream before either ends"
    assert sorted(c["index"] for c in chunks if c["finish_reason"]) == [0, 1], "each choice has its finish chunk"


@pytest.mark.pinky
def test_n_with_tools_gives_each_choice_its_calls() -> None:
    with live_server("--engine", "pinky", "--pinky-delay", "0", "--pinky-script", json.dumps(CALL)) as live:
        with openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0) as client:
            answer = client.chat.completions.create(model="pinky", messages=USER, tools=[WEATHER], n=2)
            assert [c.index for c in answer.choices] == [0, 1]
            for choice in answer.choices:
                assert choice.finish_reason == "tool_calls" and choice.message.tool_calls is not None
                [call] = choice.message.tool_calls
                assert call.type == "function"
                assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
            streamed: dict[int, list[str]] = {0: [], 1: []}
            for chunk in client.chat.completions.create(
                model="pinky", messages=USER, tools=[WEATHER], n=2, stream=True
            ):
                for part in chunk.choices:
                    for delta in part.delta.tool_calls or []:
                        streamed[part.index].append((delta.function and delta.function.arguments) or "")
            assert all(json.loads("".join(parts)) == {"city": "Paris"} for parts in streamed.values())


@pytest.mark.pinky
@pytest.mark.parametrize("n", [9, 0, -1, 2.5, "3"])
def test_n_out_of_range_is_400_naming_n(client: openai.OpenAI, n: Any) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="pinky", messages=USER, n=n)
    assert refused.value.status_code == 400
    assert isinstance(refused.value.body, dict) and refused.value.body.get("param") == "n", refused.value.body


@pytest.mark.pinky
def test_a_choice_that_cannot_be_queued_fails_the_request_and_frees_the_others() -> None:
    with live_server("--engine", "pinky", "--pinky-delay", "0.001", "--pinky-tokens", "3", "--max-queue", "2") as live:
        with httpx.Client(base_url=live.http, timeout=10) as http:
            busy = http.post("/v1/chat/completions", json={"messages": USER, "n": 3})
            assert busy.status_code == 503 and busy.json()["error"]["code"] == "server_busy"
            ok = http.post("/v1/chat/completions", json={"messages": USER, "n": 2})
            assert ok.status_code == 200, ok.text
            assert [c["message"]["content"] for c in ok.json()["choices"]] == [NARF3, NARF3]


@pytest.mark.pinky
def test_a_client_that_leaves_stops_every_choice() -> None:
    # 4 choices of 200 tokens at 20 ms fill the 4 slots for 4 s; the next request is quick only if all were stopped.
    with live_server("--engine", "pinky", "--pinky-delay", "0.02", "--pinky-tokens", "200", "--parallel", "4") as live:
        with httpx.Client(base_url=live.http, timeout=10) as http:
            body = {"messages": USER, "n": 4, "stream": True}
            with http.stream("POST", "/v1/chat/completions", json=body) as response:
                lines = response.iter_lines()
                for _ in range(6):
                    next(lines)
            time.sleep(0.2)
            started = time.monotonic()
            answer = http.post("/v1/chat/completions", json={"messages": USER, "max_tokens": 3})
            assert answer.status_code == 200
            assert time.monotonic() - started < 1.5, "an abandoned choice was still running"
        with httpx.Client(base_url=live.http, timeout=0.5) as http:
            with pytest.raises(httpx.ReadTimeout):
                http.post("/v1/chat/completions", json={"messages": USER, "n": 4})
            time.sleep(0.2)
            started = time.monotonic()
            answer = http.post("/v1/chat/completions", json={"messages": USER, "max_tokens": 3}, timeout=5)
            assert answer.status_code == 200 and time.monotonic() - started < 1.5, "non-streamed choices stopped too"


@pytest.mark.pinky
def test_the_websocket_takes_one_choice_per_conversation(server: LiveServer) -> None:
    import asyncio

    import websockets

    async def go() -> dict[str, Any]:
        async with websockets.connect(server.ws) as ws:
            await ws.recv()  # hello
            await ws.send(json.dumps({"type": "chat", "id": 1, "messages": USER, "n": 2}))
            return dict(json.loads(await ws.recv()))

    frame = asyncio.run(go())
    assert frame["type"] == "error" and frame["error"]["param"] == "n" and frame["error"]["status"] == 400


# -- the server's pieces in-process -------------------------------------------------------------------------------


def _service(genius: Genius, defaults: InferenceConfig | None = None) -> Any:
    from rusty_genius.ogenius.serve.models import ModelTable, Served
    from rusty_genius.ogenius.serve.service import Service
    from rusty_genius.ogenius.serve.settings import ServeSettings

    table = ModelTable([Served("pinky", Pinky(delay=0))], registry=False)
    return Service(genius, table, defaults or InferenceConfig(), ServeSettings())


@pytest.mark.pinky
def test_choice_i_samples_with_seed_plus_i(monkeypatch: pytest.MonkeyPatch) -> None:
    from rusty_genius.core.config import U32_MAX
    from rusty_genius.ogenius.serve.openai_api import parse_chat

    seeds: list[int | None] = []
    original = Genius._open

    def spy(held: Any, messages: Any, config: InferenceConfig) -> Any:
        seeds.append(config.sampling.seed)
        return original(held, messages, config)

    monkeypatch.setattr(Genius, "_open", staticmethod(spy))
    with Genius(engine=Pinky(delay=0, reply_tokens=1, parallel=4)) as g:
        cases: list[tuple[dict[str, Any], InferenceConfig | None, list[int | None]]] = [
            ({"seed": 7, "n": 3}, None, [7, 8, 9]),
            ({"n": 2}, None, [None, None]),
            ({"n": 2}, InferenceConfig.of(seed=40), [40, 41]),
            ({"seed": U32_MAX, "n": 2}, None, [U32_MAX, 0]),
            ({"seed": 5}, None, [5]),
        ]
        for body, defaults, expected in cases:
            seeds.clear()
            service = _service(g, defaults)
            streams = service.open_choices(parse_chat({"messages": USER, **body}))
            for stream in streams:
                assert [ev.kind for ev in stream][-1] == "complete"
                service.done(stream)
            assert seeds == expected, body


@pytest.mark.pinky
@pytest.mark.anyio
async def test_a_failing_choice_raises_and_the_others_are_closed() -> None:
    from rusty_genius.ogenius.serve.choices import Choices

    async with Genius(engine=Pinky(delay=0.005, fail_after=4, think=False, parallel=3)) as g:
        streams = [g.chat(USER), g.chat(USER), g.chat(USER)]
        choices = Choices(streams)
        seen: set[int] = set()
        with pytest.raises(EngineError, match="injected failure"):
            while True:
                index, batch = await choices.next()
                assert batch
                seen.add(index)
        choices.close()
        for stream in streams:
            stream.close()
        assert seen and all(s.finished for s in streams)


# -- logit_bias -----------------------------------------------------------------------------------------------------


@pytest.mark.pinky
@pytest.mark.parametrize(
    "bias",
    [{"x": 1}, {"-1": 5}, {"5": 101}, {"5": -100.5}, {"5": "1"}, {"5": None}, [1, 2], "5",
     dict.fromkeys(map(str, range(1025)), 1)],
)  # fmt: skip
def test_bad_logit_bias_is_400_naming_logit_bias(client: openai.OpenAI, bias: Any) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="pinky", messages=USER, logit_bias=bias)
    assert isinstance(refused.value.body, dict) and refused.value.body.get("param") == "logit_bias", refused.value.body


@pytest.mark.pinky
def test_pinky_takes_logit_bias_and_ignores_it(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model="pinky", messages=USER, logit_bias={"42": -100, "7": 100})
    assert answer.choices[0].message.content == NARF3
    with Genius(engine=Pinky(delay=0, reply_tokens=1, think=False)) as g:
        assert g.complete_sync(USER, logit_bias={42: -100}).content == "Narf!"


# -- on SmolLM2 -------------------------------------------------------------------------------------------------------

CAPITAL = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@cache
def _vocab(path: Path) -> dict[str, int]:
    """Token text (GPT-2 byte-level: a leading space is ``Ġ``) → id, read from the GGUF."""
    import gguf

    field = gguf.GGUFReader(path).fields["tokenizer.ggml.tokens"]
    return {bytes(field.parts[i]).decode("utf-8", "replace"): n for n, i in enumerate(field.data)}


@pytest.fixture(scope="module")
def brain() -> Iterator[Genius]:
    with Genius(engine=Brain(model_path=smollm2_path(), threads=2, context_size=1024)) as g:
        yield g


def _greedy(g: Genius, **settings: Any) -> str:
    return g.complete_sync(CAPITAL, temperature=0, max_tokens=6, **settings).content


@pytest.mark.real_engine
def test_a_bias_of_minus_100_bans_a_token_and_plus_100_forces_one(brain: Genius) -> None:
    vocab = _vocab(smollm2_path())
    plain = _greedy(brain)
    word = plain.split()[0].strip(".,!")
    banned = {vocab[w]: -100 for w in (word, "Ġ" + word) if w in vocab}
    assert banned, f"no whole-word token for {word!r} in the vocabulary"
    other = _greedy(brain, logit_bias=banned)
    assert other != plain and not other.startswith(word), (plain, other)
    assert _greedy(brain, logit_bias={vocab["Ġbanana"]: 0.0}) == plain, "a zero bias changes nothing"

    forced = _greedy(brain, logit_bias={vocab["Hello"]: 100})
    assert forced.startswith("HelloHello"), forced
    sampled = brain.complete_sync(CAPITAL, temperature=1.0, seed=3, max_tokens=4, logit_bias={vocab["Hello"]: 100})
    assert sampled.content == "Hello" * 4, sampled.content
    # The constrained chain (a JSON answer) starts with the biases too.
    json_answer: dict[str, Any] = {"temperature": 0, "max_tokens": 12, "response_format": {"type": "json_object"}}
    constrained = brain.complete_sync(CAPITAL, logit_bias=banned, **json_answer).content
    assert constrained.lstrip().startswith("{"), constrained
    assert constrained != brain.complete_sync(CAPITAL, **json_answer).content
    assert brain.complete_sync(CAPITAL, logit_bias=banned, **json_answer).content == constrained


@pytest.mark.real_engine
def test_a_token_id_past_the_vocabulary_fails_the_request_naming_it(brain: Genius) -> None:
    n_vocab = len(_vocab(smollm2_path()))
    with pytest.raises(ConfigError, match=f"token id {n_vocab} is not in the model's vocabulary") as refused:
        _greedy(brain, logit_bias={5: 1.0, n_vocab: -3.0})
    assert refused.value.field == "logit_bias"
    assert _greedy(brain, logit_bias={n_vocab - 1: -3.0}), "the last id is in range"
