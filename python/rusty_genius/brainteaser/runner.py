"""Running fixtures: find each fixture's model through facecrab, play its conversation through the facade, check.

A fixture is ``passed``, ``failed`` (with every broken expectation named) or ``skipped`` (with the reason: the
model cannot be had here, e.g. offline; or the fixture says ``skip``). Models load once per run, in the order
fixtures need them, one at a time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import rusty_genius
from rusty_genius import Brain, Genius, GeniusError, InferenceConfig, Pinky
from rusty_genius.brainteaser.fixture import Check, Fixture
from rusty_genius.core.errors import DownloadError

if TYPE_CHECKING:
    from rusty_genius.facecrab import Resolution

Status = Literal["passed", "failed", "skipped"]


@dataclass
class Answer:
    """What the checks look at in a model's answer."""

    content: str = ""
    thinking: str = ""
    finish_reason: str = ""
    tokens: int = 0
    tokens_per_s: float = 0.0

    @classmethod
    def of(cls, answer: rusty_genius.Answer) -> Answer:
        """From the facade's whole answer (:meth:`Genius.complete_sync`)."""
        return cls(
            answer.content,
            answer.thinking,
            answer.finish_reason,
            answer.usage.completion_tokens,
            answer.timings.decode_tokens_per_s,
        )


@dataclass
class Outcome:
    fixture: Fixture
    status: Status
    reason: str = ""
    failures: list[str] = field(default_factory=list)
    tokens_per_s: float = 0.0
    seconds: float = 0.0


def check(c: Check, answer: Answer) -> str | None:
    """None when ``answer`` meets ``c``; else what is wrong."""
    text = answer.content
    if c.kind == "contains" and c.value not in text:
        return f"{c}: not in the answer"
    if c.kind == "icontains" and c.value.lower() not in text.lower():
        return f"{c}: not in the answer (ignoring case)"
    if c.kind == "not_contains" and c.value in text:
        return f"{c}: found in the answer"
    if c.kind == "regex" and not re.search(c.value, text):
        return f"{c}: no match"
    if c.kind == "thinking" and (c.value == "present") != bool(answer.thinking.strip()):
        return f"{c}: thinking was {'present' if answer.thinking.strip() else 'absent'}"
    if c.kind == "finish_reason" and answer.finish_reason != c.value:
        return f"{c}: finished with {answer.finish_reason!r}"
    if c.kind == "tokens":
        low, high = c.value
        if answer.tokens < low or (high is not None and answer.tokens > high):
            return f"{c}: {answer.tokens} tokens"
    return None


def _leaks(answer: Answer) -> str | None:
    """Reasoning must never reach the answer's content, whatever the fixture checks."""
    for tag in ("<think>", "</think>"):
        if tag in answer.content:
            return f"the answer's content holds {tag} (reasoning leaked into content)"
    return None


class ModelSource:
    """Gives fixtures their model, one loaded at a time (fixtures run grouped by model, so each loads once)."""

    def __init__(self) -> None:
        self._loaded: tuple[str, Genius] | None = None
        self._unavailable: dict[str, str] = {}

    def genius(self, fixture: Fixture) -> Genius | str:
        """A started Genius for the fixture's model, or why it cannot be had (a skip reason)."""
        key = fixture.model_id
        if key in self._unavailable:
            return self._unavailable[key]
        if self._loaded is None or self._loaded[0] != key:
            self.close()
            try:
                engine = self._engine(fixture)
            except DownloadError as err:  # offline, or the hub cannot be reached; a wrong name still fails
                self._unavailable[key] = f"{key} cannot be had here: {err}"
                return self._unavailable[key]
            g = Genius(engine)
            g.start_sync()
            self._loaded = (key, g)
        return self._loaded[1]

    @staticmethod
    def resolution(fixture: Fixture) -> Resolution:
        """What facecrab's resolver makes of the fixture's model, ``ORG/REPO:QUANT`` (or ``pinky``); never fetches."""
        # Imported here: facecrab pulls in huggingface_hub, which `import rusty_genius.brainteaser` should not pay for.
        from rusty_genius import facecrab

        return facecrab.resolve_model(fixture.model_id)

    def _engine(self, fixture: Fixture) -> Pinky | Brain:
        if fixture.is_pinky:  # the fixture format's rule (fixtures/pinky/...): no model name, no facecrab to pay for
            return Pinky(delay=0)
        from rusty_genius import facecrab

        return Brain(model_path=facecrab.ensure_model(self.resolution(fixture)).path)

    def close(self) -> None:
        if self._loaded is not None:
            self._loaded[1].close()
            self._loaded = None


def run_one(fixture: Fixture, source: ModelSource) -> Outcome:
    """Plays one fixture; never raises for a model or answer problem (that is a failed or skipped outcome)."""
    if fixture.skip:
        return Outcome(fixture, "skipped", fixture.skip)
    started = time.monotonic()
    try:
        g = source.genius(fixture)
        if isinstance(g, str):
            return Outcome(fixture, "skipped", g)
        config = InferenceConfig.of(**fixture.settings)
        messages = [{"role": "system", "content": fixture.system}] if fixture.system else []
        failures: list[str] = []
        speeds: list[float] = []
        turns = fixture.turns
        for i, turn in enumerate(turns):
            messages.append({"role": turn.role, "content": turn.content})
            scripted = i + 1 < len(turns) and turns[i + 1].role == "assistant"
            if turn.role != "user" or scripted:
                continue
            answer = Answer.of(g.complete_sync(messages, config))
            speeds.append(answer.tokens_per_s)
            problems = [check(c, answer) for c in turn.checks] + [_leaks(answer)]
            failures += [f"turn {i + 1} (line {c.line}): {p}" for c, p in zip(turn.checks, problems, strict=False) if p]
            failures += [f"turn {i + 1}: {p}" for p in problems[len(turn.checks) :] if p]
            if any(problems):
                failures.append(f"turn {i + 1} answer: {answer.content!r}")
            messages.append({"role": "assistant", "content": answer.content})
    except GeniusError as err:
        return Outcome(fixture, "failed", f"{type(err).__name__}: {err}", seconds=time.monotonic() - started)
    speed = sum(speeds) / len(speeds) if speeds else 0.0
    status: Status = "failed" if failures else "passed"
    return Outcome(fixture, status, failures[0] if failures else "", failures, speed, time.monotonic() - started)


def run_all(
    fixtures: Iterable[Fixture], source: ModelSource, on_outcome: Callable[[Outcome], None] | None = None
) -> Iterator[Outcome]:
    """Runs fixtures grouped by model (each model loads once)."""
    ordered = sorted(fixtures, key=lambda f: (f.model_id, str(f.path)))
    try:
        for fixture in ordered:
            outcome = run_one(fixture, source)
            if on_outcome is not None:
                on_outcome(outcome)
            yield outcome
    finally:
        source.close()
