"""The web node's Prometheus metrics: ``GET /metrics`` (unauthenticated, like most
Prometheus targets; it shows counts, route templates, service names and versions and
compute node addresses, never a secret, a user name or a request's content).

Each app has a :class:`~prometheus_client.CollectorRegistry` of its own (several web
nodes may run in one process, as in the tests). Requests are counted by an ASGI
middleware, labelled with the route's template (``/api/{name}/{version}``, never the raw
path; paths that match no route are ``route="unmatched"``), so the number of series is
bounded by the API, not by what clients send. Service calls — HTTP and batch alike — are
counted where they run (:meth:`rexec.web.services.Services.call`), by service, version
and outcome. What the node holds (live sessions, compute nodes as last checked) is read
at scrape time; the batch queue's depth is one ``COUNT ... GROUP BY state`` run in a
worker thread at scrape time, never on the event loop. See docs/operations.md.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rexec.web.db import BatchItem, RSession
from rexec.web.errors import ApiError
from rexec.web.services import CallFailed

if TYPE_CHECKING:
    from rexec.web.app import WebNode

PATH = "/metrics"
#: Seconds the scrape-time batch count may take; past it the scrape answers without it.
COUNT_TIMEOUT = 5.0
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
#: A failed call's HTTP status (CallFailed.status) -> its ``outcome`` label.
FAILURES = {499: "cancelled", 502: "failed", 503: "busy", 504: "timeout"}


class Metrics:
    """One web node's metrics: its registry, the counters the code paths bump and a
    collector for what is read at scrape time."""

    def __init__(self, node: WebNode) -> None:
        self.node = node
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "rexec_web_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "rexec_web_http_request_duration_seconds",
            "Seconds from a request's arrival to the end of its answer, by route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "rexec_web_http_requests_in_flight", "HTTP requests being answered.", registry=registry
        )
        self.calls = Counter(
            "rexec_web_service_calls",
            "Service calls (HTTP and batch), by service, version and outcome.",
            ["service", "version", "outcome"],
            registry=registry,
        )
        self.call_latency = Histogram(
            "rexec_web_service_call_duration_seconds",
            "Seconds a service call took (inputs, waiting for a shell, R, outputs).",
            ["service", "version"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.state = NodeCollector(node)
        registry.register(self.state)
        ProcessCollector(registry=registry)

    async def scrape(self) -> bytes:
        """The exposition text; the database is asked in a worker thread."""
        try:
            counts = await asyncio.wait_for(asyncio.to_thread(self._batch_counts), COUNT_TIMEOUT)
        except Exception:  # the database is down or slow: answer without the queue
            counts = None
        self.state.batch = counts
        return generate_latest(self.registry)

    def _batch_counts(self) -> dict[str, int]:
        query = (
            select(BatchItem.state, func.count())
            .where(BatchItem.state.in_(("queued", "running")))
            .group_by(BatchItem.state)
        )
        sessions = select(func.count()).select_from(RSession).where(RSession.state == "active")
        with self.node.db.session() as db:
            counts = {"queued": 0, "running": 0}
            counts.update({state: int(n) for state, n in db.execute(query).all()})
            counts["sessions"] = int(db.scalar(sessions) or 0)
        return counts

    def count_calls(self, call: Callable[..., Awaitable[dict[str, Any]]]) -> Callable[..., Any]:
        """``Services.call`` wrapped: every call counted by its outcome, and timed."""

        @functools.wraps(call)
        async def counted(defn: Any, body: Any, **options: Any) -> dict[str, Any]:
            started = time.perf_counter()
            outcome = "error"
            try:
                answer = await call(defn, body, **options)
                outcome = "success" if answer.get("success") else "r_error"
                return answer
            except CallFailed as exc:
                outcome = FAILURES.get(exc.status, "failed")
                raise
            except ApiError as exc:
                outcome = "bad_input" if exc.status == 400 else "error"
                raise
            except asyncio.CancelledError:
                outcome = "aborted"
                raise
            finally:
                self.calls.labels(defn.name, defn.version, outcome).inc()
                self.call_latency.labels(defn.name, defn.version).observe(
                    time.perf_counter() - started
                )

        return counted


class NodeCollector(Collector):
    """What the web node holds, read when scraped (cheap, in memory), and the batch
    queue's counts that :meth:`Metrics.scrape` fetched just before."""

    def __init__(self, node: WebNode) -> None:
        self.node = node
        self.batch: dict[str, int] | None = None

    def collect(self) -> Iterator[Metric]:
        node = self.node
        live = GaugeMetricFamily(
            "rexec_web_sessions_attached",
            "Sessions this web node is serving a request of now (each a resumed R shell; "
            "between requests sessions are parked on their compute nodes).",
        )
        live.add_metric([], len(node.sessions.attached))
        yield live
        running = GaugeMetricFamily(
            "rexec_web_batch_items_running_here", "Batch items this web node is running."
        )
        running.add_metric([], len(node.batches.running))
        yield running
        database = GaugeMetricFamily(
            "rexec_web_database_up", "1 if the batch queue could be counted at this scrape."
        )
        database.add_metric([], 0 if self.batch is None else 1)
        yield database
        if self.batch is not None:
            queue = GaugeMetricFamily(
                "rexec_web_batch_items",
                "Batch items queued or running, on every web node sharing the database.",
                labels=["state"],
            )
            for state in ("queued", "running"):
                queue.add_metric([state], self.batch.get(state, 0))
            yield queue
            active = GaugeMetricFamily(
                "rexec_web_sessions_active",
                "Open R sessions, on every web node sharing the database (any serves each).",
            )
            active.add_metric([], self.batch.get("sessions", 0))
            yield active
        yield from _compute(node.compute.status())


