"""OpenAI's Responses API, the way out: rusty-genius events as a ``response`` object and its stream events (the
same events over SSE and the WebSocket mode). The way in is :mod:`.responses_api`.

Rules:
- One :class:`ResponseBuilder` per response makes both forms, so the streamed events always add up to the object:
  output items in order of appearance, consecutive events of one kind making one item: ``reasoning`` (``rs_``;
  the thought as one ``reasoning_text`` content part, as OpenAI documents for open models; ``summary`` empty),
  ``message`` (``msg_``; one ``output_text`` part) and ``function_call`` (``fc_``; ``call_id`` is the engine's call
  id). Each item is ``output_item.added``, its content (``content_part.added``, text or argument deltas, their
  ``.done``, ``content_part.done``) and ``output_item.done``; events carry ``item_id``, ``output_index`` and
  ``content_index`` as OpenAI's do, and ``sequence_number`` counts every event of the response from 0.
- Deltas that arrive in one batch are merged into one event (no per-token cost beyond the engine's batching).
- The end: ``completed`` (``response.completed``); ``incomplete`` with ``incomplete_details.reason``
  ``max_output_tokens`` when max_output_tokens ended it (``response.incomplete``); ``cancelled`` (also sent as
  ``response.incomplete``: OpenAI's stream has no cancelled event); ``failed`` with ``error`` {code, message}
  (``response.failed``). Items still open at the end are closed with status ``incomplete``.
- ``usage``: prompt and answer tokens as the engine counts them; ``cached_tokens`` are prompt tokens reused from
  the KV cache; ``reasoning_tokens`` counts the reasoning pieces the engine delivered (one per token);
  ``cache_write_tokens`` is 0 (the engine does not report it).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rusty_genius.core.events import Event, Usage
from rusty_genius.ogenius.serve.openai_api import ApiError, dumps
from rusty_genius.ogenius.serve.responses_items import item_id

_PARTS = {"reasoning": "reasoning_text", "message": "output_text"}
_DELTAS = {"reasoning": "response.reasoning_text.delta", "message": "response.output_text.delta",
           "function_call": "response.function_call_arguments.delta"}  # fmt: skip
_ENDS = {"completed": "response.completed", "incomplete": "response.incomplete", "cancelled": "response.incomplete",
         "failed": "response.failed"}  # fmt: skip


def usage_of(usage: Usage | None, reasoning_tokens: int) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {"input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_prompt_tokens, "cache_write_tokens": 0},
            "output_tokens": usage.completion_tokens, "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
            "total_tokens": usage.total_tokens}  # fmt: skip


def sse(events: Sequence[dict[str, Any]]) -> bytes:
    """Server-sent events, one per event (``event:`` its type, ``data:`` its JSON)."""
    return b"".join(b"event: " + e["type"].encode() + b"\ndata: " + dumps(e).encode() + b"\n\n" for e in events)


@dataclass
class _Item:
    index: int
    kind: str
    """``reasoning``, ``message`` or ``function_call``."""
    body: dict[str, Any]
    """The item as ``output`` lists it (its text filled in when it closes)."""
    call: int | None = None
    """The engine's index of the call (function_call items)."""
    pieces: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(self.pieces)

    def filled(self, status: str) -> dict[str, Any]:
        """The item with its text so far, as a new object."""
        body = {**self.body, "status": status}
        if self.kind == "function_call":
            body["arguments"] = self.text()
        else:
            part = self.part()
            part["text"] = self.text()
            body["content"] = [part]
        return body

    def part(self) -> dict[str, Any]:
        if self.kind == "message":
            return {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return {"type": _PARTS[self.kind], "text": ""}


class ResponseBuilder:
    """The events and the object of one response; ``shell`` is its object before anything is generated."""

    def __init__(self, shell: dict[str, Any]) -> None:
        self.response = {**shell, "status": "in_progress", "output": [], "usage": None}
        self.sequence = 0
        self.items: list[_Item] = []
        self.open: _Item | None = None
        self.reasoning_tokens = 0

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def start(self) -> list[dict[str, Any]]:
        """``response.created`` and ``response.in_progress``."""
        return [self._event(k, response=self.snapshot()) for k in ("response.created", "response.in_progress")]

    def snapshot(self) -> dict[str, Any]:
        """The response as it stands (a new object; open items carry their text so far)."""
        response = copy.copy(self.response)
        response["output"] = [item.filled(item.body["status"]) if item is self.open else item.body
                              for item in self.items]  # fmt: skip
        return response

    def add(self, events: Sequence[Event]) -> list[dict[str, Any]]:
        """The stream events of a batch of engine events (a ``complete`` among them is left to :meth:`finish`)."""
        out: list[dict[str, Any]] = []
        pending: list[str] = []
        for ev in events:
            kind = ev.kind
            if kind == "thought_delta" or kind == "content":
                if not ev.text:
                    continue
                self.reasoning_tokens += kind == "thought_delta"
                wanted = "reasoning" if kind == "thought_delta" else "message"
                if self.open is None or self.open.kind != wanted:
                    self._flush(pending, out)
                    self._close("completed", out)
                    self._begin(wanted, out)
                pending.append(ev.text)
            elif kind == "tool_call_start":
                self._flush(pending, out)
                self._close("completed", out)
                call = {"type": "function_call", "call_id": ev.id or "", "name": ev.name or "", "arguments": ""}
                self._begin("function_call", out, call, ev.index)
            elif kind == "tool_call_delta" and ev.text and self.open is not None and self.open.call == ev.index:
                pending.append(ev.text)
            elif kind == "tool_call_stop":
                self._flush(pending, out)
                self._close("completed", out)
        self._flush(pending, out)
        return out

    def _begin(self, kind: str, out: list[dict[str, Any]], body: dict[str, Any] | None = None,
               call: int | None = None) -> None:  # fmt: skip
        body = {"id": item_id(kind), "type": kind, "status": "in_progress", **(body or {})}
        if kind == "message":
            body.update(role="assistant", content=[])
        elif kind == "reasoning":
            body.update(summary=[], content=[])
        item = _Item(len(self.items), kind, body, call)
        self.items.append(item)
        self.open = item
        out.append(self._event("response.output_item.added", output_index=item.index, item=copy.deepcopy(body)))
        if kind != "function_call":
            out.append(self._event("response.content_part.added", item_id=body["id"], output_index=item.index,
                                   content_index=0, part=item.part()))  # fmt: skip

    def _flush(self, pending: list[str], out: list[dict[str, Any]]) -> None:
        item = self.open
        if not pending or item is None:
            return
        delta = "".join(pending)
        pending.clear()
        item.pieces.append(delta)
        fields: dict[str, Any] = {"item_id": item.body["id"], "output_index": item.index, "delta": delta}
        if item.kind != "function_call":
            fields["content_index"] = 0
        if item.kind == "message":
            fields["logprobs"] = []
        out.append(self._event(_DELTAS[item.kind], **fields))

    def _close(self, status: str, out: list[dict[str, Any]]) -> None:
        item = self.open
        if item is None:
            return
        self.open = None
        body = item.body = item.filled(status)
        where = {"item_id": body["id"], "output_index": item.index}
        if item.kind == "function_call":
            out.append(self._event("response.function_call_arguments.done", **where, name=body["name"],
                                   arguments=body["arguments"]))  # fmt: skip
        else:
            part = body["content"][0]
            done = "response.output_text.done" if item.kind == "message" else "response.reasoning_text.done"
            extra: dict[str, Any] = {"logprobs": []} if item.kind == "message" else {}
            out.append(self._event(done, **where, content_index=0, text=part["text"], **extra))
            out.append(self._event("response.content_part.done", **where, content_index=0, part=part))
        out.append(self._event("response.output_item.done", output_index=item.index, item=body))

    def finish(
        self, end: Event | None, *, cancelled: bool = False, error: ApiError | None = None
    ) -> list[dict[str, Any]]:
        """The closing events: the open item closed, then the terminal event with the whole response. ``end``: the
        ``complete`` event (None when the stream ended without one: cancelled before it began, or failed)."""
        reason = end.finish_reason if end is not None else None
        if error is not None:
            status = "failed"
        elif cancelled or reason == "cancelled":
            status = "cancelled"
        else:
            status = "incomplete" if reason == "length" else "completed"
        out: list[dict[str, Any]] = []
        self._close("completed" if status == "completed" else "incomplete", out)
        response = self.response
        response.update(status=status, output=[item.body for item in self.items],
                        usage=usage_of(end.usage if end else None, self.reasoning_tokens))  # fmt: skip
        if status == "completed":
            response["completed_at"] = int(time.time())
        if status == "incomplete":
            response["incomplete_details"] = {"reason": "max_output_tokens"}
        if error is not None:
            code = "invalid_prompt" if error.status < 500 else "server_error"
            response["error"] = {"code": code, "message": error.message, **error.extra}
        out.append(self._event(_ENDS[status], response=response))
        return out


__all__ = ["ResponseBuilder", "sse", "usage_of"]
