"""core: the shared vocabulary — events, inference config (tools and reasoning included), errors, download
progress."""

from rusty_genius.core.config import Behavior, InferenceConfig, Reasoning, Sampling
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
    OutOfMemoryError,
    QuantNotFoundError,
    RequestError,
    UnknownModelError,
)
from rusty_genius.core.events import Event, EventKind, FinishReason, Timings, TokenStream, Usage
from rusty_genius.core.output import Output, Tool, ToolCall
from rusty_genius.core.progress import DownloadProgress

__all__ = [
    "Behavior",
    "BusyError",
    "ConfigError",
    "ContextOverflowError",
    "DownloadError",
    "DownloadProgress",
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
    "OutOfMemoryError",
    "Output",
    "QuantNotFoundError",
    "Reasoning",
    "RequestError",
    "Sampling",
    "Timings",
    "TokenStream",
    "Tool",
    "ToolCall",
    "UnknownModelError",
    "Usage",
]
