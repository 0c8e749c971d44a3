"""The compute node's Prometheus metrics: ``GET /metrics`` on ``metrics.host:metrics.port``.

Everything is read at scrape time by one collector (:class:`NodeCollector`): each pool's
:meth:`~rexec.compute.supervisor.pool.Pool.stats` and counters, and the supervisor's own
counts (:class:`Counts`: connections accepted and refused, logins), kept as plain
integers the supervisor bumps on its event loop. Nothing is computed between scrapes.

The endpoint is served from the supervisor's own event loop by a deliberately small
HTTP/1.0 responder (no keep-alive, one request per connection): a scraper that is slow,
sends too much or opens many connections costs a socket, never a blocked loop — the
request head is bounded (:data:`MAX_REQUEST`), the whole exchange has a deadline
(:data:`TIMEOUT`) and at most :data:`MAX_CONNECTIONS` are served at once (the rest are
closed at once). It listens on loopback by default: R shells run on the same machine and
can reach it as any local process can (it shows counts and pool names, no secrets, and
accepts nothing but ``GET``). See docs/operations.md.

Beside ``/metrics`` it answers the probes of a load balancer or Kubernetes (no login,
states and the default pool's numbers only): ``GET /healthz`` is 200 while the
supervisor's loop serves (liveness), ``GET /readyz`` is 200 with the default pool's
numbers once the pool is up and the node takes connections, 503 with the reason while
it starts, stops, has no R template (fork mode) or its shells keep failing to start
(:func:`readiness`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rexec.config import Config

if TYPE_CHECKING:
    from rexec.compute.supervisor.pool import Pool
    from rexec.compute.supervisor.server import ComputeServer

log = logging.getLogger("rexec.compute.metrics")

#: Largest request head (request line and headers) read from a scraper.
MAX_REQUEST = 8192
#: Seconds a scraper has to send its request and read the answer.
TIMEOUT = 5.0
#: Scrapes served at once; further connections are closed without an answer.
MAX_CONNECTIONS = 8
_DEFAULT_HOST, _DEFAULT_PORT = (Config()[key] for key in ("metrics.host", "metrics.port"))
#: Why a connection was refused (the ``reason`` label).
REFUSED_REASONS = ("too_many_pending", "no_shell", "no_login")


class Counts:
    """The supervisor's counters (plain ints: bumped on the event loop, read at scrape)."""

    def __init__(self) -> None:
        #: TCP connections the supervisor's accept loops took (not those shells accepted).
        self.accepted = 0
        self.refused: Counter[str] = Counter()
        #: Connections refused for want of a shell, by pool name ("" the default pool).
        self.no_shell: Counter[str] = Counter()
        self.logins: Counter[str] = Counter()

    def refuse(self, reason: str, pool: Pool | None = None) -> None:
        self.refused[reason] += 1
        if pool is not None:
            self.no_shell[pool.name] += 1

    def login(self, ok: bool) -> None:
        self.logins["ok" if ok else "failed"] += 1


class NodeCollector(Collector):
    """Reads a :class:`ComputeServer`'s pools and counts when scraped."""

    def __init__(self, server: ComputeServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        server = self.server
        counts: Counts = server.counts
        pools: list[tuple[str, Pool]] = [("", server.pool), *list(server.pools.items())]

        def gauge(name: str, doc: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"rexec_compute_pool_{name}", doc, labels=["pool"])

        def counter(name: str, doc: str) -> CounterMetricFamily:
            return CounterMetricFamily(f"rexec_compute_pool_{name}", doc, labels=["pool"])

        gauges = {
            "idle": gauge("idle_shells", "R shells started and ready for a connection."),
            "busy": gauge("busy_shells", "R shells serving a connection."),
            "starting": gauge("starting_shells", "R shells being started."),
            "detached": gauge("detached_shells", "Detached sessions (outside pool.max)."),
            "waiting": gauge("waiting_connections", "Connections waiting for a free shell."),
            "max": gauge("max_shells", "pool.max: most shells alive at once."),
        }
        counters = {
            "started": counter("shells_started", "R shells started (forked or spawned)."),
            "served": counter("sessions_served", "Connections handed to (or accepted by) a shell."),
            "recycled": counter("shells_recycled", "R shells that ended after their session."),
            "failed": counter("shells_failed", "R shells that exited before they were ready."),
            "no_shell": counter(
                "no_shell", "Connections refused: no shell free within pool.wait_timeout."
            ),
        }
        for name, pool in pools:
            stats = pool.stats()
            for key, family in gauges.items():
                family.add_metric([name], getattr(stats, key))
            values = {
                "started": pool.started,
                "served": stats.served,
                "recycled": stats.recycled,
                "failed": stats.failed,
                "no_shell": counts.no_shell[name],
            }
            for key, family in counters.items():
                family.add_metric([name], values[key])
        yield from gauges.values()
        yield from counters.values()

        named = GaugeMetricFamily("rexec_compute_named_pools", "Named pools running.")
        named.add_metric([], len(pools) - 1)
        yield named
        pending = GaugeMetricFamily(
            "rexec_compute_pending_connections",
            "Connections the supervisor holds without a shell (see server.max_pending).",
        )
        pending.add_metric([], server._pending_total)
        yield pending
        accepted = CounterMetricFamily(
            "rexec_compute_connections_accepted",
            "TCP connections accepted, by who accepted them.",
            labels=["by"],
        )
        accepted.add_metric(["supervisor"], counts.accepted)
        accepted.add_metric(["shell"], sum(pool.accepted for _, pool in pools))
        yield accepted
        refused = CounterMetricFamily(
            "rexec_compute_connections_refused",
            "Connections closed without a session, by reason.",
            labels=["reason"],
        )
        for reason in REFUSED_REASONS:
            refused.add_metric([reason], counts.refused[reason])
        yield refused
        logins = CounterMetricFamily(
            "rexec_compute_logins", "QAP logins answered, by outcome.", labels=["outcome"]
        )
        for outcome in ("ok", "failed"):
            logins.add_metric([outcome], counts.logins[outcome])
        yield logins


def readiness(server: ComputeServer) -> tuple[int, dict[str, object]]:
    """``/readyz``: (status, body). 200 when the default pool takes connections."""
    pool = server.pool
    stats = pool.stats()
    numbers = {k: getattr(stats, k) for k in ("max", "idle", "busy", "starting", "waiting")}
    reason = ""
    if server.stopping:
        reason = "stopping"
    elif not server.serving:
        reason = "starting"
    elif pool.mode == "fork" and (pool.template is None or not pool._template_is_ready()):
        reason = "no R template running (it is being restarted)"
    elif pool._consecutive_failures >= 3 and not stats.idle:
        reason = "R shells fail to start"
    body: dict[str, object] = {"status": "not ready" if reason else "ready", "pool": numbers}
    if reason:
        body["reason"] = reason
    return (503 if reason else 200), body


def registry_for(server: ComputeServer) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(server))
    ProcessCollector(registry=registry)  # the supervisor's CPU, memory, descriptors
    return registry


