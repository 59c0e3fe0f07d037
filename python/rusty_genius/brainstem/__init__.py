"""brainstem: orchestration and model lifecycle (see :mod:`.orchestrator`), with its message protocol."""

from rusty_genius.brainstem.dispatch import Dispatcher
from rusty_genius.brainstem.lifecycle import CortexStrategy, HibernateAfter, Immediate, KeepAlive, strategy_of
from rusty_genius.brainstem.orchestrator import Brainstem, Hold
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
    "Hold",
    "Immediate",
    "Infer",
    "KeepAlive",
    "LoadModel",
    "Notice",
    "Shutdown",
    "Unload",
    "strategy_of",
]
