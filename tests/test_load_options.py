"""Load options (issue 20): the KV cache's types, flash attention, the batch and micro-batch, mmap and mlock, in
``Brain(...)``, in ``estimate_memory`` (so placement and ``/v1/models`` see the smaller cache), and as the ``chat`` and
``serve`` flags under llama-server's names."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from rusty_genius import Brain, ConfigError, Genius, InferenceConfig, _native
from rusty_genius.ogenius.cli import build_parser
from rusty_genius.ogenius.flags import brain_options

from tests.conftest import smollm2_path
from tests.ggufgen import make_gguf
from tests.servers import live_server

QUESTION = [{"role": "user", "content": "Name three colors of the rainbow."}]
Q8: dict[str, Any] = {"cache_type_k": "q8_0", "cache_type_v": "q8_0"}


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def answer(**options: Any) -> str:
    brain = Brain(model_path=smollm2_path(), threads=2, context_size=1024, parallel=1, **options)
    with Genius(engine=brain) as g:
        events = list(g.chat(QUESTION, InferenceConfig.of(temperature=0, max_tokens=24)))
    assert events[-1].kind == "complete", [e.kind for e in events]
    return "".join(e.text or "" for e in events if e.kind == "content")


# ---- flags and validation (no weights) -------------------------------------------------------------------------------


@pytest.mark.pinky
def test_the_flags_reach_the_brain_keywords() -> None:
    args = parse(
        "serve", "--cache-type-k", "q8_0", "--cache-type-v", "q4_0", "--flash-attn", "on", "--batch-size", "1024",
        "--ubatch-size", "256", "--no-mmap", "--mlock", "--threads", "2",
    )  # fmt: skip
    options = brain_options(args)
    assert options == {
        "context_size": None, "parallel": None, "threads": 2, "cache_type_k": "q8_0", "cache_type_v": "q4_0",
        "flash_attention": "on", "batch_size": 1024, "ubatch_size": 256, "mmap": False, "mlock": True,
    }  # fmt: skip
    brain = Brain(model_path="m.gguf", **options)
    assert (brain.cache_type_v, brain.ubatch_size, brain.mmap) == ("q4_0", 256, False)
    # llama-server's short names too (chat answers one at a time: one sequence unless --parallel says otherwise).
    short = parse("chat", "-ctk", "q4_0", "-ctv", "q8_0", "-fa", "auto", "-b", "64", "-ub", "32")
    assert brain_options(short) == {
        "context_size": None, "parallel": 1, "threads": None, "cache_type_k": "q4_0", "cache_type_v": "q8_0",
        "flash_attention": "auto", "batch_size": 64, "ubatch_size": 32,
    }  # fmt: skip


@pytest.mark.pinky
def test_no_flags_keep_the_brains_defaults() -> None:
    options = brain_options(parse("serve"))
    assert options == {"context_size": None, "parallel": None, "threads": None}
    brain = Brain(model_path="m.gguf", **options)
    assert (brain.cache_type_k, brain.cache_type_v, brain.flash_attention) == ("f16", "f16", "auto")
    assert (brain.batch_size, brain.ubatch_size, brain.mmap, brain.mlock) == (512, None, True, False)


@pytest.mark.pinky
@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--cache-type-k", "q3"], "--cache-type-k"),
        (["--cache-type-v", "f32"], "--cache-type-v"),
        (["--flash-attn", "yes"], "--flash-attn"),
        (["--batch-size", "0"], "--batch-size"),
        (["--ubatch-size", "65537"], "--ubatch-size"),
        (["--ubatch-size", "many"], "--ubatch-size"),
    ],
)
def test_bad_values_are_usage_errors_naming_the_flag(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("serve", *argv)
    assert exited.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err


@pytest.mark.pinky
def test_ogenius_serve_refuses_a_bad_cache_type_with_a_usage_error() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "rusty_genius.ogenius", "serve", "--cache-type-k", "q3", "--engine", "pinky"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert "argument --cache-type-k/-ctk: invalid choice: 'q3'" in run.stderr
    assert "'f16', 'q8_0', 'q4_0'" in run.stderr


@pytest.mark.pinky
def test_ogenius_serve_refuses_a_quantized_v_cache_without_flash_attention(tmp_path: Path) -> None:
    # Refused before the model is looked for: the file does not exist.
    argv = ["serve", "--cache-type-v", "q8_0", "--flash-attn", "off", "-m", str(tmp_path / "none.gguf")]
    run = subprocess.run(
        [sys.executable, "-m", "rusty_genius.ogenius", *argv, "--addr", "127.0.0.1:0", "--ws-addr", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert "ogenius serve: error: --cache-type-v q8_0 needs flash attention, and --flash-attn is off" in run.stderr


@pytest.mark.pinky
@pytest.mark.parametrize(
    ("argv", "field", "named"),
    [
        (["--cache-type-v", "q4_0", "--flash-attn", "off"], "cache_type_v", "--flash-attn"),
        (["--batch-size", "128", "--ubatch-size", "256"], "ubatch_size", "--batch-size"),
        (["--ubatch-size", "1024"], "ubatch_size", "(512)"),
    ],
)
def test_combinations_that_cannot_load_name_their_flags(argv: list[str], field: str, named: str) -> None:
    with pytest.raises(ConfigError) as raised:
        brain_options(parse("chat", *argv))
    assert raised.value.field == field
    assert named in str(raised.value)
    # A quantized K cache alone, and a quantized V cache with flash attention auto or on, are fine.
    for fine in (["--cache-type-k", "q4_0", "--flash-attn", "off"], ["--cache-type-v", "q8_0"]):
        brain_options(parse("chat", *fine))


@pytest.mark.pinky
@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"cache_type_k": "q3"}, "cache_type_k"),
        ({"cache_type_v": "F32"}, "cache_type_v"),
        ({"flash_attention": "maybe"}, "flash_attention"),
        ({"cache_type_v": "q8_0", "flash_attention": "off"}, "cache_type_v"),
        ({"ubatch_size": 0}, "ubatch_size"),
        ({"ubatch_size": 1024}, "ubatch_size"),
        ({"ubatch_size": 4096, "batch_size": 2048}, "ubatch_size"),
    ],
)
def test_estimate_memory_checks_the_load_options(tmp_path: Path, options: dict[str, Any], field: str) -> None:
    path = tmp_path / "mock.gguf"
    path.write_bytes(make_gguf())
    with pytest.raises(ConfigError) as raised:
        _native.estimate_memory(str(path), **options)
    assert raised.value.field == field
    if field == "cache_type_v" and "flash_attention" in options:
        assert "flash_attention = off" in str(raised.value)


# ---- the real engine ------------------------------------------------------------------------------------------------


@pytest.mark.real_engine
def test_each_cache_type_answers_greedily() -> None:
    f16 = answer()
    q8 = answer(**Q8, flash_attention="on")
    q4 = answer(cache_type_k="q4_0", cache_type_v="q4_0")
    assert f16.strip() and q8.strip() and q4.strip()
    # q8_0 keeps f16's greedy answer (here all of it; its first words at least); q4_0 is lossier and drifts.
    assert q8.split()[:8] == f16.split()[:8], (f16, q8)
    assert "\ufffd" not in q8 + q4


@pytest.mark.real_engine
def test_the_other_load_options_keep_the_answer() -> None:
    f16 = answer()
    assert answer(flash_attention="off") == f16
    assert answer(cache_type_k="q8_0", flash_attention="off").strip()  # a quantized K needs no flash attention
    assert answer(batch_size=256, ubatch_size=64) == f16
    assert answer(mmap=False) == f16
    assert answer(mlock=True) == f16  # where locking is not allowed, llama.cpp warns and goes on


@pytest.mark.real_engine
def test_a_quantized_v_cache_without_flash_attention_is_a_config_error() -> None:
    brain = Brain(model_path=smollm2_path(), cache_type_v="q8_0", flash_attention="off")
    with pytest.raises(ConfigError) as raised, Genius(engine=brain) as g:
        list(g.chat(QUESTION, InferenceConfig.of(max_tokens=2)))
    assert raised.value.field == "cache_type_v"
    message = str(raised.value)
    assert "cache_type_v = q8_0" in message and "flash_attention = off" in message
    with pytest.raises(ConfigError) as raised:
        _native.Engine.brain(str(smollm2_path()), cache_type_k="q5_1")
    assert raised.value.field == "cache_type_k"


@pytest.mark.real_engine
def test_the_estimate_prices_the_cache_types() -> None:
    path = str(smollm2_path())
    sized = {t: _native.estimate_memory(path, 1024, 1, cache_type_k=t, cache_type_v=t) for t in ("f16", "q8_0", "q4_0")}
    f16 = sized["f16"]["kv_cache"]
    # f16 keys and values: 30 layers, 3 KV heads 64 wide, 1024 cells; q8_0 34 bytes per 32 values, q4_0 18.
    assert f16 == 1024 * 30 * 3 * 64 * 2 * 2
    assert sized["q8_0"]["kv_cache"] * 64 == f16 * 34  # 53 %
    assert sized["q4_0"]["kv_cache"] * 64 == f16 * 18  # 28 %
    assert sized["f16"]["total"] - sized["q8_0"]["total"] == f16 - sized["q8_0"]["kv_cache"]
    # Placement reads the same estimate.
    brain = Brain(model_path=path, context_size=1024, parallel=1)
    quantized = Brain(model_path=path, context_size=1024, parallel=1, **Q8)
    assert (brain._footprint(), quantized._footprint()) == (sized["f16"]["total"], sized["q8_0"]["total"])
    # Without flash attention the compute buffer holds every head's scores: more.
    no_flash = _native.estimate_memory(path, 1024, 1, flash_attention="off")
    assert no_flash["compute"] > sized["f16"]["compute"] and no_flash["kv_cache"] == f16
    # A smaller micro-batch, a smaller compute buffer.
    assert _native.estimate_memory(path, 1024, 1, ubatch_size=128)["compute"] < sized["f16"]["compute"] / 3


@pytest.mark.real_engine
def test_the_engine_chooses_what_the_estimate_chooses_with_a_quantized_cache() -> None:
    path = str(smollm2_path())
    estimate = _native.estimate_memory(path, **Q8)
    engine = _native.Engine.brain(path, threads=2, **Q8)
    try:
        assert (estimate["context_size"], estimate["parallel"]) == (engine.context_size, engine.parallel)
    finally:
        engine.close()


@pytest.mark.real_engine
def test_serve_flags_reach_the_served_model_and_its_card() -> None:
    path = str(smollm2_path())
    args = ("--model", path, "--context-size", "1024", "--parallel", "1", "--threads", "2", "--max-tokens", "8")
    quantized = _native.estimate_memory(path, 1024, 1, cache_type_k="q8_0", cache_type_v="q8_0")["total"]
    plain = _native.estimate_memory(path, 1024, 1)["total"]
    with live_server(*args, "--cache-type-k", "q8_0", "--cache-type-v", "q8_0", "-fa", "on") as server:
        with httpx.Client(base_url=server.http, timeout=60) as http:
            cards = {card["id"]: card for card in http.get("/v1/models").json()["data"]}
            card = cards[Path(path).name]
            assert card["memory"] == quantized < plain
            answer = http.post("/v1/chat/completions", json={"messages": QUESTION, "temperature": 0})
            assert answer.status_code == 200, answer.text
            assert answer.json()["choices"][0]["message"]["content"].strip()
