"""When a loaded model is unloaded: the CortexStrategy.

The idle clock starts only when no request holds the model (queued or running); a request that arrives after an
unload reloads the model transparently.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Immediate:
    """Unload as soon as no request holds the model."""


@dataclass(frozen=True)
class HibernateAfter:
    """Unload after ``seconds`` with no request holding the model."""

    seconds: float

    def __post_init__(self) -> None:
        if not self.seconds >= 0:
            from rusty_genius.core.errors import ConfigError

            raise ConfigError(f"HibernateAfter(seconds={self.seconds}): must be a number of seconds >= 0")


@dataclass(frozen=True)
class KeepAlive:
    """Never unload (until the Genius closes)."""


CortexStrategy = Immediate | HibernateAfter | KeepAlive


def strategy_of(seconds: float | None) -> CortexStrategy:
    """The strategy for "unload after ``seconds`` idle": None or negative, :class:`KeepAlive`; 0,
    :class:`Immediate`; more, :class:`HibernateAfter` (as Ollama's ``keep_alive`` reads a number of seconds)."""
    if seconds is None or seconds < 0:
        return KeepAlive()
    if seconds == 0:
        return Immediate()
    return HibernateAfter(seconds)
