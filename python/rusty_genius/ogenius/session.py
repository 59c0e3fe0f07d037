"""A chat conversation and its slash commands, shared by the Textual TUI and the plain REPL.

The session keeps the turns, the system prompt, the settings changed with ``/set`` and the model the turns go to;
a front end feeds it lines with :meth:`Session.command` and asks it for the next request with
:meth:`Session.request`. ``/model NAME`` is the one command a front end finishes itself (it may download, and it
loads): the reply names the model, the front end calls :meth:`Session.choose` then :meth:`Session.switched`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rusty_genius import InferenceConfig
from rusty_genius.core.config import CONVERSATION, Setting
from rusty_genius.core.errors import ConfigError, GeniusError
from rusty_genius.core.progress import OnProgress
from rusty_genius.ogenius import flags
from rusty_genius.ogenius.flags import ModelChoice
from rusty_genius.ogenius.friendly import unknown_model
from rusty_genius.ogenius.sampling import model_defaults, recommended_for

_SETTABLE: dict[str, Setting] = {s.name: s for s in CONVERSATION}
"""The ``/set`` keys: the schema's conversation settings (their parsing, ranges and None come from it too)."""

HELP = "\n".join(
    [
        "/clear             forget the conversation (the system prompt stays)",
        "/system [TEXT]     set the system prompt (no TEXT: remove it); the conversation starts over",
        "/think             show or hide the model's reasoning",
        "/model [NAME]      talk to the model NAME from the next turn on (the conversation stays); no NAME: show it",
        *textwrap.wrap(
            f"change a setting: {', '.join(_SETTABLE)}",
            width=112,
            initial_indent="/set NAME VALUE    ",
            subsequent_indent=" " * 19,
        ),
        "/set               list the settings",
        "/save FILE         write the conversation to FILE (.json: messages; anything else: Markdown)",
        "/help              this list",
    ]
)


@dataclass
class Reply:
    """What a slash command did: ``text`` to show the person, ``error`` when it failed, ``clear`` when the
    conversation was reset (a UI clears its transcript), ``thinking`` when the thinking toggle changed."""

    text: str
    error: bool = False
    clear: bool = False
    thinking: bool = False
    switch: str | None = None
    """``/model NAME``: the model to switch to (the front end resolves it with :meth:`Session.choose`, loads it, and
    calls :meth:`Session.switched`)."""


Chooser = Callable[[str, OnProgress | None], ModelChoice]
"""What ``/model NAME`` means: the model NAME names, fetched first when it is known but not here yet (reporting the
bytes to the callback). Raises a :class:`GeniusError` written for a person."""


def chooser_of(args: argparse.Namespace) -> Chooser:
    """``/model NAME`` resolved as ``ogenius chat --model NAME`` is, with the other model flags (``--engine``,
    ``--context-size``, ``--parallel``, ``--threads``, ``--pinky-delay``) as given; ``--quant`` is not carried over
    to another model (a name may state its own: ``qwen2.5-1.5b:Q8_0``). A known model that is not here yet is
    downloaded, as ``--model`` does; under ``--engine pinky`` every name is the stub engine, under that name."""

    def choose(name: str, on_progress: OnProgress | None = None) -> ModelChoice:
        named = argparse.Namespace(**{**vars(args), "model": name, "quant": None})
        if args.engine == "pinky":
            return replace(flags.resolve_model(named), label=name)
        # Imported here: facecrab pulls in huggingface_hub, which `ogenius --help` should not pay for.
        from rusty_genius import facecrab

        try:
            resolution = facecrab.resolve_model(name)
            if resolution.kind == "model":  # fetched here, so its progress can be shown where the person looks
                facecrab.ensure_model(resolution, on_progress=on_progress)
        except GeniusError as err:
            raise unknown_model(err, name) from None
        return flags.resolve_model(named)

    return choose


