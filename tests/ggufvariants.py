"""Variants of the test model with another chat template (stdlib and the ``gguf`` package).

SmolLM2's own template is plain ChatML: it knows nothing of tools or thinking. :func:`variant` writes a copy of a
GGUF whose ``tokenizer.chat_template`` is replaced and whose every other byte means the same: the metadata before and
after the template, the tensor infos (their offsets are relative to the data section, so they hold) and the tensor
data are copied as they are; only the padding before the data is redone. ``gguf.GGUFReader`` finds the field and
the sections; nothing is decoded and written back, so nothing can drift in a round trip.

A variant is cached under ``target/tmp/gguf-variants/`` (about 100 MB each), named after the source and a hash of
the template, so the suite makes each once; it is written to a temporary name and renamed into place, so
concurrent runs never see half a file.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import gguf

CHAT_TEMPLATE = "tokenizer.chat_template"
VARIANTS = Path(__file__).resolve().parents[1] / "target" / "tmp" / "gguf-variants"
"""Where the test suite keeps its variants (ignored by git, with the rest of ``target/``)."""
DATA = Path(__file__).resolve().parent / "data"

QWEN25_TEMPLATE = DATA / "qwen2.5-template.jinja"
"""Qwen2.5-Instruct's chat template, byte for byte (see ``tests/data/README.md``)."""

_GENERATION_PROMPT = "{{ '<|im_start|>assistant\n' }}"
"""SmolLM2's generation prompt (a real newline inside the Jinja string)."""


def chat_template(path: Path) -> str:
    """The ``tokenizer.chat_template`` of the GGUF at ``path``.

    Read by a plain scan of the metadata: ``gguf.GGUFReader`` decodes every tokenizer array and takes seconds."""
    with path.open("rb") as f:
        magic, _version, _tensors, count = struct.unpack("<4sIQQ", f.read(24))
        if magic != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        for _ in range(count):
            key = _read_str(f)
            (kind,) = struct.unpack("<I", f.read(4))
            if key == CHAT_TEMPLATE and kind == gguf.GGUFValueType.STRING:
                return _read_str(f)
            _skip(f, kind)
    raise ValueError(f"{path} has no {CHAT_TEMPLATE}")


_template_of = chat_template  # (`variant` takes a parameter of that name)

_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
"""Bytes of each fixed-size GGUF value type (8 is a string, 9 an array)."""


