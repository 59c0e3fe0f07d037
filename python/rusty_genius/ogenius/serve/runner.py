"""Running both listeners: two uvicorn servers in one process and one event loop, sharing one Genius.

Rules:
- Both sockets are bound (and listening) before anything else starts, so a port that cannot be bound fails at once
  with a clear message and leaves nothing running; connections that arrive while the model loads wait in the
  backlog and are served once the apps start.
- uvicorn's servers would each capture SIGINT/SIGTERM (and raise them again on exit); ours leave signals alone and
  the runner handles them: the first signal refuses new requests, closes every running stream and asks both
  servers to exit; a second one forces them out.
- If either server stops on its own, the other is stopped too.
- Both listeners run under the connection limits of limits.py (header and idle timeouts, a cap per listener), and
  the loop logs accept errors through :class:`~limits.AcceptErrors` (one line per interval, never a traceback).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import socket
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from rusty_genius import CortexStrategy, Genius, InferenceConfig
from rusty_genius.ogenius.sampling import recommended_sampling
from rusty_genius.ogenius.serve import http, ws
from rusty_genius.ogenius.serve.limits import AcceptErrors, LimitedConfig
from rusty_genius.ogenius.serve.models import ModelTable, Served
from rusty_genius.ogenius.serve.security import Guard, Policy
from rusty_genius.ogenius.serve.service import Service
from rusty_genius.ogenius.serve.settings import Address, ServeSettings

log = logging.getLogger("rusty_genius.serve")

GRACE_SECONDS = 5
"""How long a shutdown waits for connections to finish before cutting them."""
SPARE_FILES = 64
"""Open files the process needs besides its connections (listeners, the model, pipes, the event loop)."""


class BindError(OSError):
    """A listen address that cannot be used; the message names it and the flag that set it."""


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the runner."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind(addr: Address, flag: str) -> socket.socket:
    """A socket bound to ``addr`` and listening; raises :class:`BindError`."""
    try:
        infos = socket.getaddrinfo(addr.host, addr.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as err:
        raise BindError(f"cannot listen on {addr} ({flag}): {err.strerror or err}") from None
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(2048)
    except OSError as err:
        sock.close()
        raise BindError(f"cannot listen on {addr} ({flag}): {err.strerror or err}") from None
    return sock


def _config(app: Any, settings: ServeSettings, websocket: bool) -> uvicorn.Config:
    return LimitedConfig(
        app,
        header_timeout=settings.header_timeout,
        max_connections=settings.max_connections,
        timeout_keep_alive=settings.idle_timeout,
        ws_ping_interval=settings.idle_timeout,  # a WebSocket peer that is gone is noticed by its missing pong
        ws_ping_timeout=settings.idle_timeout,
        lifespan="off",  # the runner starts and stops the apps and the Genius itself
        log_config=None,
        access_log=False,  # no per-request logging; never a header (the API key) in a log
        proxy_headers=False,
        server_header=False,
        ws="websockets-sansio" if websocket else "none",
        ws_max_size=settings.max_body,
        ws_per_message_deflate=False,  # token frames are tiny; compressing each costs more than it saves
        timeout_graceful_shutdown=GRACE_SECONDS,
    )


def _check_open_files(settings: ServeSettings) -> None:
    """Warns when both listeners at their cap could need more descriptors than the process may open: accepts then
    fail (and are retried) before the cap's 503 can answer."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    needed = 2 * settings.max_connections + SPARE_FILES
    if soft != resource.RLIM_INFINITY and needed > soft:
        log.warning(
            "--max-connections %d on two listeners may need %d open files, more than this process may open (%d): "
            "raise the limit (ulimit -n) or lower --max-connections", settings.max_connections, needed, soft,
        )  # fmt: skip


class Listeners:
    """The two bound, listening sockets (a context manager that closes them)."""

    def __init__(self, settings: ServeSettings) -> None:
        settings.check()
        self.http = bind(settings.addr, "--addr")
        try:
            self.ws = bind(settings.ws_addr, "--ws-addr")
        except BindError:
            self.http.close()
            raise
        self.settings = settings.bound(self.http.getsockname()[1], self.ws.getsockname()[1])

    def close(self) -> None:
        self.http.close()
        self.ws.close()

    def __enter__(self) -> Listeners:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, kw_only=True)
class Serving:
    """What to serve and how: the models, the defaults, the lifecycle and placement settings."""

    table: ModelTable
    defaults: InferenceConfig
    strategy: CortexStrategy
    max_queue: int = 32
    max_loaded: int = 3
    max_memory: int | str | None = "auto"
    flags: Mapping[str, Any] = field(default_factory=dict)
    """The sampling flags given (they win over a model's recommended sampling)."""

    def genius(self) -> Genius:
        models = {e.id: e.spec for e in self.table.entries}
        return Genius(
            self.table.default.id, models=models, strategy=self.strategy, max_queue=self.max_queue,
            max_loaded=self.max_loaded, max_memory=self.max_memory,
        )  # fmt: skip


def serve(listeners: Listeners, serving: Serving, *, on_ready: Callable[[ServeSettings], None] = lambda _: None) -> int:
    """Loads the default model and serves on ``listeners`` until SIGINT/SIGTERM; returns the exit code. A default
    model that does not load raises its GeniusError. The sockets are closed on return."""
    with listeners:
        return asyncio.run(_main(serving, listeners, on_ready))


def _recommended(entry: Served) -> dict[str, Any]:
    return recommended_sampling(entry.facts().get("metadata") or {}, entry.resolution)


async def _main(serving: Serving, listeners: Listeners, on_ready: Callable[[ServeSettings], None]) -> int:
    genius = serving.genius()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(AcceptErrors())
    settings = listeners.settings
    _check_open_files(settings)
    async with genius:
        service = Service(
            genius,
            serving.table,
            serving.defaults,
            settings,
            flags=serving.flags,
            recommended=_recommended,
        )
        service.metrics.attach(genius)
        policy = Policy(settings)
        http_app, ws_app = http.build(service), ws.build(service, policy)
        await http_app.start()  # type: ignore[no-untyped-call]
        await ws_app.start()  # type: ignore[no-untyped-call]
        servers = [
            _Server(
                _config(Guard(http_app, policy, settings.max_body, service.metrics.counting), settings, websocket=False)
            ),
            _Server(_config(Guard(ws_app, policy, settings.max_body), settings, websocket=True)),
        ]

        def stop(reason: str) -> None:
            if not service.closing:
                log.info("shutting down (%s)", reason)
            service.close_all()
            for server in servers:
                server.should_exit = True

        def on_signal(name: str) -> None:
            if service.closing:  # a second signal: stop waiting for connections
                for server in servers:
                    server.force_exit = True
            stop(name)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, signal.Signals(sig).name)
        try:
            tasks = [
                loop.create_task(servers[0].serve(sockets=[listeners.http])),
                loop.create_task(servers[1].serve(sockets=[listeners.ws])),
            ]
            # uvicorn exposes `started` only as a flag, so it is polled.
            while not all(s.started for s in servers) and not any(t.done() for t in tasks):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            if all(s.started for s in servers):
                on_ready(settings)
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            stop("a listener stopped")
            results = await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await http_app.stop()  # type: ignore[no-untyped-call]
            await ws_app.stop()  # type: ignore[no-untyped-call]
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures:
        log.error("a listener failed: %r", failure)
    return 1 if failures else 0
