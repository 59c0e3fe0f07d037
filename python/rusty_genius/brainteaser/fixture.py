"""Reading a fixture: ``fixtures/{ORG}/{REPO}/{QUANT}/{TEST}.md`` (the format is in ``fixtures/README.md``).

A fixture is front matter (``key: value`` lines between ``---`` lines), then ``## System``, ``## User``,
``## Assistant`` and ``## Expect`` sections. Each ``## Expect`` holds ``- check: value`` items about the answer to
the ``## User`` turn just before it. Anything malformed is a :class:`FixtureError` naming the file and line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rusty_genius.core import config
from rusty_genius.core.errors import GeniusError

SETTINGS: dict[str, type] = {s.name: list if s.kind is tuple else s.kind for s in config.SETTINGS.values()}
"""Front-matter keys that become InferenceConfig settings, with their types: every setting of the config schema."""

FRONT_MATTER = {**SETTINGS, "system": str, "skip": str, "description": str}

CHECKS = ("contains", "not_contains", "icontains", "regex", "thinking", "finish_reason", "tokens")
SECTIONS = ("system", "user", "assistant", "expect")
PINKY_ORG = "pinky"
"""Fixtures under ``fixtures/pinky/`` run on the Pinky stub engine."""


class FixtureError(GeniusError):
    """A fixture file is malformed; the message names the file, the line and what is wrong."""


@dataclass(frozen=True)
class Check:
    """One expectation about an answer: ``kind`` is one of :data:`CHECKS`."""

    kind: str
    value: Any
    line: int

    def __str__(self) -> str:
        value = f"{self.value[0]}..{self.value[1]}" if self.kind == "tokens" else json.dumps(self.value)
        return f"{self.kind}: {value}"


@dataclass(frozen=True)
class Turn:
    role: str
    content: str
    checks: tuple[Check, ...] = ()


@dataclass(frozen=True)
class Fixture:
    path: Path
    org: str
    repo: str
    quant: str
    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    system: str | None = None
    skip: str | None = None
    turns: tuple[Turn, ...] = ()

    @property
    def model_id(self) -> str:
        """``ORG/REPO:QUANT``, or ``pinky``."""
        return PINKY_ORG if self.is_pinky else f"{self.org}/{self.repo}:{self.quant}"

    @property
    def is_pinky(self) -> bool:
        return self.org == PINKY_ORG

    @property
    def test_id(self) -> str:
        return f"{self.org}/{self.repo}/{self.quant}/{self.name}"


def _scalar(text: str, kind: type, where: str) -> Any:
    """A front-matter or check value: JSON when it parses as JSON, else the bare text."""
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is list and isinstance(value, str):
        value = [value]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise FixtureError(f"{where}: expected {kind.__name__}, got {text!r}")
    return value


def _front_matter(lines: list[str], where: str) -> tuple[dict[str, Any], int]:
    if not lines or lines[0].strip() != "---":
        return {}, 0
    values: dict[str, Any] = {}
    for n, line in enumerate(lines[1:], start=2):
        if line.strip() == "---":
            return values, n
        if line.startswith("## "):
            break
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, raw = line.partition(":")
        key = key.strip()
        if not sep or key not in FRONT_MATTER:
            raise FixtureError(f"{where}:{n}: unknown front-matter line {line!r}; keys: {', '.join(FRONT_MATTER)}")
        values[key] = _scalar(raw.strip(), FRONT_MATTER[key], f"{where}:{n}: {key}")
    raise FixtureError(f"{where}: the front matter has no closing '---' line")


def _check(item: str, n: int, where: str) -> Check:
    kind, sep, raw = item.partition(":")
    kind, raw = kind.strip(), raw.strip()
    if not sep or kind not in CHECKS:
        raise FixtureError(f"{where}:{n}: unknown check {item!r}; checks: {', '.join(CHECKS)}")
    if kind == "tokens":
        m = re.fullmatch(r"(\d+)?\s*\.\.\s*(\d+)?", raw)
        if not m or (m[1] is None and m[2] is None):
            raise FixtureError(f"{where}:{n}: tokens wants a range like 1..64, 8.. or ..32, got {raw!r}")
        return Check(kind, (int(m[1] or 0), int(m[2]) if m[2] else None), n)
    # A check's value is text: JSON only when quoted (to keep outer spaces or write escapes), so 42 stays "42".
    value = _scalar(raw, str, f"{where}:{n}: {kind}") if raw.startswith('"') else raw
    if kind == "regex":
        try:
            re.compile(value)
        except re.error as err:
            raise FixtureError(f"{where}:{n}: bad regex {value!r}: {err}") from None
    if kind == "thinking" and value not in ("present", "absent"):
        raise FixtureError(f"{where}:{n}: thinking is 'present' or 'absent', got {value!r}")
    if kind == "finish_reason" and value not in ("stop", "length"):
        raise FixtureError(f"{where}:{n}: finish_reason is 'stop' or 'length', got {value!r}")
    return Check(kind, value, n)


def parse(text: str, path: Path, org: str, repo: str, quant: str) -> Fixture:
    """Parses one fixture's text; ``path`` is only used in messages."""
    where = str(path)
    lines = text.splitlines()
    front, start = _front_matter(lines, where)
    turns: list[Turn] = []
    system = front.get("system")
    section: str | None = None
    body: list[str] = []
    checks: list[Check] = []

    def close() -> None:
        nonlocal system
        content = "\n".join(body).strip()
        if section == "system":
            system = content
        elif section in ("user", "assistant"):
            if not content:
                raise FixtureError(f"{where}: an empty ## {section.title()} section")
            turns.append(Turn(section, content))
        elif section == "expect":
            if not turns or turns[-1].role != "user" or turns[-1].checks:
                raise FixtureError(f"{where}: each ## Expect must follow a ## User section")
            turns[-1] = Turn("user", turns[-1].content, tuple(checks))

    for n, line in enumerate(lines[start:], start=start + 1):
        heading = re.fullmatch(r"##\s+(\w+)\s*", line)
        if heading:
            close()
            section, body, checks = heading[1].lower(), [], []
            if section not in SECTIONS:
                raise FixtureError(f"{where}:{n}: unknown section {line!r}; sections: System, User, Assistant, Expect")
        elif section == "expect":
            if line.strip().startswith("- "):
                checks.append(_check(line.strip()[2:], n, where))
            elif line.strip():
                raise FixtureError(f"{where}:{n}: an ## Expect line must be '- check: value', got {line!r}")
        elif section is not None:
            body.append(line)
    close()
    if not any(t.role == "user" for t in turns):
        raise FixtureError(f"{where}: no ## User section")
    if turns[-1].role != "user":
        raise FixtureError(f"{where}: the conversation must end with a ## User turn (the model answers it)")
    settings = {k: v for k, v in front.items() if k in SETTINGS}
    return Fixture(path, org, repo, quant, path.stem, settings, system, front.get("skip"), tuple(turns))


def load(path: Path, root: Path) -> Fixture:
    """Reads ``root/ORG/REPO/QUANT/TEST.md``."""
    path = path.resolve()
    parts = path.relative_to(root.resolve()).parts if path.is_relative_to(root.resolve()) else ()
    if len(parts) != 4:
        raise FixtureError(f"{path}: a fixture lives at {root}/ORG/REPO/QUANT/TEST.md")
    return parse(path.read_text(encoding="utf-8"), path, *parts[:3])


def discover(target: Path) -> list[Path]:
    """Fixture files at ``target`` (a fixture, or a directory searched recursively), README.md excluded."""
    if target.is_file():
        return [target]
    return sorted(p for p in target.rglob("*.md") if p.name.lower() != "readme.md")


def root_of(path: Path) -> Path:
    """The ``fixtures`` directory a fixture path lies in (its fourth parent)."""
    resolved = path.resolve()
    for parent in resolved.parents:
        if parent.name == "fixtures":
            return parent
    if len(resolved.parents) < 4:
        raise FixtureError(f"{path}: a fixture lives at .../ORG/REPO/QUANT/TEST.md")
    return resolved.parents[3]
