"""brainstem: orchestration and model lifecycle (see :mod:`.orchestrator`), with its message protocol
(:mod:`.protocol`, served by :class:`Dispatcher`: the entrance model management takes)."""

from rusty_genius.brainstem.dispatch import Dispatcher
from rusty_genius.brainstem.lifecycle import CortexStrategy, HibernateAfter, Immediate, KeepAlive, strategy_of
from rusty_genius.brainstem.orchestrator import Brainstem
from rusty_genius.brainstem.protocol import (
    BrainstemInput,
    BrainstemOutput,
    Cancel,
    Download,
    Downloaded,
    ErrorInfo,
    ErrorOutput,
    EventOutput,
    Infer,
    LoadModel,
    Notice,
    Remove,
    Removed,
    Shutdown,
    Status,
    StatusReport,
    Unload,
)

__all__ = [
    "Brainstem",
    "BrainstemInput",
    "BrainstemOutput",
    "Cancel",
    "CortexStrategy",
    "Dispatcher",
    "Download",
    "Downloaded",
    "ErrorInfo",
    "ErrorOutput",
    "EventOutput",
    "HibernateAfter",
    "Immediate",
    "Infer",
    "KeepAlive",
    "LoadModel",
    "Notice",
    "Remove",
    "Removed",
    "Shutdown",
    "Status",
    "StatusReport",
    "Unload",
    "strategy_of",
]
