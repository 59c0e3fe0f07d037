"""Model management over HTTP, through the brainstem's message protocol (``Genius.download``, ``load``, ``unload``,
``remove``); docs/models.md. Every route is also served without ``/v1``, and all are under the API key when one is
set (security.Guard).

- ``POST /v1/models/pull`` ``{"model", "quant"?, "stream"?}``: fetch (or find) a model and register it; the server
  serves it at once. Streamed (the default) as server-sent events: ``{"status": "downloading", "model", "file",
  "completed", "total"}`` as bytes arrive (at most :data:`PROGRESS_EVERY` apart per file, and each file's last),
  then ``{"status": "success", "model": <its card>}`` and ``[DONE]``; an error is a last ``{"error": {...}}`` event.
  ``"stream": false`` answers the card once done. A client that leaves stops the download at its next chunk (its
  partial file is discarded; nothing is registered). These are the only routes that ever download.
- ``POST /v1/models/load`` and ``/v1/models/unload`` ``{"model"}``: load now (placement may unload idle models;
  503 ``model_does_not_fit`` names the sizes), or unload now (409 while requests hold it); both answer the card.
- ``GET /props`` (``?model=``): llama-server's properties of a model (:func:`props_of`); never loads it.
- ``DELETE /v1/models/{id}``: unload it and unregister it, deleting the files rusty-genius downloaded (an imported
  file is kept); OpenAI's deletion object. The default model and models named on the command line are refused (409):
  the server would still serve them.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any
from urllib.parse import unquote

from blacksheep import Request, Response, Router, StreamedContent

from rusty_genius import __version__
from rusty_genius.core.errors import BusyError, GeniusError
from rusty_genius.core.progress import DownloadProgress
from rusty_genius.ogenius.serve.http_shared import api, json_response, read_json
from rusty_genius.ogenius.serve.models import Served
from rusty_genius.ogenius.serve.openai_api import ApiError, api_error_of, closing_error, dumps
from rusty_genius.ogenius.serve.respond import SSE_HEADERS
from rusty_genius.ogenius.serve.service import Service

PROGRESS_EVERY = 0.25
"""Seconds between two progress events of one file (its last one is always sent)."""


def _model_field(body: object) -> str:
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object with a 'model' field")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ApiError(400, "'model' must be a model name, e.g. 'smollm2-135m' or 'owner/repo:Q4_K_M'", param="model")
    return model


def _error_of(err: GeniusError) -> ApiError:
    if isinstance(err, BusyError):
        return ApiError(409, str(err), code="model_busy", param="model")
    return api_error_of(err)


class Pull:
    """``POST /v1/models/pull``."""

    def __init__(self, service: Service) -> None:
        self.service = service

    async def __call__(self, request: Request) -> Response:
        body = await read_json(request, self.service.settings.max_body)
        model = _model_field(body)
        assert isinstance(body, dict)
        quant = body.get("quant")
        if quant is not None and not (isinstance(quant, str) and quant.strip()):
            raise ApiError(400, "'quant' must be a quantization such as 'Q4_K_M'", param="quant")
        stream = body.get("stream", True)
        if not isinstance(stream, bool):
            raise ApiError(400, "'stream' must be true or false", param="stream")
        if not stream:
            return json_response(await self._pull(model, quant, None))

        async def events() -> AsyncIterator[bytes]:  # BlackSheep takes an async generator function
            async with aclosing(self._events(model, quant)) as pulled:
                async for event in pulled:
                    yield event

        return Response(200, SSE_HEADERS, StreamedContent(b"text/event-stream", events))

    async def _pull(self, model: str, quant: str | None, progress: asyncio.Queue[DownloadProgress] | None) -> Any:
        if self.service.closing:
            raise closing_error()
        if not self.service.table.serves_registry:
            refused = "this server runs Pinky (--engine pinky): it serves no downloaded models"
            raise ApiError(400, refused, param="model")
        on_progress = None if progress is None else progress.put_nowait
        try:
            spec = await self.service.genius.download(model, quant, on_progress=on_progress)
        except GeniusError as err:
            raise _error_of(err) from None
        self.service.refresh()
        return self.service.model_card(self.service.served(spec.name))

    async def _events(self, model: str, quant: str | None) -> AsyncGenerator[bytes, None]:
        progress: asyncio.Queue[DownloadProgress] = asyncio.Queue()
        job = asyncio.ensure_future(self._pull(model, quant, progress))
        last: dict[str, tuple[float, int]] = {}
        try:
            while not job.done() or not progress.empty():
                waiter = asyncio.ensure_future(progress.get())
                await asyncio.wait([job, waiter], return_when=asyncio.FIRST_COMPLETED)
                if not waiter.done():
                    waiter.cancel()
                    continue
                update = waiter.result()
                now = time.monotonic()
                sent = last.get(update.file)
                finished = update.total is not None and update.done >= update.total
                if sent is not None and not finished and now - sent[0] < PROGRESS_EVERY:
                    continue
                last[update.file] = (now, update.done)
                yield _event(
                    {"status": "downloading", "model": update.model, "file": update.file, "completed": update.done,
                     "total": update.total}
                )  # fmt: skip
            try:
                card = await job
            except ApiError as err:
                yield b"data: " + err.body() + b"\n\n"
                return
            yield _event({"status": "success", "model": card})
            yield b"data: [DONE]\n\n"
        finally:
            if not job.done():  # the client left: stop the download (at its next chunk)
                job.cancel()


def props_of(service: Service, entry: Served) -> dict[str, Any]:
    """llama-server's ``GET /props`` for ``entry`` (what tools such as llama-swap and llama.cpp's web UI read);
    never loads it: an unloaded model is ``is_sleeping``, its sizes are the ones its load would use."""
    facts = entry.facts()
    engine = service.genius.engine_of(entry.id)
    config = service.defaults_of(entry)
    sampling = config.sampling
    n_ctx = engine.context_size if engine is not None else facts.get("context_length")
    slots = engine.parallel if engine is not None else facts.get("parallel")
    template = (facts.get("metadata") or {}).get("tokenizer.chat_template", "")
    params = {
        "n_predict": -1 if config.behavior.max_tokens is None else config.behavior.max_tokens,
        "temperature": sampling.temperature, "top_k": sampling.top_k, "top_p": sampling.top_p,
        "min_p": sampling.min_p, "repeat_penalty": sampling.repeat_penalty, "repeat_last_n": 64,
        "presence_penalty": sampling.presence_penalty, "frequency_penalty": sampling.frequency_penalty,
        "seed": -1 if sampling.seed is None else sampling.seed,
    }  # fmt: skip
    return {
        "model_alias": entry.id,
        "model_path": os.fspath(entry.path) if entry.path is not None else entry.id,
        "default_generation_settings": {"n_ctx": n_ctx, "params": params},
        "total_slots": slots,
        "chat_template": template if isinstance(template, str) else "",
        "is_sleeping": service.state(entry) != "loaded",
        "modalities": {"vision": False, "audio": False},
        "build_info": f"rusty-genius {__version__}",
    }


def _event(body: object) -> bytes:
    return b"data: " + dumps(body).encode() + b"\n\n"


def add_routes(router: Router, service: Service) -> None:
    """The management routes (with and without ``/v1``) on the HTTP app's router."""

    async def load(request: Request) -> Response:
        entry = service.served(_model_field(await read_json(request, service.settings.max_body)))
        try:
            await service.genius.load(entry.id)
        except GeniusError as err:
            raise _error_of(err) from None
        return json_response(service.model_card(entry))

    async def unload(request: Request) -> Response:
        entry = service.served(_model_field(await read_json(request, service.settings.max_body)))
        try:
            was_loaded = await service.genius.unload(entry.id)
        except GeniusError as err:
            raise _error_of(err) from None
        return json_response({**service.model_card(entry), "unloaded": was_loaded})

    async def delete(request: Request) -> Response:
        name = unquote(request.route_values.get("tail") or "")
        entry = service.served(name or "?")
        if service.table.is_fixed(entry):
            what = "the server's default model" if entry is service.table.default else "named on the command line"
            raise ApiError(409, f"'{entry.id}' is {what}: restart the server without it first", code="model_in_use")
        if not entry.registered:
            raise ApiError(400, f"'{entry.id}' is not a registered model: there is nothing to delete", param="model")
        try:
            removed = await service.genius.remove(entry.id)
        except GeniusError as err:
            raise _error_of(err) from None
        service.refresh()
        return json_response(
            {"id": entry.id, "object": "model", "deleted": True, "files_deleted": list(removed.deleted),
             "files_kept": list(removed.kept)}
        )  # fmt: skip

    async def props(request: Request) -> Response:
        return json_response(props_of(service, service.served(request.query.get("model", [None])[0])))

    router.add_get("/props", api(props))
    for prefix in ("/v1", ""):
        router.add_post(prefix + "/models/pull", api(Pull(service)))
        router.add_post(prefix + "/models/load", api(load))
        router.add_post(prefix + "/models/unload", api(unload))
        router.add_delete(prefix + "/models/*", api(delete))


__all__ = ["PROGRESS_EVERY", "Pull", "add_routes"]
