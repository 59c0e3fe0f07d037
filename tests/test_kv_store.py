"""Conversations survive unload and restart (issue 20): each sequence's KV cache is saved to the KV store when its
model unloads or closes, and restored when a later prompt begins the same way. The file checks, the index and the
budget are tested in Rust without a model (rust/cortex/src/kvstore/tests.rs); here: the options and flags, a restore
giving exactly what a fresh prefill gives on the real model, bad files met by a real engine (logged, removed,
ignored), the budget on real states, and ``ogenius serve`` across an idle unload and across a restart, through the
official ``openai`` client."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from rusty_genius import Brain, ConfigError, Genius, InferenceConfig, _native
from rusty_genius.engines import DEFAULT_KV_STORE_SIZE, default_kv_store
from rusty_genius.facecrab.paths import config_dir
from rusty_genius.ogenius.cli import build_parser
from rusty_genius.ogenius.flags import brain_options

from tests.conftest import smollm2_path, wait_until
from tests.servers import live_server

FACTS = " ".join(f"Fact {i}: {i} times {i} is {i * i}." for i in range(1, 25))
TURN1 = [{"role": "user", "content": FACTS + " Which fact is about 7?"}]
FOLLOW_UP = "And which one is about 9?"
GREEDY = InferenceConfig.of(temperature=0, max_tokens=16)


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


# ---- options and flags (no weights) ---------------------------------------------------------------------------------


@pytest.mark.pinky
def test_the_store_flags_reach_the_brain_keywords(tmp_path: Path) -> None:
    options = brain_options(parse("serve", "--kv-store", str(tmp_path), "--kv-store-size", "512M"))
    assert (options["kv_store"], options["kv_store_size"]) == (tmp_path, 512 << 20)
    options = brain_options(parse("chat", "--no-kv-store", "--kv-store-size", "1.5GiB"))
    assert (options["kv_store"], options["kv_store_size"]) == (False, 3 << 29)
    assert "kv_store" not in brain_options(parse("serve")), "no flag: Brain's default (on, beside the registry)"
    brain = Brain(model_path="m.gguf")
    assert (brain.kv_store, brain.kv_store_size) == (True, DEFAULT_KV_STORE_SIZE)
    assert default_kv_store() == config_dir() / "kv-store"  # the session's RUSTY_GENIUS_HOME (conftest)


@pytest.mark.pinky
def test_finding_the_default_store_imports_nothing_heavy() -> None:
    """Every load asks for the store's folder; through facecrab it imported huggingface_hub (hundreds of modules,
    0.1 to 0.2 s of every cold load, which the load benchmark caught)."""
    code = (
        "import sys, rusty_genius; rusty_genius.Brain(model_path='m.gguf')._kv_store_dir(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'huggingface_hub', 'httpx', 'tqdm', 'yaml'} "
        "or m.startswith('rusty_genius.facecrab')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]", done.stdout


@pytest.mark.pinky
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--kv-store-size", "lots"], "argument --kv-store-size: 'lots' is not a size"),
        (["--kv-store-size=-1G"], "argument --kv-store-size: '-1G' is not a size"),
        (["--kv-store", "FILE"], "argument --kv-store: "),
        (["--kv-store", "x", "--no-kv-store"], "argument --no-kv-store: not allowed with argument --kv-store"),
    ],
)
def test_bad_store_flags_are_usage_errors_naming_the_flag(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    argv = [str(a_file) if arg == "FILE" else arg for arg in argv]
    with pytest.raises(SystemExit) as exited:
        parse("serve", *argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.pinky
@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"kv_store_size": -1}, "kv_store_size"),
        ({"kv_store_size": 1.5}, "kv_store_size"),
        ({"kv_store": ""}, "kv_store"),
    ],
)
def test_bad_store_options_are_config_errors_naming_them(options: dict[str, Any], field: str) -> None:
    # Refused before the model is looked for: the file does not exist.
    with pytest.raises(ConfigError) as raised, Genius(engine=Brain(model_path="missing.gguf", **options)) as g:
        list(g.chat([{"role": "user", "content": "hi"}]))
    assert raised.value.field == field


# ---- the real engine ------------------------------------------------------------------------------------------------


def brain(store: Path | bool, **options: Any) -> Brain:
    return Brain(model_path=smollm2_path(), threads=2, context_size=1024, parallel=1, kv_store=store, **options)


Logprobs = list[tuple[bytes | None, float | None]]


def turn(
    engine: Brain, messages: list[dict[str, str]], config: InferenceConfig = GREEDY
) -> tuple[str, _native.Usage, Logprobs]:
    """One answer on a fresh load of ``engine`` (closed after it, so its conversation is saved): the text, the usage
    and the logprobs of its tokens."""
    with Genius(engine=engine) as g:
        events = list(g.chat(messages, config))
    assert events[-1].kind == "complete", [e.kind for e in events]
    text = "".join(e.text or "" for e in events if e.kind == "content")
    logprobs = [(e.token_bytes, e.logprob) for e in events if e.kind == "token_logprob"]
    usage = events[-1].usage
    assert usage is not None
    return text, usage, logprobs


def second_turn(first_answer: str) -> list[dict[str, str]]:
    return [*TURN1, {"role": "assistant", "content": first_answer}, {"role": "user", "content": FOLLOW_UP}]


def kv_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.kv"))


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, bytes]:
    """A store holding the first turn's conversation: its file (path inside the store), the first answer and the
    file's bytes."""
    root = tmp_path_factory.mktemp("kv-saved")
    answer, usage, _ = turn(brain(root), TURN1)
    assert usage.restored_prompt_tokens == 0
    files = kv_files(root)
    assert len(files) == 1, files
    return files[0].relative_to(root), answer, files[0].read_bytes()


