"""Brainstem additions for serving: per-request keep_alive, the load time a request waited for, ``cold`` streams, and
a cancel or close that arrives while the model loads."""

from __future__ import annotations

import asyncio

import pytest
from rusty_genius import Genius, HibernateAfter, Immediate, KeepAlive, Pinky, _native
from rusty_genius.brainstem import Brainstem, strategy_of
from rusty_genius.core.errors import ConfigError

from tests.conftest import USER, wait_for

pytestmark = [pytest.mark.pinky, pytest.mark.anyio]

FAST = Pinky(delay=0, reply_tokens=3)


def test_strategy_of_seconds() -> None:
    assert strategy_of(None) == KeepAlive()
    assert strategy_of(-1) == KeepAlive()
    assert strategy_of(0) == Immediate()
    assert strategy_of(2.5) == HibernateAfter(2.5)
    with pytest.raises(ConfigError):
        strategy_of(float("nan"))


async def test_acquire_tells_the_load_time_only_to_requests_that_waited_for_it() -> None:
    brainstem = Brainstem()
    brainstem.register("p", lambda: _native.Engine.pinky(delay=0, load_delay=0.1))
    cold, shared = await asyncio.gather(brainstem.acquire("p"), brainstem.acquire("p"))
    assert cold.load_seconds is not None and cold.load_seconds >= 0.1
    assert shared.load_seconds == cold.load_seconds, "a request that joined the load waited for the same load"
    warm = await brainstem.acquire("p")
    assert warm.load_seconds is None
    assert brainstem.load_seconds("p") == cold.load_seconds
    for held in (cold, shared, warm):
        held.release()
    await brainstem.aclose()


async def test_a_request_s_keep_alive_decides_when_the_idle_model_unloads() -> None:
    async with Genius(engine=FAST, strategy=KeepAlive()) as g:
        assert (await g.complete(USER)).content == "Narf! Narf! Narf!"
        assert g.is_loaded()
        [_ async for _ in g.chat(USER, keep_alive=Immediate())]
        assert await wait_for(lambda: not g.is_loaded()), "Immediate() unloads right after this request"
        [_ async for _ in g.chat(USER, keep_alive=HibernateAfter(0.15))]
        assert g.is_loaded()
        assert await wait_for(lambda: not g.is_loaded())
        [_ async for _ in g.chat(USER)]
        await asyncio.sleep(0.3)
        assert g.is_loaded(), "a request without keep_alive restores the Genius's strategy"


async def test_keep_alive_outlives_a_short_default() -> None:
    async with Genius(engine=FAST, strategy=HibernateAfter(0.1)) as g:
        [_ async for _ in g.chat(USER, keep_alive=KeepAlive())]
        await asyncio.sleep(0.3)
        assert g.is_loaded()


async def test_cold_streams_report_their_load_and_warm_ones_do_not() -> None:
    async with Genius(engine=Pinky(delay=0, reply_tokens=2, load_delay=0.1), strategy=Immediate()) as g:
        assert not g.is_loaded(), "is_loaded never loads"
        stream = g.chat(USER)
        assert stream.cold and stream.load_seconds is None
        events = [ev async for ev in stream]
        assert events[-1].kind == "complete"
        assert not stream.cold and stream.load_seconds is not None and stream.load_seconds >= 0.1
    async with Genius(engine=FAST) as g:
        stream = g.chat(USER)
        assert not stream.cold
        [_ async for _ in stream]
        assert stream.load_seconds is None


async def test_cancel_or_close_while_the_model_loads_is_not_lost() -> None:
    async with Genius(engine=Pinky(delay=0.05, reply_tokens=50, load_delay=0.2), strategy=Immediate()) as g:
        stream = g.chat(USER)
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.05)  # the load is under way
        stream.cancel()
        try:
            events = [await first] + [ev async for ev in stream]
        except StopAsyncIteration:
            events = []  # the engine had not begun it: nothing to complete
        assert not events or (events[-1].kind == "complete" and events[-1].finish_reason == "cancelled")
        assert len(events) < 10, "the cancel was lost: it ran on"

        assert await wait_for(lambda: not g.is_loaded())
        stream = g.chat(USER)
        assert stream.cold
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.05)
        stream.close()
        with pytest.raises(StopAsyncIteration):
            await first
        assert await wait_for(lambda: not g.is_loaded()), "the closed request gave its place back"
