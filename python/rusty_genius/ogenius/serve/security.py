"""The checks every request and WebSocket upgrade passes before an app sees it (DESIGN.md §6).

:class:`Guard` wraps each ASGI app:
- Host allow-list (DNS rebinding): loopback names, the bound host, this machine's name, ``--allow-host`` names and
  IP literals (a rebinding attack needs a domain name; an IP literal Host comes only from a page on that IP).
- Origin (cross-site requests and WebSocket hijacking): browsers send it; a request without one is not a browser's.
  Admitted: the request's own origin (the page served on ``--addr`` is a different origin from ``--ws-addr``, so the
  same host at the ``--addr`` port is admitted too), a loopback page on the ``--addr`` port when the request came
  over loopback, and ``--allow-origin`` entries. Cross-origin admitted requests get CORS headers naming that origin;
  never a wildcard.
- The API key: ``Authorization: Bearer KEY`` (or ``x-api-key: KEY`` over HTTP, as Anthropic's clients send it)
  compared in constant time, never logged. HTTP: every path but
  :data:`PUBLIC_PATHS` (the page, ``/health``, ``/v1/ws-info``). WebSocket: a wrong header refuses the upgrade; no
  header leaves the socket unauthenticated until an ``auth`` frame (browsers cannot set headers), see
  docs/websocket.md.
- Body caps: a declared Content-Length over ``--max-body-bytes`` gets 413 here; bodies without one are counted as
  they are read (:func:`read_body`); uvicorn caps WebSocket messages at the same size.
- Refusals on Anthropic's paths (``/v1/messages``…) take Anthropic's error shape (anthropic_api.error_of).
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any, cast
from urllib.parse import urlsplit

from blacksheep import Request
from blacksheep.exceptions import MessageAborted

from rusty_genius.ogenius.serve import anthropic_api
from rusty_genius.ogenius.serve.openai_api import ApiError
from rusty_genius.ogenius.serve.settings import ServeSettings

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

RECEIVE = "rusty_genius.receive"
"""Scope key: the server's own ``receive``, to notice a client that leaves (see http.py)."""
AUTHENTICATED = "rusty_genius.authenticated"
"""Scope key (WebSocket): whether the upgrade carried the right key (or none is needed)."""

LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
PUBLIC_PATHS = frozenset({"/", "/health", "/v1/ws-info", "/favicon.ico"})
"""What needs no API key (deny by default: every other path does, unknown ones included)."""


