"""Download progress, as facecrab reports it and the brainstem's protocol passes it on.

One record for both (so a server can put it on the wire as it is): the model's registry name, the file being
fetched, and the bytes done so far of its total. Progress is reported only for bytes that travel: a file already in
the cache reports nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class DownloadProgress:
    """``done`` of ``total`` bytes of ``file`` (``total`` None while unknown) of the model registered as ``model``."""

    model: str
    file: str
    done: int
    total: int | None


OnProgress = Callable[[DownloadProgress], None]
"""A progress callback. It may be called from a worker thread; if it raises, the download stops with that error."""

__all__ = ["DownloadProgress", "OnProgress"]
