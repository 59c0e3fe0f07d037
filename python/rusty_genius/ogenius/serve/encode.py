"""Responses in OpenAI's shape: the non-streaming completion, SSE chunks, usage and timings.

The per-token path is :meth:`ChunkEncoder.deltas`: one batch of ready events becomes one write, consecutive deltas
of one kind are merged into one chunk, and each chunk is a precomputed prefix and suffix around the JSON string of
its text (``encode_basestring`` is the C encoder ``json.dumps`` uses for a str), so no dict is built per token.

Tool calls are streamed as OpenAI streams them: a call's first chunk carries ``delta.tool_calls[0]`` with its
``index``, ``id``, ``type`` and ``function.name`` (``arguments`` empty), later chunks only ``index`` and a piece of
``function.arguments``; the pieces of one index concatenate to the arguments of the non-streamed
``message.tool_calls``. ``finish_reason`` is then ``tool_calls``; ``content`` is null when the answer is only calls.

Several choices (``n``): the non-streamed ``choices`` list them by ``index``; streamed, each chunk carries its
choice's ``index``, each choice has its own role chunk and finish chunk, and the usage chunk (when asked for) and
``[DONE]`` come once, after the last choice finished. Usage sums the choices' completion tokens and counts the
prompt once, as OpenAI does (the prompt and cached counts, and llama-server's ``timings``, are the first choice's).

Logprobs (when the request asked): the non-streamed choice carries ``logprobs: {"content": [...], "refusal": null}``,
one entry per answer token (``token``, ``logprob``, ``bytes``, ``top_logprobs``: the same three per alternative);
streamed, a content chunk carries ``logprobs: {"content": [...]}`` for the tokens whose events came before its text
(a token's ``token_logprob`` event precedes the text it completes), and entries left at a choice's end (tokens that
spelled a tool call) ride on its finish chunk. Concatenated, the tokens spell the content, except with tools, a stop
string cut inside a token, or a think tag split across tokens. ``logprobs`` is null when not asked for.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from json.encoder import encode_basestring
from typing import Any

from rusty_genius import __version__, build_info
from rusty_genius.core.events import Event, Timings, Usage
from rusty_genius.core.output import tool_calls_of
from rusty_genius.ogenius.serve.openai_api import ApiError, dumps

DONE = b"data: [DONE]\n\n"
SYSTEM_FINGERPRINT = f"fp_rusty-genius-{__version__}-{'-'.join(build_info()['backends'])}"
"""OpenAI's ``system_fingerprint``: which build answered (the version and its backends), on every response."""


def completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def usage_dict(usage: Usage) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_prompt_tokens},
    }
    if usage.dropped_messages:  # context_overflow: drop_oldest_turns left these out
        body["dropped_messages"] = usage.dropped_messages
    if usage.shifted_tokens:  # context_overflow: shift took these out of the context
        body["shifted_tokens"] = usage.shifted_tokens
    if usage.draft_tokens:  # speculative decoding: OpenAI's names for predicted tokens kept and thrown away
        body["completion_tokens_details"] = {
            "accepted_prediction_tokens": usage.accepted_draft_tokens,
            "rejected_prediction_tokens": usage.draft_tokens - usage.accepted_draft_tokens,
        }
    return body


def timings_dict(timings: Timings, usage: Usage | None) -> dict[str, Any]:
    """llama-server's ``timings`` object (extra field; OpenAI clients ignore it), with its ``draft_n`` and
    ``draft_n_accepted`` when speculative decoding drafted."""
    drafts = (
        {"draft_n": usage.draft_tokens, "draft_n_accepted": usage.accepted_draft_tokens}
        if usage and usage.draft_tokens
        else {}
    )
    return {
        **drafts,
        "prompt_n": usage.prompt_tokens - usage.cached_prompt_tokens if usage else None,
        "prompt_ms": round(timings.prompt_ms, 3),
        "prompt_per_second": round(timings.prompt_tokens_per_s, 3),
        "predicted_n": usage.completion_tokens if usage else None,
        "predicted_ms": round(timings.decode_ms, 3),
        "predicted_per_second": round(timings.decode_tokens_per_s, 3),
    }


def finish_reason(event: Event) -> str:
    """OpenAI's finish_reason: ``length`` when max_tokens ended it, ``tool_calls`` when the answer ended with calls,
    else ``stop`` (a cancel ends it too)."""
    reason = event.finish_reason
    return reason if reason == "length" or reason == "tool_calls" else "stop"


def tool_calls(events: Sequence[Event]) -> list[dict[str, Any]]:
    """``message.tool_calls`` of a finished stream, in index order."""
    return [call.to_openai() for call in tool_calls_of(events)]


