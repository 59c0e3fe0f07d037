"""Connection limits on both listeners: a header-read deadline, a cap on open connections, quiet accept errors.

uvicorn bounds none of these by itself: its keep-alive timer starts only after a response (a connection that never
finishes its request headers stays open forever), and its ``limit_concurrency`` answers 503 only once a request's
headers are read and never refuses a WebSocket upgrade (the upgrade returns before that check), so idle sockets
still hold a descriptor each. :class:`LimitedProtocol` (uvicorn's httptools protocol, which both listeners use for
the first request, WebSocket upgrades included) adds the two missing limits; :class:`AcceptErrors` keeps a
descriptor shortage from flooding the log.

Rules:
- Every moment a connection is not inside a request (from accept, and from the first byte after a response) runs
  under a deadline: the header timeout until its headers are complete, uvicorn's keep-alive (``--idle-timeout``)
  between requests. A request body that stalls (no byte for the header timeout while more is due) closes the
  connection too, so a trickled body cannot hold a slot. A request being answered (a long stream) runs under none.
- Over ``--max-connections`` a connection is answered 503 and closed, unread, on its first bytes or within
  :data:`REFUSAL_WAIT`, so the cap bounds the descriptors an idle flood can take (refusing once its headers are
  read, as uvicorn's ``limit_concurrency`` does, would let each hold one for the whole header timeout).
- An accept error is one log line per listener and error per interval, then a count; never a traceback.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from rusty_genius.ogenius.serve.openai_api import busy_error

log = logging.getLogger("rusty_genius.serve")

ACCEPT_ERROR = "socket.accept() out of system resource"
"""The message asyncio's ``_accept_connection`` gives the loop's exception handler on EMFILE, ENFILE, ENOBUFS and
ENOMEM (Lib/asyncio/selector_events.py)."""
REFUSAL_WAIT = 1.0
"""Seconds a connection over the cap may hold its descriptor waiting to send something before its 503."""


def _refusal(max_connections: int) -> bytes:
    error = busy_error(f"too many connections: this listener takes {max_connections} at once; try again shortly")
    head = [b"HTTP/1.1 503 Service Unavailable", b"content-type: application/json", b"connection: close"]
    head += [name + b": " + value for name, value in error.headers]
    body = error.body()
    head.append(b"content-length: " + str(len(body)).encode())
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class LimitedConfig(uvicorn.Config):
    """A uvicorn config whose connections run :class:`LimitedProtocol` with these limits."""

    def __init__(self, app: Any, *, header_timeout: float, max_connections: int, **kwargs: Any) -> None:
        super().__init__(app, http=LimitedProtocol, **kwargs)
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self.refusal = _refusal(max_connections)


class LimitedProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with a header-read deadline and a cap on the listener's connections.

    The deadline is armed at accept and by any byte that arrives while no request is in progress (so a client
    cannot stretch the keep-alive wait with stray CRLFs, which the parser skips without starting a request), and
    cancelled when a request's headers are complete; when it fires the connection is closed without a response.
    A connection over the cap is never parsed: it gets the 503 of :meth:`_refuse`.
    """

    def __init__(
        self,
        config: LimitedConfig,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = config
        self.header_timer: asyncio.TimerHandle | None = None
        """The header deadline, or for a refused connection the end of its wait."""
        self.refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # `connections` is this listener's open connections, this one and upgraded WebSockets included.
        self.refused = len(self.connections) > self.limits.max_connections
        if self.refused:  # answered on its first bytes (see _refuse), or after a short wait if none come
            self.header_timer = self.loop.call_later(REFUSAL_WAIT, self._refuse)
        else:
            self._arm()

    def data_received(self, data: bytes) -> None:
        if self.refused:
            self._refuse()
            return
        if self.cycle is None or self.cycle.response_complete:
            self._arm()
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._disarm()
        before = self.cycle
        super().on_headers_complete()
        # A new request whose body is still to come (not an upgrade, which makes no cycle): it must keep coming.
        if self.cycle is not before and self.cycle is not None and self.cycle.more_body:
            self._arm()

    def on_body(self, body: bytes) -> None:
        self._disarm()
        super().on_body(body)
        if self.cycle is not None and self.cycle.more_body and not self.cycle.response_complete:
            self._arm()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _unsupported_upgrade_warning(self) -> None:
        # An Upgrade on --addr is answered as plain HTTP (WebSockets live on --ws-addr). uvicorn would log two lines
        # per such request, advising to install a WebSocket library: wrong here, and any peer could fill the log.
        pass

    def _arm(self) -> None:
        if self.header_timer is None:
            self.header_timer = self.loop.call_later(self.limits.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _expired(self) -> None:
        self.header_timer = None
        if self.flow.read_paused:  # the body waits for the app to read it, not for the client: wait again
            self._arm()
            return
        self.transport.close()

    def _refuse(self) -> None:
        """Writes the 503 and closes, unread. Answering once the client has sent something, rather than at accept,
        lets a client that writes its request before reading (any HTTP or WebSocket client) read the 503; one
        answered before it wrote may see only a closed connection."""
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(self.limits.refusal)
            self.transport.close()


class AcceptErrors:
    """A loop exception handler that logs accept failures as one line per listener and error per ``interval``.

    On EMFILE, ENFILE, ENOBUFS or ENOMEM asyncio's ``_accept_connection`` (Lib/asyncio/selector_events.py) already
    stops accepting and retries after ``ACCEPT_RETRY_DELAY`` (1 s): new connections wait in the kernel's backlog
    meanwhile. But it does not leave its accept loop, so it reports the error once per remaining pass (up to the
    listen backlog, 2048 here) and again on every retry, each with a traceback from the default handler: about a
    million lines in 13 s when it happened. Here the first failure is one line; the rest are counted and told as
    one line at the end of each interval in which there were any. Other contexts go to the default handler.
    """

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self.counts: dict[tuple[str, str], int] = {}
        """(listener, error) -> failures since its last line, while its interval runs."""

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != ACCEPT_ERROR:
            loop.default_exception_handler(context)
            return
        exc = context.get("exception")
        code = getattr(exc, "errno", None) or 0
        key = (_listener(context.get("socket")), f"{errno.errorcode.get(code, 'error')} ({os.strerror(code)})")
        if key in self.counts:
            self.counts[key] += 1
            return
        log.warning("cannot accept connections on %s: %s; new ones wait, retried each second", *key)
        self._count(loop, key)

    def _count(self, loop: asyncio.AbstractEventLoop, key: tuple[str, str]) -> None:
        self.counts[key] = 0
        loop.call_later(self.interval, self._tell, loop, key)

    def _tell(self, loop: asyncio.AbstractEventLoop, key: tuple[str, str]) -> None:
        count = self.counts.pop(key)
        if count:  # still failing: one more line for this interval, and keep counting
            log.warning("cannot accept connections on %s: %s, %d more times in %gs", *key, count, self.interval)
            self._count(loop, key)


def _listener(sock: Any) -> str:
    try:
        host, port = sock.getsockname()[:2]
    except (AttributeError, OSError, TypeError, ValueError):
        return "a listener"
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


__all__ = ["ACCEPT_ERROR", "AcceptErrors", "LimitedConfig", "LimitedProtocol"]
