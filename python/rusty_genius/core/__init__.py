"""core: the shared vocabulary — events, inference config, errors."""

from rusty_genius.core.config import Behavior, InferenceConfig, Sampling
from rusty_genius.core.errors import (
    ConfigError,
    ContextOverflowError,
    EngineClosedError,
    EngineError,
    GeniusError,
    ModelLoadError,
    RequestError,
)
from rusty_genius.core.events import Event, EventKind, FinishReason, Timings, TokenStream, Usage

__all__ = [
    "Behavior",
    "ConfigError",
    "ContextOverflowError",
    "EngineClosedError",
    "EngineError",
    "Event",
    "EventKind",
    "FinishReason",
    "GeniusError",
    "InferenceConfig",
    "ModelLoadError",
    "RequestError",
    "Sampling",
    "Timings",
    "TokenStream",
    "Usage",
]
