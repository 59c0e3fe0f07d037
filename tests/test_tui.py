"""The Textual TUI of ``ogenius chat``, driven with ``run_test()`` and Pilot on the Pinky engine (no weights)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import rusty_genius
from rusty_genius.core.progress import OnProgress
from rusty_genius.ogenius.cli import build_parser
from rusty_genius.ogenius.flags import ModelChoice
from rusty_genius.ogenius.session import Chooser, Session, chooser_of
from rusty_genius.ogenius.tui import run_tui
from rusty_genius.ogenius.tui.app import ChatApp, routed_logging
from rusty_genius.ogenius.tui.widgets import AssistantTurn, Notice, UserTurn
from textual import events
from textual.pilot import Pilot

from tests.mockhub import default_hub

pytestmark = [pytest.mark.anyio, pytest.mark.pinky]

Notes = list[tuple[str, str]]


def chat_app(session: Session | None = None, **pinky: Any) -> ChatApp:
    engine = rusty_genius.Pinky(**{"delay": 0, "reply_tokens": 3, **pinky})
    return ChatApp(rusty_genius.Genius(engine=engine), "pinky", session or Session())


def capture_notes(app: ChatApp, monkeypatch: pytest.MonkeyPatch) -> Notes:
    """Records the app's notifications (run_test() turns the toasts off)."""
    notes: Notes = []

    def notify(message: str, *, severity: str = "information", **_: Any) -> None:
        notes.append((message, severity))

    monkeypatch.setattr(app, "notify", notify)
    return notes


