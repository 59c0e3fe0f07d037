"""OpenAI's embeddings, ``POST /v1/embeddings`` (and ``/embeddings``, as llama-server serves it): a thin mapping onto
:meth:`Genius.embed <rusty_genius.Genius.embed>`. docs/completions-embeddings.md lists what is supported.

Rules:
- ``input``: a string, a list of strings, a list of token ids, or a list of those lists (strings and token lists may
  be mixed); at most :data:`MAX_INPUTS` of them (OpenAI's limit). An empty string or token list, a token id that is
  not a non-negative integer, one outside the vocabulary, or an input longer than the model's window is a 400 naming
  ``input[i]`` (``input`` for a lone string).
- ``encoding_format``: ``float`` (the default) or ``base64``: the vector's little-endian float32 bytes, as OpenAI
  sends them (the official openai client asks for base64 unless told otherwise, and decodes it).
- Vectors are the model's pooled embeddings (see :meth:`Genius.model_info <rusty_genius.Genius.model_info>`), unit
  length; ``dimensions`` keeps the first ones (1 to the model's width), re-normalized. ``usage`` counts the inputs'
  tokens (``prompt_tokens`` = ``total_tokens``). ``user`` is accepted and ignored; ``keep_alive`` as on chat.
- The inputs go to the engine :data:`GROUP` at a time, so a client that leaves stops the work within one group, and
  running generations advance between groups.
"""

from __future__ import annotations

import base64
import re
import sys
from array import array
from dataclasses import dataclass
from typing import Any

from blacksheep import Request, Response, Router

from rusty_genius import CortexStrategy
from rusty_genius.core.config import U32_MAX
from rusty_genius.core.errors import GeniusError, RequestError, shown
from rusty_genius.ogenius.serve.http_shared import api, json_response
from rusty_genius.ogenius.serve.openai_api import ApiError, api_error_of, parse_keep_alive
from rusty_genius.ogenius.serve.service import Service
from rusty_genius.ogenius.serve.tokens_api import model_of, read_json, run_call, token_ids

MAX_INPUTS = 2048
"""The most inputs one request may embed (OpenAI's limit)."""
GROUP = 32
"""Inputs per engine call."""
FORMATS = ("float", "base64")

_INDEX = re.compile(r"input\[(\d+)\]")


@dataclass
class EmbeddingRequest:
    """A checked ``/v1/embeddings`` body."""

    inputs: list[str | list[int]]
    lone: bool
    """``input`` was one string (errors name ``input``, not ``input[0]``)."""
    model: str | None = None
    dimensions: int | None = None
    base64: bool = False
    keep_alive: CortexStrategy | None = None


def parse(body: dict[str, Any]) -> EmbeddingRequest:
    """Checks an embeddings body; raises :class:`ApiError` (400) naming the field at fault."""
    inputs, lone = _inputs(body.get("input"))
    request = EmbeddingRequest(inputs, lone, model_of(body))
    dimensions = body.get("dimensions")
    if dimensions is not None:
        if isinstance(dimensions, bool) or not isinstance(dimensions, int) or not 1 <= dimensions <= U32_MAX:
            raise ApiError(400, f"'dimensions' must be an integer from 1 to {U32_MAX}", param="dimensions")
        request.dimensions = dimensions
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in FORMATS:
        raise ApiError(
            400,
            f"'encoding_format' {shown(encoding)} is not supported: use 'float' or 'base64'",
            param="encoding_format",
        )
    request.base64 = encoding == "base64"
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise ApiError(400, "'user' must be a string", param="user")
    if "keep_alive" in body:
        request.keep_alive = parse_keep_alive(body["keep_alive"])
    return request


def _inputs(value: object) -> tuple[list[str | list[int]], bool]:
    if isinstance(value, str):
        if not value:
            raise ApiError(400, "'input' is an empty string: send some text", param="input")
        return [value], True
    if not isinstance(value, list) or not value:
        raise ApiError(
            400, "'input' must be a string, a list of strings, or token ids (a list, or a list of lists)", param="input"
        )
    if all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        return [token_ids(value, "input")], False
    if len(value) > MAX_INPUTS:
        raise ApiError(400, f"'input' has {len(value)} inputs: send at most {MAX_INPUTS} per request", param="input")
    inputs: list[str | list[int]] = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if isinstance(item, str):
            if not item:
                raise ApiError(400, f"{where} is an empty string: send some text", param=where)
            inputs.append(item)
        elif isinstance(item, list):
            if not item:
                raise ApiError(400, f"{where} is an empty list of tokens: send some token ids", param=where)
            inputs.append(token_ids(item, where))
        else:
            raise ApiError(400, f"{where} must be a string or a list of token ids", param=where)
    return inputs, False


async def embed(service: Service, request: EmbeddingRequest, model: str) -> tuple[list[list[float]], int]:
    """The vectors of ``request``'s inputs by the served model ``model``, and the tokens they took, :data:`GROUP`
    inputs per engine call."""
    vectors: list[list[float]] = []
    tokens = 0
    for start in range(0, len(request.inputs), GROUP):
        try:
            got = await service.genius.embed(
                request.inputs[start : start + GROUP],
                model=model,
                keep_alive=request.keep_alive,
                dimensions=request.dimensions,
            )
        except RequestError as err:
            raise _input_error(err, start, request.lone) from None
        except GeniusError as err:
            raise api_error_of(err, {}) from None
        vectors += got.vectors
        tokens += got.prompt_tokens
    return vectors, tokens


def _input_error(err: RequestError, start: int, lone: bool) -> ApiError:
    """The engine's error about ``input[i]`` of a group that starts at ``start``, naming the request's input."""
    message = _INDEX.sub(lambda m: "input" if lone else f"input[{int(m.group(1)) + start}]", str(err))
    named = _INDEX.search(message)
    return ApiError(400, message, param=named.group(0) if named else "input")


def encoded(vector: list[float], as_base64: bool) -> list[float] | str:
    """A vector as the response carries it: floats, or base64 of its little-endian float32 bytes."""
    if not as_base64:
        return vector
    floats = array("f", vector)
    if sys.byteorder != "little":
        floats.byteswap()
    return base64.b64encode(floats.tobytes()).decode("ascii")


def response(model: str, vectors: list[list[float]], tokens: int, as_base64: bool) -> dict[str, Any]:
    data = [{"object": "embedding", "index": i, "embedding": encoded(v, as_base64)} for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def add_routes(router: Router, service: Service) -> None:
    """``POST /v1/embeddings`` and its alias ``/embeddings`` on the HTTP app's router."""

    async def create(request: Request) -> Response:
        parsed = parse(await read_json(request, service))
        vectors, tokens = await run_call(service, request, parsed.model, lambda model: embed(service, parsed, model))
        return json_response(response(service.served(parsed.model).id, vectors, tokens, parsed.base64))

    router.add_post("/v1/embeddings", api(create))
    router.add_post("/embeddings", api(create))


__all__ = ["FORMATS", "GROUP", "MAX_INPUTS", "EmbeddingRequest", "add_routes", "embed", "encoded", "parse"]
