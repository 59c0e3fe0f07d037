"""The exception tree: every rusty-genius failure is a :class:`GeniusError`.

The classes are defined in the native module (so Rust raises them directly) and re-exported here::

    GeniusError
    ├── ConfigError        a setting is out of range or of the wrong type
    ├── RequestError       the chat messages are malformed
    │   └── ContextOverflowError   the prompt does not fit the context window
    ├── ModelLoadError     a model file is missing, not GGUF, truncated or corrupted
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

__all__ = [
    "ConfigError",
    "ContextOverflowError",
    "EngineClosedError",
    "EngineError",
    "GeniusError",
    "ModelLoadError",
    "RequestError",
]
