"""Brain, the real engine, on SmolLM2-135M-Instruct: determinism, limits, reasoning, prefix reuse, bad files."""

from __future__ import annotations

import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import rusty_genius
from rusty_genius import (
    Brain,
    ConfigError,
    ContextOverflowError,
    Event,
    Genius,
    InferenceConfig,
    ModelLoadError,
)

from tests.conftest import smollm2_path, wait_until

pytestmark = pytest.mark.real_engine

QUESTION = [{"role": "user", "content": "Name three colors of the rainbow."}]


@pytest.fixture(scope="module")
def brain() -> Iterator[Genius]:
    with Genius(engine=Brain(model_path=smollm2_path(), threads=2, context_size=1024)) as g:
        yield g


def run(g: Genius, messages: list[dict[str, str]], **settings: object) -> list[Event]:
    return list(g.chat(messages, InferenceConfig.of(**settings)))


def content(events: list[Event]) -> str:
    return "".join(e.text or "" for e in events if e.kind == "content")


def thought(events: list[Event]) -> str:
    return "".join(e.text or "" for e in events if e.kind == "thought_delta")


def done(events: list[Event]) -> Event:
    assert events[-1].kind == "complete", [e.kind for e in events]
    return events[-1]


def test_greedy_output_is_identical_across_runs(brain: Genius) -> None:
    first = run(brain, QUESTION, temperature=0, max_tokens=24)
    second = run(brain, QUESTION, temperature=0, max_tokens=24)
    assert content(first).strip(), "the model said nothing"
    assert content(first) == content(second)
    for events in (first, second):
        assert events[0].kind == "process_start"
        assert "\ufffd" not in content(events)


def test_seeded_sampling_is_reproducible(brain: Genius) -> None:
    a = run(brain, QUESTION, temperature=0.9, seed=1234, max_tokens=24)
    b = run(brain, QUESTION, temperature=0.9, seed=1234, max_tokens=24)
    assert content(a) and content(a) == content(b)


def test_max_tokens_ends_with_length(brain: Genius) -> None:
    end = done(run(brain, QUESTION, temperature=0, max_tokens=5))
    assert end.finish_reason == "length"
    assert end.usage is not None and end.usage.completion_tokens == 5


def test_a_stop_string_ends_the_answer_before_it(brain: Genius) -> None:
    full = content(run(brain, QUESTION, temperature=0, max_tokens=32))
    words = full.split()
    assert len(words) >= 4, full
    stop = words[2]
    cut = run(brain, QUESTION, temperature=0, max_tokens=32, stop=[stop])
    assert content(cut) == full[: full.index(stop)]
    assert done(cut).finish_reason == "stop"


def test_usage_and_timings(brain: Genius) -> None:
    end = done(run(brain, QUESTION, temperature=0, max_tokens=8))
    assert end.usage is not None and end.timings is not None
    assert end.usage.prompt_tokens > 10
    assert end.timings.decode_tokens_per_s > 0
    assert end.timings.prompt_ms > 0


THINK_GRAMMAR = 'root ::= "<think>" "hmm, colours" "</think>" "日本語 ok ✓"'


def test_a_think_block_and_multibyte_text_end_to_end(brain: Genius) -> None:
    """The grammar forces the shape; tokens split tags and characters, and Rust puts them back together."""
    events = run(brain, QUESTION, temperature=0, grammar=THINK_GRAMMAR, max_tokens=64)
    kinds = [e.kind for e in events]
    assert kinds[:2] == ["process_start", "thought_start"]
    assert "thought_stop" in kinds
    assert thought(events) == "hmm, colours"
    assert content(events) == "日本語 ok ✓"
    assert done(events).finish_reason == "stop"
    hidden = run(brain, QUESTION, temperature=0, grammar=THINK_GRAMMAR, show_thinking=False, max_tokens=64)
    assert not any(e.kind.startswith("thought") for e in hidden)
    assert content(hidden) == "日本語 ok ✓"


def test_an_invalid_grammar_is_a_config_error(brain: Genius) -> None:
    with pytest.raises(ConfigError, match="grammar"):
        run(brain, QUESTION, grammar="root ::= (", max_tokens=4)
    assert content(run(brain, QUESTION, temperature=0, max_tokens=4))


def test_the_prompt_prefix_is_reused_on_the_next_turn(brain: Genius) -> None:
    first = run(brain, QUESTION, temperature=0, max_tokens=16)
    usage1 = done(first).usage
    assert usage1 is not None
    follow_up = [
        *QUESTION,
        {"role": "assistant", "content": content(first)},
        {"role": "user", "content": "And two more?"},
    ]
    usage2 = done(run(brain, follow_up, temperature=0, max_tokens=8)).usage
    assert usage2 is not None
    assert usage2.cached_prompt_tokens >= usage1.prompt_tokens
    assert usage2.cached_prompt_tokens < usage2.prompt_tokens


