"""core: the shared vocabulary — events, inference config, errors."""

from rusty_genius.core.config import Behavior, InferenceConfig, Sampling
from rusty_genius.core.errors import (
    BusyError,
    ConfigError,
    ContextOverflowError,
    DownloadError,
    EngineClosedError,
    EngineError,
    GeniusError,
    ModelLoadError,
    ModelNotFoundError,
    OfflineError,
    QuantNotFoundError,
    RequestError,
)
from rusty_genius.core.events import Event, EventKind, FinishReason, Timings, TokenStream, Usage

__all__ = [
    "Behavior",
    "BusyError",
    "ConfigError",
    "ContextOverflowError",
    "DownloadError",
    "EngineClosedError",
    "EngineError",
    "Event",
    "EventKind",
    "FinishReason",
    "GeniusError",
    "InferenceConfig",
    "ModelLoadError",
    "ModelNotFoundError",
    "OfflineError",
    "QuantNotFoundError",
    "RequestError",
    "Sampling",
    "Timings",
    "TokenStream",
    "Usage",
]