def _read_str(f: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", f.read(8))
    return f.read(length).decode()


def _skip(f: BinaryIO, kind: int) -> None:
    if kind == gguf.GGUFValueType.STRING:
        (length,) = struct.unpack("<Q", f.read(8))
        f.seek(length, os.SEEK_CUR)
    elif kind == gguf.GGUFValueType.ARRAY:
        item, n = struct.unpack("<IQ", f.read(12))
        if item in _SCALAR_SIZES:
            f.seek(n * _SCALAR_SIZES[item], os.SEEK_CUR)
        else:
            for _ in range(n):
                _skip(f, item)
    else:
        f.seek(_SCALAR_SIZES[kind], os.SEEK_CUR)


def qwen25_template() -> str:
    """Qwen2.5-Instruct's template: tools in ``<tools>`` in the system prompt, calls as ``<tool_call>`` JSON."""
    return QWEN25_TEMPLATE.read_text(encoding="utf-8")


def think_prefilled(template: str) -> str:
    """A ChatML template (SmolLM2's) whose generation prompt ends with ``<think>\\n``: the thought is open when the
    model starts, as in templates of thinking models that pre-open it."""
    if template.count(_GENERATION_PROMPT) != 1:
        raise ValueError(f"the template has no single {_GENERATION_PROMPT!r} to extend")
    return template.replace(_GENERATION_PROMPT, "{{ '<|im_start|>assistant\n<think>\n' }}")


def variant(src: Path, dest: Path, chat_template: str) -> Path:
    """The path of a copy of ``src`` in the folder ``dest`` whose chat template is ``chat_template``, written unless
    it is there already (the name holds a hash of the template and of the source's name and size)."""
    key = hashlib.sha256(f"{src.name}\0{src.stat().st_size}\0{chat_template}".encode()).hexdigest()[:16]

    def check(path: Path) -> None:
        if _template_of(path) != chat_template:
            raise AssertionError(f"{path}: the chat template did not read back")

    return _write(src, dest / f"{src.stem}.{key}.gguf", lambda: _spliced(src, chat_template), check)


def with_numbers(src: Path, dest: Path, numbers: dict[str, int]) -> Path:
    """A copy of ``src`` with more metadata keys, each a UINT32 (``tokenizer.ggml.fim_pre_token_id``,
    ``llama.pooling_type``, ...): keys the test model lacks, for the engine paths that read them. The keys go right
    after the header (their order in the file carries no meaning) and the key count is raised by as many."""
    items = sorted(numbers.items())
    key = hashlib.sha256(f"{src.name}\0{src.stat().st_size}\0{items}".encode()).hexdigest()[:16]

    def added() -> tuple[bytes, int]:
        reader = gguf.GGUFReader(src)
        if any(name in reader.fields for name, _ in items):
            raise ValueError(f"{src} already has one of {list(numbers)}")
        with src.open("rb") as f:
            raw = f.read(reader.data_offset)
        magic, version, tensors, count = struct.unpack("<4sIQQ", raw[:24])
        kv = b"".join(
            struct.pack("<Q", len(name)) + name.encode() + struct.pack("<II", gguf.GGUFValueType.UINT32, value)
            for name, value in items
        )
        last = reader.tensors[-1].field
        infos_end = last.offset + sum(int(part.nbytes) for part in last.parts)
        head = struct.pack("<4sIQQ", magic, version, tensors, count + len(items)) + kv + raw[24:infos_end]
        head += b"\0" * (-len(head) % reader.alignment)
        return head, reader.data_offset

    def check(path: Path) -> None:
        fields = gguf.GGUFReader(path).fields
        for name, value in items:
            if int(fields[name].parts[-1][0]) != value:
                raise AssertionError(f"{path}: {name} did not read back")

    return _write(src, dest / f"{src.stem}.{key}.gguf", added, check)


def _write(src: Path, out: Path, head_of: Callable[[], tuple[bytes, int]], check: Callable[[Path], None]) -> Path:
    """Writes ``out`` (unless it is there): the new head, then ``src``'s tensor data; checked before it is renamed
    into place."""
    if out.is_file():
        return out
    dest = out.parent
    dest.mkdir(parents=True, exist_ok=True)
    head, tail = head_of()
    fd, tmp = tempfile.mkstemp(dir=dest, prefix=out.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f, src.open("rb") as data:
            f.write(head)
            data.seek(tail)
            while chunk := data.read(1 << 22):
                f.write(chunk)
        check(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def _spliced(src: Path, chat_template: str) -> tuple[bytes, int]:
    """The new file's bytes up to its tensor data, and where the tensor data starts in ``src``."""
    reader = gguf.GGUFReader(src)
    if reader.byte_order != "I":
        raise ValueError(f"{src}: only little-endian GGUFs are supported")
    field = reader.fields.get(CHAT_TEMPLATE)
    if field is None:
        raise ValueError(f"{src} has no {CHAT_TEMPLATE} to replace")
    start = field.offset
    end = start + sum(int(part.nbytes) for part in field.parts)
    last = reader.tensors[-1].field
    infos_end = last.offset + sum(int(part.nbytes) for part in last.parts)
    with src.open("rb") as f:
        raw = f.read(reader.data_offset)
    key = CHAT_TEMPLATE.encode()
    value = chat_template.encode()
    kv = struct.pack("<Q", len(key)) + key + struct.pack("<I", gguf.GGUFValueType.STRING)
    kv += struct.pack("<Q", len(value)) + value
    head = raw[:start] + kv + raw[end:infos_end]
    head += b"\0" * (-len(head) % reader.alignment)
    return head, reader.data_offset
