"""core: the shared vocabulary — events, inference config, errors."""

from rusty_genius.core.config import Behavior, InferenceConfig, Sampling
from rusty_genius.core.errors import (
    ConfigError,
    EngineClosedError,
    EngineError,
    GeniusError,
    RequestError,
)
from rusty_genius.core.events import Event, EventKind, FinishReason, Timings, TokenStream, Usage

__all__ = [
    "Behavior",
    "ConfigError",
    "EngineClosedError",
    "EngineError",
    "Event",
    "EventKind",
    "FinishReason",
    "GeniusError",
    "InferenceConfig",
    "RequestError",
    "Sampling",
    "Timings",
    "TokenStream",
    "Usage",
]