def _compute(status: list[dict[str, Any]]) -> Iterator[Metric]:
    """The compute nodes as this web node last saw them (``Compute.status()``)."""

    def family(name: str, doc: str, *labels: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"rexec_web_compute_{name}", doc, labels=["node", *labels])

    up = family("node_up", "1 unless the compute node failed its last check or connection.")
    draining = family("node_draining", "1 if an Owner set the compute node to draining.")
    held = family(
        "sessions_held", "Connections this web node holds on the compute node now (requests)."
    )
    free = family("shells_free", "Shells of the compute node new sessions from here may take.")
    age = family("check_age_seconds", "Seconds since the compute node was last checked.")
    pools = {
        key: family(f"pool_{key}_shells", doc, "pool")
        for key, doc in (
            ("idle", 'Idle shells of the pool at the last check (pool "": the default).'),
            ("busy", "Busy shells of the pool at the last check."),
            ("max", "The pool's most shells at the last check."),
        )
    }
    for entry in status:
        name = str(entry.get("name", ""))
        state = entry.get("state")
        up.add_metric([name], 0 if state in ("down", "fail") else 1)
        draining.add_metric([name], 1 if state == "draining" else 0)
        pool = entry.get("pool") or {}
        if "busy" in pool:
            held.add_metric([name], pool["busy"])
        if "free" in pool:
            free.add_metric([name], pool["free"])
        if entry.get("checkedAgo") is not None:
            age.add_metric([name], entry["checkedAgo"])
        for pool_name, stats in sorted((entry.get("pools") or {}).items()):
            for key, family_ in pools.items():
                if key in stats:
                    family_.add_metric([name, pool_name], stats[key])
    yield from (up, draining, held, free, age, *pools.values())


class MetricsMiddleware:
    """Counts and times every HTTP request by method, route template and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: list[Any]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = self.metrics
        started = time.perf_counter()
        status = 500  # unless an answer starts: an exception past every handler

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics.in_flight.inc()
        try:
            await self.app(scope, receive, watched)
        finally:
            metrics.in_flight.dec()
            method = scope["method"] if scope["method"] in _METHODS else "other"
            route = self._route(scope)
            metrics.requests.labels(method, route, str(status)).inc()
            metrics.latency.labels(method, route).observe(time.perf_counter() - started)

    def _route(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is not None and isinstance(getattr(route, "path", None), str):
            return route.path
        path = scope.get("path", "")
        for candidate in self.routes:  # static files under a Mount (Swagger UI's assets)
            if isinstance(candidate, Mount) and path.startswith(candidate.path + "/"):
                return candidate.path + "/{path}"
        return "unmatched"


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def install(app: FastAPI) -> Metrics:
    """Count requests and service calls of ``app`` (whose ``state.node`` is set) and
    serve ``GET /metrics``."""
    node: WebNode = app.state.node
    disable_created_metrics()  # no `_created` series: half as many, and none is used
    metrics = Metrics(node)
    app.state.metrics = metrics
    # Services.call is wrapped on this node's instance (HTTP and batch calls go through
    # it); a node given to a second app is counted by the newer app only.
    uncounted = inspect.unwrap(node.services.call)
    node.services.call = metrics.count_calls(uncounted)  # type: ignore[method-assign]
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=app.router.routes)

    @app.get(PATH, include_in_schema=False)
    async def prometheus() -> Response:
        return Response(await metrics.scrape(), media_type=CONTENT_TYPE_LATEST)

    return metrics
