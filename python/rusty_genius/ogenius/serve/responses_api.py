"""OpenAI's Responses API (``POST /v1/responses``, the WebSocket mode's ``response.create``) as rusty-genius
understands it: the body mapped onto a chat-completions body and parsed by :func:`~.openai_api.parse_chat` into the
same :class:`~.openai_api.ChatRequest`, so every check and setting of the chat path applies. docs/responses.md lists
what is and is not supported.

Rules:
- ``instructions`` become a leading system message (not carried into the responses that continue this one, as
  OpenAI does); ``previous_response_id`` prepends the stored conversation (responses_store.py); ``input`` (a string,
  or items, mapped by responses_items.py) is appended.
- Flat function tools, ``tool_choice``, ``text.format``, ``reasoning.effort`` (``minimal`` → low, ``xhigh`` →
  high, ``none`` → thinking off), ``max_output_tokens`` and the sampling fields map onto their chat names; errors
  about them come back under the Responses names (:func:`wire_error`).
- Unknown fields are ignored (``include``, ``service_tier``, ``prompt_cache_key``...); known ones this server cannot
  honour are refused with 400: other tool types, other item and content types, ``background``, ``conversation``,
  ``prompt``, ``truncation: "auto"``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rusty_genius.core.errors import shown
from rusty_genius.ogenius.serve import llama_extensions
from rusty_genius.ogenius.serve.openai_api import ApiError, ChatRequest, parse_chat
from rusty_genius.ogenius.serve.responses_items import bad, call_names, input_items, messages_of
from rusty_genius.ogenius.serve.responses_store import Stored

_EXTENSIONS = ("top_k", "min_p", "repeat_penalty", "seed", "stop", "presence_penalty", "frequency_penalty",
               "logit_bias", "grammar", "keep_alive", "chat_template_kwargs", "enable_thinking", "thinking_budget",
               "thinking_budget_tokens", "context_overflow")  # fmt: skip
"""Chat-completions fields a Responses body may carry too (this server's extensions, as on chat completions)."""
_RENAMED = {"model": "model", "max_output_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p",
            "parallel_tool_calls": "parallel_tool_calls", "stream": "stream"}  # fmt: skip
"""Responses fields → the chat fields they set."""
_EFFORTS = {"none": "none", "minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "high"}
_WIRE = (("response_format.json_schema.", "text.format."), ("response_format.json_schema", "text.format"),
         ("response_format", "text.format"), (".function.", "."), ("max_tokens", "max_output_tokens"),
         ("reasoning_effort", "reasoning.effort"), ("messages", "input"))  # fmt: skip
"""Chat names in errors → Responses names (the chat path checks the mapped body)."""


def _wire(text: str) -> str:
    for chat, responses in _WIRE:
        text = text.replace(chat, responses)
    return text


def wire_error(err: ApiError) -> ApiError:
    """``err`` (from the chat path) with the Responses API's field names in its message and ``param``."""
    return ApiError(err.status, _wire(err.message), type=err.type, code=err.code,
                    param=_wire(err.param) if err.param else None, headers=err.headers, extra=err.extra)  # fmt: skip


@dataclass
class Parsed:
    """A checked Responses body."""

    chat: ChatRequest
    """The chat request it maps onto (instructions, the previous conversation and the input as messages)."""
    items: list[dict[str, Any]]
    """The input items as sent, each with an ``id``."""
    conversation: list[dict[str, Any]]
    """The messages of the previous conversation and this input, without the instructions."""
    echo: dict[str, Any]
    """What the response object repeats of the request."""
    store: bool = True
    generate: bool = True
    """False: the WebSocket mode's warm-up (``generate: false``), which stores the input and generates nothing."""


def parse(body: object, previous: Callable[[str], Stored], *, websocket: bool = False) -> Parsed:
    """Checks a Responses body; ``previous`` finds the response ``previous_response_id`` names (or raises its 404).
    Raises :class:`ApiError` (400) naming the field at fault."""
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object")
    for name, allowed in (("background", (None, False)), ("conversation", (None,)), ("prompt", (None,)),
                          ("truncation", (None, "disabled"))):  # fmt: skip
        if body.get(name) not in allowed:
            raise bad(f"'{name}' is not supported by this server (docs/responses.md); leave it out", name)
    previous_id = _string(body, "previous_response_id")
    instructions = _string(body, "instructions")
    before = list(previous(previous_id).conversation) if previous_id else []
    items = input_items(body.get("input"))
    conversation = before + messages_of(items, call_names(before))
    if not conversation:
        raise bad("'input' is empty: give at least one input item (or a previous_response_id to continue)", "input")
    system = [{"role": "system", "content": instructions}] if instructions else []
    chat_body: dict[str, Any] = {"messages": system + conversation, **_fields(body)}
    if websocket:
        chat_body.pop("stream", None)  # a socket always streams
    try:
        chat = parse_chat(chat_body)
    except ApiError as err:
        raise wire_error(err) from None
    chat.params = {setting: _wire(param) for setting, param in chat.params.items()}
    reasoning = body.get("reasoning") or {}
    echo = {
        "instructions": instructions, "previous_response_id": previous_id, "metadata": _metadata(body),
        "user": _string(body, "user"), "max_output_tokens": body.get("max_output_tokens"), "max_tool_calls": None,
        "tools": body.get("tools") or [], "tool_choice": body.get("tool_choice") or "auto",
        "parallel_tool_calls": body.get("parallel_tool_calls") is not False, "truncation": "disabled",
        "text": {"format": (body.get("text") or {}).get("format") or {"type": "text"}},
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
    }  # fmt: skip
    store = _flag(body, "store", True)
    generate = _flag(body, "generate", True) if websocket else True
    return Parsed(chat, items, conversation, echo, store, generate)


def _string(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise bad(f"'{name}' must be a string", name)
    return value or None


def _flag(body: Mapping[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad(f"'{name}' must be true or false", name)
    return value


def _metadata(body: Mapping[str, Any]) -> dict[str, str]:
    value = body.get("metadata")
    if value is None:
        return {}
    if (
        not isinstance(value, dict)
        or len(value) > 16
        or not all(
            isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512 for k, v in value.items()
        )
    ):
        raise bad(
            "'metadata' must be an object of at most 16 strings (keys up to 64 characters, values 512)", "metadata"
        )
    return value


def _fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """The chat-completions fields of a Responses body (checked by the chat path, errors renamed)."""
    fields: dict[str, Any] = {name: body[name] for name in _EXTENSIONS if body.get(name) is not None}
    # llama-server's extensions, honoured or refused as on chat (llama_extensions); logprobs are not in this API.
    fields.update({n: body[n] for n in llama_extensions.FIELDS - {"n_probs"} if body.get(n) is not None})
    if body.get("n_probs") is not None:
        raise bad("'n_probs' is not supported by the Responses API: use chat completions' logprobs", "n_probs")
    for name, chat in _RENAMED.items():
        if body.get(name) is not None:
            fields[chat] = body[name]
    if body.get("tools") is not None:
        fields["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        fields["tool_choice"] = _tool_choice(body["tool_choice"])
    text = body.get("text")
    if text is not None:
        if not isinstance(text, dict):
            raise bad('\'text\' must be an object, e.g. {"format": {"type": "json_object"}}', "text")
        fmt = text.get("format")
        if fmt is not None:
            if not isinstance(fmt, dict):
                raise bad("text.format must be an object with a 'type'", "text.format")
            if fmt.get("type") == "json_schema":
                fields["response_format"] = {"type": "json_schema", "json_schema": {
                    k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}}  # fmt: skip
            else:
                fields["response_format"] = {"type": fmt.get("type")}
    reasoning = body.get("reasoning")
    if reasoning is not None:
        if not isinstance(reasoning, dict):
            raise bad('\'reasoning\' must be an object, e.g. {"effort": "low"}', "reasoning")
        effort = reasoning.get("effort")
        if effort is not None:
            if not isinstance(effort, str) or effort not in _EFFORTS:
                raise bad(f"reasoning.effort must be one of {', '.join(_EFFORTS)} (or null)", "reasoning.effort")
            fields["reasoning_effort"] = _EFFORTS[effort]
    return fields


def _tools(value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise bad("'tools' must be a list of tools", "tools")
    tools = []
    for i, tool in enumerate(value):
        if not isinstance(tool, dict):
            raise bad(f"tools[{i}] must be an object with 'type': 'function' and a 'name'", f"tools[{i}]")
        if tool.get("type") != "function":
            raise bad(f"tools[{i}].type {shown(tool.get('type'))} is not supported here: only function tools",
                      f"tools[{i}].type")  # fmt: skip
        function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(value: object) -> object:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("type") == "function":
        return {"type": "function", "function": {"name": value.get("name")}}
    kind = value.get("type") if isinstance(value, dict) else value
    raise bad(f"tool_choice {shown(kind)} is not supported: use 'auto', 'none', 'required' or "
              "{\"type\": \"function\", \"name\": ...}", "tool_choice")  # fmt: skip


__all__ = ["Parsed", "parse", "wire_error"]
