"""OpenAI's legacy completions, the way out: raw-completion events encoded as a ``text_completion`` object or its SSE
chunks. The way in, and the rules of the mapping, are in :mod:`.completions_api`.

Rules:
- Choice ``c`` answers prompt ``c // n``. Its ``text`` is the generated text, after the prompt's text with ``echo``;
  streamed, each batch of events of a choice is one chunk, an echoed prompt is each choice's first chunk, a choice's
  last chunk has empty text and its ``finish_reason`` (``length`` when ``max_tokens`` ended it, else ``stop``), and
  the usage chunk (``choices: []``, when ``stream_options.include_usage``) and ``[DONE]`` come once, at the end.
- Logprobs, when asked for, take the legacy shape: ``tokens``, ``token_logprobs``, ``top_logprobs`` (one object per
  token: its ``k`` likeliest alternatives, and the chosen token, so up to ``k + 1`` entries, as OpenAI) and
  ``text_offset`` (where the token's text starts in ``text``: the characters before it once the events before it are
  delivered). A streamed chunk carries the entries of the tokens whose events came before its text; entries left at
  the end ride on the finish chunk. Echoed prompt tokens have null logprobs; a piece that is not whole UTF-8 is
  spelled ``bytes:\\xNN…``, as OpenAI spells it.
- Usage counts each prompt once and every choice's tokens (:func:`.encode.total_usage` per prompt, summed).
"""

from __future__ import annotations

import codecs
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rusty_genius.core.events import Event
from rusty_genius.ogenius.serve import encode
from rusty_genius.ogenius.serve.openai_api import dumps

error = encode.ChunkEncoder.error


def completion_id() -> str:
    return "cmpl-" + secrets.token_hex(12)


@dataclass
class Entry:
    """One token of a choice's logprobs."""

    token: str
    logprob: float | None
    top: dict[str, float] | None
    offset: int


def prompt_entries(pieces: Sequence[bytes]) -> list[Entry]:
    """The entries of an echoed prompt's tokens (no logprobs: the engine does not score prompts)."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    entries, offset = [], 0
    for piece in pieces:
        try:
            token = piece.decode("utf-8")
        except UnicodeDecodeError:
            token = "bytes:" + "".join(f"\\x{b:02x}" for b in piece)
        entries.append(Entry(token, None, None, offset))
        offset += len(decoder.decode(piece))
    return entries


def _entry(event: Event, offset: int) -> Entry:
    top: dict[str, float] = {}
    for token, logprob, _ in event.top_logprobs or ():
        top.setdefault(token, logprob)
    token = event.text or ""
    top.setdefault(token, event.logprob or 0.0)
    return Entry(token, event.logprob, top, offset)


def legacy(entries: Sequence[Entry]) -> dict[str, Any]:
    """The legacy ``logprobs`` object of ``entries``."""
    return {
        "tokens": [e.token for e in entries],
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": [e.top for e in entries],
        "text_offset": [e.offset for e in entries],
    }


class _Choice:
    """What one choice has delivered: its length in characters, and the logprob entries not yet sent."""

    def __init__(self, prefix: str) -> None:
        self.offset = len(prefix)
        self.pending: list[Entry] = []

    def feed(self, events: Sequence[Event]) -> tuple[str, list[Entry]]:
        """The text of ``events`` and the entries whose tokens' events came before its last piece."""
        texts: list[str] = []
        covered = 0
        for ev in events:
            if ev.kind == "token_logprob":
                self.pending.append(_entry(ev, self.offset))
            elif ev.kind == "content" and ev.text:
                texts.append(ev.text)
                self.offset += len(ev.text)
                covered = len(self.pending)
        entries, self.pending = self.pending[:covered], self.pending[covered:]
        return "".join(texts), entries

    def rest(self) -> list[Entry]:
        rest, self.pending = self.pending, []
        return rest


