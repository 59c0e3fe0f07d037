"""The OpenAI chat-completions request as rusty-genius understands it, and errors in OpenAI's shape.

Rules:
- A request is checked here before it reaches the engine; what the engine checks itself (value ranges, roles) comes
  back as a :class:`~rusty_genius.GeniusError` that :func:`api_error_of` maps to the same shape.
- Fields this server does not know are ignored (clients send many); known fields it cannot honour are refused with
  400 rather than silently dropped: tool types other than ``function`` (tools_api).
- ``logprobs: true`` asks for each answer token's log-probability, ``top_logprobs`` (0 to 20; only with ``logprobs``
  true, as OpenAI) for that many alternatives per token; they become the ``logprobs`` setting (K). The model's raw
  distribution is reported (before sampling's penalties, temperature and constraints, as vLLM does by default);
  reasoning tokens are not in it (encode.py shapes the answer).
- ``n`` (1 to :data:`MAX_CHOICES`) asks for that many choices: the server runs n generations of the request at once
  (the engine batches them), choice i with ``seed + i`` when a seed is set (see http.py and encode.py).
- ``logit_bias`` is OpenAI's ``{"<token id>": bias}``: ids as decimal strings, biases numbers in [-100, 100] (the
  engine checks the range, and the ids against the model's vocabulary when the request starts); it becomes the
  ``logit_bias`` setting, ``{id: bias}``.
- Tools, ``tool_choice``, ``parallel_tool_calls``, ``response_format`` and the reasoning controls are parsed by
  :mod:`.tools_api` into the request's :class:`~rusty_genius.core.config.Output` and reasoning settings; messages
  keep an assistant's ``tool_calls`` and ``reasoning_content`` and a tool result's ``tool_call_id`` and ``name``.
- Extensions beyond OpenAI: ``top_k``, ``min_p``, ``repeat_penalty`` and ``grammar`` (a GBNF grammar, as
  llama-server), ``keep_alive`` (as Ollama: seconds or a duration such as ``"5m"``; negative keeps the model loaded,
  0 unloads it after the request) and ``include_reasoning`` (false drops the reasoning instead of returning it in
  ``reasoning_content``); the reasoning extensions are listed in tools_api.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from rusty_genius import CortexStrategy, strategy_of
from rusty_genius.core.config import SETTINGS, TUNABLE, U32_MAX, Output, Range, Setting
from rusty_genius.core.errors import (
    BusyError,
    ConfigError,
    ContextOverflowError,
    DownloadError,
    EngineClosedError,
    GeniusError,
    ModelLoadError,
    ModelNotFoundError,
    OutOfMemoryError,
    RequestError,
    UnknownModelError,
    shown,
)
from rusty_genius.ogenius.serve import llama_extensions, tools_api


def dumps(value: object) -> str:
    """Compact JSON, non-ASCII kept (what every response and frame uses)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class ApiError(Exception):
    """An error response: HTTP ``status`` and OpenAI's ``{"error": {message, type, param, code}}``; ``extra`` adds
    fields to that object (a context overflow's ``n_prompt_tokens`` and ``n_ctx``, as llama-server sends them)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: tuple[tuple[bytes, bytes], ...] = (),
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers
        self.extra = dict(extra or {})

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message, "type": self.type, "param": self.param, "code": self.code, **self.extra}

    def body(self) -> bytes:
        return dumps({"error": self.to_dict()}).encode()


def busy_error(message: str) -> ApiError:
    return ApiError(503, message, type="server_error", code="server_busy", headers=((b"retry-after", b"1"),))


def closing_error() -> ApiError:
    return ApiError(503, "the server is shutting down", type="server_error", code="server_shutting_down")


def api_error_of(err: GeniusError, params: Mapping[str, str] | None = None) -> ApiError:
    """The response for a rusty-genius error; ``params`` maps a setting to the request field that set it."""
    message = str(err)
    if isinstance(err, BusyError):
        return busy_error(message)
    if isinstance(err, (UnknownModelError, ModelNotFoundError)):  # before ConfigError: UnknownModelError is one too
        return ApiError(404, message, code="model_not_found", param="model")
    if isinstance(err, OutOfMemoryError):
        return ApiError(503, message, type="server_error", code="model_does_not_fit", extra=_sizes(err))
    if isinstance(err, DownloadError):
        return ApiError(502, message, type="server_error", code="download_failed")
    if isinstance(err, ConfigError):
        name = getattr(err, "field", None)  # the setting at fault, set where the error is raised (Rust or Python)
        if name in tools_api.OUTPUT_FIELDS:
            bad = tools_api.output_error(err)
            return ApiError(400, bad.message, param=bad.param)
        return ApiError(400, message, param=(params or {}).get(name, name) if name else None)
    if isinstance(err, ContextOverflowError):
        return ApiError(400, message, code="context_length_exceeded", param="messages", extra=context_sizes(err))
    if isinstance(err, RequestError):
        return ApiError(400, message, param="messages")
    if isinstance(err, EngineClosedError):
        return closing_error()
    if isinstance(err, ModelLoadError):
        return ApiError(500, message, type="server_error", code="model_load_failed")
    return ApiError(500, message, type="server_error", code="engine_error")


def _sizes(err: OutOfMemoryError) -> dict[str, int]:
    return {"needed_bytes": err.needed, "budget_bytes": err.budget}


def context_sizes(err: ContextOverflowError) -> dict[str, int]:
    """llama-server's fields for a prompt over the context: ``n_prompt_tokens`` and ``n_ctx`` (none when the error
    does not carry the sizes)."""
    if err.prompt_tokens is None or err.context_size is None:
        return {}
    return {"n_prompt_tokens": err.prompt_tokens, "n_ctx": err.context_size}


# -- the request ------------------------------------------------------------------------------------------------

MAX_CHOICES = 8
"""The most choices (``n``) one request may ask for."""

_ROLES = {"developer": "system"}
_ALIASES = {"max_completion_tokens": "max_tokens"}
"""OpenAI's names for settings that the schema names otherwise (request field: setting)."""
_NUMBERS: dict[str, Setting] = {
    # Request field: setting. The schema's tunable settings under their own names (OpenAI's, or llama-server's for
    # top_k, min_p, repeat_penalty), then the aliases: listed after, an alias wins when both are given.
    # thinking_budget is tools_api's (it takes -1 for no limit, as llama-server).
    **{s.name: s for s in TUNABLE if s.name != "thinking_budget"},
    **{alias: SETTINGS[name] for alias, name in _ALIASES.items()},
}