class MetricsServer:
    """``GET /metrics`` over HTTP from the supervisor's event loop."""

    def __init__(self, server: ComputeServer) -> None:
        self.config = server.config
        self.server = server
        self.registry = registry_for(server)
        self._server: asyncio.AbstractServer | None = None
        self._active = 0

    @property
    def address(self) -> tuple[str, int] | None:
        if self._server is None or not self._server.sockets:
            return None
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def start(self) -> None:
        host, port = self.config["metrics.host"], self.config["metrics.port"]
        if not port:
            return
        try:
            self._server = await asyncio.start_server(
                self._serve, host, port, limit=MAX_REQUEST, backlog=16, reuse_address=True
            )
        except OSError as exc:
            # Only the defaults may be skipped: another node on this machine may hold
            # them. (Judged by value: secure() marks every key of its copy explicit.)
            if (host, port) != (_DEFAULT_HOST, _DEFAULT_PORT):
                raise RuntimeError(f"metrics endpoint on {host}:{port}: {exc}") from None
            log.warning("event=metrics-off reason=%r (default metrics.port %d)", str(exc), port)
            return
        log.info("metrics on http://%s:%d/metrics", host, self.address[1] if self.address else 0)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._active >= MAX_CONNECTIONS:
            writer.transport.abort()
            return
        self._active += 1
        done = False
        try:
            await asyncio.wait_for(self._exchange(reader, writer), TIMEOUT)
            done = True
        except (TimeoutError, OSError):
            pass
        except Exception:  # a defect here costs a scrape, never the supervisor
            log.exception("metrics request failed")
        finally:
            self._active -= 1
            if done:
                writer.close()
            else:  # never wait for a peer that does not read: drop what is unsent
                writer.transport.abort()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            await _answer(writer, 431, b"request head too large\n")
            return
        except asyncio.IncompleteReadError as exc:
            head = exc.partial
            if b"\n" not in head:
                return
        method, _, rest = head.split(b"\r\n", 1)[0].partition(b" ")
        target = rest.split(b" ", 1)[0].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            await _answer(writer, 405, b"only GET\n", extra=b"Allow: GET, HEAD\r\n")
        elif target == b"/healthz":
            await _answer(writer, 200, b"ok\n", head_only=method == b"HEAD")
        elif target == b"/readyz":
            status, body = readiness(self.server)
            await _answer(
                writer,
                status,
                json.dumps(body).encode() + b"\n",
                b"application/json",
                head_only=method == b"HEAD",
            )
        elif target not in (b"/metrics", b"/"):
            await _answer(writer, 404, b"see /metrics\n")
        else:
            body = generate_latest(self.registry)
            await _answer(
                writer, 200, body, CONTENT_TYPE_LATEST.encode(), head_only=method == b"HEAD"
            )


_REASONS = {
    200: b"OK",
    404: b"Not Found",
    405: b"Method Not Allowed",
    431: b"Too Large",
    503: b"Service Unavailable",
}


async def _answer(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    content_type: bytes = b"text/plain; charset=utf-8",
    extra: bytes = b"",
    head_only: bool = False,
) -> None:
    writer.write(
        b"HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n%s\r\n"
        % (status, _REASONS[status], content_type, len(body), extra)
    )
    if not head_only:
        writer.write(body)
    with contextlib.suppress(ConnectionError):
        await writer.drain()
