"""The README's example runs as written, and ogenius behaves as a command-line user expects."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.pinky

ROOT = Path(__file__).resolve().parent.parent
OGENIUS = [sys.executable, "-m", "rusty_genius.ogenius"]


def run(cmd: list[str], stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60, env=env, check=False)


def readme_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_library_example_runs_as_written() -> None:
    blocks = readme_blocks()
    assert blocks, "README has no python example"
    out = run([sys.executable, "-c", blocks[0]])
    assert out.returncode == 0, out.stderr
    assert "(thinking: Narf)" in out.stdout
    assert "Narf! Narf! Narf! Narf! Narf!" in out.stdout
    assert out.stdout.rstrip().endswith("[length: 12 tokens]")


@pytest.mark.real_engine
def test_readme_sync_example_runs_as_written_on_the_embedded_default_model() -> None:
    blocks = readme_blocks()
    assert len(blocks) >= 2
    out = run([sys.executable, "-c", blocks[1]])
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()[:2]
    assert first.split()[-2] == "tok/s" or first.endswith("tok/s"), first
    assert second.strip(), "the streamed answer is empty"


def test_chat_puts_the_answer_on_stdout_and_thinking_on_stderr() -> None:
    out = run([*OGENIUS, "chat", "--engine", "pinky", "--max-tokens", "9", "hello"])
    assert out.returncode == 0, out.stderr
    assert out.stdout == "Narf! Narf!\n"
    assert "Narf! Poit!" in out.stderr
    assert "\x1b[" not in out.stderr, "no colour codes when stderr is not a terminal"
    hidden = run([*OGENIUS, "chat", "--hide-thinking", "--max-tokens", "9", "hello"])
    assert hidden.stderr == ""


def test_chat_reads_one_message_per_line_when_piped() -> None:
    out = run([*OGENIUS, "chat", "--hide-thinking"], stdin="first\n\nsecond\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("Narf!") == 48
    assert len(out.stdout.splitlines()) == 2


def test_errors_exit_2_with_a_message() -> None:
    out = run([*OGENIUS, "chat", "--engine", "llama", "hi"])
    assert out.returncode == 2
    assert "unknown model 'llama'" in out.stderr
    out = run([*OGENIUS, "chat", "--max-tokens", "0", "hi"])
    assert out.returncode == 2
    assert "max_tokens" in out.stderr


def test_version() -> None:
    out = run([*OGENIUS, "--version"])
    assert out.returncode == 0
    assert re.fullmatch(r"ogenius \d+\.\d+\.\d+\n", out.stdout)


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("ogenius")
    out = run([str(script), "chat", "--hide-thinking", "--max-tokens", "8", "hi"], env={**os.environ})
    assert out.returncode == 0, out.stderr
    assert out.stdout == "Narf!\n"


def test_ctrl_c_interrupts_a_blocked_for_loop_and_the_engine_shuts_down() -> None:
    script = """
import rusty_genius
with rusty_genius.Genius(engine=rusty_genius.Pinky(delay=30)) as g:
    print("ready", flush=True)
    try:
        for ev in g.chat([{"role": "user", "content": "hi"}]):
            pass
    except KeyboardInterrupt:
        print("interrupted", flush=True)
print("closed", flush=True)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert out == "interrupted\nclosed\n"
