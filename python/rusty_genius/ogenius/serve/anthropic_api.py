"""Anthropic's Messages API (``POST /v1/messages``, ``/v1/messages/count_tokens``) as rusty-genius understands it:
the body parsed into the same :class:`~.openai_api.ChatRequest` as a chat completion, the events encoded back as a
``message`` (or its SSE events), errors in Anthropic's shape. docs/anthropic.md lists what is and is not supported.

Rules:
- Parsing maps onto the OpenAI forms the rest of the server already checks: ``system`` becomes a system message,
  ``tool_use`` blocks an assistant's ``tool_calls`` (arguments: the JSON of ``input``), ``thinking`` blocks its
  ``reasoning_content``, each ``tool_result`` block a ``tool`` message (``is_error``: its text is prefixed with
  ``"Error: "``), ``tools`` and ``tool_choice`` the OpenAI ones (``any`` is ``required``), ``thinking`` the reasoning
  settings (``enabled`` with ``budget_tokens``: ``enable_thinking`` and ``thinking_budget``; ``disabled``: thinking
  off). Unknown fields are ignored; unknown content block types, and known ones this server cannot honour
  (images, documents, server tools), are refused with 400. ``redacted_thinking`` blocks are dropped (opaque).
- The answer is encoded by :mod:`.anthropic_encode`.
- Errors: OpenAI-shaped :class:`ApiError` everywhere below becomes ``{"type": "error", "error": {type, message}}``
  here; a busy server answers 529 ``overloaded_error`` (as Anthropic does; ``retry-after`` kept).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rusty_genius.core.config import SETTINGS, U32_MAX
from rusty_genius.core.errors import shown
from rusty_genius.ogenius.serve import tools_api
from rusty_genius.ogenius.serve.openai_api import (
    ApiError,
    ChatRequest,
    dumps,
    number_of,
    parse_context_overflow,
    parse_keep_alive,
)

PATH = "/v1/messages"
"""The route; ``/v1/messages/count_tokens`` is under it. Errors on paths under it take Anthropic's shape."""

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def is_anthropic_path(path: str) -> bool:
    return path == PATH or path.startswith(PATH + "/")


def error_of(error: ApiError) -> tuple[int, bytes]:
    """The status and body of ``error`` in Anthropic's shape (a busy server: 529 overloaded_error); its ``extra``
    fields (a context overflow's ``n_prompt_tokens`` and ``n_ctx``) go into the error object."""
    status = 529 if error.code == "server_busy" else error.status
    kind = _ERROR_TYPES.get(status, "api_error")
    named = error.param and error.param.split(".")[0].split("[")[0] in error.message
    message = error.message if named or not error.param else f"{error.param}: {error.message}"
    return status, dumps({"type": "error", "error": {"type": kind, "message": message, **error.extra}}).encode()


def bad(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param)


# -- the request ------------------------------------------------------------------------------------------------

_NUMBERS = ("temperature", "top_p", "top_k")
"""Sampling fields, checked as on chat completions (openai_api.number_of)."""


def parse(body: object, *, counting: bool = False) -> ChatRequest:
    """Checks a Messages body (``counting``: a count_tokens body, which has no ``max_tokens``)."""
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object")
    try:
        return _parse(body, counting)
    except tools_api.BadField as err:
        raise bad(_anthropic_path(err.message), _anthropic_path(err.param)) from None


def _parse(body: dict[str, Any], counting: bool) -> ChatRequest:
    messages = _system(body.get("system")) + _messages(body.get("messages"))
    request = ChatRequest(messages=messages)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise bad("'model' must be a string", "model")
    request.model = model or None
    max_tokens = body.get("max_tokens")
    if counting:
        max_tokens = 1  # count_tokens generates nothing (see http.py); the setting only needs a valid value
    elif max_tokens is None:
        raise bad("max_tokens: Field required", "max_tokens")
    request.settings["max_tokens"] = number_of("max_tokens", max_tokens, SETTINGS["max_tokens"])
    request.params["max_tokens"] = "max_tokens"
    for name in _NUMBERS:
        value = body.get(name)
        if value is None:
            continue
        request.settings[name] = number_of(name, value, SETTINGS[name])
        request.params[name] = name
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
            raise bad("'stop_sequences' must be a list of non-empty strings", "stop_sequences")
        if stops:
            request.settings["stop"] = tuple(stops)
            request.params["stop"] = "stop_sequences"
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad("'stream' must be true or false", "stream")
    request.stream = stream and not counting
    request.settings["show_thinking"] = True  # thoughts come back as thinking blocks
    if body.get("keep_alive") is not None:  # Ollama's extension, as on chat completions
        request.keep_alive = parse_keep_alive(body["keep_alive"])
    parse_context_overflow(body, request)  # this server's extension, as on chat completions
    request.output = tools_api.parse_output(_openai_output(body))
    _thinking(body.get("thinking"), request)
    return request


def _anthropic_path(text: str) -> str:
    return text.replace(".function.parameters", ".input_schema").replace(".function.", ".")


def _system(value: object) -> list[dict[str, Any]]:
    if value is None:
        return []
    text = _text(value, "system")
    return [{"role": "system", "content": text}] if text else []