@pytest.fixture(scope="module")
def fresh(saved: tuple[Path, str, bytes]) -> str:
    """The second turn's answer with no store: every prompt token evaluated."""
    answer, usage, _ = turn(brain(False), second_turn(saved[1]))
    assert usage.cached_prompt_tokens == 0
    return answer


@pytest.mark.real_engine
def test_a_restored_conversation_continues_exactly_as_a_fresh_prefill_would(
    saved: tuple[Path, str, bytes], fresh: str, tmp_path: Path
) -> None:
    relative, first, content = saved
    (tmp_path / relative).parent.mkdir(parents=True)
    (tmp_path / relative).write_bytes(content)
    logprobs = InferenceConfig.of(temperature=0, max_tokens=16, logprobs=0)
    restored, usage, restored_logprobs = turn(brain(tmp_path), second_turn(first), logprobs)
    # The whole first turn (its prompt and answer, all but the answer's last token, never decoded) came from disk.
    assert usage.restored_prompt_tokens == usage.cached_prompt_tokens > 100
    assert usage.prompt_tokens - usage.cached_prompt_tokens < 30
    assert restored == fresh
    # In memory (the same engine, no unload) the same cache gives the same numbers, to the last bit.
    with Genius(engine=brain(False)) as g:
        list(g.chat(TURN1, GREEDY))
        events = list(g.chat(second_turn(first), logprobs))
    in_memory = events[-1].usage
    assert in_memory is not None
    assert in_memory.cached_prompt_tokens == usage.cached_prompt_tokens
    assert in_memory.restored_prompt_tokens == 0
    assert [(e.token_bytes, e.logprob) for e in events if e.kind == "token_logprob"] == restored_logprobs
    # The continued conversation replaced the first turn's state in the store.
    files = kv_files(tmp_path)
    assert len(files) == 1 and files[0] != tmp_path / relative


def _damage(kind: str, content: bytes) -> bytes:
    """``content`` (a good state file) damaged as ``kind`` says; offsets follow the header layout of
    rust/cortex/src/kvstore/format.rs (magic 8, version 4, identity 32, token count 4, payload length 8)."""
    data = bytearray(content)
    if kind == "bad magic":
        data[0:8] = b"GGUFGGUF"
    elif kind == "truncated header":
        del data[40:]
    elif kind == "truncated payload":
        del data[len(data) // 2 :]
    elif kind == "wrong version":
        data[8:12] = (99).to_bytes(4, "little")
    elif kind == "wrong model":
        data[12] ^= 0xFF
    elif kind == "checksum mismatch":
        data[len(data) // 2] ^= 0x01
    return bytes(data)


@pytest.mark.real_engine
@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("bad magic", "bad magic"),
        ("truncated header", "truncated header"),
        ("truncated payload", "truncated"),
        ("wrong version", "format version 99"),
        ("wrong model", "another model"),
        ("checksum mismatch", "checksum mismatch"),
        ("oversized", "more than the store's budget"),
    ],
)
def test_a_bad_state_file_is_logged_removed_and_ignored(
    kind: str, reason: str, saved: tuple[Path, str, bytes], fresh: str, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.WARNING, logger="rusty_genius.cortex")
    relative, first, content = saved
    bad = tmp_path / relative
    bad.parent.mkdir(parents=True)
    bad.write_bytes(_damage(kind, content))
    # The budget leaves room for the file, except in the oversized case.
    size = len(content) - 1 if kind == "oversized" else 4 * len(content)
    answer, usage, _ = turn(brain(tmp_path, kv_store_size=size), second_turn(first))
    assert usage.restored_prompt_tokens == 0 and usage.cached_prompt_tokens == 0
    assert answer == fresh, "the request is answered as if there were no store"
    assert not bad.exists(), "the bad file is removed"
    assert wait_until(lambda: any(reason in r.getMessage() for r in caplog.records)), caplog.text
    logged = next(r.getMessage() for r in caplog.records if reason in r.getMessage())
    assert logged.startswith("KV store: removing ") and str(bad) in logged


