"""The brainstem's messages: what callers send in, and what comes out.

Errors travel as :class:`ErrorInfo`, a plain, serialisable record of a :class:`GeniusError` (its class name and
message), so a server can put them on the wire and a client can raise the same class again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rusty_genius import core
from rusty_genius.core.config import InferenceConfig
from rusty_genius.core.errors import GeniusError
from rusty_genius.core.events import Event


@dataclass(frozen=True)
class LoadModel:
    model: str


@dataclass(frozen=True)
class Infer:
    request_id: str
    model: str
    messages: Sequence[Mapping[str, str]]
    config: InferenceConfig | None = None


@dataclass(frozen=True)
class Cancel:
    request_id: str


@dataclass(frozen=True)
class Unload:
    model: str


@dataclass(frozen=True)
class Shutdown:
    pass


BrainstemInput = LoadModel | Infer | Cancel | Unload | Shutdown


@dataclass(frozen=True)
class ErrorInfo:
    """A GeniusError as data: ``type`` is the exception class name under ``rusty_genius``."""

    type: str
    message: str

    @classmethod
    def of(cls, err: BaseException) -> ErrorInfo:
        return cls(type(err).__name__ if isinstance(err, GeniusError) else "GeniusError", str(err))

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message}

    def exception(self) -> GeniusError:
        """The exception to raise again on this side."""
        cls = getattr(core, self.type, GeniusError)
        if not (isinstance(cls, type) and issubclass(cls, GeniusError)):
            cls = GeniusError
        try:
            return cls(self.message)
        except TypeError:  # classes with extra constructor arguments
            return GeniusError(self.message)


@dataclass(frozen=True)
class EventOutput:
    request_id: str
    event: Event


@dataclass(frozen=True)
class ErrorOutput:
    request_id: str | None
    error: ErrorInfo


@dataclass(frozen=True)
class Notice:
    """A lifecycle notice: ``kind`` is ``loaded``, ``reloaded`` or ``unloaded``."""

    kind: str
    model: str
    message: str


BrainstemOutput = EventOutput | ErrorOutput | Notice
