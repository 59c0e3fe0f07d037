"""The exception tree: every rusty-genius failure is a :class:`GeniusError`.

The engine's classes are defined in the native module (so Rust raises them directly) and re-exported here;
:class:`ConfigError` is defined here because it carries data (``field``, the setting at fault), and Rust raises this
class too (it imports it when it first raises one)::

    GeniusError
    ├── BusyError          a model's request queue is full
    ├── OutOfMemoryError   a model does not fit the memory budget, even with every idle model unloaded
    ├── ConfigError        a setting is out of range or of the wrong type (``field``: which setting)
    ├── RequestError       the chat messages are malformed
    │   └── ContextOverflowError   the prompt does not fit the context window (``prompt_tokens``, ``context_size``)
    ├── ModelLoadError     a model file is missing, not GGUF, truncated or corrupted
    ├── ModelNotFoundError the hub has no such repo, or no GGUF for it
    │   ├── UnknownModelError    a model name that names nothing (also a ConfigError; close matches as data)
    │   └── QuantNotFoundError   the quant asked for does not exist (the message lists those that do)
    ├── DownloadError      a download failed or did not verify (nothing was registered)
    │   └── OfflineError   HF_HUB_OFFLINE is set and the model is not cached
    └── EngineError        the engine failed while generating
        └── EngineClosedError   the engine was closed
"""

import json
from collections.abc import Sequence

from rusty_genius._native import (
    ContextOverflowError,
    EngineClosedError,
    EngineError,
    GeniusError,
    ModelLoadError,
    RequestError,
)


class ConfigError(GeniusError):
    """A setting is invalid: out of range, of the wrong type, or unknown.

    ``field`` names the setting at fault (``"top_p"``, ``"max_tokens"``, a Pinky option such as ``"delay"``) where
    the error is about one; None otherwise. ``path`` is the exact place inside it, as a request writes it
    (``tools[1].function.name``, ``response_format.json_schema.schema``), where known; None otherwise. Read them
    rather than the message, whose wording may change."""

    field: str | None
    path: str | None

    def __init__(self, message: str, field: str | None = None, *, path: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.path = path


# -- how messages name a caller's values ---------------------------------------------------------------------------
# A setting or tool may come from Python code or from a server's JSON request, so messages speak of values in JSON's
# words (an object, a string, null), which read right to both, never in Python's (a dict, a str, None).

_KINDS = {dict: "an object", list: "a list", tuple: "a list", str: "a string", bool: "a boolean", int: "an integer",
          float: "a number", type(None): "null"}  # fmt: skip


def kind_of(value: object) -> str:
    """What ``value`` is, with its article, as a message says it: ``"an object"``, ``"a string"``, ``"null"``; a
    class name for anything that is not a JSON type (``"a Path"``)."""
    return _KINDS.get(type(value), f"a {type(value).__name__}")


def shown(value: object, limit: int = 40) -> str:
    """``value`` quoted for a message: a string as the messages quote names (``'auto'``), anything else as JSON
    (``null``, ``true``, ``{"a": 1}``) where it is JSON; cut to ``limit`` characters so a message never echoes a
    whole payload."""
    try:
        text = repr(value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):  # not JSON data (a Python object, a cycle)
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class BusyError(GeniusError):
    """A model's request queue is full; try again later (or raise ``max_queue``)."""


class OutOfMemoryError(GeniusError):
    """A model cannot be loaded: the memory it needs (an estimate from its GGUF: weights, KV cache, compute buffers)
    is more than the memory budget, even with every idle model unloaded. ``needed`` and ``budget`` are bytes."""

    def __init__(self, message: str, *, needed: int = 0, budget: int = 0) -> None:
        super().__init__(message)
        self.needed = needed
        self.budget = budget


class ModelNotFoundError(GeniusError):
    """The hub has no repository by that name, or no GGUF file for it."""


class QuantNotFoundError(ModelNotFoundError):
    """The quantization asked for is not available; the message lists the ones that are."""

    def __init__(self, message: str, available: list[str]) -> None:
        super().__init__(message)
        self.available = available


class UnknownModelError(ModelNotFoundError, ConfigError):
    """A model name that names nothing: not ``pinky``, a ``.gguf`` path, a registered name, an alias or a Hugging
    Face repo id. ``name`` is the name as given; ``matches`` the known names that look like it, best first.

    It is also a :class:`ConfigError` (the model is a setting, and it is wrong), so code that catches a bad setting
    catches a bad name too."""

    def __init__(self, message: str, *, name: str, matches: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.name = name
        self.matches = list(matches)


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
    "OutOfMemoryError",
    "QuantNotFoundError",
    "RequestError",
    "UnknownModelError",
]