def total_usage(ends: Sequence[Event]) -> dict[str, Any] | None:
    """OpenAI's ``usage`` of a request whose choices ended with ``ends``: completion tokens summed, the prompt
    counted once (the first choice's prompt and cached counts)."""
    usages = [e.usage for e in ends if e.usage is not None]
    if not usages:
        return None
    body = usage_dict(usages[0])
    if len(usages) > 1:
        completion_tokens = sum(u.completion_tokens for u in usages)
        body["completion_tokens"] = completion_tokens
        body["total_tokens"] = usages[0].prompt_tokens + completion_tokens
    return body


def logprob_item(event: Event) -> dict[str, Any]:
    """OpenAI's entry for one ``token_logprob`` event: ``token``, ``logprob``, ``bytes`` and ``top_logprobs``."""
    return {
        "token": event.text or "",
        "logprob": event.logprob,
        "bytes": list(event.token_bytes or b""),
        "top_logprobs": [
            {"token": token, "logprob": logprob, "bytes": list(raw)} for token, logprob, raw in event.top_logprobs or ()
        ],
    }


def _choice(index: int, events: Sequence[Event], logprobs: bool = False) -> dict[str, Any]:
    content = "".join(e.text or "" for e in events if e.kind == "content")
    reasoning = "".join(e.text or "" for e in events if e.kind == "thought_delta")
    calls = tool_calls(events)
    message: dict[str, Any] = {"role": "assistant", "content": content or (None if calls else "")}
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = calls
    tokens = None
    if logprobs:
        tokens = {"content": [logprob_item(e) for e in events if e.kind == "token_logprob"], "refusal": None}
    return {"index": index, "message": message, "logprobs": tokens, "finish_reason": finish_reason(events[-1])}


def completion(model: str, events: Sequence[Event], *more: Sequence[Event], logprobs: bool = False) -> dict[str, Any]:
    """The non-streaming ``chat.completion`` object for finished streams (each ends with ``complete``): ``events``
    is choice 0, ``more`` the next choices; ``logprobs``: the request asked for them."""
    choices = [events, *more]
    body: dict[str, Any] = {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [_choice(i, c, logprobs) for i, c in enumerate(choices)],
    }
    usage = total_usage([c[-1] for c in choices])
    if usage is not None:
        body["usage"] = usage
    first = events[-1]
    if first.timings is not None:
        body["timings"] = timings_dict(first.timings, first.usage)
    return body


class _Prefixes:
    """The precomputed chunk prefixes of one choice."""

    def __init__(self, base: str, index: int) -> None:
        self.index = index
        self.head = base + f'{index},"delta":{{'
        self.content = (self.head + '"content":').encode()
        self.reasoning = (self.head + '"reasoning_content":').encode()
        self.arguments: dict[int, bytes] = {}
        """Per tool call index: the prefix of its arguments chunks."""
        self.logprobs: list[dict[str, Any]] = []
        """Logprob entries not yet sent: they go with the next content chunk (or the finish chunk)."""


