"""The context overflow policy: ``error`` (the default) or ``drop_oldest_turns`` (system messages and the last turn
stay; usage counts the messages left out), per request and as a default of ``ogenius serve``/``chat``."""

from __future__ import annotations

import httpx
import pytest
import rusty_genius
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
def test_the_setting_takes_its_two_values_and_names_itself_otherwise() -> None:
    assert InferenceConfig().behavior.context_overflow == "error"
    assert InferenceConfig.of(context_overflow="drop_oldest_turns").behavior.context_overflow == "drop_oldest_turns"
    with pytest.raises(ConfigError) as caught:
        InferenceConfig.of(context_overflow="shift")
    assert caught.value.field == "context_overflow" and "error or drop_oldest_turns" in str(caught.value)
    with live_server("--engine", "pinky", "--pinky-delay", "0") as server:
        body = {"messages": [{"role": "user", "content": "hi"}], "context_overflow": "shift"}
        refused = httpx.post(server.http + "/v1/chat/completions", json=body, timeout=30)
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "context_overflow"


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
