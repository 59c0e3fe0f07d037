"""Anthropic's Messages API, the way out: rusty-genius events encoded as a ``message`` or its SSE events
(``message_start``, ``content_block_start``/``delta``/``stop``, ``message_delta``, ``message_stop``). The way in, and
the rules of the mapping, are in :mod:`.anthropic_api`.

Rules:
- Blocks are numbered in order of appearance; consecutive events of one kind make one block (:class:`Blocks` is the
  one place that decides it, for the streamed and the non-streamed answer alike). A text block appears only when the
  answer has text.
- ``stop_reason``: ``max_tokens`` (length), ``tool_use`` (the answer ended with calls), ``stop_sequence`` (one of
  the request's ``stop_sequences`` ended it: the engine names it, and ``stop_sequence`` holds it), else
  ``end_turn``.
- ``usage.input_tokens`` is the prompt less its cached part (``cache_read_input_tokens``), as Anthropic counts it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from rusty_genius.core.events import Event, Usage
from rusty_genius.ogenius.serve.anthropic_api import error_of
from rusty_genius.ogenius.serve.openai_api import ApiError, dumps


def message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def stop_reason(end: Event) -> str:
    reason = end.finish_reason
    if end.stop_sequence is not None:
        return "stop_sequence"
    return "max_tokens" if reason == "length" else "tool_use" if reason == "tool_calls" else "end_turn"


def usage_of(usage: Usage | None) -> dict[str, int]:
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0}
    cached = usage.cached_prompt_tokens
    body = {"input_tokens": usage.prompt_tokens - cached, "output_tokens": usage.completion_tokens,
            "cache_read_input_tokens": cached}  # fmt: skip
    if usage.shifted_tokens:  # this server's extension: context_overflow "shift" took these out of the context
        body["shifted_tokens"] = usage.shifted_tokens
    return body


def _input(arguments: str) -> Any:
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {"_raw_arguments": arguments}  # unconstrained text that is no JSON: kept, not lost
    return value if isinstance(value, dict) else {"_raw_arguments": arguments}


@dataclass
class Step:
    """One thing to say about the blocks: ``start`` (``block`` is the block's opening form), ``delta`` (``text``)
    or ``stop`` of the block at ``index``."""

    op: str
    index: int
    kind: str
    """``thinking``, ``text`` or ``tool_use``."""
    text: str = ""
    block: dict[str, Any] | None = None


class Blocks:
    """Events to content blocks, numbered in order of appearance."""

    def __init__(self) -> None:
        self.count = 0
        self.open: str | None = None  # the kind of the block now open ("tool_use:<call index>" for a call)

    def steps(self, events: Sequence[Event]) -> Iterator[Step]:
        for ev in events:
            if ev.kind == "thought_delta" and ev.text:
                yield from self._into("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                yield Step("delta", self.count - 1, "thinking", ev.text or "")
            elif ev.kind == "content":
                if not ev.text:
                    continue
                yield from self._into("text", {"type": "text", "text": ""})
                yield Step("delta", self.count - 1, "text", ev.text)
            elif ev.kind == "tool_call_start":
                block: dict[str, Any] = {"type": "tool_use", "id": ev.id, "name": ev.name, "input": {}}
                yield from self._into(f"tool_use:{ev.index or 0}", block, always=True)
            elif ev.kind == "tool_call_delta" and ev.text:
                yield from self._into(f"tool_use:{ev.index or 0}", None)
                yield Step("delta", self.count - 1, "tool_use", ev.text)
            elif ev.kind == "complete":
                yield from self.close()

    def _into(self, key: str, block: dict[str, Any] | None, always: bool = False) -> Iterator[Step]:
        if self.open == key and not always:
            return
        if block is None:  # arguments of a call whose block is not the open one (never, with sequential calls)
            return
        yield from self.close()
        self.open = key
        self.count += 1
        yield Step("start", self.count - 1, block["type"], block=block)

    def close(self) -> Iterator[Step]:
        if self.open is not None:
            yield Step("stop", self.count - 1, self.open.partition(":")[0])
            self.open = None


def message(model: str, events: Sequence[Event]) -> dict[str, Any]:
    """The non-streamed ``message`` of a finished stream (ending with ``complete``)."""
    content: list[dict[str, Any]] = []
    arguments: dict[int, list[str]] = {}
    for step in Blocks().steps(events):
        if step.op == "start" and step.block is not None:
            content.append(dict(step.block))
        elif step.op == "delta":
            block = content[step.index]
            if step.kind == "tool_use":
                arguments.setdefault(step.index, []).append(step.text)
            else:
                block[step.kind] += step.text
    for index, pieces in arguments.items():
        content[index]["input"] = _input("".join(pieces))
    end = events[-1]
    return {"id": message_id(), "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop_reason(end), "stop_sequence": end.stop_sequence,
            "usage": usage_of(end.usage)}  # fmt: skip


def _event(name: str, body: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + dumps({"type": name, **body}).encode() + b"\n\n"


_DELTAS = {"thinking": ("thinking_delta", "thinking"), "text": ("text_delta", "text"),
           "tool_use": ("input_json_delta", "partial_json")}  # fmt: skip


class EventEncoder:
    """The SSE events of one streamed message: one write per batch, consecutive deltas of a block merged."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.blocks = Blocks()

    def start(self, usage: Usage | None = None) -> bytes:
        """``message_start``, with the prompt's size when ``usage`` (a ``process_start`` event's) gives it."""
        snapshot: dict[str, Any] = {"id": message_id(), "type": "message", "role": "assistant", "model": self.model,
                                    "content": [], "stop_reason": None, "stop_sequence": None,
                                    "usage": usage_of(usage)}  # fmt: skip
        return _event("message_start", {"message": snapshot})

    def events(self, events: Sequence[Event]) -> bytes:
        out: list[bytes] = []
        pending: list[str] = []
        last: Step | None = None
        for step in self.blocks.steps(events):
            if step.op == "delta":
                pending.append(step.text)
                last = step
                continue
            if pending and last is not None:
                out.append(self._delta(last, "".join(pending)))
                pending = []
            if step.op == "start":
                out.append(_event("content_block_start", {"index": step.index, "content_block": step.block}))
            else:
                out.append(_event("content_block_stop", {"index": step.index}))
        if pending and last is not None:
            out.append(self._delta(last, "".join(pending)))
        end = events[-1] if events else None
        if end is not None and end.kind == "complete":
            delta = {"stop_reason": stop_reason(end), "stop_sequence": end.stop_sequence}
            out.append(_event("message_delta", {"delta": delta, "usage": usage_of(end.usage)}))
            out.append(_event("message_stop", {}))
        return b"".join(out)

    @staticmethod
    def _delta(step: Step, text: str) -> bytes:
        kind, key = _DELTAS[step.kind]
        return _event("content_block_delta", {"index": step.index, "delta": {"type": kind, key: text}})

    @staticmethod
    def error(error: ApiError) -> bytes:
        """An error in the middle of a stream, as Anthropic sends it (the SDK raises it)."""
        _, body = error_of(error)
        return b"event: error\ndata: " + body + b"\n\n"


class MessageEncoding:
    """A message as :mod:`.respond` writes it: :class:`EventEncoder`'s events streamed, :func:`message` whole."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.encoder = EventEncoder(model)
        self.error = self.encoder.error
        self._started = False

    def start(self) -> bytes:
        return b""  # message_start goes out with the first batch, whose process_start event has the prompt's size

    def batch(self, index: int, events: Sequence[Event]) -> bytes:
        head = b""
        if not self._started:
            self._started = True
            head = self.encoder.start(next((e.usage for e in events if e.kind == "process_start"), None))
        return head + self.encoder.events(events)

    def end(self, ends: Sequence[Event]) -> bytes:
        return b""  # the last batch wrote message_delta and message_stop

    def whole(self, events: Sequence[Sequence[Event]]) -> dict[str, Any]:
        return message(self.model, events[0])
