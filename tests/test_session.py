"""The chat session behind the TUI and the REPL: turns, settings and slash commands."""

from __future__ import annotations

from pathlib import Path

import pytest
from rusty_genius import InferenceConfig
from rusty_genius.ogenius.session import Session

pytestmark = pytest.mark.pinky


def test_turns_and_system_prompt_make_the_request() -> None:
    s = Session(system="Be brief.")
    assert s.request("hi") == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    s.answered("hello")
    assert s.request("again")[-2:] == [{"role": "assistant", "content": "hello"}, {"role": "user", "content": "again"}]
    s.unanswered()
    assert s.turns[-1] == {"role": "assistant", "content": "hello"}
    s.unanswered()  # only a pending user turn is dropped
    assert len(s.turns) == 2


def test_requests_always_ask_for_thoughts_whatever_is_shown() -> None:
    s = Session(config=InferenceConfig.of(show_thinking=False, temperature=0.1), show_thinking=False)
    config = s.request_config()
    assert config.behavior.show_thinking is True
    assert config.sampling.temperature == 0.1


def test_set_changes_validated_settings_and_lists_them() -> None:
    s = Session()
    assert s.command("/set temperature 0.2").text == "temperature = 0.2"
    assert s.command("/set top-p 0.5").text == "top_p = 0.5"
    assert s.command("/set max_tokens 7").text == "max_tokens = 7"
    assert s.command("/set seed 42").text == "seed = 42"
    assert (s.config.sampling.temperature, s.config.sampling.top_p, s.config.sampling.seed) == (0.2, 0.5, 42)
    assert s.config.behavior.max_tokens == 7
    assert s.command("/set seed none").text == "seed = None"
    listing = s.command("/set").text
    assert "temperature = 0.2" in listing and "max_tokens = 7" in listing
    bad = s.command("/set temperature -3")
    assert bad.error and "temperature" in bad.text
    assert s.config.sampling.temperature == 0.2, "a rejected value changes nothing"
    assert s.command("/set grammar x").error
    assert s.command("/set temperature").text == "usage: /set temperature VALUE"


def test_clear_system_think_help_and_unknown() -> None:
    s = Session()
    s.request("hi")
    s.answered("yo")
    reply = s.command("/system You are a pirate.")
    assert reply.clear and s.turns == [] and s.system == "You are a pirate."
    s.request("hi")
    assert s.command("/clear").clear and s.turns == [] and s.system == "You are a pirate."
    assert s.command("/system").text == "system prompt removed" and s.system is None
    assert s.command("/think").thinking and s.show_thinking
    assert "/save FILE" in s.command("/help").text
    assert s.command("/nope").error
    assert Session.is_command("/x") and not Session.is_command("//not a command") and not Session.is_command("x")


def test_save_markdown_and_json_atomically(tmp_path: Path) -> None:
    s = Session(system="sys")
    s.request("question")
    s.answered("answer")
    assert s.command(f"/save {tmp_path / 'chat.md'}").text.startswith("saved 2 message(s)")
    text = (tmp_path / "chat.md").read_text()
    assert "**System:** sys" in text and "## You\n\nquestion" in text and "## Assistant\n\nanswer" in text
    s.command(f"/save {tmp_path / 'chat.json'}")
    assert '"content": "answer"' in (tmp_path / "chat.json").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chat.json", "chat.md"], "no temporary files left"
    assert s.command("/save").error
