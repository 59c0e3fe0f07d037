"""The streams of one request's ``n`` choices, read together (http.py).

Rules:
- Every running choice always has a read waiting, so no choice stalls behind another (the engine holds back a
  sequence whose reader is behind); batches come out in the order they arrive, each with its choice's index.
- One choice is read directly, with no task or wait set around it: the common case stays the one-stream path.
- A choice that fails raises its error from :meth:`Choices.next`; the caller then ends the request, and
  :meth:`Choices.close` drops the reads still waiting (a cancelled ``ChatStream.batch`` loses nothing) so the
  others can be closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from rusty_genius import ChatStream
from rusty_genius.core.events import Event


class Choices:
    """The streams of one request, choice i being ``streams[i]``."""

    def __init__(self, streams: Sequence[ChatStream]) -> None:
        self.streams = list(streams)
        self.ends: list[Event | None] = [None] * len(self.streams)
        """Each choice's ``complete`` event, once it arrived."""
        self._reads: dict[asyncio.Future[list[Event]], int] = {}
        self.on_batch: Callable[[list[Event], int], None] | None = None
        """Sees each batch and its choice's index as it is read (metrics.Generation.batch)."""

    @property
    def n(self) -> int:
        return len(self.streams)

    @property
    def done(self) -> bool:
        """Every choice has completed."""
        return all(end is not None for end in self.ends)

    @property
    def load_seconds(self) -> float | None:
        """How long the model load the request waited for took (the choices share one load)."""
        return next((s.load_seconds for s in self.streams if s.load_seconds is not None), None)

    async def next(self) -> tuple[int, list[Event]]:
        """The next batch of some running choice and its index; an empty batch when that stream was closed under
        us. Raises the error of a choice that failed."""
        if len(self.streams) == 1:
            return self._note(0, await self.streams[0].batch())
        reading = set(self._reads.values())
        for i, stream in enumerate(self.streams):
            if self.ends[i] is None and i not in reading:
                self._reads[asyncio.ensure_future(stream.batch())] = i
        if not self._reads:
            return 0, []
        ready, _ = await asyncio.wait(self._reads, return_when=asyncio.FIRST_COMPLETED)
        read = min(ready, key=lambda f: self._reads[f])  # the others stay ready for the next calls
        index = self._reads.pop(read)
        return self._note(index, read.result())

    def _note(self, index: int, batch: list[Event]) -> tuple[int, list[Event]]:
        if self.on_batch is not None:
            self.on_batch(batch, index)
        if batch and batch[-1].kind == "complete":
            self.ends[index] = batch[-1]
        return index, batch

    def close(self) -> None:
        """Drops the reads still waiting (the streams themselves are closed by their owner)."""
        for read in self._reads:
            if read.done():
                if not read.cancelled():
                    read.exception()  # retrieved: a failure beside the one reported is not logged as lost
            else:
                read.cancel()
        self._reads.clear()


__all__ = ["Choices"]
