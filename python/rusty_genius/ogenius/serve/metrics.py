"""The server's Prometheus metrics (``GET /metrics``, docs/metrics.md): every definition is here, produced by
``prometheus_client`` in its text format, never formatted by hand.

Rules:
- One registry per server (:class:`Metrics`, owned by the :class:`~service.Service`), never the process-global default
  one, so tests and several servers in one process do not collide.
- Requests are counted in one place, the HTTP listener's security.Guard (:meth:`Metrics.counting`), with their final
  status, refusals (401, 413, a bad Host) included; ``endpoint`` is the route template (``/v1/models/*``), ``other``
  for a path no route matches, so a client cannot grow the label set. WebSocket generations are counted when they end
  (:meth:`Generation.end`): endpoint ``ws`` (the chat protocol) or ``ws:/v1/responses``.
- Generation metrics are recorded per batch of events, never per token (:class:`Generation`): time to first token is
  from the request being queued (so a queue wait or a cold load counts) to the first batch that carries more than
  ``process_start``; inter-token latency is, per choice, the time since that choice's previous batch divided by the
  events in the new batch (one event per token of content, thinking or tool-call arguments; with logprobs two per
  token, so it then reads half), one observation per batch. Token counts come from the ``complete`` event's usage.
- Gauges are read at scrape time from the Genius and the service (:class:`_Live`), one series per served model,
  never waking a model: ``Genius.states``, ``Genius.engine_of`` (None unless loaded), the estimated bytes of each
  loaded model (``Genius.resident_bytes``), the service's requests in flight per model.
- Loads and unloads come from the brainstem's lifecycle notices (:meth:`Metrics.attach`); a load's duration is the
  brainstem's own measure (the one its reload NOTICE logs).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rusty_genius.brainstem.protocol import Notice
from rusty_genius.core.errors import GeniusError
from rusty_genius.core.events import Event

if TYPE_CHECKING:
    from blacksheep import Router

    from rusty_genius import Genius
    from rusty_genius.ogenius.serve.security import Scope, Send
    from rusty_genius.ogenius.serve.service import Service

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Seconds, for local models: a few ms per token on a GPU to tens of seconds for a cold load or a long prompt."""
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    """The metrics of one server."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "rusty_genius_requests", "HTTP requests answered, by route template, method and status; WebSocket "
            "generations by protocol (method WS)", ["endpoint", "method", "status"], registry=registry,
        )  # fmt: skip
        self.ttft = Histogram(
            "rusty_genius_time_to_first_token_seconds", "From a generation being queued to its first generated event",
            ["model"], buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.itl = Histogram(
            "rusty_genius_inter_token_latency_seconds", "Time between a choice's batches of events divided over the "
            "events of the later batch (one observation per batch)", ["model"], buckets=LATENCY_BUCKETS,
            registry=registry,
        )  # fmt: skip
        self.prompt_tokens = Counter("rusty_genius_prompt_tokens", "Prompt tokens", ["model"], registry=registry)
        self.completion_tokens = Counter(
            "rusty_genius_completion_tokens", "Generated tokens", ["model"], registry=registry
        )
        self.cached_prompt_tokens = Counter(
            "rusty_genius_cached_prompt_tokens", "Prompt tokens served from the prompt cache instead of evaluated",
            ["model"], registry=registry,
        )  # fmt: skip
        self.restored_prompt_tokens = Counter(
            "rusty_genius_restored_prompt_tokens", "Prompt tokens restored from the KV store (conversations saved when "
            "the model was unloaded or stopped), a part of the cached ones", ["model"], registry=registry,
        )  # fmt: skip
        self.loads = Counter("rusty_genius_model_loads", "Model loads (reloads included)", ["model"], registry=registry)
        self.unloads = Counter("rusty_genius_model_unloads", "Model unloads", ["model"], registry=registry)
        self.load_seconds = Histogram(
            "rusty_genius_model_load_seconds", "How long each model load took", ["model"], buckets=LOAD_BUCKETS,
            registry=registry,
        )  # fmt: skip
        registry.register(_Live(service))
        self._static: dict[tuple[str, str], str] = {}
        self._dynamic: list[tuple[str, Any, str]] = []
        self._router: Router | None = None

    # -- requests -----------------------------------------------------------------------------------------------

    def routes(self, router: Router) -> None:
        """The HTTP app's router: its route templates are read on the first request (BlackSheep fills the router's
        table when the app starts)."""
        self._router = router

    def endpoint(self, method: str, path: str) -> str:
        """The route template ``path`` matches (``other`` when none does)."""
        if self._router is not None:
            for name, routes in self._router.routes.items():
                for route in routes:
                    template = route.pattern.decode()
                    if route.has_params:
                        self._dynamic.append((name.decode(), route, template))
                    else:
                        self._static[name.decode(), template.lower()] = template
            self._router = None
        found = self._static.get((method, path.lower()))
        if found is not None:
            return found
        raw = path.encode()
        return next((t for m, r, t in self._dynamic if m == method and r.match_by_path(raw)), "other")

    def counting(self, scope: Scope, send: Send) -> Send:
        """``send``, counting the request with its status when its response starts (security.Guard calls this)."""

        async def counted(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                method = scope.get("method", "")
                endpoint = self.endpoint(method, scope.get("path", ""))
                self.requests.labels(endpoint, method, str(message["status"])).inc()
            await send(message)

        return counted

    # -- generations and models ---------------------------------------------------------------------------------

    def ws_request(self, endpoint: str, status: int) -> None:
        """Counts a WebSocket request (a generation that ended, or one refused before it began)."""
        self.requests.labels(endpoint, "WS", str(status)).inc()

    def generation(self, endpoint: str | None = None, model: str | None = None) -> Generation:
        """Starts timing a generation just queued on ``model`` (None: the default); ``endpoint``: counts it as a
        request when it ends (WebSocket)."""
        return Generation(self, model or self.service.model, endpoint)

    def attach(self, genius: Genius) -> None:
        """Follows the lifecycle of ``genius``'s models (call once it started): loads already done count now."""
        genius.watch(self._lifecycle)

    def _lifecycle(self, notice: Notice) -> None:
        model = notice.model  # the served model's id: its key in the Genius
        if notice.kind == "unloaded":
            self.unloads.labels(model).inc()
            return
        self.loads.labels(model).inc()
        if notice.seconds is not None:
            self.load_seconds.labels(model).observe(notice.seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class Generation:
    """One request's generation, recorded per batch of events (see the module's rules)."""

    __slots__ = ("_first", "_last", "_metrics", "completed", "endpoint", "model", "start")

    def __init__(self, metrics: Metrics, model: str, endpoint: str | None) -> None:
        self._metrics = metrics
        self.model = model
        self.endpoint = endpoint
        self.start = time.perf_counter()
        self._first = True
        self._last: dict[int, float] = {}
        self.completed = False

    def batch(self, events: Sequence[Event], index: int = 0) -> None:
        """Records a batch of choice ``index``'s events as it arrives."""
        if not events:
            return
        now = time.perf_counter()
        last = self._last.get(index)
        tokens = len(events)
        end = events[-1] if events[-1].kind == "complete" else None
        if end is not None:
            tokens -= 1
        if last is not None:
            if tokens > 0:
                self._metrics.itl.labels(self.model).observe((now - last) / tokens)
                self._last[index] = now
        elif tokens > 1 or (tokens == 1 and events[0].kind != "process_start"):
            if self._first:
                self._metrics.ttft.labels(self.model).observe(now - self.start)
                self._first = False
            self._last[index] = now
        if end is not None and end.usage is not None:
            self.completed = True
            m, usage = self._metrics, end.usage
            m.prompt_tokens.labels(self.model).inc(usage.prompt_tokens)
            m.completion_tokens.labels(self.model).inc(usage.completion_tokens)
            m.cached_prompt_tokens.labels(self.model).inc(usage.cached_prompt_tokens)
            m.restored_prompt_tokens.labels(self.model).inc(usage.restored_prompt_tokens)

    def end(self, status: int | None = None) -> None:
        """Counts a WebSocket generation (once): ``status`` when it failed, else 200 if it completed, 499 if not."""
        if self.endpoint is not None:
            self._metrics.ws_request(self.endpoint, status or (200 if self.completed else 499))
            self.endpoint = None


class _Live(Collector):
    """The gauges, read at scrape time; nothing here loads a model."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        service, genius = self.service, self.service.genius
        states, resident = genius.states(), genius.resident_bytes()
        docs = {
            "rusty_genius_model_loaded": "1 while the model is loaded",
            "rusty_genius_model_resident_bytes": (
                "Estimated bytes the loaded model takes (weights, KV cache, compute buffers, from its GGUF); 0 when "
                "unloaded"
            ),
            "rusty_genius_running_sequences": "Generations the engine is running now",
            "rusty_genius_parallel_sequences": "Generations the engine runs at once (0 when unloaded)",
            "rusty_genius_queue_depth": (
                "Requests admitted and waiting: for their turn in the queue or for the model load"
            ),
        }
        families = {name: GaugeMetricFamily(name, doc, labels=["model"]) for name, doc in docs.items()}
        for entry in service.table.entries:
            loaded = states.get(entry.id) == "loaded"
            running = parallel = 0
            engine = genius.engine_of(entry.id) if loaded else None
            if engine is not None:
                try:
                    running, parallel = engine.running, engine.parallel
                except GeniusError:  # closed between the two reads
                    loaded = False
            values = {
                "rusty_genius_model_loaded": int(loaded),
                "rusty_genius_model_resident_bytes": resident.get(entry.id, 0) if loaded else 0,
                "rusty_genius_running_sequences": running,
                "rusty_genius_parallel_sequences": parallel,
                "rusty_genius_queue_depth": max(0, service.in_flight_of(entry.id) - running),
            }
            for name, value in values.items():
                families[name].add_metric([entry.id], value)
        yield from families.values()

    def describe(self) -> Iterator[Metric]:
        return iter(())


__all__ = ["CONTENT_TYPE", "Generation", "Metrics"]
