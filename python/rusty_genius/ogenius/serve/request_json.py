"""JSON from clients: every request body and WebSocket frame is parsed by :func:`parse_json`, which bounds how deep
it may nest and refuses text that is not Unicode, so no input can make the parser (or a walk of its result) recurse
without limit, or carry a string that the engine cannot encode.

Rules:
- One function for every place that reads client JSON (http.py, http_shared, tokens_api and the routes built on
  them, ws_session for both WebSocket protocols). A failure is an :class:`ApiError` (400) that says what is wrong
  in the client's terms; nothing is logged here, and the callers answer it in their API's shape.
- The depth is checked before ``json.loads`` by a scan of the brackets outside strings (C-speed string operations,
  no Python loop per character). ``json.loads`` recurses in C and raises RecursionError near Python's recursion
  limit; that is caught too, as a backstop.
- :data:`MAX_DEPTH` leaves room for any real request: a chat body with tool schemas nests 10 to 20 levels. Below it
  every recursive walk of request data (ours, serde_json's limit of 128 in the engine, template rendering) is safe.
- A lone surrogate (``"\\ud800"`` as a JSON escape) is valid JSON but not Unicode text: it is refused here, naming
  where it is (``param``: the path), rather than failing later in an encoder with a Python message. The error
  (:class:`NotText`) carries the parsed value, so a socket can tie it to the frame's conversation. Bytes are
  decoded strictly, so surrogates cannot arrive as raw UTF-8 either.
- ``NaN`` and ``Infinity`` are read as Python's json reads them (Python clients send them); every numeric field
  requires a finite number and says so.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rusty_genius.ogenius.serve.openai_api import ApiError

MAX_DEPTH = 64
"""The deepest nesting of arrays and objects a request body or frame may have (``{"a": [1]}`` is 2 levels)."""

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_ONE_KIND = bytes.maketrans(b"{}", b"[]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class NotText(ApiError):
    """Valid JSON holding a lone surrogate: a 400 naming its path; ``value`` is what was parsed."""

    def __init__(self, message: str, param: str | None, value: Any) -> None:
        super().__init__(400, message, param=param)
        self.value = value


def parse_json(data: bytes | str, what: str = "the request body", *, max_depth: int = MAX_DEPTH,
               code: str | None = None) -> Any:  # fmt: skip
    """``data`` as JSON, or :class:`ApiError` (400, with ``code``) naming ``what`` and the fault: not UTF-8, not
    JSON, nested deeper than ``max_depth``; or :class:`NotText` naming the path to a lone surrogate."""
    if isinstance(data, bytes):
        try:
            # json.loads(bytes) would decode with "surrogatepass"; strict decoding keeps surrogates out.
            text = data.decode(json.detect_encoding(data))
        except (UnicodeDecodeError, LookupError):
            raise ApiError(400, f"{what} is not valid UTF-8 text", code=code) from None
    else:
        text = data
    if too_deep(text, max_depth):
        raise ApiError(400, f"{what} nests arrays and objects deeper than {max_depth} levels", code=code)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ApiError(400, f"{what} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})",
                       code=code) from None  # fmt: skip
    except RecursionError:  # the scan's backstop (it lets through what it cannot pair, e.g. unclosed brackets)
        raise ApiError(400, f"{what} nests arrays and objects deeper than {max_depth} levels", code=code) from None
    except ValueError:  # an integer with more digits than Python converts (sys.get_int_max_str_digits)
        raise ApiError(400, f"{what} is not valid JSON: it holds a number with too many digits", code=code) from None
    if _SURROGATE_ESCAPE.search(text):  # only an escape can make one (the text itself was decoded strictly)
        try:
            # In C: fails only on a lone surrogate (escaped pairs, emoji from ensure_ascii clients, are one character).
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            _refuse_surrogates(value, what)
    return value


def too_deep(text: str, limit: int) -> bool:
    """Whether the arrays and objects of ``text`` (brackets outside strings) nest deeper than ``limit``. Brackets
    that do not pair are left for the parser to refuse."""
    if text.count("[") + text.count("{") <= limit:
        return False  # nothing can nest deeper than the number of openers
    # Outside strings, valid JSON is ASCII: as bytes, translate() keeps the brackets at C speed.
    outside = _STRING.sub("", text).encode("utf-8", "surrogatepass")
    brackets = outside.translate(_ONE_KIND, _NOT_BRACKETS)
    for _ in range(limit):
        # Each pass removes the innermost level (every "[]" pair), so after `limit` passes only deeper ones remain.
        peeled = brackets.replace(b"[]", b"")
        if not peeled or len(peeled) == len(brackets):
            return False  # all of it fit within the limit; or nothing pairs (not JSON: the parser says so)
        brackets = peeled
    return b"[]" in brackets


def _refuse_surrogates(value: Any, what: str) -> None:
    """Raises the error for the first string (or key) holding a lone surrogate, in document order. Iterative: the
    depth is bounded, but no walk of client data should depend on the recursion limit."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            found = _SURROGATE.search(item)
            if found:
                message = f"{path or what} holds a lone surrogate (U+{ord(found.group()):04X}); send valid Unicode text"
                raise NotText(message, path or None, value)
        elif isinstance(item, dict):
            for key in item:
                found = _SURROGATE.search(key)
                if found:
                    message = (f"{path or what} has a key holding a lone surrogate (U+{ord(found.group()):04X}); "
                               "send valid Unicode text")  # fmt: skip
                    raise NotText(message, path or None, value)
            stack.extend((f"{path}.{k}" if path else k, v) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(item))))


__all__ = ["MAX_DEPTH", "NotText", "parse_json", "too_deep"]
