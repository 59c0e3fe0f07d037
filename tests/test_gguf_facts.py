"""What a GGUF header tells without loading the model: ``check_gguf``'s metadata, vocabulary size and tensor bytes,
and ``estimate_memory``, checked against what the real engine chooses and the memory a real load takes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rusty_genius import ConfigError, ModelLoadError, _native

from tests.conftest import smollm2_path
from tests.ggufgen import make_gguf
from tests.ggufvariants import VARIANTS, with_numbers

MIB = 1 << 20
KEYS = {"weights", "kv_cache", "compute", "total", "context_size", "parallel"}

# Loads SmolLM2 through the public facade in a fresh process and reports how much its resident memory grew (weights
# are mapped and count once read; a short chat reads them all and runs the compute graph).
RSS_PROBE = """
import json, sys
import rusty_genius

def rss():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))

path, context_size, parallel = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
before = rss()
brain = rusty_genius.Brain(model_path=path, threads=2, context_size=context_size, parallel=parallel)
with rusty_genius.Genius(brain) as g:
    question = [{"role": "user", "content": "Tell me about the rainbow. " * 20}]
    list(g.chat(question, rusty_genius.InferenceConfig.of(max_tokens=8, temperature=0)))
    print(json.dumps({"growth": rss() - before}))
"""


@pytest.mark.pinky
def test_a_synthetic_file_reports_its_metadata(tmp_path: Path) -> None:
    path = tmp_path / "mock.gguf"
    path.write_bytes(make_gguf(arch="qwen2", tensors=3, context_length=32768, chat_template="{{ x }}"))
    info = _native.check_gguf(str(path))
    assert info["metadata"] == {
        "general.architecture": "qwen2",
        "general.name": "mock-qwen2-0",
        "qwen2.context_length": 32768,
        "tokenizer.chat_template": "{{ x }}",
    }
    assert (info["vocab_size"], info["tensor_bytes"], info["context_length"]) == (None, 3 * 32, 32768)
    estimate = _native.estimate_memory(str(path), context_size=64, parallel=2)
    assert set(estimate) == KEYS and all(isinstance(v, int) for v in estimate.values())
    assert (estimate["context_size"], estimate["parallel"], estimate["weights"]) == (64, 2, 96)
    assert estimate["total"] == estimate["weights"] + estimate["kv_cache"] + estimate["compute"]
    # The header names no layers or widths: the estimate is priced on conservative fallbacks, never 0 or an error.
    assert estimate["compute"] > 0


@pytest.mark.pinky
def test_estimate_memory_refuses_bad_files_and_options(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"<!DOCTYPE html><html>Not found</html>")
    with pytest.raises(ModelLoadError, match="web page"):
        _native.estimate_memory(str(bad))
    with pytest.raises(ModelLoadError, match="file not found"):
        _native.estimate_memory(str(tmp_path / "missing.gguf"))
    good = tmp_path / "good.gguf"
    good.write_bytes(make_gguf())
    cases: list[tuple[dict[str, Any], str]] = [
        ({"context_size": 8}, "context_size"),
        ({"parallel": 0}, "parallel"),
        ({"parallel": 257}, "parallel"),
        ({"batch_size": 0}, "batch_size"),
    ]
    for options, field in cases:
        with pytest.raises(ConfigError) as raised:
            _native.estimate_memory(str(good), **options)
        assert raised.value.field == field


@pytest.mark.real_engine
def test_check_gguf_reads_the_test_models_metadata() -> None:
    info = _native.check_gguf(str(smollm2_path()))
    metadata = info["metadata"]
    assert info["architecture"] == metadata["general.architecture"] == "llama"
    assert metadata["llama.block_count"] == 30
    assert metadata["llama.embedding_length"] == 576
    assert metadata["llama.attention.head_count_kv"] == 3
    assert metadata["llama.rope.freq_base"] == 100000.0
    assert metadata["llama.attention.layer_norm_rms_epsilon"] == 1e-5
    assert metadata["tokenizer.ggml.add_bos_token"] is False
    assert "<|im_start|>" in metadata["tokenizer.chat_template"]
    assert info["vocab_size"] == 49152
    # Arrays (tokens, merges, token types) are counted or skipped, never kept as values.
    assert not any(key.startswith("tokenizer.ggml.tokens") for key in metadata)
    assert all(type(v) in (int, float, bool, str) for v in metadata.values())
    assert 0.9 * info["file_size"] < info["tensor_bytes"] < info["file_size"]


@pytest.mark.real_engine
@pytest.mark.parametrize("options", [{}, {"context_size": 1024, "parallel": 1}, {"context_size": 300, "parallel": 3}])
def test_the_estimate_chooses_what_the_engine_chooses(options: dict[str, Any]) -> None:
    path = str(smollm2_path())
    estimate = _native.estimate_memory(path, **options)
    engine = _native.Engine.brain(path, threads=2, **options)
    try:
        assert (estimate["context_size"], estimate["parallel"]) == (engine.context_size, engine.parallel)
    finally:
        engine.close()
    assert estimate["weights"] == _native.check_gguf(path)["tensor_bytes"]
    # f16 keys and values (30 layers, 3 KV heads 64 wide) for every cell, padded to 256 cells by llama.cpp.
    cells = -(-estimate["context_size"] * estimate["parallel"] // 256) * 256
    assert estimate["kv_cache"] == cells * 30 * 3 * 64 * 2 * 2


@pytest.mark.real_engine
def test_an_embedding_model_is_estimated_as_one_sequence() -> None:
    path = str(with_numbers(smollm2_path(), VARIANTS, {"llama.pooling_type": 1}))
    estimate = _native.estimate_memory(path, context_size=1024, parallel=4)
    engine = _native.Engine.brain(path, threads=2, context_size=1024, parallel=4)
    try:
        assert engine.embedding_only
        assert _native.check_gguf(path)["embedding_only"] is True, "the header says what the engine decides"
        assert _native.check_gguf(str(smollm2_path()))["embedding_only"] is False
        assert (estimate["context_size"], estimate["parallel"]) == (engine.context_size, engine.parallel)
    finally:
        engine.close()
    assert estimate["parallel"] == 1
    # Every token of a window is an output: llama.cpp's buffers hold a window of logits twice over.
    assert estimate["compute"] > 2 * 1024 * 49152 * 4


def measured_growth(context_size: int | None, parallel: int | None) -> int:
    probe = [sys.executable, "-c", RSS_PROBE, str(smollm2_path()), json.dumps(context_size), json.dumps(parallel)]
    done = subprocess.run(probe, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    growth = json.loads(done.stdout.strip().splitlines()[-1])["growth"]
    assert isinstance(growth, int)
    return growth


@pytest.mark.real_engine
@pytest.mark.parametrize(("context_size", "parallel"), [(1024, 1), (None, None)])
def test_the_estimate_is_near_the_memory_a_load_takes(context_size: int | None, parallel: int | None) -> None:
    estimate = _native.estimate_memory(str(smollm2_path()), context_size=context_size, parallel=parallel)
    growth = measured_growth(context_size, parallel)
    ratio = growth / estimate["total"]
    print(f"context {context_size} x {parallel}: estimate {estimate}, measured RSS growth {growth} ({ratio:.2f}x)")
    # The estimate is what llama.cpp allocates; the resident part is less (the compute buffer's logits for a whole
    # micro-batch are reserved, but a chat reads one row per sequence), never far off.
    assert 0.5 <= ratio <= 2.0, (estimate, growth)
    assert growth > estimate["weights"] + estimate["kv_cache"] // 2