class ChunkEncoder:
    """The SSE chunks of one streamed completion (of ``choices`` choices)."""

    def __init__(self, model: str, include_usage: bool, choices: int = 1, logprobs: bool = False) -> None:
        self.id = completion_id()
        self.logprobs = logprobs
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        base = f'data: {{"id":"{self.id}","object":"chat.completion.chunk","created":{self.created},"model":'
        base += encode_basestring(model) + f',"system_fingerprint":"{SYSTEM_FINGERPRINT}","choices":[{{"index":'
        self._choices = [_Prefixes(base, i) for i in range(choices)]
        self._tail = b'},"logprobs":null,"finish_reason":null}]}\n\n'

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        body = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": choices,
            **extra,
        }
        return b"data: " + dumps(body).encode() + b"\n\n"

    def start(self) -> bytes:
        """The first chunks: the assistant role, one chunk per choice."""
        role = {"role": "assistant", "content": None}  # null, as OpenAI and llama-server send it
        return b"".join(
            self._chunk([{"index": c.index, "delta": role, "logprobs": None, "finish_reason": None}])
            for c in self._choices
        )

    def deltas(self, events: Sequence[Event], index: int = 0) -> bytes:
        """One write for a batch of events of choice ``index``: content, reasoning and tool-call argument deltas,
        merged while consecutive deltas are of one kind (and one call); a call's start is a chunk of its own."""
        choice = self._choices[index]
        out: list[bytes] = []
        key: str | int = ""  # "content", "thought_delta", or the index of the call whose arguments these are
        texts = list[str]()
        covered = 0  # logprob entries whose tokens' text is in the content run being merged
        for ev in events:
            k: str | int = ev.kind
            if k == "token_logprob":
                if self.logprobs:
                    choice.logprobs.append(logprob_item(ev))
                continue
            if k == "tool_call_delta":
                k = ev.index or 0  # set on every tool_call_* event
            elif k == "tool_call_start":
                if texts:
                    out.append(self._delta(choice, key, "".join(texts), covered))
                    texts = []
                out.append(self._call_start(choice, ev))
                continue
            elif k != "content" and k != "thought_delta":
                continue
            if k != key and texts:
                out.append(self._delta(choice, key, "".join(texts), covered))
                texts = []
            key = k
            texts.append(ev.text or "")
            if k == "content":
                covered = len(choice.logprobs)
        if texts:
            out.append(self._delta(choice, key, "".join(texts), covered))
        return b"".join(out)

    def _delta(self, choice: _Prefixes, key: str | int, text: str, covered: int = 0) -> bytes:
        if isinstance(key, int):
            prefix = choice.arguments.get(key)
            if prefix is None:
                prefix = choice.arguments[key] = (
                    choice.head + f'"tool_calls":[{{"index":{key},"function":{{"arguments":'
                ).encode()
            return prefix + encode_basestring(text).encode() + b"}}]" + self._tail
        if key == "content" and covered:
            entries, choice.logprobs[:covered] = choice.logprobs[:covered], []
            tail = b'},"logprobs":' + dumps({"content": entries}).encode() + b',"finish_reason":null}]}\n\n'
            return choice.content + encode_basestring(text).encode() + tail
        prefix = choice.content if key == "content" else choice.reasoning
        return prefix + encode_basestring(text).encode() + self._tail

    def _call_start(self, choice: _Prefixes, ev: Event) -> bytes:
        call = {"index": ev.index, "id": ev.id, "type": "function", "function": {"name": ev.name, "arguments": ""}}
        delta = {"tool_calls": [call]}
        return self._chunk([{"index": choice.index, "delta": delta, "logprobs": None, "finish_reason": None}])

    def finish_choice(self, end: Event, index: int = 0) -> bytes:
        """The finish chunk of choice ``index`` (its finish_reason, with its timings)."""
        pending = self._choices[index].logprobs
        tokens = {"content": pending} if pending else None
        self._choices[index].logprobs = []
        choice = {"index": index, "delta": {}, "logprobs": tokens, "finish_reason": finish_reason(end)}
        extra: dict[str, Any] = {}
        if end.timings is not None:
            extra["timings"] = timings_dict(end.timings, end.usage)
        return self._chunk([choice], **extra)

    def close(self, ends: Sequence[Event]) -> bytes:
        """The end of the stream, once every choice ended (``ends``: their ``complete`` events): the usage chunk
        when asked for (see :func:`total_usage`), and ``[DONE]``."""
        usage = total_usage(ends) if self.include_usage else None
        if usage is not None:
            first = ends[0] if ends else None
            extra = (
                {} if first is None or first.timings is None else {"timings": timings_dict(first.timings, first.usage)}
            )
            return self._chunk([], usage=usage, **extra) + DONE
        return DONE

    def finish(self, end: Event) -> bytes:
        """The closing chunks of a one-choice stream: finish_reason (with timings), the usage chunk when asked for,
        and ``[DONE]``."""
        return self.finish_choice(end) + self.close([end])

    @staticmethod
    def error(error: ApiError) -> bytes:
        """An error in the middle of a stream, as OpenAI sends it (the official client raises APIError)."""
        return b"data: " + error.body() + b"\n\n"


class ChatEncoding:
    """A chat completion as :mod:`.respond` writes it: :class:`ChunkEncoder`'s chunks streamed (each choice's finish
    chunk after its last batch), :func:`completion` whole."""

    def __init__(self, model: str, include_usage: bool, choices: int, logprobs: bool) -> None:
        self.model = model
        self.logprobs = logprobs
        self.chunks = ChunkEncoder(model, include_usage, choices, logprobs)
        self.start = self.chunks.start
        self.end = self.chunks.close
        self.error = self.chunks.error

    def batch(self, index: int, events: Sequence[Event]) -> bytes:
        out = self.chunks.deltas(events, index)
        if events and events[-1].kind == "complete":
            out += self.chunks.finish_choice(events[-1], index)
        return out

    def whole(self, events: Sequence[Sequence[Event]]) -> dict[str, Any]:
        return completion(self.model, *events, logprobs=self.logprobs)
