"""The stream as a user drives it: event order, async and sync iteration, stopping, errors, fairness."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Awaitable, Callable

import pytest
import rusty_genius
from rusty_genius import EngineClosedError, EngineError, Event, Immediate, InferenceConfig, Pinky

from tests.conftest import USER, wait_until

pytestmark = [pytest.mark.pinky, pytest.mark.anyio]


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]


def text(events: list[Event], kind: str) -> str:
    return "".join(e.text or "" for e in events if e.kind == kind)


async def test_async_for_delivers_the_protocol_in_order(fast_genius: rusty_genius.Genius) -> None:
    events = [ev async for ev in fast_genius.chat(USER)]
    assert kinds(events) == [
        "process_start",
        "thought_start",
        *["thought_delta"] * 4,
        "thought_stop",
        *["content"] * 3,
        "complete",
    ]
    assert text(events, "thought_delta") == "Narf! Poit!"
    assert text(events, "content") == "Narf! Narf! Narf!"
    done = events[-1]
    assert done.finish_reason == "stop"
    assert done.usage is not None and done.timings is not None
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (6, 10)
    assert done.usage.total_tokens == 16
    assert done.timings.decode_ms >= 0
    assert all(e.text is None for e in events if e.kind not in ("thought_delta", "content"))


async def test_plain_for_gives_the_same_events(fast_genius: rusty_genius.Genius) -> None:
    via_async = [(e.kind, e.text) async for e in fast_genius.chat(USER)]
    via_sync = [(e.kind, e.text) for e in fast_genius.chat(USER)]
    assert via_sync == via_async


def slow_endless() -> Pinky:
    return Pinky(delay=0.002, reply_tokens=10**7)


def assert_worker_stops(genius: rusty_genius.Genius) -> None:
    """The worker goes idle and generates nothing more: stopping reached Rust, not only Python."""
    engine = genius.engine
    assert wait_until(lambda: not engine.busy), "the worker is still generating"
    generated = engine.generated_tokens
    time.sleep(0.05)
    assert engine.generated_tokens == generated
    assert generated < 200, f"{generated} tokens generated for a stream read for 5 events"


async def test_breaking_out_of_async_for_stops_the_worker() -> None:
    async with rusty_genius.Genius(engine=slow_endless()) as g:
        seen = 0
        async for _ev in g.chat(USER):
            seen += 1
            if seen == 5:
                break
        assert_worker_stops(g)
        # The engine is ready for the next request.
        again = [ev async for ev in g.chat(USER, InferenceConfig.of(max_tokens=2))]
        assert again[-1].finish_reason == "length"


def test_breaking_out_of_for_stops_the_worker() -> None:
    with rusty_genius.Genius(engine=slow_endless()) as g:
        for seen, _ev in enumerate(g.chat(USER), 1):
            if seen == 5:
                break
        assert_worker_stops(g)


async def test_aclose_stops_the_worker_and_ends_the_stream() -> None:
    async with rusty_genius.Genius(engine=slow_endless()) as g:
        stream = g.chat(USER)
        for _ in range(5):
            await stream.__anext__()
        await stream.aclose()
        assert stream.finished
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()
        assert_worker_stops(g)


async def test_dropping_an_unread_stream_stops_the_worker() -> None:
    async with rusty_genius.Genius(engine=slow_endless()) as g:
        stream = g.chat(USER)
        assert wait_until(lambda: g.engine.busy)
        del stream
        gc.collect()
        assert_worker_stops(g)


async def test_cancel_still_delivers_complete() -> None:
    async with rusty_genius.Genius(engine=slow_endless()) as g:
        stream = g.chat(USER)
        events = []
        async for ev in stream:
            events.append(ev)
            if len(events) == 3:
                stream.cancel()
        assert events[-1].kind == "complete"
        assert events[-1].finish_reason == "cancelled"
        assert not g.engine.busy


async def test_cancelling_the_awaiting_task_does_not_hang() -> None:
    async with rusty_genius.Genius(engine=Pinky(delay=30, reply_tokens=5)) as g:
        stream = g.chat(USER)
        assert (await stream.__anext__()).kind == "process_start"
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(stream.__anext__(), timeout=0.2)
        stream.close()
        assert_worker_stops(g)


async def test_timeouts_around_anext_lose_and_reorder_nothing() -> None:
    """Awaiters cancelled by a timeout must leave the event for the next reader (the server's idle-check pattern)."""
    async with rusty_genius.Genius(engine=Pinky(delay=0.003, think=False, reply_tokens=150)) as g:
        stream = g.chat(USER)
        events: list[Event] = []
        timeouts = 0
        while not stream.finished:
            try:
                events.append(await asyncio.wait_for(stream.__anext__(), timeout=0.002))
            except asyncio.TimeoutError:
                timeouts += 1
            except StopAsyncIteration:
                break
    assert timeouts > 0, "the test never timed out, so it proved nothing"
    assert kinds(events) == ["process_start", *["content"] * 150, "complete"]
    assert text(events, "content") == " ".join(["Narf!"] * 150)


async def test_an_awaiter_cancelled_after_its_event_arrived_leaves_it_for_the_next_reader() -> None:
    """The narrow window, made wide: the event reaches Python, the loop is blocked, then the awaiter is cancelled."""
    async with rusty_genius.Genius(engine=Pinky(delay=0.05, think=False, reply_tokens=3)) as g:
        stream = g.chat(USER)
        assert (await stream.__anext__()).kind == "process_start"

        async def next_event() -> Event:
            return await stream.__anext__()

        task = asyncio.create_task(next_event())
        await asyncio.sleep(0)  # the task now waits on the receive
        time.sleep(0.3)  # noqa: ASYNC251 - on purpose: the first token arrives while the loop is blocked
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        rest = [ev async for ev in stream]
    assert text(rest, "content") == "Narf! Narf! Narf!"


async def test_engine_failure_raises_after_the_events_before_it() -> None:
    async with rusty_genius.Genius(engine=Pinky(delay=0, fail_after=3)) as g:
        events: list[Event] = []
        with pytest.raises(EngineError, match="injected failure after 3 tokens"):
            async for ev in g.chat(USER):
                events.append(ev)
        assert kinds(events) == ["process_start", "thought_start", "thought_delta", "thought_delta"]
        # The failed request ended; the engine serves the next one (which fails the same way).
        with pytest.raises(EngineError):
            for _ in g.chat(USER):
                pass


async def test_max_tokens_and_stop_strings() -> None:
    async with rusty_genius.Genius(engine=Pinky(delay=0, think=False, reply_tokens=50)) as g:
        events = [ev async for ev in g.chat(USER, InferenceConfig.of(max_tokens=4))]
        assert text(events, "content") == "Narf! Narf! Narf! Narf!"
        assert events[-1].finish_reason == "length"
        events = [ev async for ev in g.chat(USER, InferenceConfig.of(stop=["f! Narf! N"]))]
        assert text(events, "content") == "Nar"
        assert events[-1].finish_reason == "stop"


async def test_split_characters_and_tags_arrive_whole() -> None:
    crab, e_acute = "🦀".encode(), "é".encode()
    script: list[str | bytes] = ["<th", "ink>\nhm ", crab[:2], crab[2:], "</thi", "nk>\n\nç", e_acute[:1], e_acute[1:]]
    async with rusty_genius.Genius(engine=Pinky(delay=0, script=script)) as g:
        events = [ev async for ev in g.chat(USER)]
    assert text(events, "thought_delta") == "hm 🦀"
    assert text(events, "content") == "çé"
    for ev in events:
        assert ev.text is None or "\ufffd" not in ev.text


async def test_a_pre_opened_think_block_and_hidden_thinking() -> None:
    script = ["pondering", "</think>", "answer"]
    async with rusty_genius.Genius(engine=Pinky(delay=0, script=script, pre_open_think=True)) as g:
        events = [ev async for ev in g.chat(USER)]
        assert kinds(events)[:4] == ["process_start", "thought_start", "thought_delta", "thought_stop"]
        assert text(events, "content") == "answer"
        hidden = [ev async for ev in g.chat(USER, InferenceConfig.of(show_thinking=False))]
        assert kinds(hidden) == ["process_start", "content", "complete"]


async def test_concurrent_requests_both_complete() -> None:
    async with rusty_genius.Genius(engine=Pinky(delay=0.001, reply_tokens=20)) as g:

        async def run() -> str:
            return text([ev async for ev in g.chat(USER)], "content")

        first, second = await asyncio.gather(run(), run())
        assert first == second == " ".join(["Narf!"] * 20)
        assert g.engine.completed_requests == 2


def test_sync_iteration_releases_the_gil() -> None:
    spins = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal spins
        while not stop.is_set():
            spins += 1

    with rusty_genius.Genius(engine=Pinky(delay=0.05, think=False, reply_tokens=4)) as g:
        thread = threading.Thread(target=spin)
        thread.start()
        try:
            start = spins
            assert len(list(g.chat(USER))) == 6
            progressed = spins - start
        finally:
            stop.set()
            thread.join()
    # 0.2 s of waiting: a thread starved by a held GIL would barely move (switch interval aside).
    assert progressed > 10_000


async def test_closing_the_engine_under_a_stream() -> None:
    g = rusty_genius.Genius(engine=slow_endless())
    await g.start()
    stream = g.chat(USER)
    await stream.__anext__()
    await g.aclose()
    with pytest.raises(EngineClosedError):
        async for _ in stream:
            pass
    with pytest.raises(EngineClosedError, match="not started"):
        g.chat(USER)


async def test_requests_queued_behind_a_closed_engine_fail_clearly() -> None:
    async with rusty_genius.Genius(engine=slow_endless()) as g:
        running = g.chat(USER)
        queued = g.chat(USER)
        assert (await running.__anext__()).kind == "process_start"
        engine = g.engine
        await asyncio.to_thread(engine.close)
        assert engine.closed
        with pytest.raises(EngineClosedError):
            async for _ in queued:
                pass
        with pytest.raises(EngineClosedError):
            engine.chat(USER, InferenceConfig())


# -- batch(): one wait, then every event already waiting (what the server writes at once) -------------------------


async def read_in_batches(stream: rusty_genius.ChatStream, limit: int = 256) -> list[list[Event]]:
    batches: list[list[Event]] = []
    while batch := await stream.batch(limit):
        batches.append(batch)
    return batches


def flat(batches: list[list[Event]]) -> list[Event]:
    return [event for batch in batches for event in batch]


async def count_one_by_one(stream: rusty_genius.ChatStream) -> int:
    return sum([1 async for _ in stream])


async def count_in_batches(stream: rusty_genius.ChatStream) -> int:
    return sum(map(len, await read_in_batches(stream)))


# One event at a time or in batches: after YIELD_EVERY (64) events taken without suspending, the loop gets a turn.
@pytest.mark.parametrize("read", [count_one_by_one, count_in_batches])
async def test_a_fast_stream_leaves_the_event_loop_room(
    read: Callable[[rusty_genius.ChatStream], Awaitable[int]],
) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async with rusty_genius.Genius(engine=Pinky(delay=0, think=False, reply_tokens=20_000)) as g:
        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = ticks
        count = await read(g.chat(USER))
        during = ticks - before
        task.cancel()
    assert count == 20_002
    assert during >= 100, f"the other task ran only {during} times while 20,000 events streamed"


async def test_batches_give_the_same_events_in_order(fast_genius: rusty_genius.Genius) -> None:
    via_anext = [(e.kind, e.text) async for e in fast_genius.chat(USER)]
    stream = fast_genius.chat(USER)
    batches = await read_in_batches(stream)
    assert [(e.kind, e.text) for batch in batches for e in batch] == via_anext
    assert all(batches), "a batch holds at least one event until the stream ends"
    # It ends after `complete`, and stays ended.
    assert batches[-1][-1].kind == "complete" and stream.finished
    assert await stream.batch() == [] and await stream.batch() == []


async def test_ready_events_leave_together_and_a_batch_keeps_its_limit() -> None:
    async with rusty_genius.Genius(engine=Pinky(delay=0, think=False, reply_tokens=2_000)) as g:
        stream = g.chat(USER)
        await asyncio.sleep(0.2)  # the channel fills up (256 events), the rest waits in the worker
        batches = await read_in_batches(stream)
        assert sum(map(len, batches)) == 2_002 and text(flat(batches), "content") == " ".join(["Narf!"] * 2_000)
        # The first call takes the whole channel; later ones take what the worker produced meanwhile.
        assert len(batches[0]) == 256 and max(map(len, batches)) == 256, [len(b) for b in batches]
        assert len(batches) < 2_002 / 4, f"{len(batches)} batches for 2,002 events: ready events did not leave together"

        small = await read_in_batches(g.chat(USER), limit=3)
        assert max(map(len, small)) == 3 and sum(map(len, small)) == 2_002
        with pytest.raises(ValueError, match="at least 1"):
            await g.chat(USER).batch(0)


async def wait_until_async(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            await asyncio.sleep(0.05)  # the last events leave the worker just after its counters change
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def test_an_error_after_events_comes_from_the_next_call_and_loses_none_of_them() -> None:
    async with rusty_genius.Genius(engine=Pinky(delay=0, fail_after=3)) as g:
        for take_the_error in ("batch", "anext"):
            stream = g.chat(USER)
            await wait_until_async(lambda: not g.engine.busy)  # the events and the error wait in the channel
            first = await stream.batch()
            assert kinds(first) == ["process_start", "thought_start", "thought_delta", "thought_delta"]
            assert not stream.finished, "the error is not delivered yet"
            with pytest.raises(EngineError, match="injected failure after 3 tokens"):
                await (stream.batch() if take_the_error == "batch" else stream.__anext__())
            assert stream.finished and await stream.batch() == []


async def test_timeouts_around_batch_lose_and_reorder_nothing() -> None:
    """The server's idle-check pattern, with batches: an awaiter cancelled by a timeout leaves its events waiting."""
    async with rusty_genius.Genius(engine=Pinky(delay=0.003, think=False, reply_tokens=150)) as g:
        stream = g.chat(USER)
        events: list[Event] = []
        timeouts = 0
        while not stream.finished:
            try:
                batch = await asyncio.wait_for(stream.batch(), timeout=0.002)
            except asyncio.TimeoutError:
                timeouts += 1
                continue
            if not batch:
                break
            events.extend(batch)
    assert timeouts > 0, "the test never timed out, so it proved nothing"
    assert kinds(events) == ["process_start", *["content"] * 150, "complete"]
    assert text(events, "content") == " ".join(["Narf!"] * 150)


async def test_a_batch_cancelled_after_its_event_arrived_leaves_it_for_the_next_reader() -> None:
    async with rusty_genius.Genius(engine=Pinky(delay=0.05, think=False, reply_tokens=3)) as g:
        stream = g.chat(USER)
        assert kinds(await stream.batch()) == ["process_start"]

        async def next_batch() -> list[Event]:
            return await stream.batch()

        task = asyncio.create_task(next_batch())
        await asyncio.sleep(0)  # the task now waits on the receive
        time.sleep(0.3)  # noqa: ASYNC251 - on purpose: tokens arrive while the loop is blocked
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        rest = flat(await read_in_batches(stream))
    assert text(rest, "content") == "Narf! Narf! Narf!" and rest[-1].kind == "complete"


async def test_a_cold_stream_batch_waits_for_the_load_and_a_closed_one_ends() -> None:
    async with rusty_genius.Genius(engine=Pinky(delay=0, reply_tokens=2, load_delay=0.1), strategy=Immediate()) as g:
        stream = g.chat(USER)
        assert stream.cold
        events = flat(await read_in_batches(stream))
        assert kinds(events)[0] == "process_start" and events[-1].kind == "complete"
        assert stream.load_seconds is not None and stream.load_seconds >= 0.1
        closed = g.chat(USER)
        closed.close()
        assert await closed.batch() == []


async def test_process_start_carries_the_prompts_usage_which_complete_repeats() -> None:
    async with rusty_genius.Genius(engine=Pinky(delay=0, reply_tokens=2, think=False)) as g:
        events = [ev async for ev in g.chat([{"role": "user", "content": "one two three"}])]
    start, end = events[0], events[-1]
    assert start.kind == "process_start" and start.usage is not None and end.usage is not None
    assert start.usage.prompt_tokens == end.usage.prompt_tokens > 0 and start.usage.completion_tokens == 0