async def until(pilot: Pilot[int], condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {condition}")
        await pilot.pause(0.01)


async def ready(pilot: Pilot[int]) -> ChatApp:
    app = pilot.app
    assert isinstance(app, ChatApp)
    await until(pilot, lambda: app.state == "ready")
    return app


async def type_and_send(pilot: Pilot[int], text: str) -> None:
    """Types ``text`` (a key per character) and presses Enter."""
    await pilot.press(*text, "enter")


async def say(pilot: Pilot[int], text: str) -> None:
    """Puts ``text`` in the input box (faster than a key per character) and presses Enter."""
    app = pilot.app
    assert isinstance(app, ChatApp)
    app.chat_input.insert(text)
    await pilot.press("enter")


def turns(app: ChatApp) -> list[AssistantTurn]:
    return list(app.query(AssistantTurn))


def notices(app: ChatApp) -> list[Notice]:
    return list(app.query(Notice))


def status(app: ChatApp) -> str:
    return str(app.query_one("#status").render())


async def test_answer_streams_then_completes() -> None:
    app = chat_app(delay=0.05, reply_tokens=40)
    async with app.run_test() as pilot:
        assert "loading pinky" in status(app) or app.state == "ready"
        await ready(pilot)
        await type_and_send(pilot, "hi there")
        assert app.chat_input.text == ""
        assert [u.text for u in app.query(UserTurn)] == ["hi there"]
        await until(pilot, lambda: bool(turns(app)) and "Narf!" in (turns(app)[0].answer.source or ""))
        turn = turns(app)[0]
        assert app.state == "generating" and "generating" in status(app)
        assert 0 < turn.content.count("Narf!") < 40  # seen while it streams
        await until(pilot, lambda: app.state == "ready")
        full = "Narf!" + " Narf!" * 39
        assert turn.content == full and turn.answer.source == full
        assert app.session.turns == [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": full}]
        assert "tok/s" in status(app) and "tokens" in status(app)
        assert not turn.note.display  # a normal end needs no note


async def test_the_conversation_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    app = chat_app()
    sent: list[list[dict[str, str]]] = []
    real_chat = app.genius.chat

    def spy(messages: Sequence[dict[str, str]], config: Any = None, **kw: Any) -> rusty_genius.ChatStream:
        sent.append([dict(m) for m in messages])
        return real_chat(messages, config, **kw)

    monkeypatch.setattr(app.genius, "chat", spy)
    async with app.run_test() as pilot:
        await ready(pilot)
        await say(pilot, "one")
        await until(pilot, lambda: app.state == "ready" and len(app.session.turns) == 2)
        await say(pilot, "two")
        await until(pilot, lambda: app.state == "ready" and len(app.session.turns) == 4)
    first = "Narf! Narf! Narf!"
    assert sent[1] == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": first},
        {"role": "user", "content": "two"},
    ]
    assert app.session.turns[1] == {"role": "assistant", "content": first}


async def test_multi_line_input() -> None:
    app = chat_app()
    async with app.run_test() as pilot:
        await ready(pilot)
        app.post_message(events.Paste("pasted one\npasted two"))
        await pilot.pause()
        assert app.chat_input.text == "pasted one\npasted two"
        assert not turns(app)  # a paste never sends
        await pilot.press("ctrl+j", "a", "shift+enter", "b", "alt+enter", "c", "enter")
        await until(pilot, lambda: app.state == "ready" and len(app.session.turns) == 2)
        assert app.session.turns[0]["content"] == "pasted one\npasted two\na\nb\nc"
        await pilot.press("enter", "space", "enter")  # empty input: nothing happens
        assert len(app.session.turns) == 2 and len(turns(app)) == 1


async def test_thinking_is_hidden_until_toggled(monkeypatch: pytest.MonkeyPatch) -> None:
    app = chat_app()
    notes = capture_notes(app, monkeypatch)
    async with app.run_test() as pilot:
        await ready(pilot)
        await say(pilot, "think")
        await until(pilot, lambda: app.state == "ready")
        turn = turns(app)[0]
        assert "Narf" in turn.thought_text and "Poit" in turn.thought_text
        assert not turn.thinking.display and turn.thinking.collapsed
        assert "Poit" not in turn.content  # thoughts never mix into the answer
        await pilot.press("ctrl+t")
        assert app.session.show_thinking
        assert turn.thinking.display and not turn.thinking.collapsed
        assert "Poit" in str(turn.thought.render())
        assert notes[-1][0] == "thinking shown"
        await say(pilot, "/think")
        assert not app.session.show_thinking and not turn.thinking.display
        assert notices(app)[-1].text == "thinking hidden"


async def test_thinking_shown_from_the_start() -> None:
    app = chat_app(Session(show_thinking=True))
    async with app.run_test() as pilot:
        await ready(pilot)
        await say(pilot, "think")
        await until(pilot, lambda: app.state == "ready")
        turn = turns(app)[0]
        assert turn.thinking.display and not turn.thinking.collapsed and "Narf" in turn.thought_text


async def test_ctrl_c_stops_a_generation_and_the_app_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    app = chat_app(delay=0.05, reply_tokens=500)
    notes = capture_notes(app, monkeypatch)
    async with app.run_test() as pilot:
        await ready(pilot)
        await pilot.press("ctrl+c")
        assert notes[-1][0] == "press Ctrl+Q to quit" and app.is_running
        await say(pilot, "talk forever")
        await until(pilot, lambda: bool(turns(app)) and turns(app)[0].content.count("Narf!") >= 2)
        await say(pilot, "another")  # one generation at a time: refused, and the text stays in the box
        assert "Ctrl+C" in notes[-1][0] and app.chat_input.text == "another"
        assert len(app.query(UserTurn)) == 1
        await pilot.press("ctrl+c")
        await until(pilot, lambda: app.state == "ready", timeout=3)
        turn = turns(app)[0]
        assert "stopped" in str(turn.note.render()) and turn.note.display
        assert 2 <= turn.content.count("Narf!") < 100
        assert app.session.turns[-1] == {"role": "assistant", "content": turn.content}
        app.chat_input.clear()
        await say(pilot, "/set max_tokens 9")  # the next answer ends on its own, quickly
        await say(pilot, "again")
        await until(pilot, lambda: app.state == "ready" and len(turns(app)) == 2)
        assert "Narf!" in turns(app)[1].content and "token limit" in str(turns(app)[1].note.render())
        assert len(app.session.turns) == 4


async def test_quitting_during_a_generation_is_clean() -> None:
    app = chat_app(delay=0.05, reply_tokens=500)
    async with app.run_test() as pilot:
        await ready(pilot)
        await say(pilot, "talk forever")
        await until(pilot, lambda: bool(turns(app)) and "Narf!" in turns(app)[0].content)
        await pilot.press("ctrl+q")
    assert app.return_code == 0
    assert app.genius.loaded() == []  # the app closed its Genius


async def test_slash_commands(tmp_path: Path) -> None:
    app = chat_app()
    async with app.run_test() as pilot:
        await ready(pilot)
        await type_and_send(pilot, "/set temperature 0.2")
        assert app.session.config.sampling.temperature == pytest.approx(0.2)
        assert notices(app)[-1].text == "temperature = 0.2" and not notices(app)[-1].error
        await say(pilot, "hello")
        await until(pilot, lambda: app.state == "ready" and len(app.session.turns) == 2)
        target = tmp_path / "chat.json"
        await say(pilot, f"/save {target}")
        assert json.loads(target.read_text())[1] == {"role": "assistant", "content": "Narf! Narf! Narf!"}
        await say(pilot, "/bogus")
        assert notices(app)[-1].error and "unknown command /bogus" in notices(app)[-1].text
        assert notices(app)[-1].has_class("error")
        await say(pilot, "/clear")
        await pilot.pause()
        assert app.session.turns == [] and not turns(app) and not app.query(UserTurn)
        assert [n.text for n in notices(app)] == ["conversation cleared"]


async def test_an_engine_error_shows_and_the_app_keeps_running() -> None:
    app = chat_app(fail_after=2)
    async with app.run_test() as pilot:
        await ready(pilot)
        await say(pilot, "fail please")
        await until(pilot, lambda: app.state == "ready" and bool(turns(app)))
        note = turns(app)[0].note
        assert note.display and note.has_class("error") and "injected failure" in str(note.render())
        assert app.session.turns == []  # the failed question can be asked again
        await say(pilot, "again")
        await until(pilot, lambda: app.state == "ready" and len(turns(app)) == 2)
        assert app.is_running


async def test_a_load_failure_exits_with_2() -> None:
    genius = rusty_genius.Genius(rusty_genius.Brain(model_path="/nonexistent.gguf"))
    app = ChatApp(genius, "nonexistent.gguf", Session())
    async with app.run_test() as pilot:
        await until(pilot, lambda: app.return_code is not None)
    assert app.return_code == 2 and app.state == "failed"
    assert app.load_error is not None and "/nonexistent.gguf" in app.load_error


def test_run_tui_reports_a_load_failure(capsys: pytest.CaptureFixture[str]) -> None:
    genius = rusty_genius.Genius(rusty_genius.Brain(model_path="/nonexistent.gguf"))
    assert run_tui(genius, "nonexistent.gguf", Session(), headless=True) == 2
    err = capsys.readouterr().err
    assert err.startswith("ogenius: ") and "/nonexistent.gguf" in err and "Traceback" not in err


async def test_submitting_while_loading_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    app = chat_app(load_delay=0.5)
    notes = capture_notes(app, monkeypatch)
    async with app.run_test() as pilot:
        assert "loading pinky…" in status(app)
        await say(pilot, "early")
        assert "loading" in notes[-1][0] and app.chat_input.text == "early"
        await ready(pilot)
        await pilot.press("enter")
        await until(pilot, lambda: app.state == "ready" and len(app.session.turns) == 2)


async def test_ctrl_d_on_an_empty_input_quits() -> None:
    app = chat_app()
    async with app.run_test() as pilot:
        await ready(pilot)
        await pilot.press("x", "ctrl+d")  # not empty: Ctrl+D edits
        assert app.is_running
        app.chat_input.clear()
        await pilot.press("ctrl+d")
        await until(pilot, lambda: app.return_code is not None)
    assert app.return_code == 0


async def test_logging_becomes_notifications(monkeypatch: pytest.MonkeyPatch) -> None:
    app = chat_app()
    notes = capture_notes(app, monkeypatch)
    root = logging.getLogger()
    before = root.handlers[:]
    async with app.run_test() as pilot:
        await ready(pilot)
        with routed_logging(app):
            logging.getLogger("some.library").warning("disk %s", "almost full")
            logging.getLogger("some.library").info("not shown")
            await until(pilot, lambda: bool(notes))
        assert notes == [("disk almost full", "warning")]
    assert root.handlers == before


# -- /model ----------------------------------------------------------------------------------------------------------


def chat_args(*flags: str) -> argparse.Namespace:
    """``ogenius chat``'s parsed flags (what its /model resolves names with)."""
    return build_parser().parse_args(["chat", *flags])


def switching_app(chooser: Chooser | None = None, **pinky: Any) -> ChatApp:
    """A chat on Pinky whose /model resolves as ``ogenius chat --engine pinky`` does (or with ``chooser``)."""
    session = Session(chooser=chooser or chooser_of(chat_args("--engine", "pinky", "--pinky-delay", "0")))
    return chat_app(session, **pinky)


def spy_on_chat(app: ChatApp, monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[dict[str, str]], Any]]:
    """Records each request's messages and model."""
    sent: list[tuple[list[dict[str, str]], Any]] = []
    real_chat = app.genius.chat

    def spy(messages: Sequence[dict[str, str]], config: Any = None, **kw: Any) -> rusty_genius.ChatStream:
        sent.append(([dict(m) for m in messages], kw.get("model")))
        return real_chat(messages, config, **kw)

    monkeypatch.setattr(app.genius, "chat", spy)
    return sent


