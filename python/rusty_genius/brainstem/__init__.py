"""brainstem: orchestration and model lifecycle (see :mod:`.orchestrator`), with its message protocol."""

from rusty_genius.brainstem.dispatch import Dispatcher
from rusty_genius.brainstem.lifecycle import CortexStrategy, HibernateAfter, Immediate, KeepAlive
from rusty_genius.brainstem.orchestrator import Brainstem
from rusty_genius.brainstem.protocol import (
    BrainstemInput,
    BrainstemOutput,
    Cancel,
    ErrorInfo,
    ErrorOutput,
    EventOutput,
    Infer,
    LoadModel,
    Notice,
    Shutdown,
    Unload,
)

__all__ = [
    "Brainstem",
    "BrainstemInput",
    "BrainstemOutput",
    "Cancel",
    "CortexStrategy",
    "Dispatcher",
    "ErrorInfo",
    "ErrorOutput",
    "EventOutput",
    "HibernateAfter",
    "Immediate",
    "Infer",
    "KeepAlive",
    "LoadModel",
    "Notice",
    "Shutdown",
    "Unload",
]
