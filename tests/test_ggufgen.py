"""The GGUF files of tests/ggufgen.py are valid: read back by an independent stdlib reader with the rules of the
Rust pre-flight (rust/cortex/src/gguf.rs): tensors packed in order on 32-byte boundaries, data inside the file,
names under 64 bytes, 1 to 4 dimensions."""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import pytest

from tests.ggufgen import make_gguf
from tests.hubdata import default_scenario

pytestmark = pytest.mark.pinky

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def read_gguf(data: bytes) -> dict[str, Any]:
    """Metadata, tensor infos and data start of a GGUF v3 file; AssertionError when it breaks a rule."""
    pos = 0

    def take(fmt: str) -> Any:
        nonlocal pos
        (value,) = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal pos
        n = take("<Q")
        assert pos + n <= len(data)
        pos += n
        return data[pos - n : pos].decode("utf-8")

    assert data[:4] == b"GGUF"
    pos = 4
    version, n_tensors, n_kv = take("<I"), take("<Q"), take("<Q")
    kv: dict[str, Any] = {}
    for _ in range(n_kv):
        key, ty = string(), take("<I")
        kv[key] = string() if ty == 8 else take(_SCALARS[ty])
    tensors = []
    for _ in range(n_tensors):
        name = string()
        n_dims = take("<I")
        assert len(name.encode()) < 64 and 1 <= n_dims <= 4
        dims = [take("<Q") for _ in range(n_dims)]
        tensors.append((name, dims, take("<I"), take("<Q")))
    start = -(-pos // 32) * 32 if tensors else pos
    end = 0
    for _name, dims, ty, offset in tensors:
        assert ty == 0 and offset == -(-end // 32) * 32  # F32, packed in order, aligned
        count = 1
        for d in dims:
            count *= d
        end = offset + 4 * count
        assert start + end <= len(data)
    return {"version": version, "kv": kv, "tensors": tensors, "data_start": start, "size": len(data)}


def test_default_file() -> None:
    data = make_gguf()
    info = read_gguf(data)
    assert info["version"] == 3 and info["kv"] == {
        "general.architecture": "llama",
        "general.name": "mock-llama-0",
        "llama.context_length": 2048,
    }
    assert [t[0] for t in info["tensors"]] == ["mock.0.weight"] and info["data_start"] % 32 == 0
    assert len(data) % 32 == 0 and make_gguf() == data


@pytest.mark.parametrize("tensors", [0, 1, 3])
@pytest.mark.parametrize("pad_to", [0, 100, 3 * 1024 * 1024 + 7])
def test_shapes_and_padding(tensors: int, pad_to: int) -> None:
    data = make_gguf(arch="qwen3", tensors=tensors, pad_to=pad_to, chat_template="<think>", context_length=40960)
    info = read_gguf(data)
    assert len(data) >= pad_to and info["kv"]["qwen3.context_length"] == 40960
    assert info["kv"]["tokenizer.chat_template"] == "<think>"
    assert len(info["tensors"]) == (tensors or (1 if pad_to else 0))
    if pad_to > 1024:
        assert len(data) - pad_to < 64  # grown to the size asked, not far beyond


def test_seeds_differ_and_cut_files_are_detected() -> None:
    a, b = make_gguf(seed=1, pad_to=4096), make_gguf(seed=2, pad_to=4096)
    assert len(a) == len(b) and hashlib.sha256(a).digest() != hashlib.sha256(b).digest()
    with pytest.raises((AssertionError, struct.error)):
        read_gguf(a[: len(a) // 2])


def test_every_default_scenario_gguf_is_valid() -> None:
    archs = {}
    for repo_id, files, _ in default_scenario():
        for f in files:
            if f.path.endswith(".gguf"):
                archs[f"{repo_id}/{f.path}"] = read_gguf(f.data)["kv"]
    q4 = archs["Qwen/Qwen2.5-1.5B-Instruct-GGUF/qwen2.5-1.5b-instruct-q4_k_m.gguf"]
    assert q4["general.architecture"] == "qwen2"
    assert "<think>" in archs["Qwen/Qwen3-0.6B-GGUF/Qwen3-0.6B-Q8_0.gguf"]["tokenizer.chat_template"]
    assert len(archs) == 15
