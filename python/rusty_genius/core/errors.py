"""The exception tree: every rusty-genius failure is a :class:`GeniusError`.

The classes are defined in the native module (so Rust raises them directly) and re-exported here::

    GeniusError
    ├── BusyError          a model's request queue is full
    ├── ConfigError        a setting is out of range or of the wrong type
    ├── RequestError       the chat messages are malformed
    │   └── ContextOverflowError   the prompt does not fit the context window
    ├── ModelLoadError     a model file is missing, not GGUF, truncated or corrupted
    ├── ModelNotFoundError the hub has no such repo, or no GGUF for it
    │   └── QuantNotFoundError   the quant asked for does not exist (the message lists those that do)
    ├── DownloadError      a download failed or did not verify (nothing was registered)
    │   └── OfflineError   HF_HUB_OFFLINE is set and the model is not cached
    └── EngineError        the engine failed while generating
        └── EngineClosedError   the engine was closed
"""

from rusty_genius._native import (
    ConfigError,
    ContextOverflowError,
    EngineClosedError,
    EngineError,
    GeniusError,
    ModelLoadError,
    RequestError,
)



class BusyError(GeniusError):
    """A model's request queue is full; try again later (or raise ``max_queue``)."""


class ModelNotFoundError(GeniusError):
    """The hub has no repository by that name, or no GGUF file for it."""


class QuantNotFoundError(ModelNotFoundError):
    """The quantization asked for is not available; the message lists the ones that are."""

    def __init__(self, message: str, available: list[str]) -> None:
        super().__init__(message)
        self.available = available


class DownloadError(GeniusError):
    """A download failed, or its file did not match the hub's sha256; nothing was registered."""


class OfflineError(DownloadError):
    """``HF_HUB_OFFLINE`` is set and the model is not in the local cache."""


__all__ = [
    "BusyError",
    "ConfigError",
    "ContextOverflowError",
    "DownloadError",
    "EngineClosedError",
    "EngineError",
    "GeniusError",
    "ModelLoadError",
    "ModelNotFoundError",
    "OfflineError",
    "QuantNotFoundError",
    "RequestError",
]
