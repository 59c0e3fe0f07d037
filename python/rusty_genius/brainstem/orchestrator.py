"""The brainstem: one loop that owns the loaded engines and serves many callers.

Rules:
- A request holds its model from the moment it queues until its stream finishes (completes, fails, is closed or
  dropped); the native stream's ``on_done`` callback releases it, from whatever thread that happens on.
- Requests to one model queue FIFO in its engine's worker; past ``max_queue`` holders a request gets BusyError at
  once. A caller that leaves cancels only itself: its stream is dropped, the worker skips or stops it.
- Loads are shared: every request that arrives during a load awaits that one load. A failed load fails its waiters
  and the next request tries again.
- Unloading follows the CortexStrategy, and only when no request holds the model. A request may bring its own
  strategy (``keep_alive``, as Ollama's): the last request to take a place in a model's queue sets how long that
  model stays loaded once idle; a request without one restores the Brainstem's.
- Which models stay when another loads is placement.py's decision: by count (``max_loaded``) and by bytes (a
  :class:`~.placement.Budget`); the least recently used idle model is unloaded first, a busy one never. Loads that
  wait for room wait in arrival order; a load whose every waiter has left gives up its turn and unloads nothing.
- Listing and health calls never wake a model. Slot bookkeeping is under a threading lock (sync callers and the
  ``on_done`` callback may run on other threads); loads and unloads run on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio.to_thread

from rusty_genius import _native
from rusty_genius.brainstem.lifecycle import CortexStrategy, HibernateAfter, Immediate, KeepAlive
from rusty_genius.brainstem.placement import Budget, Evict, Fits, Resident, plan
from rusty_genius.brainstem.protocol import Notice
from rusty_genius.core.errors import BusyError, EngineClosedError, GeniusError

log = logging.getLogger("rusty_genius.brainstem")

Loader = Callable[[], _native.Engine]
Sizer = Callable[[], int]
"""Estimates the bytes a model takes once loaded (called once, on a worker thread)."""
ROOM_POLL = 0.05
"""Seconds between two looks at the room while a load waits for a busy model to go idle."""


@dataclass(eq=False)
class Slot:
    """One model: how to load it, and its state."""

    key: str
    loader: Loader
    engine: _native.Engine | None = None
    load: asyncio.Task[tuple[_native.Engine, float]] | None = None
    holders: int = 0
    idle_token: int = 0
    loaded_before: bool = False
    unloading: bool = False
    last_used: float = field(default_factory=time.monotonic)
    keep_alive: CortexStrategy | None = None
    """The strategy the last request asked for (None: the Brainstem's)."""
    load_seconds: float | None = None
    """How long the last load took."""
    sizer: Sizer | None = None
    need: int | None = None
    """Bytes it takes loaded, as its sizer estimated (None: not estimated yet)."""
    placed: bool = False
    """Room was made for it and its load runs: it counts as resident."""

    @property
    def state(self) -> str:
        if self.unloading:
            return "unloading"
        if self.engine is not None:
            return "loaded"
        return "loading" if self.load is not None else "unloaded"


@dataclass(frozen=True)
class Hold:
    """A place in a model's queue, from :meth:`Brainstem.acquire`."""

    engine: _native.Engine
    release: Callable[[], None]
    """Gives the place back (once-only, any thread); pass it as the stream's ``on_done``."""
    load_seconds: float | None = None
    """How long the load this request waited for took; None when the model was already loaded."""


class Brainstem:
    """Create it inside the event loop that will run it."""

    def __init__(
        self,
        *,
        strategy: CortexStrategy | None = None,
        max_loaded: int = 1,
        max_queue: int = 32,
        budget: Budget | None = None,
        on_notice: Callable[[Notice], None] | None = None,
    ) -> None:
        if max_loaded < 1 or max_queue < 1:
            raise GeniusError(f"max_loaded ({max_loaded}) and max_queue ({max_queue}) must be at least 1")
        self.strategy = strategy or KeepAlive()
        self.max_loaded = max_loaded
        self.max_queue = max_queue
        self.budget = budget or Budget()
        self._waiting_room: list[Slot] = []  # loads waiting for room, first come first
        self._on_notice = on_notice
        self._watchers: list[Callable[[Notice], None]] = []
        self._loop = asyncio.get_running_loop()
        self._slots: dict[str, Slot] = {}
        self._lock = threading.Lock()
        self._closed = False

    # -- what callers see ---------------------------------------------------------------------------------------

    def register(self, key: str, loader: Loader, sizer: Sizer | None = None) -> None:
        """Makes ``key`` known (not loaded); ``sizer`` estimates its bytes for placement (None: 0 bytes). A key
        registered again while unloaded takes the new loader and sizer (a name now meaning another file); a loaded
        or loading one keeps its own until it unloads."""
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                self._slots[key] = Slot(key, loader, sizer=sizer)
            elif slot.engine is None and slot.load is None and not slot.unloading and slot.loader != loader:
                slot.loader, slot.sizer, slot.need = loader, sizer, None

    def states(self) -> dict[str, str]:
        """Every registered model's state: ``loaded``, ``loading``, ``unloading`` or ``unloaded`` (never loads)."""
        with self._lock:
            return {k: s.state for k, s in self._slots.items()}

    def resident_bytes(self) -> dict[str, int]:
        """The estimated bytes of each model loaded or unloading (0 for those never estimated)."""
        with self._lock:
            return {k: s.need or 0 for k, s in self._slots.items() if s.engine is not None or s.unloading}

    def loaded(self) -> list[str]:
        """The models loaded now, or still releasing their memory (never loads anything)."""
        with self._lock:
            return [k for k, s in self._slots.items() if s.engine is not None or s.unloading]

    def watch(self, callback: Callable[[Notice], None]) -> None:
        """Calls ``callback`` (on the loop) with every lifecycle notice from now on, beside ``on_notice``."""
        self._watchers.append(callback)

    def engine_of(self, key: str) -> _native.Engine | None:
        with self._lock:
            slot = self._slots.get(key)
            return slot.engine if slot else None

    def load_seconds(self, key: str) -> float | None:
        """How long the last load of ``key`` took (None if it never loaded)."""
        with self._lock:
            slot = self._slots.get(key)
            return slot.load_seconds if slot else None

    def try_hold(
        self, key: str, *, keep_alive: CortexStrategy | None = None
    ) -> tuple[_native.Engine, Callable[[], None]] | None:
        """Sync fast path, any thread: if ``key`` is loaded, take a place; returns its engine and the release.

        ``keep_alive``: how long the model stays loaded once idle after this request (None: the Brainstem's
        strategy); it applies only if a place is taken."""
        with self._lock:
            slot = self._slot(key)
            if slot.engine is None:
                return None
            self._take_place(slot, keep_alive)
            return slot.engine, self._releaser(slot)

    async def hold(
        self, key: str, *, keep_alive: CortexStrategy | None = None
    ) -> tuple[_native.Engine, Callable[[], None]]:
        """Takes a place in ``key``'s queue and returns its engine (loading it if needed) and the release."""
        held = await self.acquire(key, keep_alive=keep_alive)
        return held.engine, held.release

    async def acquire(self, key: str, *, keep_alive: CortexStrategy | None = None) -> Hold:
        """Like :meth:`hold`, and also says how long the load this request waited for took."""
        with self._lock:
            slot = self._slot(key)
            self._take_place(slot, keep_alive)
        release = self._releaser(slot)
        try:
            engine, load_seconds = await self._ensure(slot)
        except BaseException:
            release()
            raise
        return Hold(engine, release, load_seconds)

    async def preload(self, key: str) -> None:
        """Loads ``key`` now (then applies the strategy as if a request had just finished)."""
        await self.hold(key)
        with self._lock:
            slot = self._slots[key]
        self._releaser(slot)()

    async def unload(self, key: str) -> bool:
        """Unloads ``key`` if it is loaded and idle. Returns whether it was unloaded."""
        with self._lock:
            slot = self._slots.get(key)
            if slot is None or slot.engine is None:
                return False
            if slot.holders:
                raise BusyError(f"{key} has {slot.holders} request(s) in flight; it unloads when they finish")
            slot.idle_token += 1
        return await self._unload(slot)

    async def aclose(self) -> None:
        """Unloads everything; streams still running end with EngineClosedError."""
        with self._lock:
            self._closed = True
            slots = list(self._slots.values())
        for slot in slots:
            if slot.load is not None:
                try:
                    await asyncio.shield(slot.load)
                except BaseException:  # noqa: BLE001 - a failed load leaves nothing to close
                    pass
            with self._lock:
                engine, slot.engine = slot.engine, None
            if engine is not None:
                await anyio.to_thread.run_sync(engine.close)

    # -- internals ----------------------------------------------------------------------------------------------

    def _slot(self, key: str) -> Slot:
        if self._closed:
            raise EngineClosedError("this Genius is closed; create a new one")
        try:
            return self._slots[key]
        except KeyError:
            raise GeniusError(f"unknown model {key!r} in the brainstem") from None

    def _take_place(self, slot: Slot, keep_alive: CortexStrategy | None = None) -> None:
        if slot.holders >= self.max_queue:
            raise BusyError(
                f"{slot.key} already has {slot.holders} requests queued or running (max_queue={self.max_queue}); "
                "try again shortly"
            )
        slot.holders += 1
        slot.idle_token += 1
        slot.last_used = time.monotonic()
        slot.keep_alive = keep_alive

    def _releaser(self, slot: Slot) -> Callable[[], None]:
        """A once-only release, safe to call from any thread."""
        done = threading.Event()

        def release() -> None:
            if done.is_set():
                return
            done.set()
            with self._lock:
                slot.holders -= 1
                slot.last_used = time.monotonic()
                idle = slot.holders == 0
                token = slot.idle_token = slot.idle_token + 1
            if idle:
                try:
                    self._loop.call_soon_threadsafe(self._idle, slot, token)
                except RuntimeError:  # the loop is closed: nothing left to schedule
                    pass

        return release

    def _idle(self, slot: Slot, token: int) -> None:
        """On the loop: the model just became idle; unload it now, later, or never."""
        strategy = self.strategy if slot.keep_alive is None else slot.keep_alive
        if isinstance(strategy, Immediate):
            self._loop.create_task(self._unload_if_idle(slot, token))
        elif isinstance(strategy, HibernateAfter):
            self._loop.call_later(strategy.seconds, lambda: self._loop.create_task(self._unload_if_idle(slot, token)))

    async def _unload_if_idle(self, slot: Slot, token: int) -> None:
        with self._lock:
            still_idle = slot.holders == 0 and slot.idle_token == token and not self._closed
        if still_idle:
            await self._unload(slot)

    async def _unload(self, slot: Slot) -> bool:
        """Unloads ``slot`` unless a request holds it (one may have taken a place since it was chosen)."""
        with self._lock:
            if slot.holders:
                return False
            engine, slot.engine = slot.engine, None
            slot.unloading = engine is not None
        if engine is None:
            return False
        try:
            await anyio.to_thread.run_sync(engine.close)
        finally:
            with self._lock:
                slot.unloading = False
        self._notice(Notice("unloaded", slot.key, f"unloaded {slot.key}"))
        log.info("unloaded %s", slot.key)
        return True

    async def _ensure(self, slot: Slot) -> tuple[_native.Engine, float | None]:
        """The slot's engine, loading it if needed, and how long the load waited for took (None: no wait)."""
        with self._lock:
            if slot.engine is not None:
                return slot.engine, None
            if slot.load is None:
                slot.load = self._loop.create_task(self._load(slot))
                # Observed even when every waiter has left (an abandoned load ends with an error nobody awaits).
                slot.load.add_done_callback(lambda done: done.cancelled() or done.exception())
            load = slot.load
        # shield: a waiter that gives up must not cancel the load the others share.
        return await asyncio.shield(load)

    async def _load(self, slot: Slot) -> tuple[_native.Engine, float]:
        try:
            await self._make_room(slot)
            started = time.monotonic()
            engine = await anyio.to_thread.run_sync(slot.loader)
            took = time.monotonic() - started
        except BaseException:
            with self._lock:
                slot.load, slot.placed = None, False
            raise
        with self._lock:
            slot.load, slot.placed = None, False
            slot.engine = engine
            slot.load_seconds = took
            reloaded, slot.loaded_before = slot.loaded_before, True
            idle = slot.holders == 0
            token = slot.idle_token
        if reloaded:
            log.warning("NOTICE: Model reload took %.2fs.", took)
            log.warning("Increase --unload-after or use --no-unload to avoid delay.")
            self._notice(Notice("reloaded", slot.key, f"NOTICE: Model reload took {took:.2f}s.", took))
        else:
            self._notice(Notice("loaded", slot.key, f"loaded {slot.key} in {took:.2f}s", took))
        if idle:
            self._idle(slot, token)
        return engine, took

    async def _make_room(self, slot: Slot) -> None:
        """Waits its turn, then unloads least recently used idle models until ``slot`` fits (placement.py); waits
        while busy models hold the room. Raises OutOfMemoryError when it can never fit, and BusyError when every
        request that wanted it has left meanwhile (nothing is unloaded for nobody)."""
        if slot.need is None:
            sizer = slot.sizer if self.budget.bounded else None  # by count only: no file to read
            try:
                slot.need = 0 if sizer is None else await anyio.to_thread.run_sync(sizer)
            except GeniusError:  # an unreadable file: its load fails on its own, with its own message
                slot.need = 0
        self._waiting_room.append(slot)
        try:
            while True:
                with self._lock:
                    if slot.holders == 0:
                        raise BusyError(f"the load of {slot.key} was abandoned: no request waits for it any more")
                    decision = None
                    if self._waiting_room[0] is slot and not slot.unloading:  # its old engine still closing: wait
                        decision = plan(slot.key, slot.need, self._resident(slot), self.budget, self.max_loaded)
                    if isinstance(decision, Fits):
                        slot.placed = True
                        return
                    victim = self._slots[decision.key] if isinstance(decision, Evict) else None
                if victim is not None:
                    log.info("making room for %s: unloading %s (least recently used, idle)", slot.key, victim.key)
                    await self._unload(victim)
                else:
                    await asyncio.sleep(ROOM_POLL)
        finally:
            self._waiting_room.remove(slot)

    def _resident(self, slot: Slot) -> list[Resident]:
        """Every model but ``slot`` that holds memory (under the lock)."""
        return [
            Resident(s.key, s.need or 0, s.engine is not None and s.holders == 0 and not s.unloading, s.last_used)
            for s in self._slots.values()
            if s is not slot and (s.engine is not None or s.unloading or s.placed)
        ]

    def _notice(self, notice: Notice) -> None:
        for callback in [self._on_notice, *self._watchers]:
            if callback is not None:
                callback(notice)
