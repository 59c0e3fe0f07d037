"""Reading a ChatStream in batches: wait for one event, then take every event already waiting.

Why: a server pays per write (a syscall, a chunk header, a JSON envelope), not per token, so events that are ready
together leave together. Taking "what is ready" needs no extra API: awaiting the stream's ``__anext__`` takes a
waiting event without suspending, so we drive its ``__await__`` iterator by hand once. If it is not ready, the
iterator has already started its receive (into the stream's stash, so nothing is lost) and yielded what the event
loop must wait on; we keep the iterator and resume it on the next batch instead of starting another.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from rusty_genius.core.events import Event
from rusty_genius.genius import ChatStream

MAX_BATCH = 256


class _Resume:
    """Awaits a started ``__await__`` iterator: hands the event loop what it yielded, as ``yield from`` would."""

    __slots__ = ("_it", "_yielded")

    def __init__(self, it: Generator[Any, None, Event], yielded: Any) -> None:
        self._it = it
        self._yielded = yielded

    def __await__(self) -> Generator[Any, None, Event]:
        it, yielded = self._it, self._yielded
        while True:
            try:
                yield yielded
            except BaseException as exc:  # cancellation: pass it on if the iterator takes it (coroutines do)
                throw = getattr(it, "throw", None)
                if throw is None:
                    raise
                try:
                    yielded = throw(exc)
                except StopIteration as stop:
                    event: Event = stop.value
                    return event
                continue
            try:
                yielded = next(it)
            except StopIteration as stop:
                event = stop.value
                return event


class BatchReader:
    """``await reader.batch()``: the next events (at least one), or ``[]`` once the stream has ended.

    Iteration ends after a ``complete`` event. An error raised by the stream comes out of the call after the one
    that returned the events before it.
    """

    def __init__(self, stream: ChatStream, limit: int = MAX_BATCH) -> None:
        self._stream = stream
        self._limit = limit
        self._pending: _Resume | None = None
        self._error: BaseException | None = None
        self._ended = False

    async def batch(self) -> list[Event]:
        if self._error is not None:
            error, self._error = self._error, None
            self._ended = True
            raise error
        if self._ended:
            return []
        pending, self._pending = self._pending, None
        try:
            first = await (pending if pending is not None else self._stream.__anext__())
        except StopAsyncIteration:
            self._ended = True
            return []
        events = [first]
        if first.kind == "complete":
            self._ended = True
            return events
        while len(events) < self._limit:
            it = self._stream.__anext__().__await__()
            try:
                yielded = next(it)
            except StopIteration as stop:
                event: Event = stop.value
                events.append(event)
                if event.kind == "complete":
                    self._ended = True
                    break
                continue
            except StopAsyncIteration:
                self._ended = True
                break
            except Exception as exc:  # noqa: BLE001 - delivered after the events before it
                self._error = exc
                break
            self._pending = _Resume(it, yielded)
            break
        return events

    @property
    def ended(self) -> bool:
        return self._ended and self._error is None
