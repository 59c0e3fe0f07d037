"""The brainstem through the facade, on Pinky: lifecycle, shared loads, queues, cancellation, several models."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest
from rusty_genius import (
    BusyError,
    ChatStream,
    EngineError,
    Event,
    Genius,
    HibernateAfter,
    Immediate,
    Pinky,
    _native,
)
from rusty_genius.brainstem import Brainstem

from tests.conftest import USER, wait_for

pytestmark = [pytest.mark.pinky, pytest.mark.anyio]

FAST = Pinky(delay=0, reply_tokens=3)


async def test_idle_unload_then_transparent_reload_with_a_notice(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="rusty_genius.brainstem")
    async with Genius(engine=FAST, strategy=HibernateAfter(0.2)) as g:
        assert (await g.complete(USER)).content == "Narf! Narf! Narf!"
        assert len(g.loaded()) == 1
        assert await wait_for(lambda: g.loaded() == [])
        assert g.models() is not None and g.loaded() == [], "listing never wakes a model"
        assert not any("NOTICE" in r.message for r in caplog.records)
        answer = await g.complete(USER)
        assert answer.content == "Narf! Narf! Narf!"
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("NOTICE: Model reload took ") for m in messages), messages
    assert "Increase --unload-after or use --no-unload to avoid delay." in messages


async def test_the_idle_clock_starts_only_when_no_request_holds_the_model() -> None:
    async with Genius(engine=Pinky(delay=0.1, reply_tokens=4, think=False), strategy=HibernateAfter(0.15)) as g:
        events = [ev async for ev in g.chat(USER)]  # ~0.4 s of generation, longer than the idle time
        assert events[-1].kind == "complete"
        assert len(g.loaded()) == 1, "not unloaded while the request held it"
        assert await wait_for(lambda: g.loaded() == [])


async def test_immediate_unloads_after_each_request_and_a_request_during_the_unload_reloads() -> None:
    async with Genius(engine=Pinky(delay=0, reply_tokens=2, load_delay=0.05), strategy=Immediate()) as g:
        assert g.loaded() == [], "Immediate does not preload"
        first, second = await asyncio.gather(g.complete(USER), g.complete(USER))
        assert first.content == second.content == "Narf! Narf!"
        third = await g.complete(USER)  # arrives while the unload of the first two may still run
        assert third.content == "Narf! Narf!"
        assert await wait_for(lambda: g.loaded() == [])


async def test_requests_during_one_load_share_it() -> None:
    loads = 0

    def loader() -> _native.Engine:
        nonlocal loads
        loads += 1
        return _native.Engine.pinky(delay=0, reply_tokens=2, load_delay=0.2)

    brainstem = Brainstem()
    brainstem.register("p", loader)
    held = await asyncio.gather(*(brainstem.hold("p") for _ in range(3)))
    assert loads == 1
    assert len({id(engine) for engine, _ in held}) == 1
    for _, release in held:
        release()
    await brainstem.aclose()


async def test_a_full_queue_says_busy_and_a_caller_who_leaves_frees_its_place() -> None:
    async with Genius(engine=Pinky(delay=0.02, reply_tokens=50), max_queue=2) as g:
        running = g.chat(USER)
        queued = g.chat(USER)
        with pytest.raises(BusyError, match="max_queue=2"):
            g.chat(USER)
        queued.close()  # cancel while queued: its place is free at once
        third = g.chat(USER)
        events = [ev async for ev in running]
        assert events[-1].finish_reason == "stop", "the others were not interrupted"
        assert [ev async for ev in third][-1].kind == "complete"


async def test_cancel_mid_stream_leaves_other_callers_alone() -> None:
    async with Genius(engine=Pinky(delay=0.005, reply_tokens=20, think=False)) as g:
        other = asyncio.create_task(g.complete(USER))
        async for seen, _ in _enumerate(g.chat(USER)):
            if seen == 3:
                break
        answer = await other
        assert answer.content == " ".join(["Narf!"] * 20)
        assert (await g.complete(USER, max_tokens=2)).finish_reason == "length"


async def _enumerate(stream: ChatStream) -> AsyncIterator[tuple[int, Event]]:
    i = 0
    async for ev in stream:
        i += 1
        yield i, ev


async def test_an_engine_error_does_not_poison_the_queue() -> None:
    async with Genius(engine=Pinky(delay=0, fail_after=2), max_queue=1) as g:
        for _ in range(3):  # max_queue=1: each failed request must have given its place back
            with pytest.raises(EngineError, match="injected failure"):
                await g.complete(USER)
        assert len(g.loaded()) == 1


async def test_several_models_least_recently_used_unloads_first() -> None:
    other = Pinky(delay=0, reply_tokens=1, think=False)
    async with Genius(engine=FAST, max_loaded=1) as g:
        [default] = g.loaded()
        assert (await g.complete(USER, model=other)).content == "Narf!"
        [now] = g.loaded()
        assert now != default, "the idle default made room for the other model"
        assert (await g.complete(USER)).content == "Narf! Narf! Narf!"
        assert g.loaded() == [default]


async def test_flat_settings_and_complete() -> None:
    async with Genius(engine=FAST) as g:
        answer = await g.complete(USER, max_tokens=5, temperature=0)
        assert answer.finish_reason == "length"
        assert answer.thinking == "Narf! Poit!"
        assert answer.usage.completion_tokens == 5


def test_sync_facade() -> None:
    with Genius(engine=FAST, strategy=HibernateAfter(0.1)) as g:
        assert g.complete_sync(USER).content == "Narf! Narf! Narf!"
        deadline = time.monotonic() + 3
        while g.loaded() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert g.loaded() == []
        # Not loaded: the plain `for` loop waits for the reload on the Genius's own loop thread.
        assert [ev.kind for ev in g.chat(USER)][-1] == "complete"


async def test_the_message_protocol() -> None:
    from rusty_genius.brainstem import (
        Cancel,
        Dispatcher,
        ErrorInfo,
        ErrorOutput,
        EventOutput,
        Infer,
        LoadModel,
        Notice,
        Shutdown,
        Unload,
    )

    dispatcher = Dispatcher(Brainstem())
    out = [o async for o in dispatcher.handle(LoadModel("pinky"))]
    assert out == [Notice("loaded", "pinky", "pinky is loaded")]
    events = [o async for o in dispatcher.handle(Infer("r1", "pinky", USER))]
    assert all(isinstance(o, EventOutput) and o.request_id == "r1" for o in events)
    assert events[-1].event.kind == "complete"  # type: ignore[union-attr]

    # Cancel by id, from another task, while the request streams.
    seen: list[str] = []
    async for o in dispatcher.handle(Infer("r2", "pinky", USER)):
        assert isinstance(o, EventOutput)
        seen.append(o.event.kind)
        if len(seen) == 2:
            [_ async for _ in dispatcher.handle(Cancel("r2"))]
    assert seen[-1] == "complete"

    bad = [o async for o in dispatcher.handle(Infer("r3", "pinky", []))]
    assert len(bad) == 1 and isinstance(bad[0], ErrorOutput)
    info = bad[0].error
    assert info.type == "RequestError" and "messages is empty" in info.message
    assert ErrorInfo(**info.to_dict()) == info
    assert type(info.exception()).__name__ == "RequestError"

    assert [o async for o in dispatcher.handle(Unload("pinky"))] == [Notice("unloaded", "pinky", "pinky is unloaded")]
    assert [o async for o in dispatcher.handle(Shutdown())] == []
    closed = [o async for o in dispatcher.handle(Infer("r4", "pinky", USER))]
    assert isinstance(closed[0], ErrorOutput) and closed[0].error.type == "EngineClosedError"
