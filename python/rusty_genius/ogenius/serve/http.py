"""The OpenAI-compatible HTTP app on ``--addr`` (BlackSheep, its own Router).

Routes: ``POST /v1/chat/completions`` (JSON or SSE), ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``
(Anthropic's Messages API, anthropic_api.py; its errors in Anthropic's shape), OpenAI's Responses API under
``/v1/responses`` (responses_http.py), ``POST /v1/completions`` and ``POST /v1/embeddings`` (completions_api.py,
embeddings_api.py; these two, chat completions and ``GET /v1/models`` also without ``/v1``, as llama-server),
llama-server's ``POST /tokenize``, ``/detokenize`` and ``/apply-template`` (tokens_api.py), ``GET /v1/models``,
``GET /v1/models/{id}``, ``GET /health``, ``GET /metrics`` (Prometheus, metrics.py; under the API key when one is set),
``GET /v1/ws-info`` (where the WebSocket listens, for the web page) and ``GET /`` (the web chat page, static/index.html,
served with a strict Content-Security-Policy: its inline script and style by hash, connections only to this origin
and the WebSocket address it is told).

Rules:
- Each request is read up to ``--max-body-bytes``, parsed by request_json (through http_shared.read_json: nesting
  bounded, lone surrogates refused), checked (openai_api), then queued; every generating API answers
  through respond.py: the response starts once the first events arrive, so a full queue, a bad setting or a prompt
  too long for the context still get a proper status code; an error after that arrives in the stream.
- A client that leaves stops its generation: a task waits on the server's ``receive`` (which reports
  ``http.disconnect``) beside the handler and closes the stream, even while the request waits in the queue or for a
  load. Other clients are never touched.
- ``count_tokens`` generates nothing: the engine renders the prompt as a chat request would (template, tools,
  settings) and counts its tokens (``Genius.count_tokens``), waiting its turn between decode steps.
- No per-token logging; one write per batch of ready events (``ChatStream.batch``, encode.py).
- ``n`` > 1: the n choices run at once and are read together (choices.py); streamed, their chunks interleave as
  they arrive. One choice failing fails the request (the usual error response, or an SSE ``error`` chunk once
  streaming) and closes the others; a client that leaves stops them all.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Callable
from importlib.resources import files
from urllib.parse import unquote

from blacksheep import Application, Content, Request, Response, Router

from rusty_genius.core.errors import GeniusError
from rusty_genius.ogenius.serve import (
    anthropic_api,
    anthropic_encode,
    completions_api,
    embeddings_api,
    encode,
    models_api,
    responses_http,
    tokens_api,
)
from rusty_genius.ogenius.serve.choices import Choices
from rusty_genius.ogenius.serve.http_shared import (
    LOAD_HEADER,
    anthropic_error_response,
    error_response,
    json_response,
    load_headers,
    read_json,
)
from rusty_genius.ogenius.serve.http_shared import api as _api
from rusty_genius.ogenius.serve.metrics import CONTENT_TYPE
from rusty_genius.ogenius.serve.openai_api import ApiError, ChatRequest, api_error_of, parse_chat
from rusty_genius.ogenius.serve.respond import respond
from rusty_genius.ogenius.serve.security import is_loopback_name, split_host
from rusty_genius.ogenius.serve.service import Service
from rusty_genius.ogenius.serve.settings import Address
from rusty_genius.ogenius.serve.ws import PROTOCOL


def _load_headers(choices: Choices) -> list[tuple[bytes, bytes]]:
    return load_headers(choices.load_seconds)


class Completions:
    """``POST /v1/chat/completions``."""

    def __init__(self, service: Service) -> None:
        self.service = service

    async def __call__(self, request: Request) -> Response:
        data = await read_json(request, self.service.settings.max_body)
        chat = parse_chat(data)
        choices = Choices(self.service.open_choices(chat))
        model = self.service.model_of(choices.streams[0])
        encoding = encode.ChatEncoding(model, chat.include_usage, choices.n, chat.logprobs)
        return await respond(self.service, request, choices, chat.stream, encoding, _error_of(chat))


def _error_of(chat: ChatRequest) -> Callable[[GeniusError], ApiError]:
    return lambda err: api_error_of(err, chat.params)


class Messages:
    """``POST /v1/messages`` (Anthropic), or ``POST /v1/messages/count_tokens`` when ``counting``."""

    def __init__(self, service: Service, counting: bool = False) -> None:
        self.service = service
        self.counting = counting

    async def __call__(self, request: Request) -> Response:
        data = await read_json(request, self.service.settings.max_body)
        chat = anthropic_api.parse(data, counting=self.counting)
        if self.counting:
            return json_response({"input_tokens": await self._count(request, chat)})
        choices = Choices([self.service.open(chat)])
        encoding = anthropic_encode.MessageEncoding(self.service.model_of(choices.streams[0]))
        return await respond(self.service, request, choices, chat.stream, encoding, _error_of(chat))

    async def _count(self, request: Request, chat: ChatRequest) -> int:
        genius, config = self.service.genius, self.service.config_of(chat)
        return await tokens_api.run_call(
            self.service,
            request,
            chat.model,
            lambda model: genius.count_tokens(chat.messages, config, model=model, **chat.settings),
        )


def build(service: Service) -> Application:
    """The HTTP app (wrap it in security.Guard before serving)."""
    router = Router()  # its own: two Applications on BlackSheep's module-level router raise SharedRouterError
    app = Application(router=router)
    settings = service.settings

    async def models(request: Request) -> Response:
        if service.table.registry_changed():
            service.refresh()
        return json_response({"object": "list", "data": [service.model_card(e) for e in service.table.entries]})

    async def model(request: Request) -> Response:
        name = unquote(request.route_values.get("tail") or "")
        return json_response(service.model_card(service.served(name or "?")))

    async def health(request: Request) -> Response:
        status = "shutting_down" if service.closing else "ok"
        states = service.genius.states()
        loaded = [e.id for e in service.table.entries if states.get(e.id) == "loaded"]
        return json_response({"status": status, "model": service.model, "loaded": service.loaded, "models": loaded})

    async def metrics(request: Request) -> Response:
        return Response(200, None, Content(CONTENT_TYPE.encode(), service.metrics.render()))

    async def ws_info(request: Request) -> Response:
        host, _ = split_host((request.get_first_header(b"host") or b"").decode("latin-1"))
        return json_response(
            {
                "url": ws_url(service, host),
                "protocol": PROTOCOL,
                "auth": "bearer" if settings.api_key else "none",
                "max_message_bytes": settings.max_body,
            }
        )

    async def index(request: Request) -> Response:
        host, _ = split_host((request.get_first_header(b"host") or b"").decode("latin-1"))
        return page_response(ws_url(service, host))

    async def not_found(request: Request) -> Response:
        error = ApiError(404, f"no route {request.method} {request.path}", code="not_found")
        return (
            anthropic_error_response(error) if anthropic_api.is_anthropic_path(request.path) else error_response(error)
        )

    router.add_post("/v1/chat/completions", _api(Completions(service)))
    router.add_post("/chat/completions", _api(Completions(service)))  # llama-server's alias without /v1
    completions_api.add_routes(router, service)  # /v1/completions, /completions
    embeddings_api.add_routes(router, service)  # /v1/embeddings, /embeddings
    tokens_api.add_routes(router, service)  # /tokenize, /detokenize, /apply-template
    router.add_post(anthropic_api.PATH, _api(Messages(service), anthropic=True))
    router.add_post(anthropic_api.PATH + "/count_tokens", _api(Messages(service, counting=True), anthropic=True))
    responses_http.add_routes(router, service)
    models_api.add_routes(router, service)  # /v1/models/pull, load, unload, DELETE /v1/models/{id}
    router.add_get("/v1/models", _api(models))
    router.add_get("/models", _api(models))
    router.add_get("/v1/models/*", _api(model))
    router.add_get("/health", _api(health))
    router.add_get("/metrics", _api(metrics))
    router.add_get("/v1/ws-info", _api(ws_info))
    router.add_get("/", index)
    router.fallback = not_found
    service.metrics.routes(router)
    return app


def ws_url(service: Service, request_host: str) -> str:
    """The WebSocket URL as a page reached at ``request_host`` should use it."""
    ws = service.settings.ws_addr
    if request_host and (ws.is_wildcard or (is_loopback_name(ws.host) and is_loopback_name(request_host))):
        host = request_host
    else:
        host = ws.host
    return Address(host, ws.port).url("ws") + "/"


@functools.cache
def _page() -> tuple[bytes, str, str]:
    """The web page (read once) and the CSP sources of its inline scripts and styles: their sha256 hashes."""
    html = (files("rusty_genius.ogenius.serve") / "static" / "index.html").read_text("utf-8")

    def hashes(tag: str) -> str:
        bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.S)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in bodies)

    return html.encode(), hashes("script"), hashes("style")


def page_response(ws: str) -> Response:
    """The page, allowed to connect only to its own origin and to ``ws`` (the URL GET /v1/ws-info gives it)."""
    body, scripts, styles = _page()
    socket = ws.rstrip("/")
    if "[" in socket:  # CSP host sources cannot name an IPv6 address: allow WebSockets, the page dials only ``ws``
        socket = "ws:"
    csp = (
        f"default-src 'none'; script-src {scripts}; style-src {styles}; connect-src 'self' {socket}; "
        "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
        "require-trusted-types-for 'script'; trusted-types 'none'"
    )
    headers = [
        (b"content-security-policy", csp.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
        (b"cache-control", b"no-cache"),
    ]
    return Response(200, headers, Content(b"text/html; charset=utf-8", body))


__all__ = [
    "LOAD_HEADER",
    "anthropic_error_response",
    "build",
    "error_response",
    "json_response",
    "page_response",
    "ws_url",
]
