"""Memory-aware placement on Pinky: eviction by bytes in LRU order, busy models kept, FIFO loads, abandoned loads,
shared loads, and the error for a model that can never fit (the brainstem with sizers standing for GGUF estimates)."""

from __future__ import annotations

import asyncio

import pytest
from rusty_genius import ConfigError, OutOfMemoryError, Pinky
from rusty_genius.brainstem import Brainstem
from rusty_genius.brainstem.placement import Budget, Evict, Fits, Resident, Wait, budget_of, human, parse_bytes, plan

from tests.conftest import wait_for

pytestmark = [pytest.mark.pinky, pytest.mark.anyio]

MIB = 1 << 20


def test_plan_fits_evicts_the_least_recently_used_idle_model_and_waits_for_busy_ones() -> None:
    budget = Budget(300 * MIB)
    a, b = Resident("a", 100 * MIB, True, 1.0), Resident("b", 100 * MIB, True, 2.0)
    assert plan("c", 100 * MIB, [a, b], budget, max_loaded=8) == Fits()
    assert plan("c", 150 * MIB, [a, b], budget, max_loaded=8) == Evict("a")
    assert plan("c", 150 * MIB, [a, b], budget, max_loaded=2) == Evict("a"), "the count cap applies too"
    busy_a = Resident("a", 100 * MIB, False, 1.0)
    assert plan("c", 150 * MIB, [busy_a, b], budget, max_loaded=8) == Evict("b"), "a busy model is never chosen"
    assert plan("c", 150 * MIB, [busy_a, Resident("b", 100 * MIB, False, 2.0)], budget, max_loaded=8) == Wait()
    assert plan("c", 1, [a, b], Budget(), max_loaded=2) == Evict("a"), "no budget: by count only"


def test_a_model_larger_than_the_whole_budget_fails_naming_the_sizes() -> None:
    with pytest.raises(OutOfMemoryError) as caught:
        plan("big", 2 << 30, [], Budget(1 << 30), max_loaded=4)
    assert caught.value.needed == 2 << 30 and caught.value.budget == 1 << 30
    assert "big needs about 2.0 GiB of memory but the budget is 1.0 GiB (--max-memory 1.0 GiB)" in str(caught.value)


def test_sizes_parse_and_print() -> None:
    assert parse_bytes("8G") == 8 << 30 and parse_bytes("1.5GiB") == 3 << 29 and parse_bytes("512 mb") == 512 * MIB
    assert parse_bytes("1000") == 1000
    with pytest.raises(ConfigError, match="is not a size"):
        parse_bytes("lots")
    assert human(300 * MIB) == "300 MiB" and human(3 << 29) == "1.5 GiB" and human(12) == "12 B"
    assert budget_of(None) == Budget() and budget_of("auto") == Budget(auto=True)
    assert budget_of("2G") == Budget(2 << 30, auto=True)
    with pytest.raises(ConfigError, match="max_memory"):
        budget_of(0)


def _stem(budget: int, max_loaded: int = 8) -> Brainstem:
    return Brainstem(budget=Budget(budget), max_loaded=max_loaded)


def _register(stem: Brainstem, key: str, need: int, **pinky: float) -> None:
    engine = Pinky(delay=pinky.get("delay", 0.0), reply_tokens=int(pinky.get("tokens", 2)), think=False)
    stem.register(key, engine._load, lambda: need)


async def _use(stem: Brainstem, key: str) -> None:
    _engine, release = await stem.hold(key)
    release()


async def test_a_third_model_evicts_the_least_recently_used_idle_one_by_bytes() -> None:
    stem = _stem(250 * MIB)
    for key in "abc":
        _register(stem, key, 100 * MIB)
    await _use(stem, "a")
    await _use(stem, "b")
    await _use(stem, "a")  # b is now the least recently used
    await _use(stem, "c")
    assert sorted(stem.loaded()) == ["a", "c"]
    assert stem.states() == {"a": "loaded", "b": "unloaded", "c": "loaded"}
    assert stem.resident_bytes() == {"a": 100 * MIB, "c": 100 * MIB}
    await stem.aclose()


