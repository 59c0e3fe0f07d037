"""What the answer must look like: :class:`Tool` (a function the model may call), :class:`Output` (the tools, the
tool choice and the response format of one request) and :class:`ToolCall` (a call the model made).

:class:`Output` is the internal form every API maps onto (OpenAI's ``tools``/``tool_choice``/``response_format``,
a pydantic model, plain Python functions): :meth:`Output.updated` reads those forms, for the library and for the
server alike (this module is the one parser of them). The engine reads the fields by attribute and enforces them
while sampling; an Output it cannot enforce is refused when it is made, by the same Rust code the engine uses.

Every refusal is a :class:`~rusty_genius.ConfigError` with ``field`` ``"tools"``, ``"tool_choice"``,
``"parallel_tool_calls"`` or ``"response_format"`` and ``path``, the exact place as the request writes it
(``tools[1].function.name``, ``response_format.json_schema.schema``); the message names the same path.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rusty_genius import _native
from rusty_genius.core.errors import ConfigError, kind_of, shown
from rusty_genius.core.events import Event

TOOL_CHOICES = ("auto", "none", "required")
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""A function's or a schema's name, as OpenAI requires (the engine checks tool names too, but without the path)."""
_NAMES = "must be 1 to 64 letters, digits, '_' or '-'"


def _empty_object() -> dict[str, Any]:
    return {"type": "object", "properties": {}}


def _bad(field: str, path: str, what: str) -> ConfigError:
    """The refusal of the value at ``path`` (in the request field ``field``): the message starts with the path."""
    return ConfigError(f"invalid {path}: {what}", field=field, path=path)


@dataclass(frozen=True, kw_only=True)
class Tool:
    """A function the model may call: its ``name`` (1 to 64 letters, digits, ``_`` or ``-``), what it does
    (``description``, shown to the model) and the JSON schema of its arguments (``parameters``, an object schema;
    default: no arguments). Checked with the rest of the :class:`Output` it is part of."""

    name: str
    description: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=_empty_object)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ConfigError(f"invalid tool name: {kind_of(self.name)} is not a string", field="tools")
        if self.description is not None and not isinstance(self.description, str):
            raise ConfigError(f"invalid {self.name}.description: must be a str or None", field="tools")
        if not isinstance(self.parameters, Mapping):
            raise ConfigError(
                f"invalid {self.name}.parameters: must be a JSON schema object, not {kind_of(self.parameters)}",
                field="tools",
            )
        # A plain dict: the engine serialises it with json.dumps.
        object.__setattr__(self, "parameters", dict(self.parameters))

    @classmethod
    def from_openai(cls, tool: object, *, where: str = "tools") -> Tool:
        """A tool from OpenAI's ``{"type": "function", "function": {"name", "description", "parameters",
        "strict"}}`` or the bare ``{"name", "description", "parameters"}`` (as the Responses API writes it).
        ``where`` is the tool's path in the request (``tools[2]``); a bad shape raises :class:`ConfigError` (``field``
        ``"tools"``, ``path`` the value at fault, e.g. ``tools[2].function.name``). ``strict`` is checked and ignored:
        the arguments always follow the schema."""
        if not isinstance(tool, Mapping):
            raise _bad(
                "tools",
                where,
                f"a tool must be an object with 'type': 'function' and 'function', not {kind_of(tool)}",
            )
        kind = tool.get("type")
        if kind not in (None, "function"):
            raise _bad("tools", f"{where}.type", f"only 'function' tools are supported, not {shown(kind)}")
        if "function" in tool or (kind is not None and "name" not in tool):
            function = tool.get("function")
            where = f"{where}.function"
            if not isinstance(function, Mapping):
                raise _bad("tools", where, "'function' must be an object with 'name', 'description' and 'parameters'")
        elif "name" in tool:
            function = tool
        else:
            raise _bad("tools", where, "a tool needs 'type': 'function' and 'function': {'name', 'description', ...}")
        name = function.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise _bad("tools", f"{where}.name", f"{_NAMES} (got {shown(name)})")
        description = function.get("description")
        if description is not None and not isinstance(description, str):
            raise _bad("tools", f"{where}.description", "must be a string")
        parameters = function.get("parameters")
        if parameters is None:
            parameters = _empty_object()
        elif not isinstance(parameters, Mapping):
            raise _bad("tools", f"{where}.parameters", 'must be a JSON schema object ({"type": "object", ...})')
        strict = function.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise _bad("tools", f"{where}.strict", "must be true or false")
        return cls(name=name, description=description, parameters=parameters)

    @classmethod
    def from_function(cls, function: Callable[..., Any]) -> Tool:
        """A tool from a plain Python function: its name, the first paragraph of its docstring, and a schema made
        from its signature (``str``, ``int``, ``float``, ``bool``, ``list[...]``, ``dict``, ``Literal[...]``, an
        ``Enum``, ``X | None``, a pydantic model; a parameter without a default is required)."""
        try:
            hints = typing.get_type_hints(function)
        except (NameError, TypeError):  # an annotation that names something out of reach: any value
            hints = {}
        properties: dict[str, Any] = {}
        required: list[str] = []
        for name, param in inspect.signature(function).parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            properties[name] = _schema_of(hints.get(name, Any))
            if param.default is param.empty:
                required.append(name)
        parameters: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            parameters["required"] = required
        doc = inspect.getdoc(function)
        description = doc.split("\n\n")[0].replace("\n", " ").strip() if doc else None
        return cls(name=function.__name__, description=description or None, parameters=parameters)

    def to_openai(self) -> dict[str, Any]:
        """OpenAI's form: ``{"type": "function", "function": {"name", "description", "parameters"}}``."""
        function: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            function["description"] = self.description
        function["parameters"] = dict(self.parameters)
        return {"type": "function", "function": function}


