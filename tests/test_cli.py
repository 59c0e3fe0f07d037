"""``ogenius chat`` as a command-line user meets it: flags, the plain REPL, and errors written for a person."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import smollm2_path

OGENIUS = [sys.executable, "-m", "rusty_genius.ogenius"]
PINKY = [*OGENIUS, "chat", "--engine", "pinky"]


def run(args: list[str], stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=90, env=env, check=False)


def usage_error(out: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 2 with a usage message naming what was wrong, and no traceback."""
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr
    for word in words:
        assert word in out.stderr, out.stderr


@pytest.mark.pinky
def test_one_prompt_answers_on_stdout_with_thinking_on_stderr_only_when_asked() -> None:
    out = run([*PINKY, "--max-tokens", "9", "--show-thinking", "hello"])
    assert out.returncode == 0, out.stderr
    assert out.stdout == "Narf! Narf!\n"
    assert "Narf! Poit!" in out.stderr
    assert "\x1b[" not in out.stderr, "no colour codes when stderr is not a terminal"
    hidden = run([*PINKY, "--max-tokens", "9", "hello"])
    assert hidden.stdout == "Narf! Narf!\n"
    assert hidden.stderr == "(cut off: max tokens or context full)\n"


@pytest.mark.pinky
def test_piped_repl_streams_tokens_as_they_come_and_exits_0_at_end_of_input() -> None:
    with subprocess.Popen(
        [*PINKY, "--pinky-delay", "0.1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    ) as proc:
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(b"hi\n")
            proc.stdin.close()
            started = time.monotonic()
            first = os.read(proc.stdout.fileno(), 64)
            assert first.startswith(b"Narf!"), first
            assert proc.poll() is None, "the first token must arrive while the answer is still being written"
            assert time.monotonic() - started < 25 * 0.1
            rest = proc.stdout.read()
            assert proc.wait(timeout=30) == 0
        finally:
            proc.kill()
    assert (first + rest).decode().count("Narf!") == 24


@pytest.mark.pinky
def test_repl_turns_multiline_messages_and_slash_commands(tmp_path: Path) -> None:
    saved = tmp_path / "talk.json"
    lines = [
        "/system Be brief.",
        "first",
        '"""',
        "a message",
        "on two lines",
        '"""',
        "/set temperature 0.3",
        "/set top_k many",
        "/frobnicate",
        f"/save {saved}",
        "",
    ]
    out = run([*PINKY, "--max-tokens", "9"], stdin="\n".join(lines) + "\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "Narf! Narf!\n" * 2
    assert "system prompt set: Be brief." in out.stderr
    assert "temperature = 0.3" in out.stderr
    assert "/set top_k: 'many' is not an integer" in out.stderr
    assert "unknown command /frobnicate; /help lists them" in out.stderr
    messages = json.loads(saved.read_text())
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "Narf! Narf!"},
        {"role": "user", "content": "a message\non two lines"},
        {"role": "assistant", "content": "Narf! Narf!"},
    ]


@pytest.mark.pinky
def test_save_to_a_place_that_cannot_be_written_says_so_and_goes_on(tmp_path: Path) -> None:
    out = run([*PINKY, "--max-tokens", "8"], stdin=f"/save {tmp_path}/no/such/dir/x.md\nhi\n")
    assert out.returncode == 0, out.stderr
    assert "/save: cannot write" in out.stderr
    assert out.stdout == "Narf!\n"


@pytest.mark.pinky
def test_ctrl_c_stops_a_piped_repl_at_once() -> None:
    with subprocess.Popen(
        [*PINKY, "--pinky-delay", "5"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as proc:
        try:
            assert proc.stdin is not None
            proc.stdin.write(b"hi\n")
            proc.stdin.flush()
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 130
        finally:
            proc.kill()


@pytest.mark.pinky
@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--temperature", "-1"], ["--temperature", "out of range"]),
        (["--temperature", "hot"], ["--temperature", "'hot' is not a number"]),
        (["--top-p", "1.5"], ["--top-p"]),
        (["--top-p", "0"], ["--top-p", "out of range", "(0, 1]"]),  # refused by the engine too: (0, 1]
        (["--min-p", "2"], ["--min-p", "out of range"]),
        (["--top-k", "-3"], ["--top-k"]),
        (["--seed", "-1"], ["--seed"]),
        (["--max-tokens", "0"], ["--max-tokens"]),
        (["--context-size", "4"], ["--context-size"]),
        (["--engine", "llama"], ["--engine", "invalid choice"]),
        (["--temperature", "nan"], ["not a finite number"]),
    ],
)
def test_bad_flag_values_get_a_usage_message(flags: list[str], words: list[str]) -> None:
    usage_error(run([*PINKY, *flags, "hi"]), "usage: ogenius chat", *words)


@pytest.mark.pinky
def test_an_unknown_model_lists_close_matches_and_the_commands_that_help() -> None:
    out = run([*OGENIUS, "chat", "--model", "smollm2-13m", "hi"])
    usage_error(out, "unknown model 'smollm2-13m'", "did you mean: smollm2-135m?", "ogenius download", "ogenius list")
    out = run([*OGENIUS, "download", "qwen2.5-1.5", "--quant", "Q8_0"])
    usage_error(out, "unknown model 'qwen2.5-1.5'", "did you mean: qwen2.5-1.5b", "ogenius download OWNER/REPO")


@pytest.mark.pinky
def test_a_missing_or_broken_model_file_is_named_without_a_traceback(tmp_path: Path) -> None:
    out = run([*OGENIUS, "chat", "--model", str(tmp_path / "gone.gguf"), "hi"])
    usage_error(out, "gone.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all")
    usage_error(run([*OGENIUS, "chat", "--model", str(junk), "hi"]), "junk.gguf")
    usage_error(run([*OGENIUS, "chat", "--model", str(junk), "--quant", "Q8_0", "hi"]), "--quant Q8_0 applies to")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.pinky
def test_no_network_says_so(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "0",
        "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}",
        "RUSTY_GENIUS_HOME": str(tmp_path / "config"),
        "HF_HOME": str(tmp_path / "hf"),
    }
    for args in (["chat", "--model", "Someone/Some-Model", "hi"], ["download", "Someone/Some-Model"]):
        out = run([*OGENIUS, *args], env=env)
        usage_error(out, "cannot look up Someone/Some-Model", "no connection", "check the network")


@pytest.mark.pinky
def test_help_reads_well() -> None:
    top = run([*OGENIUS, "--help"])
    assert top.returncode == 0
    for word in ("chat", "download", "list", "import", "rm", "examples:", "HF_HUB_OFFLINE"):
        assert word in top.stdout
    chat = run([*OGENIUS, "chat", "--help"])
    for word in ("--model", "--quant", "--context-size", "--show-thinking", "--engine", "--temperature", "--top-p",
                 "--top-k", "--seed", "--max-tokens", "/set NAME VALUE", "Ctrl+Q quits"):  # fmt: skip
        assert word in chat.stdout, word


@pytest.mark.real_engine
def test_three_turns_on_the_embedded_default_model_in_the_plain_repl(tmp_path: Path) -> None:
    smollm2_path()  # fails with a clear message when the test model is missing
    saved = tmp_path / "talk.json"
    turns = [
        "I am Ada. Please remember my name.",
        "Which city is the capital of France?",
        "What is my name?",
        f"/save {saved}",
    ]
    # Greedy, and no repetition penalty (the model's recommended 1.1 would apply): the 135M model's recall of a name
    # three turns back is what this checks, and the penalty steers it to another greedy answer.
    flags = ["--temperature", "0", "--repeat-penalty", "1", "--max-tokens", "40"]
    out = run([*OGENIUS, "chat", *flags], stdin="\n".join(turns) + "\n")
    assert out.returncode == 0, out.stderr
    messages = json.loads(saved.read_text())
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3
    answers = [m["content"] for m in messages[1::2]]
    assert all(a.strip() for a in answers), answers
    assert "Paris" in answers[1]
    assert "Ada" in answers[2], "the conversation must be kept across turns"
    for answer in answers:
        assert answer in out.stdout


@pytest.mark.real_engine
def test_chat_answers_with_the_models_recommended_sampling_under_the_flags_and_set() -> None:
    """The embedded default's models.toml sampling applies; a flag or /set wins over it."""
    smollm2_path()
    shown = run([*OGENIUS, "chat", "--plain"], stdin="/set\n")
    assert shown.returncode == 0, shown.stderr
    assert {"temperature = 0.2", "repeat_penalty = 1.1", "top_p = 0.9"} <= set(shown.stderr.splitlines())
    flagged = run([*OGENIUS, "chat", "--plain", "--temperature", "0.5"], stdin="/set top_p 0.5\n/set\n")
    assert flagged.returncode == 0, flagged.stderr
    assert {"temperature = 0.5", "repeat_penalty = 1.1", "top_p = 0.5"} <= set(flagged.stderr.splitlines())


@pytest.mark.pinky
def test_chat_loads_one_sequence_unless_told_and_serve_keeps_the_engines_default() -> None:
    from rusty_genius.ogenius.cli import build_parser
    from rusty_genius.ogenius.flags import brain_options

    parser = build_parser()
    assert brain_options(parser.parse_args(["chat"]))["parallel"] == 1
    assert brain_options(parser.parse_args(["chat", "--parallel", "3"]))["parallel"] == 3
    assert brain_options(parser.parse_args(["serve"]))["parallel"] is None, "serve: up to 4, as memory allows"