def _text(value: object, where: str) -> str:
    """A string, or a list of text blocks (their ``cache_control`` and ``citations`` are ignored)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for i, block in enumerate(value):
            if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
                kind = block.get("type") if isinstance(block, dict) else None
                raise bad(f"{where}[{i}]: only text blocks are supported here, not {shown(kind)}", f"{where}[{i}]")
            texts.append(block["text"])
        return "".join(texts)
    raise bad(f"'{where}' must be a string or a list of text blocks", where)


def _messages(value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise bad("'messages' must be a non-empty list of messages", "messages")
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_use id: the tool's name (a tool message carries it for the template)
    for i, message in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad(f"{where} must be an object with 'role' and 'content'", where)
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise bad(f"{where}.role must be 'user' or 'assistant'", f"{where}.role")
        content = message.get("content")
        if isinstance(content, str):
            out.append({"role": role, "content": content})
        elif isinstance(content, list):
            blocks = _assistant(content, where, names) if role == "assistant" else _user(content, where, names)
            out.extend(blocks)
        else:
            raise bad(f"{where}.content must be a string or a list of content blocks", f"{where}.content")
    return out


def _block(block: object, where: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise bad(f"{where} must be a content block: an object with a 'type'", where)
    return block["type"], block


def _string(block: Mapping[str, Any], key: str, where: str) -> str:
    value = block.get(key)
    if not isinstance(value, str) or not value:
        raise bad(f"{where}.{key}: Field required (a non-empty string)", f"{where}.{key}")
    return value


def _unsupported(kind: str, where: str, role: str) -> ApiError:
    return bad(
        f"{where}: content blocks of type {shown(kind)} are not supported in {role} messages here", f"{where}.type"
    )


def _assistant(content: list[Any], where: str, names: dict[str, str]) -> list[dict[str, Any]]:
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, item in enumerate(content):
        at = f"{where}.content[{j}]"
        kind, block = _block(item, at)
        if kind == "text":
            text = block.get("text")
            if not isinstance(text, str):
                raise bad(f"{at}.text must be a string", f"{at}.text")
            texts.append(text)
        elif kind == "thinking":
            thought = block.get("thinking")
            if not isinstance(thought, str):
                raise bad(f"{at}.thinking must be a string", f"{at}.thinking")
            thoughts.append(thought)
        elif kind == "redacted_thinking":
            continue
        elif kind == "tool_use":
            call_id, name = _string(block, "id", at), _string(block, "name", at)
            arguments = block.get("input", {})
            if not isinstance(arguments, dict):
                raise bad(f"{at}.input must be an object", f"{at}.input")
            names[call_id] = name
            function = {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}
            calls.append({"id": call_id, "type": "function", "function": function})
        else:
            raise _unsupported(kind, at, "assistant")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    if calls:
        message["tool_calls"] = calls
    return [message]


def _user(content: list[Any], where: str, names: dict[str, str]) -> list[dict[str, Any]]:
    """Tool results become ``tool`` messages (before the user's text, as Anthropic orders them)."""
    results: list[dict[str, Any]] = []
    texts: list[str] = []
    for j, item in enumerate(content):
        at = f"{where}.content[{j}]"
        kind, block = _block(item, at)
        if kind == "text":
            text = block.get("text")
            if not isinstance(text, str):
                raise bad(f"{at}.text must be a string", f"{at}.text")
            texts.append(text)
        elif kind == "tool_result":
            call_id = _string(block, "tool_use_id", at)
            result = block.get("content", "")
            text = _text(result, f"{at}.content") if result is not None else ""
            if block.get("is_error") is True:
                text = "Error: " + text
            message = {"role": "tool", "content": text, "tool_call_id": call_id}
            if call_id in names:
                message["name"] = names[call_id]
            results.append(message)
        else:
            raise _unsupported(kind, at, "user")
    if texts or not results:
        results.append({"role": "user", "content": "".join(texts)})
    return results


def _openai_output(body: Mapping[str, Any]) -> dict[str, Any]:
    """``tools`` and ``tool_choice`` in OpenAI's form (tools_api checks them)."""
    out: dict[str, Any] = {}
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise bad("'tools' must be a list of tools", "tools")
        out["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)] or None
    choice = body.get("tool_choice")
    if choice is not None:
        kind = choice if isinstance(choice, str) else choice.get("type") if isinstance(choice, dict) else None
        if kind in ("auto", "none", "any"):
            out["tool_choice"] = "required" if kind == "any" else kind
        elif kind == "tool" and isinstance(choice, dict):
            out["tool_choice"] = {"type": "function", "function": {"name": _string(choice, "name", "tool_choice")}}
        else:
            raise bad("tool_choice.type must be 'auto', 'any', 'tool' or 'none'", "tool_choice.type")
        if isinstance(choice, dict) and choice.get("disable_parallel_tool_use") is True:
            out["parallel_tool_calls"] = False
    return out


def _tool(tool: object, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict):
        raise bad(f"{where} must be an object with 'name' and 'input_schema'", where)
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise bad(
            f"{where}.type: {shown(kind)} tools (server tools) are not supported; only custom tools", f"{where}.type"
        )
    schema = tool.get("input_schema")
    if not isinstance(schema, dict):
        raise bad(f"{where}.input_schema: Field required (a JSON schema object)", f"{where}.input_schema")
    function = {"name": tool.get("name"), "parameters": schema}
    if tool.get("description") is not None:
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _thinking(value: object, request: ChatRequest) -> None:
    if value is None:
        return
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "disabled":
        request.settings["enable_thinking"] = False
    elif kind in ("enabled", "adaptive") and isinstance(value, dict):
        request.settings["enable_thinking"] = True
        budget = value.get("budget_tokens")
        if budget is not None:
            if isinstance(budget, bool) or not isinstance(budget, int) or not 0 <= budget <= U32_MAX:
                raise bad(f"'thinking.budget_tokens' must be an integer from 0 to {U32_MAX}", "thinking.budget_tokens")
            request.settings["thinking_budget"] = budget
            request.params["thinking_budget"] = "thinking.budget_tokens"
    else:
        raise bad("thinking.type must be 'enabled', 'adaptive' or 'disabled'", "thinking.type")
    request.params["enable_thinking"] = "thinking"


# -- the answer -------------------------------------------------------------------------------------------------
