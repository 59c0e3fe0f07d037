"""Generation events, as they arrive from the engine.

Every event has ``kind``; ``thought_delta`` and ``content`` carry ``text``; ``complete`` carries
``finish_reason`` (``"stop"``, ``"length"``, ``"cancelled"`` or ``"tool_calls"``), ``usage`` and ``timings``;
``process_start`` carries ``usage`` too: the prompt's tokens (and cached ones) as admitted, 0 completion tokens. Order:
``process_start`` (once the engine admitted the request: a prompt too long for the context raises before it), then
any thought blocks (``thought_start``, ``thought_delta``…, ``thought_stop``), ``content``
deltas and tool calls, then ``complete`` — unless an error ends the stream, in which case iteration raises a
:class:`GeniusError`.

Tool calls (only when the request offered tools) are numbered from 0 by ``index`` in the order they start; each is
``tool_call_start`` (``index``, ``id``, ``name``), ``tool_call_delta`` events (``index``; ``text`` is a piece of the
arguments, and the pieces of one call concatenate to a JSON object) and ``tool_call_stop`` (``index``). The call's
syntax in the model's output is never also delivered as ``content``. An answer that ends with calls finishes with
``tool_calls``.

When the config asks for logprobs (``Behavior.logprobs``), each answer token also comes as a ``token_logprob`` event,
before the text it completes: ``text`` (the token, lossy UTF-8), ``token_bytes`` (exact), ``logprob`` and
``top_logprobs`` (``(token, logprob, bytes)`` tuples, likeliest first). Reasoning tokens are not reported.
"""

from typing import Literal

from rusty_genius._native import Event, Timings, TokenStream, Usage

EventKind = Literal[
    "process_start",
    "thought_start",
    "thought_delta",
    "thought_stop",
    "content",
    "tool_call_start",
    "tool_call_delta",
    "tool_call_stop",
    "token_logprob",
    "complete",
]
FinishReason = Literal["stop", "length", "cancelled", "tool_calls"]

__all__ = ["Event", "EventKind", "FinishReason", "Timings", "TokenStream", "Usage"]
