"""The brainstem's messages: what callers send in, and what comes out.

This is the entrance model management takes (``Genius.load/unload/download/status`` send these; a management API
over HTTP maps onto them as Ollama's ``/api/pull`` and ``/api/ps`` do):

==========================  ==================================================================================
in                          out
==========================  ==================================================================================
``LoadModel(model)``        ``Notice("loaded")``
``Unload(model)``           ``Notice("unloaded")``, or nothing when it was not loaded
``Download(model, quant)``  :class:`~rusty_genius.DownloadProgress` records as bytes arrive, then ``Downloaded``
``Status()``                ``StatusReport``: the registered models and the loaded ones
``Remove(model)``           ``Removed``: unloaded if idle, unregistered, its downloaded files deleted
``Infer(request_id, ...)``  ``EventOutput`` per event; ``Cancel(request_id)`` stops it
``Shutdown()``              nothing; every stream ends and every model unloads
==========================  ==================================================================================

A model is named as :class:`~rusty_genius.Genius` takes names (None: the default model). Errors travel as
:class:`ErrorInfo`, a plain, serialisable record of a :class:`GeniusError` (its class name and message), so a server
can put them on the wire and a client can raise the same class again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rusty_genius import core
from rusty_genius.core.config import InferenceConfig
from rusty_genius.core.errors import GeniusError
from rusty_genius.core.events import Event
from rusty_genius.core.progress import DownloadProgress

if TYPE_CHECKING:  # facecrab pulls in huggingface_hub, which `import rusty_genius` should not pay for
    from rusty_genius.facecrab import ModelSpec


@dataclass(frozen=True)
class LoadModel:
    model: str | None = None


@dataclass(frozen=True)
class Infer:
    request_id: str
    model: str
    messages: Sequence[Mapping[str, str]]
    config: InferenceConfig = field(default_factory=InferenceConfig)
    """The complete config (default: the schema's defaults); the engine never fills in its own."""


@dataclass(frozen=True)
class Cancel:
    request_id: str


@dataclass(frozen=True)
class Unload:
    model: str | None = None


@dataclass(frozen=True)
class Shutdown:
    pass


@dataclass(frozen=True)
class Download:
    """Fetch (or find) a model's files and register it; ``quant`` as ``--quant`` (a name's own ``:QUANT`` also
    works). Never loads it."""

    model: str | None = None
    quant: str | None = None


@dataclass(frozen=True)
class Remove:
    """Unload (when idle; a busy model is a :class:`~rusty_genius.BusyError`) and unregister a registered model;
    with ``delete_files``, delete the files rusty-genius downloaded for it (an imported file is always kept)."""

    model: str
    delete_files: bool = True


@dataclass(frozen=True)
class Status:
    """What is registered and what is loaded; never loads anything."""


BrainstemInput = LoadModel | Infer | Cancel | Unload | Shutdown | Download | Status | Remove


@dataclass(frozen=True)
class ErrorInfo:
    """A GeniusError as data: ``type`` is the exception class name under ``rusty_genius``."""

    type: str
    message: str
    raised: BaseException | None = field(default=None, compare=False, repr=False)
    """The exception itself, on the side that caught it (not on the wire)."""

    @classmethod
    def of(cls, err: BaseException) -> ErrorInfo:
        return cls(type(err).__name__ if isinstance(err, GeniusError) else "GeniusError", str(err), err)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message}

    def exception(self) -> GeniusError:
        """The exception to raise again on this side (the very one, with its attributes, where it was caught)."""
        if isinstance(self.raised, GeniusError):
            return self.raised
        cls = getattr(core, self.type, GeniusError)
        if not (isinstance(cls, type) and issubclass(cls, GeniusError)):
            cls = GeniusError
        try:
            return cls(self.message)
        except TypeError:  # classes with extra constructor arguments
            return GeniusError(self.message)


@dataclass(frozen=True)
class EventOutput:
    request_id: str
    event: Event


@dataclass(frozen=True)
class ErrorOutput:
    request_id: str | None
    error: ErrorInfo


@dataclass(frozen=True)
class Notice:
    """A lifecycle notice: ``kind`` is ``loaded``, ``reloaded`` or ``unloaded``."""

    kind: str
    model: str
    message: str
    seconds: float | None = None
    """How long the load took, on ``loaded`` and ``reloaded`` notices of the brainstem (None when unknown)."""


@dataclass(frozen=True)
class Downloaded:
    """A :class:`Download` is done: ``model`` (its registry name) is registered, its files are ``spec.paths``."""

    model: str
    spec: ModelSpec


@dataclass(frozen=True)
class Removed:
    """A :class:`Remove` is done: ``spec`` is no longer registered; its files were ``deleted`` or ``kept``."""

    model: str
    spec: ModelSpec
    deleted: tuple[str, ...]
    kept: tuple[str, ...]


@dataclass(frozen=True)
class StatusReport:
    """The answer to :class:`Status`: the registered models (as ``ogenius list`` shows them) and the brainstem's
    names of the models loaded now (registered or not: ``pinky``, a ``.gguf`` path)."""

    models: tuple[ModelSpec, ...]
    loaded: tuple[str, ...]


BrainstemOutput = EventOutput | ErrorOutput | Notice | DownloadProgress | Downloaded | StatusReport | Removed