async def test_a_model_that_never_fits_fails_at_once_and_unloads_nothing() -> None:
    stem = _stem(250 * MIB)
    _register(stem, "a", 100 * MIB)
    _register(stem, "huge", 300 * MIB)
    await _use(stem, "a")
    with pytest.raises(OutOfMemoryError, match="huge needs about 300 MiB"):
        await stem.hold("huge")
    assert stem.loaded() == ["a"] and stem.states()["huge"] == "unloaded"
    await _use(stem, "a")  # the server goes on serving
    await stem.aclose()


async def test_a_load_waits_for_a_busy_model_and_never_evicts_it_mid_request() -> None:
    stem = _stem(150 * MIB)
    _register(stem, "a", 100 * MIB)
    _register(stem, "b", 100 * MIB)
    _engine_a, release_a = await stem.hold("a")  # a request runs on a
    load_b = asyncio.ensure_future(stem.hold("b"))
    await asyncio.sleep(0.3)
    assert not load_b.done() and stem.states()["a"] == "loaded", "b waits; a keeps serving"
    assert stem.states()["b"] == "loading"
    release_a()
    _, release_b = await asyncio.wait_for(load_b, 5)
    assert stem.states() == {"a": "unloaded", "b": "loaded"}
    release_b()
    await stem.aclose()


async def test_a_queued_load_whose_client_left_costs_the_running_model_nothing() -> None:
    stem = _stem(150 * MIB)
    _register(stem, "a", 100 * MIB)
    _register(stem, "b", 100 * MIB)
    _, release_a = await stem.hold("a")
    waiter = asyncio.ensure_future(stem.hold("b"))
    await asyncio.sleep(0.1)
    waiter.cancel()
    await asyncio.sleep(0.1)
    release_a()
    await asyncio.sleep(0.3)
    assert stem.states() == {"a": "loaded", "b": "unloaded"}, "nobody waits for b: a stays"
    await stem.aclose()


async def test_loads_waiting_for_room_are_served_in_arrival_order_and_share_one_load_per_model() -> None:
    stem = _stem(150 * MIB)
    for key in "abc":
        _register(stem, key, 100 * MIB)
    _, release_a = await stem.hold("a")
    order: list[str] = []

    async def want(key: str) -> None:
        _, release = await stem.hold(key)
        order.append(key)
        await asyncio.sleep(0.05)
        release()

    tasks = [asyncio.ensure_future(want("b"))]
    await asyncio.sleep(0.05)
    tasks += [asyncio.ensure_future(want("c")), asyncio.ensure_future(want("b")), asyncio.ensure_future(want("b"))]
    await asyncio.sleep(0.1)
    release_a()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert order[:3] == ["b", "b", "b"] and order[3] == "c", "b arrived first; its three requests shared its load"
    assert await wait_for(lambda: stem.states()["c"] == "loaded")
    await stem.aclose()


async def test_an_abandoned_load_is_never_seen_by_a_later_request() -> None:
    stem = _stem(150 * MIB)
    _register(stem, "a", 100 * MIB)
    _register(stem, "b", 100 * MIB)
    _, release_a = await stem.hold("a")
    gone = asyncio.ensure_future(stem.hold("b"))
    await asyncio.sleep(0.1)
    gone.cancel()
    await asyncio.sleep(0.2)  # the abandoned load notices and ends
    release_a()
    _, release_b = await asyncio.wait_for(stem.hold("b"), 5)  # a new request loads b (evicting the idle a)
    assert stem.states() == {"a": "unloaded", "b": "loaded"}
    release_b()
    await stem.aclose()


async def test_a_key_registered_again_while_unloaded_loads_what_it_names_now() -> None:
    stem = _stem(1 << 30)
    first, second = Pinky(delay=0, reply_tokens=1, name="one"), Pinky(delay=0, reply_tokens=1, name="two")
    stem.register("m", first._load, lambda: 10)
    await _use(stem, "m")
    stem.register("m", second._load, lambda: 20)  # loaded: it keeps its loader until it unloads
    assert stem.resident_bytes() == {"m": 10}
    await stem.unload("m")
    stem.register("m", second._load, lambda: 20)
    await _use(stem, "m")
    assert stem.resident_bytes() == {"m": 20}, "the new loader (and its size) is used"
    await stem.aclose()
