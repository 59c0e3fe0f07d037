"""Small, valid GGUF v3 files for tests (stdlib only).

A generated file has the metadata `general.architecture`, `general.name`, `{arch}.context_length` (u32) and, when
given, `tokenizer.chat_template`, then `tensors` one-dimensional F32 tensors packed in order, each starting on a
32-byte boundary (GGUF's default alignment) and padded to it. Tensor data is a deterministic function of `seed`, so
two seeds give two different files (and sha256s) and one seed always gives the same bytes.

`pad_to` grows the last tensor (or adds one named `mock.pad` when `tensors=0`) until the file has at least that many
bytes, so tests can make multi-megabyte files that stay valid GGUFs.
"""

from __future__ import annotations

import random
import struct
import sys
from array import array
from functools import lru_cache

ALIGNMENT = 32
TYPE_U32 = 4
TYPE_STRING = 8
GGML_F32 = 0
# Elements per tensor when not padding: 8 floats = 32 bytes, one aligned block.
BASE_ELEMENTS = 8
# Distinct floats in the repeating data pattern; big enough that tensors do not look constant.
PATTERN_FLOATS = 4096


def make_gguf(
    *,
    arch: str = "llama",
    tensors: int = 1,
    context_length: int = 2048,
    chat_template: str | None = None,
    pad_to: int = 0,
    seed: int = 0,
) -> bytes:
    """Returns the bytes of a valid GGUF v3 file (see the module docstring)."""
    if tensors < 0 or context_length < 0 or pad_to < 0:
        raise ValueError("tensors, context_length and pad_to must not be negative")
    # Cached: a 3 MB file takes a few milliseconds, but default_hub() builds several per test.
    return _make(arch, tensors, context_length, chat_template, pad_to, seed)


@lru_cache(maxsize=64)
def _make(arch: str, tensors: int, context_length: int, chat_template: str | None, pad_to: int, seed: int) -> bytes:
    kvs = [
        _kv_string("general.architecture", arch),
        _kv_string("general.name", f"mock-{arch}-{seed}"),
        _kv_u32(f"{arch}.context_length", context_length),
    ]
    if chat_template is not None:
        kvs.append(_kv_string("tokenizer.chat_template", chat_template))

    names = [f"mock.{i}.weight" for i in range(tensors)]
    if not names and pad_to > 0:
        names = ["mock.pad"]
    counts = [BASE_ELEMENTS] * len(names)

    def layout(counts: list[int]) -> tuple[bytes, int]:
        """The header (metadata and tensor infos) and the total file size."""
        infos: list[bytes] = []
        at = 0  # each tensor's offset in the data section: the previous one's end, aligned
        for name, n in zip(names, counts, strict=True):
            infos.append(_string(name) + struct.pack("<IQIQ", 1, n, GGML_F32, at))
            at += _align(4 * n)
        head = struct.pack("<4sIQQ", b"GGUF", 3, len(names), len(kvs)) + b"".join(kvs) + b"".join(infos)
        return head, _data_start(head, names) + at

    head, total = layout(counts)
    if pad_to > total:
        # Dimensions are fixed-width u64, so growing the last tensor leaves the header's length unchanged.
        missing = pad_to - total
        counts[-1] += -(-missing // 4)
        head, total = layout(counts)

    out = bytearray(head)
    out += bytes(_data_start(head, names) - len(head))
    pattern = _pattern(seed)
    for i, n in enumerate(counts):
        data = _tile(pattern, 4 * n, shift=i)
        out += data + bytes(_align(len(data)) - len(data))
    assert len(out) == total and (pad_to == 0 or total >= pad_to)
    return bytes(out)


def _data_start(head: bytes, names: list[str]) -> int:
    # As in llama.cpp, a file without tensors has no data section, so nothing to align.
    return _align(len(head)) if names else len(head)


def _align(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


def _string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _kv_string(key: str, value: str) -> bytes:
    return _string(key) + struct.pack("<I", TYPE_STRING) + _string(value)


def _kv_u32(key: str, value: int) -> bytes:
    return _string(key) + struct.pack("<II", TYPE_U32, value)


@lru_cache(maxsize=16)
def _pattern(seed: int) -> bytes:
    """PATTERN_FLOATS little-endian F32 values in [-1, 1), from `seed`."""
    rng = random.Random(seed)
    floats = array("f", (rng.uniform(-1.0, 1.0) for _ in range(PATTERN_FLOATS)))
    if sys.byteorder == "big":
        floats.byteswap()
    return floats.tobytes()


def _tile(pattern: bytes, size: int, *, shift: int) -> bytes:
    """`size` bytes of `pattern` repeated, starting `shift` floats in (so tensors of one file differ)."""
    start = (4 * shift) % len(pattern)
    rotated = pattern[start:] + pattern[:start]
    reps = -(-size // len(rotated))
    return (rotated * reps)[:size]
