"""Inference configuration: :class:`Behavior` (what you see), :class:`Sampling` (how tokens are chosen),
:class:`Reasoning` (how much the model thinks) and :class:`~rusty_genius.core.output.Output` (tools and the answer's
format, set per request; see :mod:`rusty_genius.core.output`).

The dataclasses are the one config schema. Each field carries its description in ``metadata`` (a one-line help, the
accepted range, what None means); :data:`SETTINGS` reads it into a :class:`Setting` per field, and the CLI flags,
the ``/set`` keys and the server's request fields are derived from those, never listed again.

Defaults follow llama.cpp's. Every value is checked when the object is made, by the same Rust code the engine
uses; a bad value raises :class:`~rusty_genius.ConfigError` naming the field and the accepted range. The ranges in
the metadata describe that check (a test holds them equal at every bound); they let a front end refuse a value
early (a usage error naming the flag), they are not a second check.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rusty_genius import _native
from rusty_genius.core.errors import ConfigError
from rusty_genius.core.output import Output, Tool

U32_MAX = 2**32 - 1
"""The engine holds every integer setting as an unsigned 32-bit number: the most any of them accepts."""


def _num(value: float) -> str:
    """A number for a message: ``0.8``, ``42``; an integer too long to read whole as its number of digits."""
    if isinstance(value, float):
        return f"{value:g}"
    digits = len(str(abs(value))) if abs(value).bit_length() < 14_000 else None  # str() refuses past ~4300 digits
    return str(value) if digits is not None and digits <= 40 else f"an integer of {digits or 'over 4300'} digits"


@dataclass(frozen=True)
class Range:
    """The numbers a setting accepts: ``low``..``high`` (None: unbounded on that side); an open end excludes the
    bound itself. ``str(Range(0, 1, low_open=True))`` is ``"(0, 1]"``."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: object) -> bool:
        # An int is compared exactly (math.isnan would convert it to a float, which fails past 1e308).
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (isinstance(value, float) and math.isnan(value))
        ):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def __str__(self) -> str:
        low = "-inf" if self.low is None else _num(self.low)
        high = "inf" if self.high is None else _num(self.high)
        left = "(" if self.low_open or self.low is None else "["
        right = ")" if self.high_open or self.high is None else "]"
        return f"{left}{low}, {high}{right}"

    def describe(self) -> str:
        """In words: ``"between 0 and 100"``, ``"1 or more"``, ``"in (0, 1]"``."""
        low, high = self.low, self.high
        if low is not None and high is not None:
            return f"in {self}" if self.low_open or self.high_open else f"between {_num(low)} and {_num(high)}"
        if low is not None:
            return f"more than {_num(low)}" if self.low_open else f"{_num(low)} or more"
        if high is not None:
            return f"less than {_num(high)}" if self.high_open else f"at most {_num(high)}"
        return "any number"


@dataclass(frozen=True)
class _Meta:
    """What a field's ``metadata["setting"]`` holds (see :func:`_described`)."""

    help: str
    range: Range | None = None
    none_means: str = ""
    metavar: str = ""
    tunable: bool = False
    choices: tuple[str, ...] = ()


def _described(
    default: Any,
    help: str,
    *,
    range: Range | None = None,
    none_means: str = "",
    metavar: str = "",
    tunable: bool = False,
    choices: tuple[str, ...] = (),
) -> Any:
    """A dataclass field with its description: ``help`` (one line, no default), the accepted ``range``, what None
    means (``none_means``, for a field that may be None), the ``metavar`` a flag shows, whether it is ``tunable`` (a
    number people tune per request: a flag of ``ogenius chat``/``serve``, a ``/set`` key and a field of a server
    request), and the ``choices`` a text setting accepts (the engine's check, described)."""
    meta = _Meta(help, range, none_means, metavar, tunable, choices)
    return field(default=default, metadata={"setting": meta})


