"""The tool, answer-format and reasoning fields of a chat request (OpenAI's wire format), and the tool parts of its
messages, parsed into the one internal request: an :class:`~rusty_genius.core.output.Output` and flat reasoning
settings.

Rules:
- Tools and the answer's format are parsed by :meth:`Output.updated <rusty_genius.core.output.Output.updated>`, the
  library's own parser: this module maps the body onto it and its :class:`ConfigError` (whose ``path`` is the exact
  place, ``tools[1].function.name``) onto :class:`BadField` (a 400 with that ``param``, as OpenAI reports it). What
  the library takes beyond OpenAI's wire format (a function's name as the ``tool_choice`` string, a bare JSON schema
  or a string as the ``response_format``) is refused first, here.
- Accepted (OpenAI): ``tools`` (function tools), ``tool_choice`` (``auto``/``none``/``required`` or a named
  function), ``parallel_tool_calls``, ``response_format`` (``text``, ``json_object``, ``json_schema``) and
  ``reasoning_effort`` (``low``/``medium``/``high``; ``none`` turns thinking off, as llama-server does).
- Extensions, under llama-server's names: ``chat_template_kwargs.enable_thinking`` (and a top-level
  ``enable_thinking``, as vLLM accepts; the top-level one wins), ``thinking_budget_tokens`` (most tokens a thought
  may take; -1 means no limit, 0 closes the thought at once; ``thinking_budget``, the setting's own name, is
  accepted too), and a ``schema`` beside ``type`` in ``response_format`` (llama-server's shorthand for a
  ``json_schema``; core reads it). Other ``chat_template_kwargs`` keys are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rusty_genius.core.config import U32_MAX
from rusty_genius.core.errors import ConfigError, shown
from rusty_genius.core.output import RESPONSE_FORMATS, TOOL_CHOICES, Output

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
    _refuse_library_forms(body)
    try:
        return Output().updated(
            tools=body.get("tools"),
            tool_choice=body.get("tool_choice"),
            parallel_tool_calls=body.get("parallel_tool_calls"),
            response_format=body.get("response_format"),
        )
    except ConfigError as err:
        raise output_error(err) from None


def output_error(err: ConfigError) -> BadField:
    """A ConfigError about tools or the format as a 400: ``param`` is its ``path``, else its field."""
    return _bad(str(err), err.path or err.field or "tools")


def _refuse_library_forms(body: Mapping[str, Any]) -> None:
    """Refuses the forms that the library's parser takes but OpenAI's wire format does not."""
    choice = body.get("tool_choice")
    if isinstance(choice, str) and choice not in TOOL_CHOICES:
        raise _bad(
            f"tool_choice {shown(choice)}: use 'auto', 'none', 'required' or an object naming a function", "tool_choice"
        )
    fmt = body.get("response_format")
    if fmt is None:
        return
    if not isinstance(fmt, dict):
        raise _bad("response_format must be an object with a 'type'", "response_format")
    if fmt.get("type") not in RESPONSE_FORMATS:
        raise _bad(
            f"response_format.type {shown(fmt.get('type'))} is not supported: use 'text', 'json_object' or "
            "'json_schema'",
            "response_format.type",
        )


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
        if isinstance(budget, bool) or not isinstance(budget, int) or not -1 <= budget <= U32_MAX:
            raise _bad(f"'{name}' must be an integer from -1 to {U32_MAX}: tokens, 0 (no thought), or -1 (no limit)",
                       name)  # fmt: skip
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
