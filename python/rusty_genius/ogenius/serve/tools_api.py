"""The tool, answer-format and reasoning fields of a chat request (OpenAI's wire format), and the tool parts of its
messages, parsed into the one internal request: an :class:`~rusty_genius.core.config.Output` and flat reasoning
settings.

Rules:
- Every shape problem raises :class:`BadField` (a 400) whose ``param`` is the exact path
  (``tools[1].function.name``), as OpenAI reports it. What only the engine can judge (duplicate names, a schema
  llguidance cannot enforce) comes from ``Output``'s own check as a ConfigError; :func:`output_error` maps it to
  the same shape, the path taken from its message.
- Accepted (OpenAI): ``tools`` (function tools), ``tool_choice`` (``auto``/``none``/``required`` or a named
  function), ``parallel_tool_calls``, ``response_format`` (``text``, ``json_object``, ``json_schema``) and
  ``reasoning_effort`` (``low``/``medium``/``high``; ``none`` turns thinking off, as llama-server does).
- Extensions, under llama-server's names: ``chat_template_kwargs.enable_thinking`` (and a top-level
  ``enable_thinking``, as vLLM accepts; the top-level one wins), ``thinking_budget_tokens`` (most tokens a thought
  may take; -1 means no limit, 0 closes the thought at once; ``thinking_budget``, the setting's own name, is
  accepted too), and a ``schema`` beside ``type`` in ``response_format`` (llama-server's shorthand for a
  ``json_schema``). Other ``chat_template_kwargs`` keys are ignored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from rusty_genius.core.config import Output, Tool
from rusty_genius.core.errors import ConfigError

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CHOICES = ("auto", "none", "required")
_FORMATS = ("text", "json_object", "json_schema")
OUTPUT_FIELDS = ("tools", "tool_choice", "parallel_tool_calls", "response_format")
"""The request fields (and ConfigError fields) of an Output."""


class BadField(Exception):
    """A request field at fault: openai_api answers it as a 400 with ``param`` (this module sits below openai_api, so
    it does not build the response itself)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def _bad(message: str, param: str) -> BadField:
    return BadField(message, param)


def parse_output(body: Mapping[str, Any]) -> Output | None:
    """The request's tools and answer format; None when it sets none of them (the server's defaults apply)."""
    if all(body.get(name) is None for name in OUTPUT_FIELDS):
        return None
    tools = _tools(body.get("tools"))
    choice, forced = _tool_choice(body.get("tool_choice"), {t.name for t in tools})
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise _bad("'parallel_tool_calls' must be true or false", "parallel_tool_calls")
    fmt, schema, name, strict = _response_format(body.get("response_format"))
    try:
        return Output(
            tools=tuple(tools),
            tool_choice=choice,
            tool_name=forced,
            parallel_tool_calls=True if parallel is None else parallel,
            response_format=fmt,
            json_schema=schema,
            schema_name=name,
            strict=strict,
        )
    except ConfigError as err:
        raise output_error(err) from None


def output_error(err: ConfigError) -> BadField:
    """A ConfigError about tools or the format as a 400: ``param`` is the path its message names (``tools[1]
    .function.parameters``), else its field."""
    message = str(err)
    field = getattr(err, "field", None) or "tools"
    paths = re.findall(rf"\b{re.escape(field)}(?:\[\d+\]|\.\w+)*", message)
    return _bad(message, max(paths, key=len) if paths else field)


def _tools(value: object) -> list[Tool]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad('\'tools\' must be a list of {"type": "function", "function": {...}} objects', "tools")
    return [_tool(tool, f"tools[{i}]") for i, tool in enumerate(value)]


def _tool(tool: object, where: str) -> Tool:
    if not isinstance(tool, dict):
        raise _bad(f"{where} must be an object", where)
    kind = tool.get("type", "function")
    if kind != "function":
        raise _bad(f"{where}.type: only 'function' tools are supported, not {kind!r}", f"{where}.type")
    fn = tool.get("function")
    if not isinstance(fn, dict):
        raise _bad(f"{where}.function must be an object with a 'name'", f"{where}.function")
    name = fn.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _bad(
            f"{where}.function.name must be 1 to 64 letters, digits, '_' or '-' (got {name!r})",
            f"{where}.function.name",
        )
    description = fn.get("description")
    if description is not None and not isinstance(description, str):
        raise _bad(f"{where}.function.description must be a string", f"{where}.function.description")
    parameters = fn.get("parameters")
    if parameters is None:
        parameters = {"type": "object", "properties": {}}
    if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
        raise _bad(
            f'{where}.function.parameters must be a JSON schema of an object ({{"type": "object", ...}})',
            f"{where}.function.parameters",
        )
    strict = fn.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise _bad(f"{where}.function.strict must be true or false", f"{where}.function.strict")
    try:
        return Tool(name=name, description=description, parameters=parameters)
    except ConfigError as err:
        raise _bad(f"{where}.function: {err}", f"{where}.function.parameters") from None


def _tool_choice(value: object, names: set[str]) -> tuple[str, str | None]:
    """(``auto``/``none``/``required``, the forced function's name or None)."""
    if value is None:
        return "auto", None
    if isinstance(value, str):
        if value not in _CHOICES:
            raise _bad(f"tool_choice {value!r}: use 'auto', 'none', 'required' or a function", "tool_choice")
        return value, None
    if isinstance(value, dict) and value.get("type") == "function":
        fn = value.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str):
            raise _bad("tool_choice.function.name must be a string", "tool_choice.function.name")
        if name not in names:
            raise _bad(f"tool_choice.function.name: {name!r} is not a function in tools", "tool_choice.function.name")
        return "required", name
    raise _bad(
        'tool_choice must be \'auto\', \'none\', \'required\' or {"type": "function", "function": {"name": ...}}',
        "tool_choice",
    )