@dataclass(frozen=True, kw_only=True)
class Behavior:
    """What the caller sees of a generation."""

    show_thinking: bool = _described(True, "deliver the model's reasoning (thought events)")
    """Deliver ``thought_*`` events. When False, reasoning is still parsed out of the answer, then dropped."""
    max_tokens: int | None = _described(
        None, "most tokens per answer, reasoning included", range=Range(1), none_means="no limit", metavar="N",
        tunable=True,
    )  # fmt: skip
    """Most tokens to generate, reasoning included. None: until the model stops or the context is full."""
    stop: Sequence[str] = _described((), "strings that end the answer (not included in it)")
    """Strings that end the generation; the matched text is not delivered (at most 16, each up to 256 bytes).
    A single string is accepted; either way it is stored as a tuple."""
    context_size: int | None = _described(
        None, "most tokens the conversation may fill", range=Range(16, 1 << 20), none_means="the whole window",
        metavar="TOKENS",
    )  # fmt: skip
    """Most tokens the conversation may fill, up to the engine's context window. None: the whole window."""
    logprobs: int | None = _described(
        None, "report each answer token's log-probability and its K likeliest alternatives", range=Range(0, 20),
        none_means="off", metavar="K",
    )  # fmt: skip
    """Report each answer token's log-probability and its K likeliest alternatives (0 to 20, as OpenAI's
    ``top_logprobs``): ``token_logprob`` events, each before the text its token completes. The model's raw
    distribution (before sampling's biases, penalties, temperature and constraints); reasoning tokens are not
    reported, nor the tokens of a stop string that matched. Pinky reports each piece as certain (logprob 0). None:
    off."""

    context_overflow: str = _described(
        "error", "when the conversation does not fit the context: error, drop_oldest_turns (system messages and "
        "the last turn stay; usage counts the dropped messages), or shift (llama.cpp's context shift: the middle "
        "goes, generation runs past the context; usage counts the shifted tokens)",
        choices=("error", "drop_oldest_turns", "shift"), metavar="POLICY",
    )  # fmt: skip
    """What a request whose prompt does not fit the context gets: ``"error"`` (:class:`ContextOverflowError`; an
    answer that fills the context ends with ``finish_reason="length"``), ``"drop_oldest_turns"``: the oldest turns (a
    user message and what answered it) are left out until it fits; system messages and the last turn always stay, and
    ``usage.dropped_messages`` counts what went (chat only: raw completions get the error); or ``"shift"``, llama.cpp's
    context shift, for chat and raw completions: the tokens of the leading system messages (else the BOS) stay, an
    overlong prompt loses blocks from its middle, and an answer that fills the context drops the older half of what
    follows them and goes on, so it can run past the context (without ``max_tokens`` it stops after one context's
    worth of tokens); ``usage.shifted_tokens`` counts the tokens taken out. Models whose cache cannot shift
    (recurrent, hybrid, sliding-window) behave as with ``"error"``, and the error says so. Pinky has no context window:
    every policy is the same there."""

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        elif isinstance(self.stop, Sequence):
            object.__setattr__(self, "stop", tuple(self.stop))
        _native.validate_behavior(self)


class LogitBias(Mapping[int, float]):
    """What :attr:`Sampling.logit_bias` holds: token id → bias, immutable and hashable (like the tuple ``stop``
    becomes), in id order. ``LogitBias({42: -100})`` equals ``{42: -100.0}``."""

    __slots__ = ("_biases",)

    def __init__(self, biases: Mapping[int, float] | Iterable[tuple[int, float]] = ()) -> None:
        items = biases.items() if isinstance(biases, Mapping) else biases
        self._biases: dict[int, float] = dict(sorted(items))

    def __getitem__(self, token: int) -> float:
        return self._biases[token]

    def __iter__(self) -> Iterator[int]:
        return iter(self._biases)

    def __len__(self) -> int:
        return len(self._biases)

    def __hash__(self) -> int:
        return hash(tuple(self._biases.items()))

    def __eq__(self, other: object) -> bool:
        return dict(self._biases) == dict(other) if isinstance(other, Mapping) else NotImplemented

    def __repr__(self) -> str:
        return f"LogitBias({self._biases!r})"

    def __reduce__(self) -> tuple[type[LogitBias], tuple[tuple[tuple[int, float], ...]]]:
        return LogitBias, (tuple(self._biases.items()),)


