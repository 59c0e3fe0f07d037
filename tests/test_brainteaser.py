"""brainteaser: the fixture format, the checks, the harness (CLI and pytest plugin) on Pinky and on missing models."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from rusty_genius.brainteaser import Answer, Check, FixtureError, ModelSource, check, load, parse, run_one

pytestmark = pytest.mark.pinky
OGENIUS = [sys.executable, "-m", "rusty_genius.ogenius"]


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


GOOD = """
---
temperature: 0
max_tokens: 9
stop: ["x", "y"]
seed: 3
---

## System
Be brief.

## User
One

## Assistant
Scripted.

## User
Two

## Expect
- contains: Narf!
- not_contains: " Poit"
- regex: ^Narf
- tokens: 1..9
- thinking: present
- finish_reason: length
"""


def test_a_fixture_parses_into_settings_turns_and_checks() -> None:
    fx = parse(textwrap.dedent(GOOD).lstrip(), Path("t.md"), "Org", "Repo-GGUF", "Q4_K_M")
    assert fx.settings == {"temperature": 0.0, "max_tokens": 9, "stop": ["x", "y"], "seed": 3}
    assert fx.system == "Be brief."
    assert [(t.role, t.content) for t in fx.turns] == [("user", "One"), ("assistant", "Scripted."), ("user", "Two")]
    kinds = [(c.kind, c.value) for c in fx.turns[2].checks]
    assert kinds == [
        ("contains", "Narf!"), ("not_contains", " Poit"), ("regex", "^Narf"), ("tokens", (1, 9)),
        ("thinking", "present"), ("finish_reason", "length"),
    ]  # fmt: skip
    assert fx.model_id == "Org/Repo-GGUF:Q4_K_M" and not fx.is_pinky


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("---\ncolour: red\n---\n## User\nhi\n", "t.md:2: unknown front-matter line"),
        ("---\ntemperature: hot\n---\n## User\nhi\n", "t.md:2: temperature: expected float"),
        ("---\nmax_tokens: 3\n## User\nhi\n", "no closing '---'"),
        ("## User\nhi\n## Expect\n- smells: nice\n", "t.md:4: unknown check"),
        ("## User\nhi\n## Expect\ncontains: x\n", "t.md:4: an ## Expect line must be"),
        ("## User\nhi\n## Expect\n- tokens: lots\n", "tokens wants a range"),
        ("## User\nhi\n## Expect\n- regex: (\n", "bad regex"),
        ("## User\nhi\n## Expect\n- thinking: maybe\n", "thinking is 'present' or 'absent'"),
        ("## User\nhi\n## Expect\n- finish_reason: cancelled\n", "finish_reason is 'stop' or 'length'"),
        ("## Expect\n- contains: x\n## User\nhi\n", "each ## Expect must follow a ## User"),
        ("## User\nhi\n## Assistant\nyo\n", "must end with a ## User turn"),
        ("## System\nx\n", "no ## User section"),
        ("## Users\nhi\n", "unknown section"),
        ("## User\n\n## User\nhi\n", "an empty ## User section"),
    ],
)
def test_malformed_fixtures_name_the_file_line_and_problem(text: str, message: str) -> None:
    with pytest.raises(FixtureError, match=re.escape(message)):
        parse(text, Path("t.md"), "o", "r", "q")


def test_a_fixture_must_sit_at_org_repo_quant(tmp_path: Path) -> None:
    path = write(tmp_path / "fixtures", "Org/Repo/test.md", "## User\nhi\n")
    with pytest.raises(FixtureError, match=r"ORG/REPO/QUANT/TEST\.md"):
        load(path, tmp_path / "fixtures")


@pytest.mark.parametrize(
    ("kind", "value", "answer", "problem"),
    [
        ("contains", "Paris", Answer(content="It is Paris."), None),
        ("contains", "Paris", Answer(content="It is Rome."), "not in the answer"),
        ("icontains", "paris", Answer(content="PARIS"), None),
        ("not_contains", "Rome", Answer(content="Rome!"), "found in the answer"),
        ("regex", r"^\d+$", Answer(content="42"), None),
        ("regex", r"^\d+$", Answer(content="x42"), "no match"),
        ("thinking", "present", Answer(thinking="hm"), None),
        ("thinking", "absent", Answer(thinking="hm"), "thinking was present"),
        ("finish_reason", "stop", Answer(finish_reason="length"), "finished with 'length'"),
        ("tokens", (2, 4), Answer(tokens=5), "5 tokens"),
        ("tokens", (2, None), Answer(tokens=500), None),
    ],
)
def test_checks(kind: str, value: object, answer: Answer, problem: str | None) -> None:
    result = check(Check(kind, value, 1), answer)
    assert (result is None) if problem is None else (result is not None and problem in result)


def test_the_harness_reports_passed_failed_with_every_problem_and_leaks(tmp_path: Path) -> None:
    root = tmp_path / "fixtures"
    good = load(write(root, "pinky/narf/default/good.md", GOOD), root)
    bad = load(
        write(root, "pinky/narf/default/bad.md", "## User\nhi\n## Expect\n- contains: Paris\n- tokens: ..2\n"), root
    )
    leak = load(write(root, "pinky/narf/default/leak.md", "---\nshow_thinking: false\n---\n## User\nhi\n"), root)
    source = ModelSource()
    try:
        assert run_one(good, source).status == "passed"
        outcome = run_one(bad, source)
        assert outcome.status == "failed"
        assert any('turn 1 (line 4): contains: "Paris": not in the answer' in f for f in outcome.failures)
        assert any("tokens: 0..2: 31 tokens" in f for f in outcome.failures), outcome.failures
        assert any("answer: 'Narf! Narf!" in f for f in outcome.failures)
        assert run_one(leak, source).status == "passed"
    finally:
        source.close()


def test_reasoning_in_the_content_always_fails() -> None:
    from rusty_genius.brainteaser.runner import _leaks

    assert _leaks(Answer(content="ok")) is None
    assert "<think>" in (_leaks(Answer(content="<think>hm</think>ok")) or "")


def test_a_model_that_cannot_be_had_offline_is_skipped_with_the_reason(tmp_path: Path) -> None:
    root = tmp_path / "fixtures"
    fx = load(write(root, "Someone/Tiny-GGUF/Q4_K_M/x.md", "## User\nhi\n## Expect\n- contains: a\n"), root)
    source = ModelSource()
    outcome = run_one(fx, source)
    assert outcome.status == "skipped"
    assert "Someone/Tiny-GGUF:Q4_K_M cannot be had here" in outcome.reason and "HF_HUB_OFFLINE" in outcome.reason
    skip = load(write(root, "pinky/narf/default/later.md", "---\nskip: not yet\n---\n## User\nhi\n"), root)
    assert (run_one(skip, source).status, run_one(skip, source).reason) == ("skipped", "not yet")


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "fixtures"
    write(root, "pinky/narf/default/good.md", GOOD)
    write(root, "pinky/narf/default/bad.md", "## User\nhi\n## Expect\n- contains: Paris\n")
    write(root, "Someone/Tiny-GGUF/Q4_K_M/away.md", "## User\nhi\n")
    write(root, "README.md", "# not a fixture\n")
    return root


def test_teaser_cli_reports_each_fixture_and_exits_1_on_a_failure(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    out = subprocess.run([*OGENIUS, "teaser", str(root), "--offline"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("PASS  pinky/narf/default/good") and "tok/s" in line for line in lines)
    assert any(line.startswith("FAIL  pinky/narf/default/bad") and '"Paris"' in line for line in lines)
    assert any(line.startswith("SKIP  Someone/Tiny-GGUF/Q4_K_M/away") and "cannot be had" in line for line in lines)
    assert lines[-1] == "1 passed, 1 failed, 1 skipped"
    only_good = subprocess.run(
        [*OGENIUS, "teaser", str(root / "pinky/narf/default/good.md")], capture_output=True, text=True, timeout=60
    )
    assert only_good.returncode == 0 and only_good.stdout.splitlines()[-1] == "1 passed, 0 failed, 0 skipped"
    brain_only = subprocess.run([*OGENIUS, "teaser", str(root), "--engine", "brain", "--offline"],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
    assert brain_only.returncode == 0 and brain_only.stdout.splitlines()[-1] == "0 passed, 0 failed, 1 skipped"


def test_pytest_plugin_makes_each_fixture_a_marked_item(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    args = [sys.executable, "-m", "pytest", str(root), "-p", "rusty_genius.brainteaser.plugin", "-rs", "-q"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "1 failed, 1 passed, 1 skipped" in out.stdout, out.stdout
    assert "pinky/narf/default/bad failed:" in out.stdout
    assert "cannot be had here" in out.stdout
    pinky = subprocess.run([*args, "-m", "pinky"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "1 failed, 1 passed, 1 deselected" in pinky.stdout, pinky.stdout