def _response_format(value: object) -> tuple[str, dict[str, Any] | None, str, bool]:
    """(format, schema, schema name, strict)."""
    if value is None:
        return "text", None, "response", False
    if not isinstance(value, dict):
        raise _bad("response_format must be an object with a 'type'", "response_format")
    kind = value.get("type")
    if kind not in _FORMATS:
        raise _bad(
            f"response_format.type {kind!r} is not supported: use 'text', 'json_object' or 'json_schema'",
            "response_format.type",
        )
    spec = value.get("json_schema")
    shorthand = value.get("schema")  # llama-server's {"type": ..., "schema": {...}}
    if kind == "text":
        return "text", None, "response", False
    if kind == "json_object" and shorthand is None:
        return "json_object", None, "response", False
    if kind == "json_schema" and shorthand is None:
        if not isinstance(spec, dict):
            raise _bad(
                "response_format.json_schema must be an object with 'name' and 'schema'", "response_format.json_schema"
            )
        schema, name, strict = spec.get("schema"), spec.get("name", "response"), spec.get("strict")
        where = "response_format.json_schema"
    else:
        schema, name, strict = shorthand, "response", None
        where = "response_format"
    if not isinstance(schema, dict):
        raise _bad(f"{where}.schema must be a JSON schema (an object)", f"{where}.schema")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _bad(f"{where}.name must be 1 to 64 letters, digits, '_' or '-'", f"{where}.name")
    if strict is not None and not isinstance(strict, bool):
        raise _bad(f"{where}.strict must be true or false", f"{where}.strict")
    return "json_schema", schema, name, bool(strict)


# -- reasoning controls ------------------------------------------------------------------------------------------


def parse_reasoning(body: Mapping[str, Any], settings: dict[str, Any], params: dict[str, str]) -> None:
    """Adds the reasoning settings the request asks for (flat InferenceConfig keys) to ``settings``, and the request
    field that set each to ``params``."""

    def put(setting: str, value: object, param: str) -> None:
        settings[setting] = value
        params[setting] = param

    effort = body.get("reasoning_effort")
    if effort is not None:
        if not isinstance(effort, str):
            raise _bad("'reasoning_effort' must be 'low', 'medium', 'high' or 'none'", "reasoning_effort")
        if effort == "none":
            put("enable_thinking", False, "reasoning_effort")
        else:
            put("reasoning_effort", effort, "reasoning_effort")
    kwargs = body.get("chat_template_kwargs")
    if kwargs is not None:
        if not isinstance(kwargs, dict):
            raise _bad("'chat_template_kwargs' must be an object", "chat_template_kwargs")
        enable = kwargs.get("enable_thinking")
        if enable is not None:
            put("enable_thinking", _bool(enable, "chat_template_kwargs.enable_thinking"), "chat_template_kwargs")
    if body.get("enable_thinking") is not None:
        put("enable_thinking", _bool(body["enable_thinking"], "enable_thinking"), "enable_thinking")
    for name in ("thinking_budget", "thinking_budget_tokens"):  # llama-server's name wins when both are given
        budget = body.get(name)
        if budget is None:
            continue
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < -1:
            raise _bad(f"'{name}' must be an integer: tokens, 0 (no thought), or -1 (no limit)", name)
        put("thinking_budget", None if budget == -1 else budget, name)


def _bool(value: object, param: str) -> bool:
    if not isinstance(value, bool):
        raise _bad(f"'{param}' must be true or false", param)
    return value


# -- the tool parts of messages ----------------------------------------------------------------------------------


def message_extras(message: Mapping[str, Any], role: str, where: str) -> dict[str, Any]:
    """The keys beyond role and content that the engine reads: an assistant's ``tool_calls`` (arguments as JSON
    text) and ``reasoning_content``; a tool result's ``tool_call_id`` (required) and ``name``."""
    extras: dict[str, Any] = {}
    if role == "assistant":
        calls = message.get("tool_calls")
        if calls is not None:
            if not isinstance(calls, list):
                raise _bad(f"{where}.tool_calls must be a list", f"{where}.tool_calls")
            if calls:
                extras["tool_calls"] = [_call(call, f"{where}.tool_calls[{j}]") for j, call in enumerate(calls)]
        reasoning = message.get("reasoning_content")
        if reasoning is not None:
            if not isinstance(reasoning, str):
                raise _bad(f"{where}.reasoning_content must be a string", f"{where}.reasoning_content")
            extras["reasoning_content"] = reasoning
    elif role == "tool":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise _bad(
                f"{where}.tool_call_id: a tool message needs the id of the call it answers", f"{where}.tool_call_id"
            )
        extras["tool_call_id"] = call_id
        name = message.get("name")
        if isinstance(name, str) and name:
            extras["name"] = name
    return extras


def _call(call: object, where: str) -> dict[str, Any]:
    if not isinstance(call, dict):
        raise _bad(f"{where} must be an object", where)
    call_id = call.get("id")
    if not isinstance(call_id, str) or not call_id:
        raise _bad(f"{where}.id must be a non-empty string", f"{where}.id")
    fn = call.get("function")
    name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(name, str) or not name:
        raise _bad(f"{where}.function.name must be a non-empty string", f"{where}.function.name")
    assert isinstance(fn, dict)
    arguments = fn.get("arguments", "{}")
    if isinstance(arguments, dict):  # some clients send the object itself
        arguments = json.dumps(arguments, ensure_ascii=False)
    if not isinstance(arguments, str):
        raise _bad(f"{where}.function.arguments must be a JSON object as a string", f"{where}.function.arguments")
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
