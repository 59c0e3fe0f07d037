"""The TUI on the real engine: a three-turn conversation with the embedded default model."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import rusty_genius
from rusty_genius.ogenius.session import Session
from rusty_genius.ogenius.tui.app import ChatApp

from tests.test_tui import say, status, turns, until

pytestmark = pytest.mark.anyio


@pytest.mark.real_engine
async def test_three_turns_on_the_embedded_default_model() -> None:
    from tests.conftest import smollm2_path

    smollm2_path()  # a clear failure when the test model is missing
    session = Session(config=rusty_genius.InferenceConfig.of(temperature=0, max_tokens=40))
    app = ChatApp(rusty_genius.Genius(), "smollm2-135m", session)
    async with app.run_test(size=(100, 40)) as pilot:
        await until(pilot, lambda: app.state == "ready", timeout=60)

        def answered(count: int) -> Callable[[], bool]:
            return lambda: len(session.turns) == 2 * count and app.state == "ready"

        for n, text in enumerate(
            ["I am Ada. Please remember my name.", "Which city is the capital of France?", "What is my name?"], 1
        ):
            await say(pilot, text)
            await until(pilot, answered(n), timeout=60)
        answers = [t.content for t in turns(app)]
        assert [m["content"] for m in session.turns[1::2]] == answers
        assert "Paris" in answers[1]
        assert "Ada" in answers[2], "the conversation must be kept across turns"
        assert "tok/s" in status(app)