ToolLike = Tool | Mapping[str, Any] | Callable[..., Any]
"""A tool as callers give one: a :class:`Tool`, an OpenAI tool dict or a plain Python function."""
ToolChoiceLike = str | Mapping[str, Any] | Tool | Callable[..., Any]
"""A tool choice as callers give one: ``"auto"``, ``"none"``, ``"required"``, a function's name, the Tool or function
itself, or OpenAI's ``{"type": "function", "function": {"name": ...}}``."""
ResponseFormatLike = str | Mapping[str, Any] | type
"""A response format as callers give one: ``"text"``, ``"json_object"``, an OpenAI ``response_format`` dict, a bare
JSON schema, or a pydantic model class."""


_JSON_TYPES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}
_JSON_TYPE_NAMES = (*_JSON_TYPES.values(), "array", "object")


def _schema_of(hint: Any) -> dict[str, Any]:
    """A JSON schema for a type hint (an empty schema, meaning any value, for what it cannot describe)."""
    if hint in _JSON_TYPES:
        return {"type": _JSON_TYPES[hint]}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        inner = _schema_of(options[0]) if len(options) == 1 else {"anyOf": [_schema_of(a) for a in options]}
        return {"anyOf": [inner, {"type": "null"}]} if len(options) < len(args) else inner
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (list, tuple, set, frozenset, Sequence) or hint in (list, tuple, set, frozenset):
        schema: dict[str, Any] = {"type": "array"}
        if args and args[-1] is not Ellipsis:
            schema["items"] = _schema_of(args[0])
        return schema
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return {"type": "object"}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"enum": [member.value for member in hint]}
    if hasattr(hint, "model_json_schema"):
        return dict(hint.model_json_schema())
    return {}


