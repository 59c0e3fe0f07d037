"""Memory-aware placement: whether one more model fits, and which idle model to unload first when it does not.

Rules (Ollama fits by bytes; llama-server's router evicts by count; this does both):
- A model's *need* is an estimate from its GGUF header, made before loading (``_native.estimate_memory``: weights,
  the KV cache for its context times parallel sequences, compute buffers), once per model. Pinky and models whose
  header cannot be read count as 0 bytes (their load fails on its own, with its own message).
- The *budget* is ``max_memory`` bytes when given; with ``auto`` it is also at most the memory available now
  (``MemAvailable``) plus the needs of the models already resident (unloading them gives that back). A budget of
  neither kind (``max_memory=None, auto=False``) places by count only.
- Models loaded, loading or still unloading are resident. A model fits when the resident ones plus it stay within
  the budget and fewer than ``max_loaded`` others are resident.
- When it does not fit, the least recently used *idle* resident model is unloaded, then the check runs again. A model
  with requests queued or running is never unloaded: the load waits until one goes idle.
- A model that needs more than the whole budget could ever give it fails at once with
  :class:`~rusty_genius.OutOfMemoryError`, naming the sizes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rusty_genius.core.errors import ConfigError, OutOfMemoryError


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``); None where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@dataclass(frozen=True)
class Budget:
    """How many bytes the resident models may take: ``max_bytes`` (None: no fixed cap) and, with ``auto``, no more
    than the memory available now plus what the resident models take."""

    max_bytes: int | None = None
    auto: bool = False

    @property
    def bounded(self) -> bool:
        """Whether it bounds bytes at all (else placement is by count only)."""
        return self.max_bytes is not None or self.auto

    def total(self, resident: int) -> int | None:
        """The budget now, given the bytes the resident models take (None: unbounded)."""
        limits = [] if self.max_bytes is None else [self.max_bytes]
        if self.auto and (free := available_memory()) is not None:
            limits.append(free + resident)
        return min(limits) if limits else None

    def describe(self) -> str:
        """How the budget is set, for messages."""
        if self.max_bytes is not None and self.auto:
            return f"--max-memory {human(self.max_bytes)}, and at most the free memory"
        if self.max_bytes is not None:
            return f"--max-memory {human(self.max_bytes)}"
        return "the free memory"


def budget_of(max_memory: int | str | None) -> Budget:
    """The budget a ``max_memory`` setting asks for: bytes (or a size such as ``"8G"``; also bounded by the free
    memory), ``"auto"`` (the free memory) or None (by count only)."""
    if max_memory is None:
        return Budget()
    if isinstance(max_memory, str):
        if max_memory.strip().lower() == "auto":
            return Budget(auto=True)
        max_memory = parse_bytes(max_memory)
    if isinstance(max_memory, bool) or not isinstance(max_memory, int) or max_memory < 1:
        raise ConfigError(f"max_memory={max_memory!r}: give a number of bytes (at least 1), a size or 'auto'")
    return Budget(max_memory, auto=True)


@dataclass(frozen=True)
class Resident:
    """A model that holds (or is about to hold, or is giving back) memory."""

    key: str
    need: int
    idle: bool
    """No request holds it and it is loaded (not loading or unloading): it may be unloaded to make room."""
    last_used: float


@dataclass(frozen=True)
class Fits:
    pass


@dataclass(frozen=True)
class Evict:
    key: str


@dataclass(frozen=True)
class Wait:
    """Busy models hold the room it needs; try again when one goes idle."""


Decision = Fits | Evict | Wait


def plan(key: str, need: int, resident: list[Resident], budget: Budget, max_loaded: int) -> Decision:
    """What to do to load ``key`` (needing ``need`` bytes) beside ``resident`` (every resident model but it).

    Raises :class:`OutOfMemoryError` when it cannot fit even with every other model unloaded."""
    held = sum(r.need for r in resident)
    total = budget.total(held)
    if total is not None and need > total:
        raise OutOfMemoryError(
            f"{key} needs about {human(need)} of memory but the budget is {human(total)} ({budget.describe()}); "
            "use a smaller quantization or a smaller context (--context-size, --parallel), or raise --max-memory",
            needed=need,
            budget=total,
        )
    if len(resident) < max_loaded and (total is None or held + need <= total):
        return Fits()
    idle = sorted((r for r in resident if r.idle), key=lambda r: r.last_used)
    return Evict(idle[0].key) if idle else Wait()


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_bytes(text: str) -> int:
    """``"8G"``, ``"1.5GiB"``, ``"512m"``, ``"1000000"`` as bytes (binary units); raises :class:`ConfigError`."""
    match = _SIZE.match(text)
    if match is None:
        raise ConfigError(f"{text!r} is not a size: give bytes, or a number with K, M, G or T (e.g. 8G, 1.5GiB)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def human(n: int) -> str:
    """Bytes as a short, readable size: ``1.2 GiB``, ``300 MiB``, ``512 B``."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{n} B"