def split_host(value: str) -> tuple[str, int | None]:
    """``"Name:8080"`` → ``("name", 8080)``; ``"[::1]:80"`` → ``("::1", 80)``; a bad port gives ``None``."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    else:
        host, port_text = value, ""
    port = int(port_text) if port_text.isdigit() else None
    return host.rstrip("."), port


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def is_loopback_name(name: str) -> bool:
    return name in LOOPBACK or name.endswith(".localhost") or (_is_ip(name) and ipaddress.ip_address(name).is_loopback)


class Policy:
    """The allow-lists and the key, from the settings."""

    def __init__(self, settings: ServeSettings) -> None:
        names = set(LOOPBACK) | {h.lower().rstrip(".") for h in settings.allow_hosts}
        for addr in (settings.addr, settings.ws_addr):
            if not addr.is_wildcard:
                names.add(addr.host)
        if settings.addr.is_wildcard or settings.ws_addr.is_wildcard:
            names.update(n.lower() for n in (socket.gethostname(), socket.getfqdn()) if n)
        self.hosts = frozenset(names)
        self.origins = frozenset(o.rstrip("/").lower() for o in settings.allow_origins)
        self.page_port = settings.addr.port
        self._key = settings.api_key.encode() if settings.api_key else None

    @property
    def key_required(self) -> bool:
        return self._key is not None

    def host_ok(self, host: str) -> bool:
        return bool(host) and (host in self.hosts or _is_ip(host) or host.endswith(".localhost"))

    def origin_ok(self, origin: str, host: str, host_port: int | None) -> bool:
        """Whether a browser page at ``origin`` may call this listener, reached as ``host:host_port``."""
        origin = origin.rstrip("/").lower()
        if origin in self.origins:
            return True
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return False
        name = parts.hostname.rstrip(".")
        # Same origin: the Host header gives the port, or none for the scheme's default (behind a proxy, maybe TLS).
        if name == host and (port == self.page_port or port in ((host_port,) if host_port else (80, 443))):
            return True
        return port == self.page_port and is_loopback_name(name) and is_loopback_name(host)

    def key_ok(self, authorization: str) -> bool:
        """Constant-time check of an ``Authorization: Bearer KEY`` value (or of a bare key)."""
        if self._key is None:
            return True
        scheme, _, token = authorization.strip().partition(" ")
        candidate = token.strip() if scheme.lower() == "bearer" else authorization.strip()
        return hmac.compare_digest(candidate.encode(), self._key)

    def bare_key_ok(self, key: str) -> bool:
        """Constant-time check of an ``x-api-key`` value."""
        return self._key is None or hmac.compare_digest(key.strip().encode(), self._key)


_WANTED = (b"host", b"origin", b"authorization", b"x-api-key", b"content-length")


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """The headers the guard reads. One sent twice is an ambiguity we refuse: it comes out as an invalid Host."""
    found: dict[bytes, bytes] = {}
    for name, value in scope.get("headers", ()):
        if name in _WANTED:
            if name in found:
                return {b"host": b""}
            found[name] = value
    return found


class Guard:
    """ASGI middleware that applies the :class:`Policy` before ``app``."""

    def __init__(
        self, app: ASGIApp, policy: Policy, max_body: int, count: Callable[[Scope, Send], Send] | None = None
    ) -> None:
        self.app = app
        self.policy = policy
        self.max_body = max_body
        self.count = count
        """Wraps an HTTP request's ``send`` to count it with its final status (metrics.Metrics.counting)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if kind == "http" and self.count is not None:
            send = self.count(scope, send)
        headers = _headers(scope)
        host, host_port = split_host(headers.get(b"host", b"").decode("latin-1"))
        origin = headers.get(b"origin", b"").decode("latin-1")
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        denial: ApiError | None = None
        if not self.policy.host_ok(host):
            denial = ApiError(400, "the Host header is not one this server answers to", code="invalid_host")
        elif origin and not self.policy.origin_ok(origin, host, host_port):
            denial = ApiError(403, f"requests from the origin {origin} are not allowed", code="origin_not_allowed")
        elif kind == "websocket":
            if authorization and not self.policy.key_ok(authorization):
                denial = _unauthorized()
            scope[AUTHENTICATED] = not self.policy.key_required or bool(authorization)
        else:
            denial = self._http_denial(scope, headers, authorization)
        if denial is not None:
            if kind == "websocket":
                await _deny_ws(scope, send, denial)
            else:
                await _deny_http(send, denial, scope.get("path", ""))
            return
        if kind == "http":
            scope[RECEIVE] = receive
            if origin and not _same_origin(origin, headers.get(b"host", b"").decode("latin-1")):
                await self._cors(scope, receive, send, origin)
                return
        await self.app(scope, receive, send)

    def _http_denial(self, scope: Scope, headers: dict[bytes, bytes], authorization: str) -> ApiError | None:
        path: str = scope.get("path", "")
        if (
            self.policy.key_required
            and scope.get("method") != "OPTIONS"
            and path not in PUBLIC_PATHS
            and not (authorization and self.policy.key_ok(authorization))
            and not (b"x-api-key" in headers and self.policy.bare_key_ok(headers[b"x-api-key"].decode("latin-1")))
        ):
            return _unauthorized()
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return too_large(self.max_body)
        return None

    async def _cors(self, scope: Scope, receive: Receive, send: Send, origin: str) -> None:
        cors = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"vary", b"Origin"),
            (b"access-control-expose-headers", b"X-Model-Load-Seconds"),
        ]
        if scope.get("method") == "OPTIONS":
            cors += [
                (b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
                (b"access-control-allow-headers", b"Authorization, Content-Type, X-Api-Key, Anthropic-Version"),
                (b"access-control-max-age", b"600"),
            ]
            await send({"type": "http.response.start", "status": 204, "headers": cors})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *cors]}
            await send(message)

        await self.app(scope, receive, send_with_cors)


def _same_origin(origin: str, host_header: str) -> bool:
    parts = urlsplit(origin.lower())
    return parts.netloc == host_header.strip().lower()


def _unauthorized() -> ApiError:
    return ApiError(
        401,
        "Incorrect or missing API key: send 'Authorization: Bearer <key>' (or 'X-Api-Key: <key>').",
        type="authentication_error",  # llama-server's type; OpenAI's clients go by the status (AuthenticationError)
        code="invalid_api_key",
        headers=((b"www-authenticate", b"Bearer"),),
    )


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request body is larger than {limit} bytes", code="request_too_large")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or 413 once more than ``limit`` bytes arrive (for bodies sent without a length)."""
    chunks: list[bytes] = []
    size = 0
    # BlackSheep's stub calls stream() a coroutine; it is an async generator.
    try:
        async for chunk in cast(AsyncIterator[bytes], request.stream()):
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            chunks.append(chunk)
    except MessageAborted:  # the client left, or stalled past --header-timeout, before its body was whole
        raise ApiError(400, "the request body was cut off before its declared length; send it whole") from None
    return b"".join(chunks)


def response_headers(error: ApiError) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), *error.headers]


async def _deny_http(send: Send, error: ApiError, path: str = "") -> None:
    status, body = (
        anthropic_api.error_of(error) if anthropic_api.is_anthropic_path(path) else (error.status, error.body())
    )
    headers = [*response_headers(error), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _deny_ws(scope: Scope, send: Send, error: ApiError) -> None:
    """Refuses an upgrade with an HTTP status and body where the server can, else with a bare 403."""
    if "websocket.http.response" in scope.get("extensions", {}):
        body = error.body()
        headers = [*response_headers(error), (b"content-length", str(len(body)).encode())]
        await send({"type": "websocket.http.response.start", "status": error.status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})