class Encoder:
    """The answer to one completions request: ``n`` choices for each of ``texts`` (the prompts)."""

    def __init__(
        self,
        model: str,
        texts: Sequence[str],
        n: int,
        echo: bool,
        echoed: Sequence[list[Entry]],
        logprobs: int | None,
        include_usage: bool = False,
    ) -> None:
        self.include_usage = include_usage
        self.id = completion_id()
        self.created = int(time.time())
        self.model = model
        self.n = n
        self.prefixes = [texts[c // n] if echo else "" for c in range(len(texts) * n)]
        self.echoed = [list(echoed[c // n]) if echoed else [] for c in range(len(self.prefixes))]
        self.logprobs = logprobs is not None
        self.choices = [_Choice(p) for p in self.prefixes]

    def _lp(self, entries: Sequence[Entry]) -> dict[str, Any] | None:
        return legacy(entries) if self.logprobs else None

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        body = {"id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
                "choices": choices, **extra}  # fmt: skip
        return b"data: " + dumps(body).encode() + b"\n\n"

    def _part(self, index: int, text: str, entries: Sequence[Entry], reason: str | None = None) -> dict[str, Any]:
        logprobs = self._lp(entries) if entries or reason is None else None
        return {"text": text, "index": index, "logprobs": logprobs, "finish_reason": reason}

    # -- the whole answer ---------------------------------------------------------------------------------------

    def whole(self, events: Sequence[Sequence[Event]]) -> dict[str, Any]:
        """The ``text_completion`` object of finished choices (each ends with ``complete``)."""
        choices = []
        for c, choice_events in enumerate(events):
            state = self.choices[c]
            text, entries = state.feed(choice_events)
            entries = self.echoed[c] + entries + state.rest()
            part = {"text": self.prefixes[c] + text, "index": c, "logprobs": self._lp(entries),
                    "finish_reason": encode.finish_reason(choice_events[-1])}  # fmt: skip
            choices.append(part)
        body: dict[str, Any] = {"id": self.id, "object": "text_completion", "created": self.created,
                                "model": self.model, "choices": choices}  # fmt: skip
        ends = [e[-1] for e in events]
        usage = self.usage(ends)
        if usage is not None:
            body["usage"] = usage
        if ends[0].timings is not None:
            body["timings"] = encode.timings_dict(ends[0].timings, ends[0].usage)
        return body

    def usage(self, ends: Sequence[Event]) -> dict[str, int] | None:
        """Each prompt counted once (its first choice's count), every choice's tokens."""
        groups = [encode.total_usage(ends[i : i + self.n]) for i in range(0, len(ends), self.n)]
        if any(g is None for g in groups):
            return None
        totals = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        for group in groups:
            for key in totals:
                totals[key] += group[key] if group else 0
        return totals

    # -- streamed -----------------------------------------------------------------------------------------------

    def start(self) -> bytes:
        """The echoed prompts, one chunk per choice (nothing without ``echo``)."""
        return b"".join(
            self._chunk([self._part(c, prefix, self.echoed[c])]) for c, prefix in enumerate(self.prefixes) if prefix
        )

    def batch(self, index: int, events: Sequence[Event]) -> bytes:
        """The chunk of a batch of events of choice ``index``, and its finish chunk when the batch ends it."""
        state = self.choices[index]
        text, entries = state.feed(events)
        out = self._chunk([self._part(index, text, entries)]) if text else b""
        end = events[-1] if events else None
        if end is not None and end.kind == "complete":
            part = self._part(index, "", state.rest(), encode.finish_reason(end))
            extra = {} if end.timings is None else {"timings": encode.timings_dict(end.timings, end.usage)}
            out += self._chunk([part], **extra)
        return out

    error = staticmethod(error)

    def end(self, ends: Sequence[Event]) -> bytes:
        """The usage chunk when asked for, and ``[DONE]``."""
        usage = self.usage(ends) if self.include_usage else None
        return (self._chunk([], usage=usage) if usage is not None else b"") + encode.DONE


__all__ = ["Encoder", "Entry", "completion_id", "error", "legacy", "prompt_entries"]