def test_breaking_out_stops_generation_and_leaves_the_engine_consistent(brain: Genius) -> None:
    reference = content(run(brain, QUESTION, temperature=0, max_tokens=24))
    for seen, _ev in enumerate(brain.chat(QUESTION, InferenceConfig.of(temperature=0, max_tokens=500)), 1):
        if seen == 4:
            break
    assert wait_until(lambda: not brain.engine.busy)
    assert content(run(brain, QUESTION, temperature=0, max_tokens=24)) == reference


@pytest.mark.anyio
async def test_async_streaming_on_the_real_engine(brain: Genius) -> None:
    events = [ev async for ev in brain.chat(QUESTION, InferenceConfig.of(temperature=0, max_tokens=24))]
    assert content(events) == content(run(brain, QUESTION, temperature=0, max_tokens=24))


def test_a_prompt_longer_than_the_context_names_both_sizes() -> None:
    with Genius(engine=Brain(model_path=smollm2_path(), threads=2, context_size=64)) as g:
        long = [{"role": "user", "content": "tell me about colors " * 40}]
        with pytest.raises(ContextOverflowError, match=r"the prompt is \d+ tokens but the context holds 64") as over:
            run(g, long, max_tokens=4)
        assert over.value.context_size == 64 and over.value.prompt_tokens is not None
        assert f"the prompt is {over.value.prompt_tokens} tokens" in str(over.value)
        assert content(run(g, QUESTION, temperature=0, max_tokens=4))


def copy_with(tmp: Path, name: str, transform: object) -> Path:
    data = smollm2_path().read_bytes()
    out = tmp / name
    out.write_bytes(transform(data))  # type: ignore[operator]
    return out


@pytest.mark.parametrize(
    ("name", "transform", "reason"),
    [
        ("truncated.gguf", lambda d: d[: len(d) // 2], "truncated"),
        ("header-only.gguf", lambda d: d[:2000], "truncated|past the end"),
        ("not-gguf.gguf", lambda d: b"PK\x03\x04" + d[4:], "not a GGUF file"),
        ("bad-count.gguf", lambda d: d[:8] + struct.pack("<Q", 2**60) + d[16:], "tensor|count|past the end"),
    ],
)
def test_malformed_files_raise_model_load_error(tmp_path: Path, name: str, transform: object, reason: str) -> None:
    bad = copy_with(tmp_path, name, transform)
    with pytest.raises(ModelLoadError, match=reason):
        Genius(engine=Brain(model_path=bad)).start_sync()


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        Genius(engine=tmp_path / "nope.gguf").start_sync()
    empty = tmp_path / "empty.gguf"
    empty.touch()
    with pytest.raises(ModelLoadError):
        Genius(engine=empty).start_sync()


def test_after_a_bad_file_the_process_generates_normally(tmp_path: Path) -> None:
    bad = copy_with(tmp_path, "truncated.gguf", lambda d: d[: len(d) - 4096])
    with pytest.raises(ModelLoadError):
        Genius(engine=Brain(model_path=bad)).start_sync()
    good = tmp_path / "copy.gguf"
    shutil.copyfile(smollm2_path(), good)
    with Genius(engine=Brain(model_path=good, threads=2, context_size=256)) as g:
        assert content(run(g, QUESTION, temperature=0, max_tokens=6))


def test_a_gguf_path_string_selects_brain() -> None:
    with Genius(engine=str(smollm2_path())) as g:
        assert g.engine.name == "brain"
    assert rusty_genius._native.HAS_REAL_ENGINE


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_unloading_frees_the_memory() -> None:
    with Genius(
        engine=Brain(model_path=smollm2_path(), threads=2, context_size=2048), strategy=rusty_genius.Immediate()
    ) as g:
        run(g, QUESTION, temperature=0, max_tokens=2)  # warm up whatever the first load allocates once
        assert wait_until(lambda: g.loaded() == [])
        before = rss_bytes()
        loaded = 0
        for ev in g.chat(QUESTION, temperature=0, max_tokens=16):
            loaded = max(loaded, rss_bytes())
            assert ev.kind != "error"
        assert wait_until(lambda: g.loaded() == [])
        after = rss_bytes()
    mib = 2**20
    assert loaded > before + 25 * mib, f"the model did not show in RSS ({before / mib:.0f} -> {loaded / mib:.0f} MiB)"
    assert after <= before * 1.10, f"RSS {before / mib:.0f} MiB before the load, {after / mib:.0f} MiB after unload"