_TOKEN_ID = re.compile(r"-?[0-9]+")


def _logit_bias(value: object) -> LogitBias:
    """``value`` (a mapping of token id to bias, or pairs) as a :class:`LogitBias`; ids may be integers or their
    decimal strings (OpenAI's JSON keys). The engine checks the ranges."""
    if isinstance(value, LogitBias):
        return value
    if isinstance(value, Mapping):
        items: Iterable[Any] = value.items()
    elif isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
        items = value
    else:
        raise ConfigError(
            f"invalid logit_bias: a {type(value).__name__} is not accepted: must be a mapping of token id to bias",
            field="logit_bias",
        )
    out: dict[int, float] = {}
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise ConfigError("invalid logit_bias: must be a mapping of token id to bias", field="logit_bias")
        token, bias = item
        if isinstance(token, str) and _TOKEN_ID.fullmatch(token.strip()):
            token = int(token)
        if isinstance(token, bool) or not isinstance(token, int):
            raise ConfigError(f"invalid logit_bias: token id {token!r} is not an integer", field="logit_bias")
        if isinstance(bias, bool) or not isinstance(bias, (int, float)):
            raise ConfigError(f"invalid logit_bias: the bias of token {token} must be a number", field="logit_bias")
        out[token] = float(bias)
    return LogitBias(out)


@dataclass(frozen=True, kw_only=True)
class Sampling:
    """How the next token is chosen."""

    temperature: float = _described(0.8, "randomness, 0 for greedy", range=Range(0, 100), metavar="T", tunable=True)
    """0 is greedy (deterministic)."""
    top_k: int = _described(40, "keep the K likeliest tokens, 0: off", range=Range(0), metavar="K", tunable=True)
    """0 disables it."""
    top_p: float = _described(
        0.95, "nucleus sampling, 1: off", range=Range(0, 1, low_open=True), metavar="P", tunable=True
    )
    """1.0 disables it."""
    min_p: float = _described(
        0.05, "drop tokens less likely than P times the likeliest, 0: off", range=Range(0, 1), metavar="P",
        tunable=True,
    )  # fmt: skip
    """0.0 disables it."""
    repeat_penalty: float = _described(
        1.0, "penalize repeated tokens, 1: off", range=Range(0, 10, low_open=True), metavar="X", tunable=True
    )
    """1.0 disables it."""
    presence_penalty: float = _described(
        0.0, "penalize tokens already used, 0: off", range=Range(-2, 2), metavar="X", tunable=True
    )
    frequency_penalty: float = _described(
        0.0, "penalize tokens by how often they were used, 0: off", range=Range(-2, 2), metavar="X", tunable=True
    )
    seed: int | None = _described(
        None, "makes sampling reproducible", range=Range(0, U32_MAX), none_means="random", tunable=True
    )
    """Makes sampled output reproducible. None picks a random seed."""
    grammar: str | None = _described(None, "a GBNF grammar the output must follow", none_means="no grammar")
    """A GBNF grammar (llama.cpp's format, with a ``root`` rule) the output must follow."""
    logit_bias: Mapping[int, float] = _described(LogitBias(), "biases added to tokens' logits, by token id")
    """Added to a token's logit before sampling, by token id (as OpenAI's ``logit_bias``): each bias in [-100, 100]
    (-100 bans the token in practice, 100 all but forces it), at most 1024 tokens; an id outside the model's
    vocabulary fails the request, naming the id. Ids may be given as integers or decimal strings; stored as a
    :class:`LogitBias`. Pinky, which has no vocabulary, ignores it."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "logit_bias", _logit_bias(self.logit_bias))
        _native.validate_sampling(self)


@dataclass(frozen=True, kw_only=True)
class Reasoning:
    """How much the model thinks before it answers: one knob that every API maps onto.

    ``enable_thinking`` and ``reasoning_effort`` reach the model through its chat template (as the template's
    ``enable_thinking`` and ``reasoning_effort`` variables; a template that reads neither ignores them).
    ``thinking_budget`` is enforced while generating: once a thought has taken that many tokens it is closed and
    the answer follows. Whether the reasoning is *delivered* is :attr:`Behavior.show_thinking`.
    """

    enable_thinking: bool | None = _described(
        None, "let the model think before it answers (through its chat template)", none_means="as the template says",
        metavar="BOOL",
    )  # fmt: skip
    """True or False: ask the chat template to turn thinking on or off. None: the template's default."""
    reasoning_effort: str | None = _described(
        None, "how hard the model thinks (through its chat template)", none_means="as the template says",
        metavar="EFFORT", choices=("low", "medium", "high"),
    )  # fmt: skip
    """``"low"``, ``"medium"`` or ``"high"``, for templates that take it. None: the template's default."""
    thinking_budget: int | None = _described(
        None, "most tokens a thought may take, then the answer follows", range=Range(0), none_means="no limit",
        metavar="TOKENS", tunable=True,
    )  # fmt: skip
    """Most tokens one thought may take; then the think block is closed and generation continues into the answer
    (0: the answer starts at once). It counts toward ``max_tokens``. None: no limit."""

    def __post_init__(self) -> None:
        _native.validate_reasoning(self)