@pytest.mark.real_engine
def test_the_budget_keeps_the_most_recent_conversations(saved: tuple[Path, str, bytes], tmp_path: Path) -> None:
    size = len(saved[2])
    other = [{"role": "user", "content": FACTS + " Which fact is about 11?"}]
    # Room for one conversation only: the second evicts the first.
    turn(brain(tmp_path, kv_store_size=size * 3 // 2), TURN1)
    first_file = kv_files(tmp_path)
    assert len(first_file) == 1
    turn(brain(tmp_path, kv_store_size=size * 3 // 2), other)
    files = kv_files(tmp_path)
    assert len(files) == 1 and files != first_file
    _, usage, _ = turn(brain(tmp_path, kv_store_size=size * 3 // 2), [*other, {"role": "user", "content": "Sure?"}])
    assert usage.restored_prompt_tokens > 100
    # A budget smaller than one conversation saves nothing, and short conversations are not saved.
    small = tmp_path / "small"
    turn(brain(small, kv_store_size=size // 2), TURN1)
    with Genius(engine=brain(tmp_path / "short")) as g:
        # A raw prompt of a few tokens (a chat has the template's system prompt): under the 16 worth saving.
        assert len(g.tokenize_sync("Hello there")) + 2 < 16
        assert list(g.generate("Hello there", max_tokens=2))[-1].kind == "complete"
    assert kv_files(small) == [] and kv_files(tmp_path / "short") == []


# ---- ogenius serve: an idle unload, a restart -----------------------------------------------------------------------


def _metric(http: httpx.Client, name: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(http.get("/metrics").text)
        for sample in family.samples
        if sample.name == name
    )


def _ask(server_url: str, messages: list[dict[str, str]]) -> tuple[str, int]:
    with openai.OpenAI(base_url=server_url, api_key="unused", max_retries=0, timeout=300) as client:
        reply = client.chat.completions.create(model="smol", messages=messages, temperature=0, max_tokens=16)  # type: ignore[arg-type]
    assert reply.usage is not None and reply.usage.prompt_tokens_details is not None
    return reply.choices[0].message.content or "", reply.usage.prompt_tokens_details.cached_tokens or 0


@pytest.fixture
def serve_args() -> Iterator[list[str]]:
    yield ["--model", str(smollm2_path()), "--alias", "smol", "--context-size", "1024", "--parallel", "1"]


@pytest.mark.real_engine
def test_serve_restores_a_conversation_after_an_idle_unload(serve_args: list[str], tmp_path: Path) -> None:
    store = tmp_path / "kv"
    with live_server(*serve_args, "--kv-store", str(store), "--unload-after", "1", timeout=120) as server:
        first, cached = _ask(server.base_url, TURN1)
        assert cached == 0
        with httpx.Client(base_url=server.http, timeout=30) as http:
            assert wait_until(lambda: http.get("/props").json()["is_sleeping"], 30), server.log()
            # Saved as it unloads (the model counts as asleep from the moment its unload begins).
            assert wait_until(lambda: len(kv_files(store)) == 1, 30), server.log()
            _, cached = _ask(server.base_url, second_turn(first))
            assert cached > 100, "the turn after the unload reads the first turn back from the store"
            assert _metric(http, "rusty_genius_restored_prompt_tokens_total") == cached
            assert _metric(http, "rusty_genius_cached_prompt_tokens_total") == cached


@pytest.mark.real_engine
def test_serve_restores_a_conversation_after_a_restart(serve_args: list[str], tmp_path: Path) -> None:
    # No --kv-store: the default folder, beside the registry.
    env = {"RUSTY_GENIUS_HOME": str(tmp_path / "config")}
    with live_server(*serve_args, env=env, timeout=120) as server:
        first, _ = _ask(server.base_url, TURN1)
    assert server.proc.returncode == 0
    assert len(kv_files(tmp_path / "config" / "kv-store")) == 1, "saved at shutdown"
    with live_server(*serve_args, env=env, timeout=120) as server:
        _, cached = _ask(server.base_url, second_turn(first))
        assert cached > 100
    with live_server(*serve_args, "--no-kv-store", env=env, timeout=120) as server:
        _, cached = _ask(server.base_url, second_turn(first))
        assert cached == 0, "--no-kv-store reads nothing back"
