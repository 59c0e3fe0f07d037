"""Continuous batching: several requests from one loaded model at once, each exactly as it would be alone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from rusty_genius import Brain, ChatStream, Genius, Pinky

from tests.conftest import smollm2_path

pytestmark = pytest.mark.anyio

# Prompts whose greedy answers have a wide margin at every token. llama.cpp's CPU kernels round differently for a
# batch of 4 rows than for 1, so an answer with a near-tie (open prompts such as "Write a short poem about the sea."
# on this 135M model with its own template's default system prompt) may flip there when batched, on any engine
# version; these show whether sequences stay apart, not how the rounding falls.
PROMPTS = [
    "Count from 1 to 30, separated by commas.",
    "Repeat exactly: the quick brown fox jumps over the lazy dog.",
    "Repeat exactly: red, green, blue, yellow, purple, orange.",
    "Repeat exactly: one, two, three, four, five, six, seven, eight.",
]


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def answer(stream: ChatStream) -> tuple[str, str]:
    """The content and the finish reason."""
    parts, reason = [], ""
    async for ev in stream:
        if ev.kind == "content":
            parts.append(ev.text or "")
        elif ev.kind == "complete":
            reason = ev.finish_reason or ""
    return "".join(parts), reason


@pytest.fixture(scope="module")
async def brain4() -> AsyncIterator[Genius]:
    # No KV store: a conversation another test module saved would be restored into some of these requests and not
    # others, and a cache computed in other batches can flip the near ties these greedy comparisons depend on.
    brain = Brain(model_path=smollm2_path(), threads=2, context_size=1024, parallel=4, kv_store=False)
    async with Genius(brain) as g:
        yield g


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.real_engine
async def test_concurrent_requests_each_produce_exactly_what_they_produce_alone(brain4: Genius) -> None:
    assert brain4.engine.parallel == 4
    alone = [await answer(brain4.chat(ask(p), temperature=0, max_tokens=48)) for p in PROMPTS]
    together = await asyncio.gather(*(answer(brain4.chat(ask(p), temperature=0, max_tokens=48)) for p in PROMPTS))
    assert all(text.strip() for text, _ in alone)
    assert list(together) == alone


@pytest.mark.real_engine
async def test_cancelling_one_disturbs_no_other(brain4: Genius) -> None:
    alone = [await answer(brain4.chat(ask(p), temperature=0, max_tokens=40)) for p in PROMPTS[1:]]
    victim = brain4.chat(ask("Write a long story about a dragon."), temperature=0, max_tokens=400)

    async def cancel_soon() -> tuple[str, str]:
        parts, reason, seen = [], "", 0
        async for ev in victim:
            if ev.kind == "content":
                parts.append(ev.text or "")
                seen += 1
                if seen == 5:
                    victim.cancel()
            elif ev.kind == "complete":
                reason = ev.finish_reason or ""
        return "".join(parts), reason

    others = [answer(brain4.chat(ask(p), temperature=0, max_tokens=40)) for p in PROMPTS[1:]]
    cancelled, *rest = await asyncio.gather(cancel_soon(), *others)
    assert cancelled[1] == "cancelled"
    assert rest == alone


@pytest.mark.real_engine
async def test_a_long_prompt_arriving_does_not_stall_running_streams(brain4: Genius) -> None:
    long_prompt = "Summarize this: " + " ".join(f"sentence {i} is about the weather." for i in range(80))
    gaps: list[float] = []

    async def stream_and_time() -> None:
        last = time.monotonic()
        async for ev in brain4.chat(ask("Write a long story about a knight."), temperature=0, max_tokens=80):
            if ev.kind == "content":
                now = time.monotonic()
                gaps.append(now - last)
                last = now

    async def late_long_prompt() -> str:
        await asyncio.sleep(0.15)
        return (await answer(brain4.chat(ask(long_prompt), temperature=0, max_tokens=8)))[0]

    _, summary = await asyncio.gather(stream_and_time(), late_long_prompt())
    assert summary.strip()
    # The ~600-token prompt goes in chunks between the running stream's tokens: no gap as long as the whole prompt.
    whole_prompt_s = 600 / 300
    assert max(gaps[1:]) < whole_prompt_s, f"largest gap {max(gaps[1:]):.3f}s"


@pytest.mark.pinky
async def test_queued_requests_are_admitted_as_slots_free() -> None:
    async with Genius(engine=Pinky(delay=0.01, reply_tokens=20, think=False, parallel=2)) as g:
        started: list[float] = []
        t0 = time.monotonic()

        async def one() -> str:
            stream = g.chat(ask("hi"))
            async for ev in stream:
                if ev.kind == "process_start":
                    started.append(time.monotonic() - t0)
            return "ok"

        await asyncio.gather(*(one() for _ in range(4)))
        started.sort()
        # Two start at once; the other two once the first pair is done (~20 steps of 10 ms later).
        assert started[1] < 0.1
        assert started[2] > 0.15
        assert g.engine.running == 0 and g.engine.parallel == 2


@pytest.mark.pinky
async def test_parallel_pinky_streams_share_step_time() -> None:
    async with Genius(engine=Pinky(delay=0.02, reply_tokens=10, think=False, parallel=4)) as g:
        t0 = time.monotonic()
        results = await asyncio.gather(*(answer(g.chat(ask("hi"))) for _ in range(4)))
        took = time.monotonic() - t0
        assert all(text.count("Narf!") == 10 for text, _ in results)
        assert took < 10 * 0.02 * 2.5, f"4 parallel answers of 10 steps took {took:.2f}s"


@pytest.mark.pinky
async def test_cancelling_a_queued_request_ends_it_at_once_with_cancelled() -> None:
    async with Genius(engine=Pinky(delay=0.05, reply_tokens=1000, think=False, parallel=1)) as g:
        running = g.chat(ask("first"))
        assert (await running.__anext__()).kind == "process_start"
        queued = g.chat(ask("second"))
        queued.cancel()
        t0 = time.monotonic()
        kinds = [(ev.kind, ev.finish_reason) async for ev in queued]
        assert time.monotonic() - t0 < 2, "the queued request waited for the running one"
        assert kinds == [("process_start", None), ("complete", "cancelled")]
        assert g.engine.running == 1
        running.close()