async def test_model_switches_for_the_next_turns_and_keeps_the_conversation(monkeypatch: pytest.MonkeyPatch) -> None:
    app = switching_app()
    sent = spy_on_chat(app, monkeypatch)
    async with app.run_test() as pilot:
        await ready(pilot)
        await say(pilot, "/help")
        assert "/model [NAME]" in notices(app)[-1].text
        await say(pilot, "/model")
        assert notices(app)[-1].text == "model: pinky"
        await say(pilot, "one")
        await until(pilot, lambda: app.state == "ready" and len(app.session.turns) == 2)
        await say(pilot, "/model alpha")
        await until(pilot, lambda: app.state == "ready" and app.label == "alpha")
        assert notices(app)[-1].text.startswith("now talking to alpha") and not notices(app)[-1].error
        assert status(app).startswith("alpha · ready")
        assert "alpha" in app.genius.loaded(), "loaded before the switch"
        await say(pilot, "two")
        await until(pilot, lambda: app.state == "ready" and len(app.session.turns) == 4)
        await say(pilot, "/model")
        assert notices(app)[-1].text == "model: alpha"
        await say(pilot, "/model alpha")
        await until(pilot, lambda: app.state == "ready" and notices(app)[-1].text == "already talking to alpha")
        assert len(app.query(UserTurn)) == 2, "the transcript stays"
    assert [model for _, model in sent] == [None, "alpha"]
    assert sent[1][0] == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "Narf! Narf! Narf!"},
        {"role": "user", "content": "two"},
    ], "the new model gets the whole conversation"