_NONE_WORDS = ("none", "default", "off")
_TRUE_WORDS = ("true", "yes", "on", "1")
_FALSE_WORDS = ("false", "no", "off", "0")


@dataclass(frozen=True)
class Setting:
    """One field of :class:`Behavior`, :class:`Sampling` or :class:`Reasoning`, as front ends see it (made from the
    field's type and metadata; see :data:`SETTINGS`)."""

    name: str
    owner: type[Behavior] | type[Sampling] | type[Reasoning]
    kind: type
    """``int``, ``float``, ``bool``, ``str``, ``tuple`` (of strings, for ``stop``) or ``dict`` (token id → bias, for
    ``logit_bias``)."""
    default: Any
    help: str
    """One line, without the default (see :attr:`default_text`)."""
    range: Range | None = None
    """The numbers the engine accepts (None: not a number). Integers are also at most :data:`U32_MAX`."""
    nullable: bool = False
    """Whether None is a value (its meaning is :attr:`none_means`)."""
    none_means: str = ""
    metavar: str = ""
    tunable: bool = False
    """A number people tune per request: a flag of ``ogenius chat``/``serve``, a ``/set`` key and a field of a
    server request."""
    choices: tuple[str, ...] = ()
    """The values a text setting accepts (empty: any text)."""

    @property
    def flag(self) -> str:
        """The command-line flag: ``--top-p`` for ``top_p``."""
        return "--" + self.name.replace("_", "-")

    @property
    def numeric(self) -> bool:
        return self.kind in (int, float)

    @property
    def default_text(self) -> str:
        """The default as a person reads it: ``0.8``, ``no limit``."""
        if self.default is None and self.none_means:
            return self.none_means
        return self.default if isinstance(self.default, str) else _num(self.default)

    def accepted(self) -> str:
        """What the setting accepts, in words: ``"in (0, 1]"``, ``"1 or more, or none (no limit)"``."""
        if self.range is not None:
            text = self.range.describe()
        elif self.choices:
            quoted = [repr(c) for c in self.choices]
            text = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
        else:
            text = {
                int: "an integer",
                float: "a number",
                bool: "true or false",
                tuple: "strings",
                dict: "a mapping of token id to bias",
            }.get(self.kind, "text")
        return f"{text}, or none ({self.none_means})" if self.nullable else text

    def check(self, value: Any) -> Any:
        """``value`` when this setting accepts it (an int for a float setting becomes a float); else raises
        :class:`ConfigError` (``field``: this setting's name). The engine checks again when the config is made."""
        if value is None:
            if self.nullable:
                return None
            raise ConfigError(f"invalid {self.name} = None: must be {self.accepted()}", field=self.name)
        if self.kind is bool:
            if isinstance(value, bool):
                return value
        elif self.numeric:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                finite = isinstance(value, int) or math.isfinite(value)  # an int is; math.isfinite(10**400) raises
                if self.kind is int and not (isinstance(value, int) or (finite and value.is_integer())):
                    raise ConfigError(f"invalid {self.name} = {value}: must be an integer", field=self.name)
                if self._in_range(value):
                    return self.kind(value)
                raise ConfigError(f"invalid {self.name} = {_num(value)}: must be {self.accepted()}", field=self.name)
        elif self.kind is tuple:
            if isinstance(value, str):
                return (value,)
            if isinstance(value, Sequence) and all(isinstance(s, str) for s in value):
                return tuple(value)
        elif self.kind is dict:
            return _logit_bias(value)
        elif isinstance(value, self.kind):
            if not self.choices or value in self.choices:
                return value
            raise ConfigError(f"invalid {self.name} = {value!r}: must be {self.accepted()}", field=self.name)
        raise ConfigError(
            f"invalid {self.name}: a {type(value).__name__} is not accepted: must be {self.accepted()}",
            field=self.name,
        )

    def _in_range(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.kind is int and not 0 <= value <= U32_MAX:
            return False
        return self.range is None or value in self.range

    def parse(self, text: str) -> Any:
        """The value ``text`` spells (``"none"``, ``"default"`` or ``"off"`` is None where None is a value),
        within the range; raises :class:`ConfigError` (``field``: this setting's name) naming what is
        wrong, e.g. ``"'hot' is not a number"``, ``"0 is out of range: must be in (0, 1]"``."""
        text = text.strip()
        # "off" is False for a setting that may be true, false or None (not "the default").
        if self.nullable and text.lower() in _NONE_WORDS and not (self.kind is bool and text.lower() in _FALSE_WORDS):
            return None
        value: Any
        if self.kind is int:
            try:
                value = int(text)
            except ValueError:
                raise ConfigError(f"{text!r} is not an integer", field=self.name) from None
        elif self.kind is float:
            try:
                value = float(text)
            except ValueError:
                raise ConfigError(f"{text!r} is not a number", field=self.name) from None
            if not math.isfinite(value):
                raise ConfigError(f"{text!r} is not a finite number", field=self.name)
        elif self.kind is bool:
            if text.lower() not in _TRUE_WORDS + _FALSE_WORDS:
                raise ConfigError(f"{text!r} is not true or false", field=self.name)
            value = text.lower() in _TRUE_WORDS
        elif self.kind is tuple:
            value = (text,)
        elif self.kind is dict:
            try:
                value = json.loads(text)
            except ValueError:
                value = None
            if not isinstance(value, dict):
                raise ConfigError(f"{text!r} is not a JSON object of token id to bias", field=self.name)
            value = _logit_bias(value)
        else:
            value = text
        if self.numeric and not self._in_range(value):
            raise ConfigError(f"{text} is out of range: must be {self.accepted()}", field=self.name)
        if self.choices and value not in self.choices:
            raise ConfigError(f"{text!r} is not accepted: must be {self.accepted()}", field=self.name)
        return value

    def value_in(self, config: InferenceConfig) -> Any:
        """This setting's value in ``config``."""
        return getattr(getattr(config, _PART[self.owner]), self.name)


_PART: Mapping[type, str] = {Behavior: "behavior", Sampling: "sampling", Reasoning: "reasoning"}
"""Each settings owner's attribute in :class:`InferenceConfig`."""


def _settings_of(owner: type[Behavior] | type[Sampling] | type[Reasoning]) -> dict[str, Setting]:
    hints = typing.get_type_hints(owner)
    out: dict[str, Setting] = {}
    for f in dataclasses.fields(owner):
        hint = hints[f.name]
        args = typing.get_args(hint)
        nullable = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
        if nullable:
            (hint,) = (a for a in args if a is not type(None))
        origin = typing.get_origin(hint)
        kind = tuple if origin is Sequence else dict if origin is Mapping else hint
        meta: _Meta = f.metadata["setting"]
        out[f.name] = Setting(
            name=f.name,
            owner=owner,
            kind=kind,
            default=f.default,
            help=meta.help,
            range=meta.range,
            nullable=nullable,
            none_means=meta.none_means,
            metavar=meta.metavar or f.name.upper(),
            tunable=meta.tunable,
            choices=meta.choices,
        )
    return out


SETTINGS: Mapping[str, Setting] = types.MappingProxyType(
    {**_settings_of(Behavior), **_settings_of(Sampling), **_settings_of(Reasoning)}
)
"""Every setting of :class:`InferenceConfig` by name (the fields of :class:`Behavior`, :class:`Sampling`, then
:class:`Reasoning`)."""

_TUNING_ORDER = (Sampling, Behavior, Reasoning)
TUNABLE: tuple[Setting, ...] = tuple(
    sorted((s for s in SETTINGS.values() if s.tunable), key=lambda s: _TUNING_ORDER.index(s.owner))
)
"""The numbers people tune per request (see :attr:`Setting.tunable`): the sampling ones, then ``max_tokens``, then
``thinking_budget``."""

CONVERSATION: tuple[Setting, ...] = (
    *TUNABLE,
    SETTINGS["enable_thinking"],
    SETTINGS["reasoning_effort"],
    SETTINGS["context_overflow"],
)
"""What a person sets for a conversation: the tunable numbers and the reasoning switches. These are the flags of
``ogenius chat``/``serve`` and the ``/set`` keys. (The server reads the reasoning switches under their API names:
OpenAI's ``reasoning_effort``, ``chat_template_kwargs.enable_thinking``.)"""


@dataclass(frozen=True, kw_only=True)
class InferenceConfig:
    """Everything one request asks of the engine: behaviour, sampling, reasoning and the answer's shape.

    ``InferenceConfig()`` is the complete default config; ``InferenceConfig.of(max_tokens=64, temperature=0)``
    builds one from flat keyword arguments (the settings: fields of :class:`Behavior`, :class:`Sampling` and
    :class:`Reasoning`). ``output`` (tools, response format) is not a flat setting: it is made per request, e.g.
    by :meth:`Genius.chat <rusty_genius.Genius.chat>` from its ``tools``/``response_format`` arguments.
    """

    behavior: Behavior = field(default_factory=Behavior)
    sampling: Sampling = field(default_factory=Sampling)
    output: Output = field(default_factory=Output)
    reasoning: Reasoning = field(default_factory=Reasoning)

    @classmethod
    def of(cls, **settings: object) -> InferenceConfig:
        """Builds a config from flat keywords, each a field of :class:`Behavior`, :class:`Sampling` or
        :class:`Reasoning`."""
        return cls().updated(**settings)

    def updated(self, **settings: object) -> InferenceConfig:
        """This config with flat keyword ``settings`` (fields of :class:`Behavior`, :class:`Sampling` or
        :class:`Reasoning`) applied; ``output`` is kept."""
        unknown = sorted(settings.keys() - SETTINGS.keys())
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(SETTINGS))}", field=unknown[0]
            )
        if not settings:
            return self
        parts: dict[str, Any] = {}
        for owner, part in _PART.items():
            changes = {k: v for k, v in settings.items() if SETTINGS[k].owner is owner}
            if changes:
                parts[part] = dataclasses.replace(getattr(self, part), **changes)
        return dataclasses.replace(self, **parts)


__all__ = [
    "CONVERSATION",
    "SETTINGS",
    "TUNABLE",
    "U32_MAX",
    "Behavior",
    "InferenceConfig",
    "LogitBias",
    "Output",
    "Range",
    "Reasoning",
    "Sampling",
    "Setting",
    "Tool",
]