@dataclass(frozen=True, kw_only=True)
class Output:
    """The shape of one answer: which functions the model may call, and the format of its text.

    ``tools``: the functions offered. ``tool_choice``: ``"auto"`` (the model decides), ``"none"`` (no call; the tools
    are not shown) or ``"required"`` (at least one call); ``tool_name`` set: that function must be called (then
    ``tool_choice`` is ``"required"``). ``parallel_tool_calls``: more than one call per answer. ``response_format``:
    ``"text"``, ``"json_object"`` (any JSON object) or ``"json_schema"`` (JSON valid against ``json_schema``, named
    ``schema_name``; ``strict`` as OpenAI's). Reasoning comes first and is never constrained; the format applies to
    the answer after it.

    :meth:`updated` reads OpenAI's request forms (and pydantic models, Python functions) into one.
    """

    tools: Sequence[Tool] = ()
    tool_choice: str = "auto"
    tool_name: str | None = None
    parallel_tool_calls: bool = True
    response_format: str = "text"
    json_schema: Mapping[str, Any] | None = None
    schema_name: str = "response"
    strict: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.tools, (str, Mapping)) or not isinstance(self.tools, Sequence):
            raise _bad("tools", "tools", f"must be a list of Tool, not {kind_of(self.tools)}")
        for i, tool in enumerate(self.tools):
            if not isinstance(tool, Tool):
                raise _bad(
                    "tools", f"tools[{i}]", f"{kind_of(tool)} is not a Tool (see Tool.from_openai, Output.updated)"
                )
        object.__setattr__(self, "tools", tuple(self.tools))
        if self.tool_name is not None and self.tool_choice == "auto":
            object.__setattr__(self, "tool_choice", "required")
        if self.json_schema is not None and isinstance(self.json_schema, Mapping):
            object.__setattr__(self, "json_schema", dict(self.json_schema))
        try:
            _native.validate_output(self)
        except ConfigError as err:
            # The engine passes the exact path as data; an error about a whole field (too many tools) has none.
            if err.path is None:
                err.path = err.field
            raise

    def updated(
        self,
        *,
        tools: Sequence[ToolLike] | None = None,
        tool_choice: ToolChoiceLike | None = None,
        parallel_tool_calls: bool | None = None,
        response_format: ResponseFormatLike | None = None,
    ) -> Output:
        """This output with what was given (None: unchanged) in the forms APIs use.

        ``tools``: :class:`Tool` objects, OpenAI tool dicts or plain Python functions (:meth:`Tool.from_function`).
        ``tool_choice``: ``"auto"``, ``"none"``, ``"required"``, a function's name (or the Tool or function itself),
        or OpenAI's ``{"type": "function", "function": {"name": ...}}``; the function must be one of the tools.
        ``response_format``: ``"text"``, ``"json_object"``, OpenAI's ``{"type": "text" | "json_object"}`` or
        ``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}``, llama-server's shorthand
        ``{"type": "json_object" | "json_schema", "schema": {...}}``, a bare JSON schema (a dict without one of those
        types), or a pydantic model class (its ``model_json_schema()``, named after the class).

        A bad value raises :class:`ConfigError` whose ``field`` is the argument and ``path`` the exact place."""
        changes: dict[str, Any] = {}
        if tools is not None:
            changes["tools"] = tools_of(tools)
        if tool_choice is not None:
            choice, name = tool_choice_of(tool_choice)
            if name is not None and name not in {t.name for t in changes.get("tools", self.tools)}:
                raise _bad("tool_choice", _name_path(tool_choice), f"{shown(name)} is not a function in tools")
            changes["tool_choice"], changes["tool_name"] = choice, name
        if parallel_tool_calls is not None:
            if not isinstance(parallel_tool_calls, bool):
                raise _bad("parallel_tool_calls", "parallel_tool_calls", "must be true or false")
            changes["parallel_tool_calls"] = parallel_tool_calls
        if response_format is not None:
            changes.update(response_format_of(response_format))
        return dataclasses.replace(self, **changes) if changes else self


def tools_of(tools: object) -> tuple[Tool, ...]:
    """Tools from :class:`Tool` objects, OpenAI tool dicts or plain Python functions."""
    if isinstance(tools, (str, Mapping)) or not isinstance(tools, Sequence):
        raise _bad("tools", "tools", f"must be a list of tools, not {kind_of(tools)}")
    out: list[Tool] = []
    for i, tool in enumerate(tools):
        if isinstance(tool, Tool):
            out.append(tool)
        elif isinstance(tool, Mapping):
            out.append(Tool.from_openai(tool, where=f"tools[{i}]"))
        elif callable(tool) and not isinstance(tool, type):
            out.append(Tool.from_function(tool))
        else:
            raise _bad(
                "tools",
                f"tools[{i}]",
                f"{kind_of(tool)} is not a tool: give an object with 'type': 'function' and 'function' (or, from "
                "Python, a Tool or a function)",
            )
    return tuple(out)


def tool_choice_of(choice: object) -> tuple[str, str | None]:
    """``(tool_choice, tool_name)`` from ``"auto"``/``"none"``/``"required"``, a function name, a Tool, a function,
    or OpenAI's ``{"type": "function", "function": {"name": ...}}`` (or ``{"type": "function", "name": ...}``)."""
    if isinstance(choice, str):
        return (choice, None) if choice in TOOL_CHOICES else ("required", choice)
    if isinstance(choice, Tool):
        return "required", choice.name
    if isinstance(choice, Mapping):
        if choice.get("type") != "function":
            raise _bad(
                "tool_choice", "tool_choice", "an object must be {'type': 'function', 'function': {'name': ...}}"
            )
        function = choice.get("function", choice)
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str):
            raise _bad("tool_choice", _name_path(choice), "must be the name of a function in tools")
        return "required", name
    if callable(choice) and hasattr(choice, "__name__"):
        return "required", choice.__name__
    raise _bad(
        "tool_choice",
        "tool_choice",
        f"{kind_of(choice)} is not accepted: must be 'auto', 'none', 'required' or a function name",
    )