async def test_a_slow_load_shows_in_the_status_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(name: str, on_progress: OnProgress | None) -> ModelChoice:
        return ModelChoice(rusty_genius.Pinky(delay=0, reply_tokens=3, load_delay=0.4), name)

    app = switching_app(slow)
    notes = capture_notes(app, monkeypatch)
    async with app.run_test() as pilot:
        await ready(pilot)
        await say(pilot, "/model beta")
        await until(pilot, lambda: "loading beta…" in status(app))
        assert status(app).startswith("pinky · "), "the current model stays until the new one is ready"
        await say(pilot, "early")
        assert "switching to beta" in notes[-1][0] and app.chat_input.text == "early"
        await until(pilot, lambda: app.state == "ready")
        assert app.session.model_label == "beta" and status(app).startswith("beta · ready")


async def test_an_unknown_model_name_shows_close_matches_and_keeps_the_model() -> None:
    app = switching_app(chooser_of(chat_args()))  # the real engine's resolver; nothing loads on a failure
    async with app.run_test() as pilot:
        await ready(pilot)
        await say(pilot, "/model smollm2")
        await until(pilot, lambda: app.state == "ready" and bool(notices(app)))
        error = notices(app)[-1]
        assert error.error and "unknown model 'smollm2'" in error.text, error.text
        assert "did you mean: smollm2-135m" in error.text and "ogenius list" in error.text
        # A known model that is not here: downloaded as `--model` would, here refused by HF_HUB_OFFLINE.
        await say(pilot, "/model qwen2.5-1.5b")
        await until(pilot, lambda: app.state == "ready" and len(notices(app)) == 2)
        assert notices(app)[-1].error and "not downloaded" in notices(app)[-1].text
        assert app.session.model_label == "pinky" and app.session.model is None and app.label == "pinky"
        await say(pilot, "still here?")
        await until(pilot, lambda: app.state == "ready" and len(app.session.turns) == 2)


