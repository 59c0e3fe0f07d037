"""Generation events, as they arrive from the engine.

Every event has ``kind``; ``thought_delta`` and ``content`` carry ``text``; ``complete`` carries
``finish_reason`` (``"stop"``, ``"length"`` or ``"cancelled"``), ``usage`` and ``timings``. Order: ``process_start``,
then any thought blocks (``thought_start``, ``thought_delta``…, ``thought_stop``) and ``content`` deltas, then
``complete`` — unless an error ends the stream, in which case iteration raises a :class:`GeniusError`.
"""

from typing import Literal

from rusty_genius._native import Event, Timings, TokenStream, Usage

EventKind = Literal["process_start", "thought_start", "thought_delta", "thought_stop", "content", "complete"]
FinishReason = Literal["stop", "length", "cancelled"]

__all__ = ["Event", "EventKind", "FinishReason", "Timings", "TokenStream", "Usage"]
