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
