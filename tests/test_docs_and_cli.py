"""The README's example runs as written, and ogenius behaves as a command-line user expects."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.pinky

ROOT = Path(__file__).resolve().parent.parent
OGENIUS = [sys.executable, "-m", "rusty_genius.ogenius"]


def run(cmd: list[str], stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60, env=env, check=False)


def readme_blocks() -> list[str]:
    """The README's python examples, dedented (some sit inside list items)."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [textwrap.dedent(body) for body in blocks]


def readme_block(marker: str) -> str:
    """The README's python example that contains ``marker``."""
    found = [b for b in readme_blocks() if marker in b]
    assert len(found) == 1, f"README should have one python example with {marker!r}"
    return found[0]


def test_readme_library_example_runs_as_written() -> None:
    out = run([sys.executable, "-c", readme_block('Genius(engine="pinky")')])
    assert out.returncode == 0, out.stderr
    assert "(thinking: Narf)" in out.stdout
    assert "Narf! Narf! Narf! Narf! Narf!" in out.stdout
    assert out.stdout.rstrip().endswith("[length: 12 tokens]")


@pytest.mark.real_engine
def test_readme_sync_example_runs_as_written_on_the_embedded_default_model() -> None:
    out = run([sys.executable, "-c", readme_block("HibernateAfter(300)")])
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()[:2]
    assert first.split()[-2] == "tok/s" or first.endswith("tok/s"), first
    assert second.strip(), "the streamed answer is empty"


def test_readme_openai_example_runs_against_a_pinky_server() -> None:
    from tests.servers import live_server

    block = readme_block("for chunk in client.chat.completions.create(")
    with live_server("--engine", "pinky", "--pinky-delay", "0") as server:
        code = block.replace("http://127.0.0.1:8080/v1", server.base_url).replace('"smollm2-135m"', '"pinky"')
        out = run([sys.executable, "-c", code])
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Narf! Poit!") and out.stdout.endswith("Narf!"), out.stdout


def test_readme_several_models_example_runs_against_a_pinky_server_with_two_models() -> None:
    from tests.servers import live_server

    block = readme_block("client.models.list()")
    args = ("--engine", "pinky", "--model", "alpha", "--model", "beta", "--pinky-delay", "0", "--pinky-tokens", "2")
    with live_server(*args) as server:
        out = run([sys.executable, "-c", block.replace("http://127.0.0.1:8080/v1", server.base_url)])
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "alpha loaded 4096 ['chat', 'completion', 'tools', 'thinking', 'embeddings']",
        "beta unloaded 4096 ['chat', 'completion', 'tools', 'thinking', 'embeddings']",
        "beta Narf! Narf!",
    ]


@pytest.mark.real_engine
def test_readme_tool_loop_and_schema_examples_run_against_the_default_model() -> None:
    from tests.servers import live_server

    loop, parse = readme_block("message.tool_calls:"), readme_block("chat.completions.parse")
    outs = []
    for code in (loop, parse):
        # A server each: what one example leaves in the prompt cache must not steer the other's greedy answer.
        with live_server("--model", "smollm2-135m", "--parallel", "1", timeout=120) as server:
            outs.append(run([sys.executable, "-c", code.replace("http://127.0.0.1:8080/v1", server.base_url)]))
    for out in outs:
        assert out.returncode == 0, out.stderr
    # The first turn called the tool with a city; the second answered in words.
    first, *rest = outs[0].stdout.splitlines()
    assert re.fullmatch(r"-> get_weather\('[^']+'\)", first), outs[0].stdout
    assert "".join(rest).strip(), outs[0].stdout
    # The client parsed the constrained answer into the pydantic model.
    assert re.match(r"name=(['\"]).*\1 country=(['\"]).*\2 population=\d+", outs[1].stdout), outs[1].stdout


@pytest.mark.real_engine
def test_readme_library_tools_example_runs_on_the_default_model() -> None:
    out = run([sys.executable, "-c", readme_block("def get_weather")])
    assert out.returncode == 0, out.stderr
    assert re.fullmatch(r"get_weather city='.*' sunny=(True|False)\n", out.stdout), out.stdout


@pytest.mark.real_engine
def test_readme_generate_and_embed_example_runs_on_the_default_model() -> None:
    out = run([sys.executable, "-c", readme_block("g.generate(")])
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()
    assert "Paris" in first
    assert re.fullmatch(r"nearer: True, prompt: \d+ tokens", second), out.stdout


def test_version() -> None:
    out = run([*OGENIUS, "--version"])
    assert out.returncode == 0
    # Version, distribution, backends and the CPU features compiled in (rusty_genius.build_info()).
    assert re.fullmatch(r"ogenius \d+\.\d+\.\d+ \(rusty-genius[-a-z]*, [a-z ]+; [a-z0-9. ]*\)\n", out.stdout), (
        out.stdout
    )


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("ogenius")
    out = run([str(script), "chat", "--engine", "pinky", "--max-tokens", "8", "hi"], env={**os.environ})
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
