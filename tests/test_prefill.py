"""Assistant prefill: a conversation that ends with an assistant message of text is continued, not answered.

The prompt is the messages before it rendered with the open assistant turn, then its text as it is, with no end of
turn after it (llama-server's default, Anthropic's "prefill Claude's response", vLLM's ``continue_final_message``);
the answer is the continuation alone. ``apply_template``, ``count_tokens`` and generation agree on that prompt. A
thought left open by the prefill (or by a template that pre-opens ``<think>``) goes on as reasoning; one it closes, or
never opens, goes on as the answer. On Pinky (marked ``pinky``) and on SmolLM2-135M (marked ``real_engine``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from rusty_genius import Brain, Event, Genius, Pinky

from tests.conftest import smollm2_path
from tests.ggufvariants import VARIANTS, chat_template, think_prefilled, variant

pytestmark = pytest.mark.anyio

QUESTION = {"role": "user", "content": "What is the capital of France? Answer in one sentence."}
PREFILL = "The capital of France is"
PREFILLED = [QUESTION, {"role": "assistant", "content": PREFILL}]
OPEN_TURN = "<|im_start|>assistant\n"
END_OF_TURN = "<|im_end|>"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


def text_of(events: list[Event], kind: str) -> str:
    return "".join(e.text or "" for e in events if e.kind == kind)


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]


# -- Pinky ---------------------------------------------------------------------------------------------------------


@pytest.fixture
async def pinky() -> AsyncIterator[Genius]:
    async with Genius(engine=Pinky(delay=0, reply_tokens=3)) as g:
        yield g


@pytest.mark.pinky
async def test_pinky_renders_the_prefill_open_and_counts_its_words(pinky: Genius) -> None:
    prompt = await pinky.apply_template(PREFILLED)
    assert prompt.endswith(OPEN_TURN + PREFILL), prompt
    assert prompt.count(END_OF_TURN) == 1  # the question's; none after the prefill
    fresh = await pinky.apply_template([QUESTION])
    assert prompt == fresh + PREFILL
    # Pinky counts words; the prefill's are in the prompt, so they count.
    assert await pinky.count_tokens(PREFILLED) == await pinky.count_tokens([QUESTION]) + len(PREFILL.split())
    answer = await pinky.complete(PREFILLED)
    assert answer.usage.prompt_tokens == await pinky.count_tokens(PREFILLED)


@pytest.mark.pinky
async def test_pinky_continues_the_answer_or_the_open_thought(pinky: Genius) -> None:
    # The answer has begun: Pinky's reply leaves out its usual thought.
    answer = await pinky.complete(PREFILLED)
    assert (answer.thinking, answer.content) == ("", "Narf! Narf! Narf!")
    # A thought left open by the prefill goes on (as reasoning), closes, and the answer follows.
    answer = await pinky.complete([QUESTION, {"role": "assistant", "content": "<think>Let me see,"}])
    assert (answer.thinking, answer.content) == ("Narf! Poit!", "Narf! Narf! Narf!")
    # Without a prefill (or with an empty one) the usual reply: a thought, then the answer.
    usual = ("Narf! Poit!", "Narf! Narf! Narf!")
    for messages in ([QUESTION], [QUESTION, {"role": "assistant", "content": ""}]):
        answer = await pinky.complete(messages)
        assert (answer.thinking, answer.content) == usual, messages


@pytest.mark.pinky
async def test_pinky_parses_a_script_from_where_the_prefill_ends() -> None:
    script = [" more", "</think>", "\n\nParis."]
    async with Genius(engine=Pinky(delay=0, script=script)) as g:
        events = [e async for e in g.chat([QUESTION, {"role": "assistant", "content": "<think>Hmm,"}])]
    assert kinds(events)[:3] == ["process_start", "thought_start", "thought_delta"], kinds(events)
    assert (text_of(events, "thought_delta"), text_of(events, "content")) == (" more", "Paris.")


@pytest.mark.pinky
async def test_pinky_an_empty_prefill_or_a_tool_call_turn_is_not_continued(pinky: Genius) -> None:
    fresh = await pinky.apply_template([QUESTION])
    assert fresh.endswith(OPEN_TURN)
    assert await pinky.apply_template([QUESTION, {"role": "assistant", "content": ""}]) == fresh
    called = await pinky.apply_template([QUESTION, {"role": "assistant", "content": None, "tool_calls": [CALL]}])
    assert called.endswith(END_OF_TURN + "\n" + OPEN_TURN), called


# -- the real engine (SmolLM2-135M, ChatML) -------------------------------------------------------------------------

GRAMMAR = 'root ::= " Paris" "</think>" "\\n\\nParis."'
"""A continuation, forced: the rest of a thought, its close, and the answer (the prefill decides what it is)."""
ANSWER = 'root ::= " Paris."'


def brain(path: Path) -> Brain:
    return Brain(model_path=path, threads=2, context_size=1024, parallel=1)


@pytest.fixture
async def smol() -> AsyncIterator[Genius]:
    async with Genius(engine=brain(smollm2_path())) as g:
        yield g


@pytest.fixture
async def thinking() -> AsyncIterator[Genius]:
    """SmolLM2 whose generation prompt pre-opens ``<think>\\n``."""
    src = smollm2_path()
    async with Genius(engine=brain(variant(src, VARIANTS, think_prefilled(chat_template(src))))) as g:
        yield g


async def greedy(g: Genius, messages: list[dict[str, Any]], **settings: Any) -> list[Event]:
    return [e async for e in g.chat(messages, temperature=0, **settings)]


@pytest.mark.real_engine
async def test_the_prompt_ends_with_the_prefill_and_counts_agree(smol: Genius) -> None:
    prompt = await smol.apply_template(PREFILLED)
    assert prompt.endswith(OPEN_TURN + PREFILL), prompt
    assert prompt.count(END_OF_TURN) == 2  # the system's and the question's; none after the prefill
    fresh = await smol.apply_template([QUESTION])
    assert fresh.endswith(OPEN_TURN) and prompt == fresh + PREFILL
    count = await smol.count_tokens(PREFILLED)
    assert count == len(await smol.tokenize(prompt)) > await smol.count_tokens([QUESTION])
    usage = (await smol.complete(PREFILLED, temperature=0, max_tokens=2)).usage
    assert usage.prompt_tokens == count


@pytest.mark.real_engine
async def test_a_greedy_answer_continues_the_prefill(smol: Genius) -> None:
    answer = await smol.complete(PREFILLED, temperature=0, max_tokens=24)
    assert answer.content.strip(), answer
    assert not answer.content.lstrip().startswith("The capital"), answer.content
    assert answer.thinking == ""
    assert "Paris" in answer.content, answer.content
    # It is what the same prompt continues as a raw completion: the continuation alone, the prefill not sent again.
    prompt = await smol.apply_template(PREFILLED)
    raw = text_of([e async for e in smol.generate(prompt, temperature=0, max_tokens=24)], "content")
    assert raw == answer.content, (raw, answer.content)
    # Without the prefill the model answers in a new turn, from the start.
    fresh = await smol.complete([QUESTION], temperature=0, max_tokens=24)
    assert fresh.content.startswith("The capital"), fresh.content


@pytest.mark.real_engine
async def test_an_empty_prefill_is_the_open_turn_and_a_tool_call_turn_stays_closed(smol: Genius) -> None:
    fresh = await smol.apply_template([QUESTION])
    empty = [QUESTION, {"role": "assistant", "content": ""}]
    assert await smol.apply_template(empty) == fresh
    assert await smol.count_tokens(empty) == await smol.count_tokens([QUESTION])
    called = await smol.apply_template([QUESTION, {"role": "assistant", "content": None, "tool_calls": [CALL]}])
    assert called.endswith(END_OF_TURN + "\n" + OPEN_TURN), called


@pytest.mark.real_engine
async def test_offered_tools_are_rendered_and_the_prefill_follows(smol: Genius) -> None:
    prompt = await smol.apply_template(PREFILLED, tools=[WEATHER])
    assert "get_weather" in prompt and prompt.endswith(OPEN_TURN + PREFILL), prompt
    assert await smol.count_tokens(PREFILLED, tools=[WEATHER]) == len(await smol.tokenize(prompt))


@pytest.mark.real_engine
async def test_the_prefill_decides_whether_the_continuation_is_thought_or_answer(smol: Genius) -> None:
    # A thought opened and left open: the continuation is the rest of it, then the answer.
    events = await greedy(smol, [QUESTION, {"role": "assistant", "content": "<think>Hmm,"}], grammar=GRAMMAR)
    assert kinds(events)[1] == "thought_start", kinds(events)
    assert (text_of(events, "thought_delta"), text_of(events, "content")) == (" Paris", "Paris.")
    # Closed in the prefill, or never opened: the answer, its leading space kept.
    for prefill in ("<think>Easy.</think>\n\nIt is", PREFILL):
        events = await greedy(smol, [QUESTION, {"role": "assistant", "content": prefill}], grammar=ANSWER)
        assert "thought_start" not in kinds(events), kinds(events)
        assert text_of(events, "content") == " Paris.", prefill


@pytest.mark.real_engine
async def test_after_a_pre_opened_think_the_prefill_decides(thinking: Genius) -> None:
    # Plain text after the template's `<think>`: still the thought.
    prompt = await thinking.apply_template([QUESTION, {"role": "assistant", "content": "Let me see,"}])
    assert prompt.endswith(OPEN_TURN + "<think>\nLet me see,"), prompt
    events = await greedy(thinking, [QUESTION, {"role": "assistant", "content": "Let me see,"}], grammar=GRAMMAR)
    assert kinds(events)[1] == "thought_start", kinds(events)
    assert (text_of(events, "thought_delta"), text_of(events, "content")) == (" Paris", "Paris.")
    # The prefill closes it: the answer.
    closed = [QUESTION, {"role": "assistant", "content": "Easy.</think>\n\nIt is"}]
    events = await greedy(thinking, closed, grammar=ANSWER)
    assert "thought_start" not in kinds(events) and text_of(events, "content") == " Paris.", kinds(events)
    # No prefill: the pre-opened thought as before, its leading new line dropped.
    events = await greedy(thinking, [QUESTION], grammar='root ::= "\\nHm.</think>\\n\\nParis."')
    assert (text_of(events, "thought_delta"), text_of(events, "content")) == ("Hm.", "Paris.")
