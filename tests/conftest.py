"""Shared fixtures. Async tests run on asyncio through anyio's pytest plugin (the native bridge is asyncio-only)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import pytest

import rusty_genius


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def fast_genius() -> AsyncIterator[rusty_genius.Genius]:
    """Pinky with no delay and a three-token reply."""
    async with rusty_genius.Genius(engine=rusty_genius.Pinky(delay=0, reply_tokens=3)) as g:
        yield g


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Polls `condition` until it holds or `timeout` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


USER = [{"role": "user", "content": "Are you pondering what I'm pondering?"}]