@dataclass
class ChatRequest:
    """A parsed ``/v1/chat/completions`` body (or a WebSocket ``chat`` frame)."""

    messages: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)
    """Flat InferenceConfig keywords, applied over the server's defaults."""
    params: dict[str, str] = field(default_factory=dict)
    """For error messages: which request field set each setting."""
    model: str | None = None
    stream: bool = False
    include_usage: bool = False
    keep_alive: CortexStrategy | None = None
    output: Output | None = None
    """Tools and the answer's format; None: the server's defaults."""
    n: int = 1
    """How many choices to generate (1 to :data:`MAX_CHOICES`)."""
    logprobs: bool = False
    """The response carries each answer token's logprob (``top_logprobs`` alternatives: the ``logprobs`` setting)."""


def parse_chat(body: object) -> ChatRequest:
    """Checks a request body; raises :class:`ApiError` (400) naming the field at fault."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    try:
        return _parse(llama_extensions.normalized(body))
    except tools_api.BadField as err:
        raise ApiError(400, err.message, param=err.param) from None


def _parse(body: dict[str, Any]) -> ChatRequest:
    request = ChatRequest(messages=_messages(body.get("messages")))
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(400, "'model' must be a string", param="model")
    request.model = model or None
    for name, setting in _NUMBERS.items():
        value = body.get(name)
        if value is None:
            continue
        request.settings[setting.name] = number_of(name, value, setting)
        request.params[setting.name] = name
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
            raise ApiError(400, "'stop' must be a non-empty string or a list of them", param="stop")
        request.settings["stop"] = tuple(stops)
        request.params["stop"] = "stop"
    grammar = body.get("grammar")
    if grammar is not None:
        if not isinstance(grammar, str):
            raise ApiError(400, "'grammar' must be a GBNF grammar: a string with a `root` rule", param="grammar")
        request.settings["grammar"] = grammar
        request.params["grammar"] = "grammar"
    bias = _logit_bias(body.get("logit_bias"))
    if bias:
        request.settings["logit_bias"] = bias
        request.params["logit_bias"] = "logit_bias"
    request.n = _choices(body.get("n"))
    request.settings["show_thinking"] = _flag(body, "include_reasoning", True)
    request.stream = _flag(body, "stream", False)
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise ApiError(400, "'stream_options' must be an object", param="stream_options")
        request.include_usage = _flag(options, "include_usage", False, "stream_options.include_usage")
    if "keep_alive" in body:
        request.keep_alive = parse_keep_alive(body["keep_alive"])
    parse_context_overflow(body, request)
    request.logprobs = _logprobs(body, request)
    request.output = tools_api.parse_output(body)
    tools_api.parse_reasoning(body, request.settings, request.params)
    return request


def parse_context_overflow(body: Mapping[str, Any], request: ChatRequest) -> None:
    """This server's ``context_overflow`` field, on every API: ``error``, ``drop_oldest_turns`` or ``shift`` (over the
    server's default)."""
    policy = body.get("context_overflow")
    if policy is None:
        return
    choices = SETTINGS["context_overflow"].choices
    if policy not in choices:
        raise ApiError(400, f"'context_overflow' must be one of {', '.join(choices)} (got {shown(policy)})",
                       param="context_overflow")  # fmt: skip
    request.settings["context_overflow"] = policy
    request.params["context_overflow"] = "context_overflow"


def number_of(name: str, value: object, setting: Setting) -> int | float:
    """The request field ``name`` (``value``, not None) as the numeric ``setting`` takes it; else 400 saying what
    the field accepts. The range is the schema's (the engine's own check, described), so a bad value is refused
    here in the client's terms: JSON numbers, the field's name, no "None"."""
    finite = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
    if finite and not isinstance(value, bool):
        try:
            return cast("int | float", setting.check(value))
        except ConfigError:
            pass
    raise ApiError(400, f"'{name}' must be {accepts(setting)} (got {shown(value)})", param=name)


