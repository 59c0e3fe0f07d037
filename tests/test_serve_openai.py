"""The official openai client, unchanged, against a live ``ogenius serve`` on Pinky: sync and async, streaming and not,
reasoning in ``reasoning_content``, usage, models."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.servers import LiveServer, live_server

pytestmark = pytest.mark.pinky

USER: Any = [{"role": "user", "content": "Are you pondering what I'm pondering?"}]
NARF3 = "Narf! Narf! Narf!"


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with live_server("--engine", "pinky", "--pinky-delay", "0", "--pinky-tokens", "3") as live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as c:
        yield c


def test_non_streaming_answer_with_reasoning_apart_and_usage(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model="pinky", messages=USER)
    choice = answer.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == NARF3
    assert getattr(choice.message, "reasoning_content") == "Narf! Poit!"  # noqa: B009 - not declared by the SDK
    assert choice.finish_reason == "stop"
    assert answer.model == "pinky" and answer.object == "chat.completion" and answer.id.startswith("chatcmpl-")
    assert answer.usage is not None and answer.usage.completion_tokens > 3
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    assert answer.usage.prompt_tokens_details is not None
    assert answer.usage.prompt_tokens_details.cached_tokens == 0


def test_streaming_sends_reasoning_deltas_then_content_and_never_a_think_tag(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="pinky",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
        temperature=0.2,
        top_p=0.9,
        seed=7,
    )
    reasoning, content, finish, usage = [], [], [], []
    for chunk in stream:
        if chunk.usage is not None:
            usage.append(chunk.usage)
        for choice in chunk.choices:
            delta: Any = choice.delta
            reasoning.append(getattr(delta, "reasoning_content", None) or "")
            content.append(delta.content or "")
            if choice.finish_reason:
                finish.append(choice.finish_reason)
    assert "".join(reasoning) == "Narf! Poit!"
    assert "".join(content) == NARF3
    assert "<think>" not in "".join(content) and "</think>" not in "".join(content)
    assert finish == ["stop"]
    assert len(usage) == 1 and usage[0].completion_tokens > 3


def test_max_tokens_and_max_completion_tokens_end_with_length(client: openai.OpenAI) -> None:
    a = client.chat.completions.create(model="pinky", messages=USER, max_tokens=6)
    assert a.choices[0].finish_reason == "length" and a.usage is not None and a.usage.completion_tokens == 6
    b = client.chat.completions.create(model="pinky", messages=USER, max_tokens=50, max_completion_tokens=7)
    assert b.choices[0].finish_reason == "length" and b.usage is not None and b.usage.completion_tokens == 7


def test_sampling_fields_and_stop_are_accepted(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="pinky",
        messages=[{"role": "system", "content": "be brief"}, *USER, {"role": "assistant", "content": "Poit"}, *USER],
        temperature=0,
        top_p=0.5,
        presence_penalty=0.5,
        frequency_penalty=0.5,
        seed=3,
        stop=["Zort", "Troz"],
        extra_body={"top_k": 5, "min_p": 0.1, "some_unknown_field": {"x": 1}},
    )
    assert answer.choices[0].message.content == NARF3


def test_models_list_and_retrieve_show_the_loaded_model(client: openai.OpenAI) -> None:
    [model] = client.models.list().data
    assert model.id == "pinky" and model.object == "model" and model.owned_by == "rusty-genius"
    assert isinstance(model.created, int)
    assert getattr(model, "status") == "loaded"  # noqa: B009 - an extension the SDK does not declare
    assert client.models.retrieve("pinky").id == "pinky"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("llama-70b")


def test_an_unknown_model_is_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-4o", messages=USER)
    assert info.value.code == "model_not_found"


def test_a_bad_setting_is_400_naming_the_field(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="pinky", messages=USER, temperature=-1)
    assert info.value.param == "temperature"
    assert "temperature" in info.value.message


@pytest.mark.anyio
async def test_async_client_streaming_and_not_with_four_concurrent_streams(server: LiveServer) -> None:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as client:
        answer = await client.chat.completions.create(model="pinky", messages=USER)
        assert answer.choices[0].message.content == NARF3

        async def one() -> tuple[str, str]:
            stream = await client.chat.completions.create(model="pinky", messages=USER, stream=True)
            content, reasoning = [], []
            async for chunk in stream:
                for choice in chunk.choices:
                    content.append(choice.delta.content or "")
                    reasoning.append(getattr(choice.delta, "reasoning_content", None) or "")
            return "".join(content), "".join(reasoning)

        results = await asyncio.gather(*(one() for _ in range(4)))
        assert results == [(NARF3, "Narf! Poit!")] * 4
