"""The context overflow policy: ``error`` (the default), ``drop_oldest_turns`` (system messages and the last turn
stay; usage counts the messages left out) or ``shift`` (llama.cpp's context shift: generation runs past the context,
an overlong prompt loses its middle; usage counts the shifted tokens), per request and as a default of ``ogenius
serve``/``chat``."""

from __future__ import annotations

import re
from typing import Any, cast

import httpx
import openai
import pytest
import rusty_genius
from openai.types.chat import ChatCompletionMessageParam
from rusty_genius import Brain, ConfigError, ContextOverflowError, InferenceConfig

from tests.conftest import smollm2_path
from tests.servers import live_server

SYSTEM = {"role": "system", "content": "Be brief."}


def long_conversation(turns: int = 6) -> list[dict[str, str]]:
    messages = [SYSTEM]
    for i in range(turns):
        messages.append({"role": "user", "content": f"Tell me fact number {i} about the sea, in detail. " * 3})
        messages.append({"role": "assistant", "content": "The sea is vast and deep and full of life. " * 4})
    return [*messages, {"role": "user", "content": "Summarise."}]


@pytest.mark.pinky
def test_the_setting_takes_its_three_values_and_names_itself_otherwise() -> None:
    assert InferenceConfig().behavior.context_overflow == "error"
    for policy in ("drop_oldest_turns", "shift"):
        assert InferenceConfig.of(context_overflow=policy).behavior.context_overflow == policy
    with pytest.raises(ConfigError) as caught:
        InferenceConfig.of(context_overflow="truncate")
    assert caught.value.field == "context_overflow" and "error, drop_oldest_turns, shift" in str(caught.value)
    with live_server("--engine", "pinky", "--pinky-delay", "0", "--context-overflow", "shift") as server:
        hi = [{"role": "user", "content": "hi"}]
        requests: list[tuple[str, dict[str, Any]]] = [
            ("/v1/chat/completions", {"messages": hi}),
            ("/v1/completions", {"prompt": "hi", "max_tokens": 4}),
            ("/v1/messages", {"messages": hi, "max_tokens": 4}),
            ("/v1/responses", {"input": "hi"}),
        ]
        for path, body in requests:
            taken = httpx.post(server.http + path, json={**body, "context_overflow": "shift"}, timeout=30)
            assert taken.status_code == 200, (path, taken.text)
            refused = httpx.post(server.http + path, json={**body, "context_overflow": "truncate"}, timeout=30)
            assert refused.status_code == 400, (path, refused.text)
            assert "context_overflow" in refused.text and "error, drop_oldest_turns, shift" in refused.text


@pytest.mark.real_engine
@pytest.mark.anyio
async def test_drop_oldest_turns_fits_the_conversation_and_counts_what_went() -> None:
    async with rusty_genius.Genius(Brain(model_path=smollm2_path(), context_size=256, parallel=1)) as g:
        with pytest.raises(ContextOverflowError):
            await g.complete(long_conversation(), max_tokens=4)
        answer = await g.complete(long_conversation(), max_tokens=4, context_overflow="drop_oldest_turns")
        assert answer.usage is not None and 0 < answer.usage.prompt_tokens < 256
        assert answer.usage.dropped_messages > 0 and answer.usage.dropped_messages % 2 == 0, "whole turns go"
        kept = [SYSTEM, *long_conversation()[1 + answer.usage.dropped_messages :]]
        assert await g.count_tokens(kept) == answer.usage.prompt_tokens, "system message and the last turns stay"


@pytest.mark.real_engine
def test_the_server_default_and_the_request_field() -> None:
    args = ("--model", str(smollm2_path()), "--context-size", "256", "--parallel", "1", "--max-tokens", "4")
    with live_server(*args, "--context-overflow", "drop_oldest_turns") as server:
        with httpx.Client(base_url=server.http, timeout=60) as http:
            answer = http.post("/v1/chat/completions", json={"messages": long_conversation()})
            assert answer.status_code == 200 and answer.json()["usage"]["dropped_messages"] > 0
            strict = http.post(
                "/v1/chat/completions", json={"messages": long_conversation(), "context_overflow": "error"}
            )
            assert strict.status_code == 400 and strict.json()["error"]["code"] == "context_length_exceeded"
            anthropic = {"max_tokens": 4, "system": "Be brief.", "messages": long_conversation()[1:]}
            assert http.post("/v1/messages", json=anthropic).status_code == 200


# -- shift ------------------------------------------------------------------------------------------------------------

COUNT: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are a counter."},
    {"role": "user", "content": "Count from 1 to 500, one number per line."},
]
NO_END = {0: -100.0, 2: -100.0}
"""SmolLM2's end-of-text and end-of-turn tokens banned, so an answer runs until its limit."""
WINDOW = 64
"""The context of the real-model tests: small, so a shift comes after a few dozen tokens on these slow CPUs."""


def counted(text: str) -> list[int]:
    """The numbers SmolLM2 counts in ("1. 1\n2. 2\n..."), in order."""
    return [int(n) for n in re.findall(r"(\d+)\. \1\n", text)]


def assert_counts_on(text: str) -> None:
    """The answer is still counting after the shifts: every line is the next number (coherent, not noise)."""
    numbers = counted(text)
    assert len(numbers) > 10, text
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), text


