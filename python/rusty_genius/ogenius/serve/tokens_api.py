"""llama-server's token routes on ``--addr``: ``POST /tokenize``, ``POST /detokenize`` and ``POST /apply-template``,
thin mappings onto :meth:`Genius.tokenize <rusty_genius.Genius.tokenize>`, ``token_pieces``, ``detokenize`` and
``apply_template``; and what every route that makes an engine call shares: :func:`read_json`, :func:`run_call`.

Rules:
- The shapes are llama-server's. ``/tokenize`` takes ``content`` (required), ``add_special`` (default false: no BOS,
  as llama-server), ``parse_special`` (default true: ``<|im_start|>`` is one token) and ``with_pieces`` (default
  false), and answers ``{"tokens": [ids]}``, or with pieces ``{"tokens": [{"id", "piece"}]}``: the piece is a string
  when its bytes are valid UTF-8, else the list of its byte values (a character split across tokens).
  ``/detokenize`` takes ``tokens`` and answers ``{"content"}`` (special tokens as their text, invalid UTF-8
  replaced). ``/apply-template`` takes a chat-completions body (``messages``, ``tools``, ``tool_choice``, the
  reasoning controls; parsed as on ``/v1/chat/completions``) and answers ``{"prompt"}``: the text the model would be
  given, ending with the open assistant turn (``add_generation_prompt: false`` is refused: the engine always adds it).
  ``model``, when given, must name the served model.
- An engine call waits its turn in the queue and reloads an unloaded model, as a generation does; its errors take
  OpenAI's shape with ``param`` naming the request field (a token outside the vocabulary: 400 ``tokens``); a client
  that leaves cancels it (as http_shared.watch stops a stream) and shutdown cancels it (503).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from blacksheep import Request, Response, Router

from rusty_genius.core.errors import GeniusError
from rusty_genius.ogenius.serve import http_shared
from rusty_genius.ogenius.serve.http_shared import api, json_response
from rusty_genius.ogenius.serve.openai_api import ApiError, api_error_of, parse_chat
from rusty_genius.ogenius.serve.service import Service

T = TypeVar("T")


async def read_json(request: Request, service: Service) -> dict[str, Any]:
    """The request's body (read up to ``--max-body-bytes``) as a JSON object; 400 otherwise."""
    data = await http_shared.read_json(request, service.settings.max_body)
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return data


async def run_call(service: Service, request: Request, model: str | None, work: Callable[[str], Awaitable[T]]) -> T:
    """:meth:`Service.call` of ``work`` for ``request``, cancelled when the client leaves (its body has been read, so
    the server's ``receive`` only reports that)."""
    task = asyncio.ensure_future(service.call(model, work))
    left = False

    def leave() -> None:
        nonlocal left
        left = True
        task.cancel()

    watcher = http_shared.on_disconnect(request, leave)
    try:
        return await task
    except asyncio.CancelledError:
        if left:
            raise ApiError(499, "the client closed the request") from None
        raise
    finally:
        if watcher is not None:
            watcher.cancel()
        task.cancel()


def error_naming(err: GeniusError, param: str) -> ApiError:
    """OpenAI's error for ``err``, a 400 naming ``param`` (the engine's RequestError names no request field)."""
    error = api_error_of(err, {})
    if error.status == 400 and error.param in (None, "messages"):
        error.param = param
    return error


def flag(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ApiError(400, f"'{name}' must be true or false", param=name)
    return value


def model_of(body: dict[str, Any]) -> str | None:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(400, "'model' must be a string", param="model")
    return model or None


def piece(raw: bytes) -> str | list[int]:
    """A token's piece as llama-server gives it: text when valid UTF-8, else its byte values."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return list(raw)


def token_ids(value: object, param: str) -> list[int]:
    """A list of token ids (non-negative integers), or 400 naming ``param``."""
    if not isinstance(value, list) or not all(
        isinstance(t, int) and not isinstance(t, bool) and 0 <= t < 2**31 for t in value
    ):
        raise ApiError(400, f"'{param}' must be a list of token ids (non-negative integers)", param=param)
    return value


def add_routes(router: Router, service: Service) -> None:
    """The token routes on the HTTP app's router."""
    genius = service.genius

    async def tokenize(request: Request) -> Response:
        body = await read_json(request, service)
        content = body.get("content")
        if not isinstance(content, str):
            raise ApiError(400, "'content' must be a string: the text to tokenize", param="content")
        add_special, parse_special = flag(body, "add_special", False), flag(body, "parse_special", True)
        with_pieces = flag(body, "with_pieces", False)

        async def work(model: str) -> dict[str, Any]:
            try:
                ids = await genius.tokenize(content, add_special=add_special, parse_special=parse_special, model=model)
                if not with_pieces:
                    return {"tokens": ids}
                pieces = await genius.token_pieces(ids, model=model)
            except GeniusError as err:
                raise error_naming(err, "content") from None
            return {"tokens": [{"id": i, "piece": piece(p)} for i, p in zip(ids, pieces, strict=True)]}

        return json_response(await run_call(service, request, model_of(body), work))

    async def detokenize(request: Request) -> Response:
        body = await read_json(request, service)
        ids = token_ids(body.get("tokens"), "tokens")

        async def work(model: str) -> dict[str, Any]:
            try:
                return {"content": await genius.detokenize(ids, model=model)}
            except GeniusError as err:
                raise error_naming(err, "tokens") from None

        return json_response(await run_call(service, request, model_of(body), work))

    async def apply_template(request: Request) -> Response:
        body = await read_json(request, service)
        if flag(body, "add_generation_prompt", True) is False:
            raise ApiError(
                400,
                "'add_generation_prompt': false is not supported: the prompt always ends with the open assistant turn",
                param="add_generation_prompt",
            )
        chat = parse_chat(body)
        config = service.config_of(chat)

        async def work(model: str) -> dict[str, Any]:
            try:
                return {"prompt": await genius.apply_template(chat.messages, config, model=model, **chat.settings)}
            except GeniusError as err:
                raise api_error_of(err, chat.params) from None

        return json_response(await run_call(service, request, chat.model, work))

    router.add_post("/tokenize", api(tokenize))
    router.add_post("/detokenize", api(detokenize))
    router.add_post("/apply-template", api(apply_template))


__all__ = ["add_routes", "error_naming", "flag", "model_of", "piece", "read_json", "run_call", "token_ids"]
