"""The stream of one request's events: :class:`ChatStream`, for ``async for`` and ``for``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from rusty_genius.core.events import Event, TokenStream

__all__ = ["ChatStream"]


class ChatStream:
    """The events of one chat request, for ``async for`` and ``for``.

    When the model is already loaded the request is queued at once and iteration goes straight to the native
    stream; otherwise (:attr:`cold`) the first iteration waits for the (shared) load, and :attr:`load_seconds` then
    says how long that load took. Breaking out, :meth:`close`, :meth:`aclose` or dropping the stream stops the
    generation and frees its place in the queue.
    """

    def __init__(self, native: TokenStream | None = None) -> None:
        self._native = native
        # How to open the native stream once the model is loaded (set by Genius.chat for a cold request).
        self._open_async: Callable[[], Awaitable[TokenStream]] | None = None
        self._open_sync: Callable[[], TokenStream] | None = None
        self._opening: asyncio.Future[TokenStream] | None = None
        self._closed = False
        self._cancelled = False
        self.load_seconds: float | None = None
        """How long the model load this request waited for took (set by its first event); None when the model
        was already loaded."""

    @property
    def cold(self) -> bool:
        """True while the request waits for its model to load: the model was not loaded when it was made, and
        iteration has not begun yet or is waiting for the load."""
        return self._native is None and not self._closed

    def __aiter__(self) -> ChatStream:
        return self

    def __anext__(self) -> Awaitable[Event]:
        if self._native is not None:
            return self._native.__anext__()
        return self._first_async()

    async def _first_async(self) -> Event:
        native = await self._open_cold()
        if native is None:
            raise StopAsyncIteration
        return await native.__anext__()

    async def _open_cold(self) -> TokenStream | None:
        """Waits for the model (a place in its queue, and its load) and queues the request; None when the stream
        was closed or cancelled first. A :meth:`close` during the wait gives the place back at once, so a load
        that nobody waits for any more is abandoned (it unloads nothing to make room)."""
        if self._closed or self._cancelled or self._open_async is None:
            return None
        opening = asyncio.ensure_future(self._open_async())
        self._opening = opening
        try:
            native = await opening
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._closed and opening.cancelled() and not (current is not None and current.cancelling()):
                return None
            raise
        finally:
            self._opening = None
        self._native = self._opened(native)
        return self._native

    def batch(self, limit: int = 256) -> Awaitable[list[Event]]:
        """Waits for the next event, then takes every event already waiting (at most ``limit``) without
        suspending: for writers that pay per write (a server), not per event. Returns ``[]`` once the stream has
        ended; ends after ``complete``. An error that comes after some events is raised by the next call, so the
        events before it are never lost; a call cancelled while it waits (a timeout) loses nothing. A :attr:`cold`
        stream first waits for its load, as ``__anext__`` does."""
        if self._native is not None:
            return self._native.batch(limit)
        return self._first_batch(limit)

    async def _first_batch(self, limit: int) -> list[Event]:
        native = await self._open_cold()
        return [] if native is None else await native.batch(limit)

    def _opened(self, native: TokenStream) -> TokenStream:
        """Applies a close() or cancel() that came while the load was awaited."""
        if self._closed:
            native.close()
        elif self._cancelled:
            native.cancel()
        return native

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> Event:
        if self._native is None:
            if self._closed or self._cancelled or self._open_sync is None:
                raise StopIteration
            self._native = self._opened(self._open_sync())
        return next(self._native)

    def cancel(self) -> None:
        """Asks the engine to stop; the stream still ends with ``complete`` (finish_reason ``cancelled``), at once
        even when the request is still queued behind others.

        A stream not iterated yet, or waiting for the model load, simply ends without events; during a load, the load
        itself finishes (others may share it)."""
        if self._native is not None:
            self._native.cancel()
        else:
            self._cancelled = True

    def close(self) -> None:
        """Stops the generation and ends the stream now."""
        self._closed = True
        if self._native is not None:
            self._native.close()
        elif (opening := self._opening) is not None:
            opening.get_loop().call_soon_threadsafe(opening.cancel)

    async def aclose(self) -> None:
        self.close()

    @property
    def finished(self) -> bool:
        return self._closed or (self._native is not None and self._native.finished)