@pytest.mark.real_engine
@pytest.mark.anyio
async def test_shift_generates_past_the_context_and_keeps_counting() -> None:
    brain = Brain(model_path=smollm2_path(), context_size=WINDOW, parallel=1, kv_store=False)
    async with rusty_genius.Genius(brain) as g:
        stopped = await g.complete(COUNT, max_tokens=2 * WINDOW, temperature=0, logit_bias=NO_END)
        assert stopped.finish_reason == "length" and stopped.usage is not None
        assert stopped.usage.prompt_tokens + stopped.usage.completion_tokens <= WINDOW, "error: ends at the context"
        assert stopped.usage.shifted_tokens == 0
        shifted = await g.complete(
            COUNT, max_tokens=2 * WINDOW, context_overflow="shift", temperature=0, logit_bias=NO_END
        )
        assert shifted.finish_reason == "length" and shifted.usage is not None
        assert shifted.usage.completion_tokens == 2 * WINDOW > WINDOW, "max_tokens ends it, not the context"
        assert shifted.usage.shifted_tokens > 0
        assert shifted.content.startswith(stopped.content), "nothing changes before the first shift"
        assert_counts_on(shifted.content)
        assert counted(shifted.content)[-1] > counted(stopped.content)[-1]
        again = await g.complete(
            COUNT, max_tokens=2 * WINDOW, context_overflow="shift", temperature=0, logit_bias=NO_END
        )
        assert again.content == shifted.content, "a shifted cache is not reused as if it were the prompt's"
        assert again.usage is not None and again.usage.cached_prompt_tokens < shifted.usage.prompt_tokens
        # Without max_tokens a shifting answer still ends: after one context's worth of tokens.
        capped = await g.complete(COUNT, context_overflow="shift", temperature=0, logit_bias=NO_END)
        assert capped.finish_reason == "length" and capped.usage is not None
        assert capped.usage.completion_tokens == WINDOW and capped.usage.shifted_tokens > 0


@pytest.mark.real_engine
@pytest.mark.anyio
async def test_shift_with_prompt_lookup_drafts_gives_the_same_answer() -> None:
    """Drafts stay inside the window and a shift waits until the draft is checked: greedy answers do not change."""
    answers = []
    for spec in ("none", "ngram-simple"):
        brain = Brain(model_path=smollm2_path(), context_size=WINDOW, parallel=1, kv_store=False, spec_type=spec)
        async with rusty_genius.Genius(brain) as g:
            answer = await g.complete(
                COUNT, max_tokens=2 * WINDOW, context_overflow="shift", temperature=0, logit_bias=NO_END
            )
            assert answer.usage is not None and answer.usage.shifted_tokens > 0
            answers.append(answer)
    plain, drafted = answers
    assert drafted.usage is not None and drafted.usage.accepted_draft_tokens > 0, "the drafts were used"
    assert drafted.content == plain.content
    assert_counts_on(drafted.content)


@pytest.mark.real_engine
@pytest.mark.anyio
async def test_shift_cuts_an_overlong_prompt_from_its_middle() -> None:
    conversation = long_conversation()
    async with rusty_genius.Genius(Brain(model_path=smollm2_path(), context_size=256, parallel=1, kv_store=False)) as g:
        whole = await g.count_tokens(conversation)
        assert whole > 256
        with pytest.raises(ContextOverflowError):
            await g.complete(conversation, max_tokens=2)
        answer = await g.complete(conversation, max_tokens=2, context_overflow="shift")
        assert answer.usage is not None and answer.usage.completion_tokens == 2
        assert answer.usage.prompt_tokens < 256 and answer.usage.dropped_messages == 0
        assert answer.usage.prompt_tokens + answer.usage.shifted_tokens == whole, "what was read and what was cut"
        # A raw prompt too (the completions endpoint, Genius.generate).
        text = "The sea is vast and deep. " * 60
        events = [e async for e in g.generate(text, max_tokens=2, context_overflow="shift")]
        usage = events[-1].usage
        assert usage is not None and usage.prompt_tokens < 256 < usage.prompt_tokens + usage.shifted_tokens


@pytest.mark.real_engine
def test_shift_through_the_openai_client_streamed_and_not() -> None:
    args = ("--model", str(smollm2_path()), "--context-size", str(WINDOW), "--parallel", "1")
    with live_server(*args, "--context-overflow", "shift") as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="none", timeout=300)
        model = smollm2_path().name
        extra = {"logit_bias": {str(k): v for k, v in NO_END.items()}}
        answer = client.chat.completions.create(
            model=model, messages=COUNT, max_tokens=WINDOW + 16, temperature=0, extra_body=extra
        )
        assert answer.choices[0].finish_reason == "length" and answer.usage is not None
        assert answer.usage.completion_tokens == WINDOW + 16
        assert (answer.usage.model_extra or {}).get("shifted_tokens", 0) > 0
        assert_counts_on(answer.choices[0].message.content or "")
        stream = client.chat.completions.create(
            model=model, messages=COUNT, max_tokens=WINDOW + 16, temperature=0, stream=True,
            stream_options={"include_usage": True}, extra_body=extra,
        )  # fmt: skip
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == answer.choices[0].message.content
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
        usage = chunks[-1].usage
        assert usage is not None and usage.completion_tokens == WINDOW + 16
        assert (usage.model_extra or {}).get("shifted_tokens", 0) > 0
        # The request field still says error, and that still errors.
        overlong = cast("list[ChatCompletionMessageParam]", long_conversation())
        strict = {"context_overflow": "error"}
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model=model, messages=overlong, max_tokens=2, extra_body=strict)
        assert refused.value.code == "context_length_exceeded"
        anthropic = {"max_tokens": 2, "system": "Be brief.", "messages": long_conversation()[1:]}
        messages = httpx.post(server.http + "/v1/messages", json=anthropic, timeout=300)
        assert messages.status_code == 200 and messages.json()["usage"]["shifted_tokens"] > 0