@dataclass
class Session:
    """One conversation: its turns, system prompt, settings and whether thinking is shown."""

    config: InferenceConfig = field(default_factory=InferenceConfig)
    given: dict[str, Any] = field(default_factory=dict)
    """The settings the person chose (the flags, ``/set``): they win over a model's recommended sampling."""
    system: str | None = None
    show_thinking: bool = False
    turns: list[dict[str, str]] = field(default_factory=list)
    model_label: str = ""
    """The model the turns go to, as the person sees it (``/model`` shows it)."""
    model: str | None = None
    """That model as :meth:`Genius.chat <rusty_genius.Genius.chat>` takes it: a name the front end defined on its
    Genius for it; None: the Genius's default model."""
    chooser: Chooser | None = None
    """What ``/model NAME`` resolves with; None: this chat cannot switch models."""

    def request(self, user_text: str) -> list[dict[str, str]]:
        """Adds a user turn; returns the messages to send (system prompt first)."""
        self.turns.append({"role": "user", "content": user_text})
        return self.messages()

    def messages(self) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + list(self.turns)

    def answered(self, content: str) -> None:
        """Records the assistant's answer to the last user turn (its content; reasoning is not sent back)."""
        self.turns.append({"role": "assistant", "content": content})

    def unanswered(self) -> None:
        """Drops the last user turn when its answer failed before any text came (so it can be asked again)."""
        if self.turns and self.turns[-1]["role"] == "user":
            self.turns.pop()

    def use_model_defaults(self, recommended: Mapping[str, Any]) -> None:
        """The next turns answer with ``recommended`` (the model's own sampling, ogenius.sampling) under what the
        person chose."""
        self.config = model_defaults(recommended, self.given)

    def request_config(self) -> InferenceConfig:
        """The config for the next request; it always asks for thoughts (a UI decides whether to show them)."""
        return self.config.updated(show_thinking=True)

    # -- slash commands ---------------------------------------------------------------------------------------

    @staticmethod
    def is_command(line: str) -> bool:
        return line.startswith("/") and not line.startswith("//")

    def command(self, line: str) -> Reply:
        """Runs one ``/command`` line."""
        name, _, rest = line.strip().partition(" ")
        rest = rest.strip()
        if name == "/clear":
            self.turns.clear()
            return Reply("conversation cleared", clear=True)
        if name == "/system":
            self.system = rest or None
            self.turns.clear()
            return Reply(f"system prompt set: {rest}" if rest else "system prompt removed", clear=True)
        if name == "/think":
            self.show_thinking = not self.show_thinking
            return Reply(f"thinking {'shown' if self.show_thinking else 'hidden'}", thinking=True)
        if name == "/model":
            return self._model(rest)
        if name == "/set":
            return self._set(rest)
        if name == "/save":
            return self._save(rest)
        if name in ("/help", "/?"):
            return Reply(HELP)
        return Reply(f"unknown command {name}; /help lists them", error=True)

    def _model(self, rest: str) -> Reply:
        if not rest:
            return Reply(f"model: {self.model_label or 'the default model'}")
        if self.chooser is None:
            return Reply("this chat cannot switch models", error=True)
        return Reply(f"switching to {rest}…", switch=rest)

    def choose(self, name: str, on_progress: OnProgress | None = None) -> ModelChoice:
        """What ``/model NAME`` names (see :func:`chooser_of`): blocking, it may download."""
        if self.chooser is None:
            raise ConfigError("this chat cannot switch models")
        return self.chooser(name, on_progress)

    def is_current(self, choice: ModelChoice) -> bool:
        return choice.label == self.model_label

    def switched(self, choice: ModelChoice) -> Reply:
        """Records that the turns now go to ``choice``, defined on the front end's Genius under its label."""
        self.model_label, self.model = choice.label, choice.label
        self.use_model_defaults(recommended_for(choice.engine, choice.resolution))
        return Reply(
            f"now talking to {choice.label}" + (" (the conversation so far comes along)" if self.turns else "")
        )

    def _set(self, rest: str) -> Reply:
        if not rest:
            return Reply("\n".join(f"{name} = {s.value_in(self.config)}" for name, s in _SETTABLE.items()))
        key, _, raw = rest.partition(" ")
        key, raw = key.replace("-", "_"), raw.strip()
        setting = _SETTABLE.get(key)
        if setting is None:
            return Reply(f"cannot /set {key}; settable: {', '.join(_SETTABLE)}", error=True)
        if not raw:
            return Reply(f"usage: /set {key} VALUE", error=True)
        try:
            value = setting.parse(raw)  # "none" (or "default", "off") where None is a value
            self.config = self.config.updated(**{key: value})
            self.given[key] = value
        except ConfigError as err:
            return Reply(f"/set {key}: {err}", error=True)
        return Reply(f"{key} = {value}")

    def _save(self, rest: str) -> Reply:
        if not rest:
            return Reply("usage: /save FILE", error=True)
        path = Path(os.path.expanduser(rest))
        text = (
            json.dumps(self.messages(), ensure_ascii=False, indent=2) + "\n"
            if path.suffix.lower() == ".json"
            else self.markdown()
        )
        try:
            _write_atomically(path, text)
        except OSError as err:
            return Reply(f"/save: cannot write {path}: {err.strerror or err}", error=True)
        return Reply(f"saved {len(self.turns)} message(s) to {path}")

    def markdown(self) -> str:
        """The conversation as a Markdown transcript."""
        parts = [f"**System:** {self.system}\n"] if self.system else []
        for turn in self.turns:
            who = "You" if turn["role"] == "user" else "Assistant"
            parts.append(f"## {who}\n\n{turn['content']}\n")
        return "\n".join(parts)


def _write_atomically(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` by a rename, so a failure never leaves half a file."""
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["HELP", "Chooser", "Reply", "Session", "chooser_of"]
