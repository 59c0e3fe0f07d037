"""Inference configuration: :class:`Behavior` (what you see) and :class:`Sampling` (how tokens are chosen).

Defaults follow llama.cpp's. Every value is checked when the object is made, by the same Rust code the engine
uses; a bad value raises :class:`~rusty_genius.ConfigError` naming the field and the accepted range.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from rusty_genius import _native


@dataclass(frozen=True, kw_only=True)
class Behavior:
    """What the caller sees of a generation."""

    show_thinking: bool = True
    """Deliver ``thought_*`` events. When False, reasoning is still parsed out of the answer, then dropped."""
    max_tokens: int | None = None
    """Most tokens to generate, reasoning included. None: until the model stops or the context is full."""
    stop: Sequence[str] = ()
    """Strings that end the generation; the matched text is not delivered (at most 16, each up to 256 bytes).
    A single string is accepted; either way it is stored as a tuple."""
    context_size: int | None = None
    """Most tokens the conversation may fill, up to the engine's context window. None: the whole window."""

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        elif isinstance(self.stop, Sequence):
            object.__setattr__(self, "stop", tuple(self.stop))
        _native.validate_behavior(self)


@dataclass(frozen=True, kw_only=True)
class Sampling:
    """How the next token is chosen."""

    temperature: float = 0.8
    """0 is greedy (deterministic)."""
    top_k: int = 40
    """0 disables it."""
    top_p: float = 0.95
    """1.0 disables it."""
    min_p: float = 0.05
    """0.0 disables it."""
    repeat_penalty: float = 1.0
    """1.0 disables it."""
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    """Makes sampled output reproducible. None picks a random seed."""
    grammar: str | None = None
    """A GBNF grammar (llama.cpp's format, with a ``root`` rule) the output must follow."""

    def __post_init__(self) -> None:
        _native.validate_sampling(self)


@dataclass(frozen=True, kw_only=True)
class InferenceConfig:
    """Behaviour and sampling for one request.

    ``InferenceConfig.of(max_tokens=64, temperature=0)`` builds one from flat keyword arguments.
    """

    behavior: Behavior = field(default_factory=Behavior)
    sampling: Sampling = field(default_factory=Sampling)

    @classmethod
    def of(cls, **settings: object) -> InferenceConfig:
        """Builds a config from flat keywords, each a field of :class:`Behavior` or :class:`Sampling`."""
        return cls().updated(**settings)

    def updated(self, **settings: object) -> InferenceConfig:
        """This config with flat keyword ``settings`` (fields of :class:`Behavior` or :class:`Sampling`) applied."""
        unknown = sorted(settings.keys() - _BEHAVIOR - _SAMPLING)
        if unknown:
            raise _native.ConfigError(
                f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(_BEHAVIOR | _SAMPLING))}"
            )
        if not settings:
            return self
        behavior = {k: v for k, v in settings.items() if k in _BEHAVIOR}
        sampling = {k: v for k, v in settings.items() if k in _SAMPLING}
        return InferenceConfig(
            behavior=dataclasses.replace(self.behavior, **behavior) if behavior else self.behavior,  # type: ignore[arg-type]
            sampling=dataclasses.replace(self.sampling, **sampling) if sampling else self.sampling,  # type: ignore[arg-type]
        )


_BEHAVIOR = frozenset(f.name for f in dataclasses.fields(Behavior))
_SAMPLING = frozenset(f.name for f in dataclasses.fields(Sampling))
