"""The Responses API's memory: finished responses by id (for ``previous_response_id``, ``GET``, ``DELETE`` and
``input_items``) and the responses still running (for ``cancel``).

Rules:
- Bounded twice: at most ``--responses-store`` responses and ``--responses-store-bytes`` bytes. An entry's size is
  the JSON size of its response object, its input items and its whole conversation; a conversation shares its
  messages with the one it continues, so the memory really held is at most the sum counted. The least recently used
  entry (stored, read, or continued from) is evicted first; an entry larger than the byte cap is not kept at all.
- ``store: false`` responses never enter the shared store. The WebSocket mode keeps its own responses, stored or
  not, in a small store of its own for the life of the connection (OpenAI's connection-local cache).
- Running responses are kept apart (:attr:`ResponseStore.running`) until they end, stored or not, so they can be
  cancelled by id from anywhere; they do not count against the caps.
- An id that is not here is a 404 naming it and saying what to do (send the whole conversation again), never a 500.
- One shared store per :class:`Service`, for the HTTP and WebSocket listeners alike (:func:`store_of`).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol

from rusty_genius.ogenius.serve.openai_api import ApiError, dumps
from rusty_genius.ogenius.serve.service import Service


@dataclass
class Stored:
    """One finished response and what continuing it needs."""

    response: dict[str, Any]
    """The response object as ``GET /v1/responses/{id}`` answers it."""
    items: list[dict[str, Any]]
    """Its input items, as sent (each with an ``id``)."""
    conversation: list[dict[str, Any]]
    """The chat messages up to and including its output, without its instructions (a response that continues it
    brings its own, as OpenAI does)."""
    size: int = field(default=0)

    def __post_init__(self) -> None:
        if not self.size:
            self.size = len(dumps(self.response)) + len(dumps(self.items)) + len(dumps(self.conversation))

    @property
    def id(self) -> str:
        return str(self.response["id"])


class Running(Protocol):
    """A response being generated (responses_run.Run), as the cancel endpoint sees it."""

    @property
    def kept(self) -> bool:
        """Whether it will be stored (``store: true``)."""

    @property
    def items(self) -> list[dict[str, Any]]: ...
    def snapshot(self) -> dict[str, Any]: ...
    def cancel(self) -> None: ...
    async def finished(self, timeout: float) -> dict[str, Any]: ...


class ResponseStore:
    """Finished responses, least recently used first, within ``max_count`` entries and ``max_bytes`` bytes."""

    def __init__(self, max_count: int, max_bytes: int) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, Stored] = OrderedDict()
        self.running: dict[str, Running] = {}
        """Responses still being generated, by id."""

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, entry: Stored) -> bool:
        """Keeps ``entry`` (evicting the least recently used beyond the caps); False when it alone is too big."""
        self.delete(entry.id)
        if entry.size > self.max_bytes or self.max_count == 0:
            return False
        self._entries[entry.id] = entry
        self.bytes += entry.size
        while len(self._entries) > self.max_count or self.bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.bytes -= evicted.size
        return True

    def get(self, response_id: str) -> Stored | None:
        entry = self._entries.get(response_id)
        if entry is not None:
            self._entries.move_to_end(response_id)
        return entry

    def delete(self, response_id: str) -> bool:
        entry = self._entries.pop(response_id, None)
        if entry is None:
            return False
        self.bytes -= entry.size
        return True

    def previous(self, response_id: str, *more: ResponseStore) -> Stored:
        """The response ``previous_response_id`` names, from this store or ``more`` (a connection's own); raises
        the 400 or 404 a client can act on."""
        for store in (*more, self):
            entry = store.get(response_id)
            if entry is not None:
                return entry
        if response_id in self.running:
            raise ApiError(
                400,
                f"Previous response '{response_id}' has not finished yet: wait for its response.completed (or "
                "response.incomplete) before continuing from it.",
                code="previous_response_in_progress",
                param="previous_response_id",
            )
        raise ApiError(
            404,
            f"Previous response with id '{response_id}' not found. This server keeps the last {self.max_count} "
            f"stored responses (up to {self.max_bytes} bytes), in memory only: it was stored with store: false, "
            "deleted, evicted, or the server restarted. Send the whole conversation in 'input' instead (without "
            "previous_response_id).",
            code="previous_response_not_found",
            param="previous_response_id",
        )

    def missing(self, response_id: str) -> ApiError:
        """The 404 of ``GET``/``DELETE``/``cancel``/``input_items`` for an id that is not here."""
        return ApiError(
            404,
            f"Response with id '{response_id}' not found: only responses created with store: true are kept, in "
            f"memory, the last {self.max_count} of them (up to {self.max_bytes} bytes); it may have been deleted "
            "or evicted.",
            code="response_not_found",
            param="response_id",
        )


_STORES: weakref.WeakKeyDictionary[Service, ResponseStore] = weakref.WeakKeyDictionary()


def store_of(service: Service) -> ResponseStore:
    """The shared store of ``service``'s Responses API (made on first use, with the server's caps)."""
    store = _STORES.get(service)
    if store is None:
        settings = service.settings
        store = _STORES[service] = ResponseStore(settings.responses_store, settings.responses_store_bytes)
    return store


__all__ = ["ResponseStore", "Running", "Stored", "store_of"]