async def test_a_download_shows_its_progress_and_ctrl_c_stops_it(monkeypatch: pytest.MonkeyPatch) -> None:
    reports: list[int] = []

    def download(name: str, on_progress: OnProgress | None) -> ModelChoice:  # on a worker thread
        assert on_progress is not None
        for step in range(1, 2000):
            on_progress(rusty_genius.DownloadProgress(name, "big.gguf", step * 10_000_000, 4_000_000_000))
            reports.append(step)
            time.sleep(0.005)
        return ModelChoice(rusty_genius.Pinky(delay=0), name)

    app = switching_app(download)
    notes = capture_notes(app, monkeypatch)
    async with app.run_test() as pilot:
        await ready(pilot)
        await say(pilot, "/model huge")
        await until(pilot, lambda: "downloading huge: " in status(app) and " MB of 4,000.0 MB (" in status(app))
        await say(pilot, "hello?")
        assert "Ctrl+C" in notes[-1][0]
        await pilot.press("ctrl+c")
        await until(pilot, lambda: app.state == "ready")
        assert notices(app)[-1].text == "/model huge stopped; still talking to pinky"
        assert len(reports) < 1999 and app.session.model_label == "pinky" and status(app).startswith("pinky · ")


async def test_ctrl_c_during_the_lookup_cancels_the_switch() -> None:
    looked_up = threading.Event()

    def lookup(name: str, on_progress: OnProgress | None) -> ModelChoice:  # a hub lookup: no progress to report
        looked_up.wait(5)
        return ModelChoice(rusty_genius.Pinky(delay=0), name)

    app = switching_app(lookup)
    async with app.run_test() as pilot:
        await ready(pilot)
        await say(pilot, "/model owner/repo")
        assert "finding owner/repo…" in status(app)
        await pilot.press("ctrl+c")
        assert "stopping the switch to owner/repo…" in status(app)
        looked_up.set()
        await until(pilot, lambda: app.state == "ready")
        assert notices(app)[-1].text == "/model owner/repo stopped; still talking to pinky"
        assert app.session.model is None and "owner/repo" not in app.genius.loaded()


async def test_quitting_during_a_download_stops_it() -> None:
    stopped = threading.Event()

    def download(name: str, on_progress: OnProgress | None) -> ModelChoice:
        assert on_progress is not None
        try:
            for _ in range(2000):
                on_progress(rusty_genius.DownloadProgress(name, "big.gguf", 1, None))
                time.sleep(0.005)
        except Exception:
            stopped.set()
            raise
        return ModelChoice(rusty_genius.Pinky(delay=0), name)

    app = switching_app(download)
    async with app.run_test() as pilot:
        await ready(pilot)
        await say(pilot, "/model huge")
        await until(pilot, lambda: "downloading huge: 0.0 MB" in status(app))
        await pilot.press("ctrl+q")
    assert app.return_code == 0
    assert await asyncio.to_thread(stopped.wait, 2), "the download thread was told to stop"


def test_the_repl_switches_models_too() -> None:
    lines = ["/model", "one", "/model alpha", "two", "/model", ""]
    out = subprocess.run(
        [sys.executable, "-m", "rusty_genius.ogenius", "chat", "--engine", "pinky", "--pinky-delay", "0",
         "--max-tokens", "9"],
        input="\n".join(lines), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout == "Narf! Narf!\nNarf! Narf!\n"
    err = out.stderr.splitlines()
    assert err[0] == "model: pinky"
    assert err[2] == "now talking to alpha (the conversation so far comes along)" and err[3] == "loading alpha…"
    assert "model: alpha" in err[4:]


def test_the_repl_downloads_a_known_model_as_model_does(tmp_path: Path) -> None:
    with default_hub() as hub:
        env = {
            **os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0",
            "RUSTY_GENIUS_HOME": str(tmp_path / "config"), "HF_HUB_DOWNLOAD_TIMEOUT": "2", "TQDM_POSITION": "-1",
        }  # fmt: skip
        out = subprocess.run(
            [sys.executable, "-m", "rusty_genius.ogenius", "chat", "--model", "pinky", "--plain"],
            input="/model smollm2\n/model qwen2.5-1.5b:q8_0\n/model\n", env=env, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "/model smollm2: unknown model 'smollm2'" in out.stderr and "did you mean: smollm2-135m" in out.stderr
    assert "100%" in out.stderr, "a progress bar on stderr, as `ogenius download` draws"
    assert "now talking to qwen2.5-1.5b:Q8_0" in out.stderr and "model: qwen2.5-1.5b:Q8_0" in out.stderr
    assert "qwen2.5-1.5b:Q8_0" in (tmp_path / "config" / "registry.toml").read_text()