def _name_path(choice: object) -> str:
    """Where a tool choice names its function: ``tool_choice.function.name`` (OpenAI's form), ``tool_choice.name``
    (the flat form) or ``tool_choice`` itself (a name, a Tool, a function)."""
    if not isinstance(choice, Mapping):
        return "tool_choice"
    return "tool_choice.name" if "name" in choice and "function" not in choice else "tool_choice.function.name"


def response_format_of(value: object) -> dict[str, Any]:
    """The :class:`Output` fields (``response_format``, ``json_schema``, ``schema_name``, ``strict``) a response
    format asks for (see :meth:`Output.updated`)."""
    plain = {"json_schema": None, "schema_name": "response", "strict": False}
    if isinstance(value, str):
        return {"response_format": value, **plain}
    if isinstance(value, type) and hasattr(value, "model_json_schema"):
        return {
            "response_format": "json_schema",
            "json_schema": value.model_json_schema(),
            "schema_name": value.__name__,
            "strict": False,
        }
    field = "response_format"
    if not isinstance(value, Mapping):
        raise _bad(
            field,
            field,
            f"{kind_of(value)} is not accepted: must be an object, 'text', 'json_object' (or, from Python, a pydantic "
            "model class)",
        )
    kind = value.get("type")
    shorthand = value.get("schema") is not None and kind in ("json_object", "json_schema")
    if kind in ("text", "json_object") and not shorthand:
        return {"response_format": kind, **plain}
    if kind not in RESPONSE_FORMATS:
        # A bare JSON schema: its "type" (if any) is a JSON type, such as "object".
        if isinstance(kind, str) and kind not in _JSON_TYPE_NAMES:
            raise _bad(
                field, f"{field}.type", f"{shown(kind)} is not 'text', 'json_object', 'json_schema' nor a JSON type"
            )
        return {"response_format": "json_schema", **plain, "json_schema": value}
    # llama-server's shorthand {"type": "json_object" | "json_schema", "schema": {...}} holds the spec itself.
    where, spec = (field, value) if shorthand else (f"{field}.json_schema", value.get("json_schema"))
    if not isinstance(spec, Mapping):
        raise _bad(field, where, "must be an object with 'name' and 'schema'")
    name = spec.get("name", "response")
    if not isinstance(name, str):
        raise _bad(field, f"{where}.name", "must be a string")
    if not _NAME.fullmatch(name):
        raise _bad(field, f"{where}.name", f"{_NAMES} (got {shown(name)})")
    schema = spec.get("schema")
    if not isinstance(schema, Mapping):
        raise _bad(field, f"{where}.schema", "must be a JSON schema object")
    strict = spec.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise _bad(field, f"{where}.strict", "must be true or false")
    return {"response_format": "json_schema", "json_schema": schema, "schema_name": name, "strict": bool(strict)}


@dataclass(frozen=True)
class ToolCall:
    """A call the model made (in :attr:`Answer.tool_calls`), or one sent back in an assistant message's
    ``tool_calls``: the call's ``id`` (a ``tool`` message answers it by ``tool_call_id``), the function's
    ``name`` and its ``arguments``, a JSON object in text form."""

    id: str
    name: str
    arguments: str

    def json(self) -> Any:
        """The decoded arguments (a dict); raises :class:`ValueError` when they are not JSON."""
        return json.loads(self.arguments)

    parsed_arguments = json

    def to_openai(self) -> dict[str, Any]:
        """OpenAI's form, as an assistant message's ``tool_calls`` holds it:
        ``{"id", "type": "function", "function": {"name", "arguments"}}``."""
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


def tool_calls_of(events: Iterable[Event]) -> list[ToolCall]:
    """The calls that a stream's ``tool_call_start`` (index, id, name) and ``tool_call_delta`` (index, a piece of the
    arguments) events make, in the order of their index."""
    calls: dict[int, tuple[str, str, list[str]]] = {}
    for e in events:
        if e.kind == "tool_call_start":
            calls[e.index or 0] = (e.id or "", e.name or "", [])
        elif e.kind == "tool_call_delta":
            calls.setdefault(e.index or 0, ("", "", []))[2].append(e.text or "")
    return [ToolCall(id=i, name=n, arguments="".join(parts)) for _, (i, n, parts) in sorted(calls.items())]


__all__ = [
    "RESPONSE_FORMATS",
    "TOOL_CHOICES",
    "Output",
    "ResponseFormatLike",
    "Tool",
    "ToolCall",
    "ToolChoiceLike",
    "ToolLike",
    "tool_calls_of",
]
