"""The items of OpenAI's Responses API (a request's ``input``, a response's ``output``) as chat messages, the form
the chat path and the stored conversations use (responses_api.py, responses_run.py).

Rules:
- ``message`` items: roles user, system, developer (→ system) and assistant; content a string or ``input_text``,
  ``output_text`` or ``refusal`` parts. Consecutive assistant items make one assistant turn: its text, and the
  ``function_call`` items after it as ``tool_calls`` (arguments as JSON text).
- ``function_call_output`` items become ``tool`` messages, named after their call (found in the same items or the
  conversation they continue); their output is a string or text parts.
- ``reasoning`` items: their text (``reasoning_text`` content, else the ``summary``) becomes the next assistant
  turn's ``reasoning_content``; reasoning with no assistant turn after it is dropped. ``encrypted_content`` is
  opaque and ignored.
- Any other item type (hosted tool calls, ``item_reference``...) and any other part (images, files, audio) is a 400
  naming its place (``input[2].content[0]``) and what is accepted.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any

from rusty_genius.core.errors import shown
from rusty_genius.ogenius.serve.openai_api import ApiError

_ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
_PREFIXES = {"message": "msg_", "function_call": "fc_", "function_call_output": "fco_", "reasoning": "rs_"}


def bad(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param)


def item_id(kind: str) -> str:
    """A new id for an item of ``kind`` (``msg_…``, ``fc_…``, ``rs_…``), as OpenAI prefixes them."""
    return _PREFIXES.get(kind, "item_") + secrets.token_hex(16)


def input_items(value: object) -> list[dict[str, Any]]:
    """The input as items, each with an ``id`` (a string is one user message)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}]
    if not isinstance(value, list):
        raise bad("'input' must be a string or a list of input items", "input")
    items = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise bad(f"input[{i}] must be an input item: an object with a 'type' (or a 'role')", f"input[{i}]")
        kind = item.get("type", "message" if "role" in item else None)
        item = {**item, "type": kind, "id": item.get("id") or item_id(str(kind))}
        if kind == "message" and isinstance(item.get("content"), str):  # as input_items lists it: parts
            part = "output_text" if item.get("role") == "assistant" else "input_text"
            item["content"] = [{"type": part, "text": item["content"]}]
        items.append(item)
    return items


def call_names(messages: list[dict[str, Any]]) -> dict[str, str]:
    return {c["id"]: c["function"]["name"] for m in messages for c in m.get("tool_calls") or ()}


def messages_of(items: list[dict[str, Any]], names: dict[str, str], where: str = "input") -> list[dict[str, Any]]:
    """Chat messages of Responses items (input items, or a response's output items)."""
    out: list[dict[str, Any]] = []
    turn: dict[str, Any] | None = None  # the assistant turn being assembled
    thoughts: list[str] = []  # reasoning waiting for the next assistant turn

    def assistant(new: bool) -> dict[str, Any]:
        nonlocal turn
        if turn is None or (new and turn.get("tool_calls")):
            if turn is not None:
                out.append(turn)
            turn = {"role": "assistant", "content": ""}
            if thoughts:
                turn["reasoning_content"] = "".join(thoughts)
                thoughts.clear()
        return turn

    for i, item in enumerate(items):
        at, kind = f"{where}[{i}]", item.get("type")
        if kind == "reasoning":  # it opens the next assistant turn (reasoning comes first in a turn)
            if turn is not None:
                out.append(turn)
                turn = None
            text = _texts(item.get("content") or item.get("summary") or [], at, ("reasoning_text", "summary_text"))
            if text:
                thoughts.append(text)
            continue
        if kind == "function_call":
            call_id, name = _required(item, "call_id", at), _required(item, "name", at)
            arguments = item.get("arguments", "{}")
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments, ensure_ascii=False)
            names[call_id] = name
            call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            assistant(False).setdefault("tool_calls", []).append(call)
            continue
        if kind == "message" and _role(item, at) == "assistant":
            turn = assistant(True)
            turn["content"] += _content(item.get("content"), at)
            continue
        if turn is not None:
            out.append(turn)
            turn = None
        thoughts.clear()  # reasoning with no answer after it
        if kind == "function_call_output":
            call_id = _required(item, "call_id", at)
            output = item.get("output")
            text = output if isinstance(output, str) else _texts(output, f"{at}.output", ("input_text", "output_text"))
            message = {"role": "tool", "tool_call_id": call_id, "content": text}
            if call_id in names:
                message["name"] = names[call_id]
            out.append(message)
        elif kind == "message":
            out.append({"role": _role(item, at), "content": _content(item.get("content"), at)})
        else:
            raise bad(f"{at}.type {shown(kind)} is not supported here: send message, function_call, "
                      "function_call_output or reasoning items", f"{at}.type")  # fmt: skip
    if turn is not None:
        out.append(turn)
    return out


def _role(item: Mapping[str, Any], where: str) -> str:
    role = item.get("role")
    if not isinstance(role, str) or role not in _ROLES:
        raise bad(f"{where}.role must be 'user', 'system', 'developer' or 'assistant'", f"{where}.role")
    return _ROLES[role]


def _required(item: Mapping[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise bad(f"{where}.{key}: Field required (a non-empty string)", f"{where}.{key}")
    return value


def _content(content: object, where: str) -> str:
    if isinstance(content, str):
        return content
    return _texts(content, f"{where}.content", ("input_text", "output_text", "refusal"))


def _texts(parts: object, where: str, kinds: tuple[str, ...]) -> str:
    if not isinstance(parts, list):
        raise bad(f"{where} must be a string or a list of text parts", where)
    texts = []
    for j, part in enumerate(parts):
        kind = part.get("type") if isinstance(part, dict) else None
        key = "refusal" if kind == "refusal" else "text"
        if kind not in kinds or not isinstance(part, dict) or not isinstance(part.get(key), str):
            raise bad(f"{where}[{j}]: parts of type {shown(kind)} are not supported here; send {' or '.join(kinds)} "
                      f"parts with a '{key}' string", f"{where}[{j}]")  # fmt: skip
        texts.append(part[key])
    return "".join(texts)


__all__ = ["bad", "call_names", "input_items", "item_id", "messages_of"]
