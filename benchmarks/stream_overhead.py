"""Stream overhead: how many events per second cross from the Rust worker into Python.

Pinky at zero delay generates N tokens; we count the events that reach Python through ``async for`` and through
``for``, and compare with a pure-Python baseline measured in the same run: a thread feeding an ``asyncio.Queue``
through ``loop.call_soon_threadsafe`` (what a hand-written bridge without Rust would do). Prints events/s for each,
the ratios, and last ``pinky_async_events_per_s=<N>``.

    python benchmarks/stream_overhead.py [--tokens 200000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from collections.abc import Callable

import rusty_genius

_DONE = object()


async def rust_async(genius: rusty_genius.Genius, tokens: int) -> int:
    count = 0
    async for _ev in genius.chat([{"role": "user", "content": "bench"}]):
        count += 1
    return count


def rust_sync(genius: rusty_genius.Genius, tokens: int) -> int:
    count = 0
    for _ev in genius.chat([{"role": "user", "content": "bench"}]):
        count += 1
    return count


async def python_baseline(tokens: int) -> int:
    """A producer thread hands each item to the loop with call_soon_threadsafe; the consumer awaits a Queue."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()

    def produce() -> None:
        for i in range(tokens):
            loop.call_soon_threadsafe(queue.put_nowait, i)
        loop.call_soon_threadsafe(queue.put_nowait, _DONE)

    thread = threading.Thread(target=produce)
    thread.start()
    count = 0
    while (await queue.get()) is not _DONE:
        count += 1
    thread.join()
    return count


def best_rate(runs: int, measure: Callable[[], int]) -> tuple[float, int]:
    """Events/s of the fastest run (the least disturbed by a noisy machine), and the event count."""
    best, events = 0.0, 0
    for _ in range(runs):
        start = time.perf_counter()
        events = measure()
        best = max(best, events / (time.perf_counter() - start))
    return best, events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    pinky = rusty_genius.Pinky(delay=0, reply_tokens=args.tokens, think=False)

    with rusty_genius.Genius(engine=pinky) as genius:
        async_rate, async_events = best_rate(args.runs, lambda: asyncio.run(rust_async(genius, args.tokens)))
        sync_rate, sync_events = best_rate(args.runs, lambda: rust_sync(genius, args.tokens))
    base_rate, base_events = best_rate(args.runs, lambda: asyncio.run(python_baseline(args.tokens)))

    # Each Pinky stream carries process_start and complete around the content events.
    assert async_events == sync_events == args.tokens + 2, (async_events, sync_events)
    assert base_events == args.tokens, base_events
    print(f"tokens per run: {args.tokens}, runs: {args.runs} (best run reported)")
    print(f"pinky async for : {async_rate:12,.0f} events/s")
    print(f"pinky for       : {sync_rate:12,.0f} events/s")
    print(f"python baseline : {base_rate:12,.0f} events/s  (thread -> call_soon_threadsafe -> asyncio.Queue)")
    print(f"ratio async/baseline: {async_rate / base_rate:.2f}")
    print(f"ratio sync/baseline : {sync_rate / base_rate:.2f}")
    print(f"pinky_async_events_per_s={async_rate:.0f}")


if __name__ == "__main__":
    main()