def accepts(setting: Setting) -> str:
    """What a numeric setting accepts, in a JSON client's words: ``"an integer from 0 to 4294967295"``,
    ``"a number in (0, 1]"``."""
    span = setting.range or Range()
    if setting.kind is not int:
        return f"a number {span.describe()}"
    low = 0 if span.low is None else max(0, math.floor(span.low) + 1 if span.low_open else math.ceil(span.low))
    high = U32_MAX if span.high is None else math.ceil(span.high) - 1 if span.high_open else math.floor(span.high)
    return f"an integer from {low} to {min(high, U32_MAX)}"


def _integral(value: float) -> bool:
    return isinstance(value, int) or (math.isfinite(value) and value == int(value))


def _flag(body: Mapping[str, Any], name: str, default: bool, param: str | None = None) -> bool:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ApiError(400, f"'{param or name}' must be true or false", param=param or name)
    return value


def _messages(value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise ApiError(400, "'messages' must be a non-empty list of messages", param="messages")
    out: list[dict[str, Any]] = []
    for i, message in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise ApiError(400, f"{where} must be an object with 'role' and 'content'", param=where)
        role = message.get("role")
        if not isinstance(role, str):
            raise ApiError(400, f"{where}.role must be a string", param=f"{where}.role")
        role = _ROLES.get(role, role)
        content = _content(message.get("content"), where)
        out.append({"role": role, "content": content, **tools_api.message_extras(message, role, where)})
    return out


def _content(content: object, where: str) -> str:
    """Text content: a string, null (an assistant turn that only called tools) or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise ApiError(400, f"{where}.content: only text parts are supported", param=f"{where}.content")
            texts.append(part["text"])
        return "".join(texts)
    raise ApiError(400, f"{where}.content must be a string or a list of text parts", param=f"{where}.content")


MAX_TOP_LOGPROBS = 20
"""The most alternatives per token ``top_logprobs`` may ask for (OpenAI's limit)."""


def _logprobs(body: Mapping[str, Any], request: ChatRequest) -> bool:
    """``logprobs`` and ``top_logprobs`` into the ``logprobs`` setting; returns whether logprobs were asked for."""
    asked = _flag(body, "logprobs", False)
    top = body.get("top_logprobs")
    if top is not None:
        if isinstance(top, bool) or not isinstance(top, (int, float)) or not _integral(top):
            raise ApiError(400, f"'top_logprobs' must be an integer from 0 to {MAX_TOP_LOGPROBS}", param="top_logprobs")
        if not 0 <= top <= MAX_TOP_LOGPROBS:
            raise ApiError(
                400, f"'top_logprobs' is {shown(top)}: must be from 0 to {MAX_TOP_LOGPROBS}", param="top_logprobs"
            )
        if not asked:
            raise ApiError(400, "'top_logprobs' needs 'logprobs' set to true", param="top_logprobs")
    if asked:
        request.settings["logprobs"] = int(top or 0)
        request.params["logprobs"] = "top_logprobs"
    return asked


def _choices(value: object) -> int:
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not _integral(value):
        raise ApiError(400, f"'n' must be an integer from 1 to {MAX_CHOICES}", param="n")
    if not 1 <= value <= MAX_CHOICES:
        raise ApiError(400, f"'n' is {shown(value)}: this server generates 1 to {MAX_CHOICES} choices", param="n")
    return int(value)


_TOKEN_ID = re.compile(r"[0-9]{1,10}")


def _logit_bias(value: object) -> dict[int, float]:
    """OpenAI's ``{"<token id>": bias}`` as ``{id: bias}`` (the engine checks the ranges and the vocabulary)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(400, "'logit_bias' must be an object of token ids to biases", param="logit_bias")
    out: dict[int, float] = {}
    for key, bias in value.items():
        if not _TOKEN_ID.fullmatch(key):
            raise ApiError(
                400, f"'logit_bias': {shown(key)} is not a token id (a non-negative integer)", param="logit_bias"
            )
        if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not math.isfinite(bias):
            raise ApiError(400, f"'logit_bias': the bias of token {key} must be a number", param="logit_bias")
        out[int(key)] = float(bias)
    return out


_DURATION = re.compile(r"(-?)((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+")
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_keep_alive(value: object) -> CortexStrategy | None:
    """Ollama's ``keep_alive``: seconds (a number or a numeric string) or a Go duration (``"5m"``, ``"1h30m"``);
    negative keeps the model loaded, 0 unloads it once idle, null means the server's default."""
    if value is None:
        return None
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            if _DURATION.fullmatch(text):
                sign = -1.0 if text.startswith("-") else 1.0
                seconds = sign * sum(float(n) * _UNIT[u] for n, u in _PART.findall(text))
    if seconds is None or not math.isfinite(seconds):
        raise ApiError(
            400, "'keep_alive' must be seconds or a duration such as \"5m\" (negative: stay loaded)", param="keep_alive"
        )
    return strategy_of(seconds)
