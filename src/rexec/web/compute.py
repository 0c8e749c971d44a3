"""The web node's side of the compute nodes: which there are, how each is doing, and
opening session connections on the best one.

Compute nodes come from the settings (``compute_nodes``) and from the registry in the
database that every web node shares (``/computenodes``, :mod:`rexec.web.nodes`). Each
web node checks every node's health and pool occupancy over an authenticated QAP
connection (rexec's poolStatus command) every ``node_check_interval`` seconds; a node
is ``healthy``, ``draining`` (set by an Owner: no new work lands there, running work
finishes) or ``down`` (it did not answer).

A web session holds one QAP connection, i.e. one R shell. A new session goes to the
healthy node with the most free shells: the node's own count at the last check (its
default pool's ``max`` less its busy shells, across every web node) less the sessions
this web node opened there since. Where no check has numbers (a node without a login,
or one not checked yet), the web node counts the sessions the database records there
and its opens under way against ``pool_max - reserve``. When every node is full the
answer is 503 with Retry-After; nothing waits unboundedly.

Every QAP connection to a node (sessions, checks, service pools and calls, cancels)
takes its address, login and TLS from :meth:`Compute.qap`. A node with ``tls = true``
(a registry node with ``compute_tls.registry``) is reached over TLS from the first
byte, its certificate verified, with the web node's client certificate if one is
configured; each set of CA, certificate and key files is loaded into one
:class:`ssl.SSLContext`, once.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import rexec.client
from rexec.client import AsyncConnection, ClientError
from rexec.revocation import load_crls
from rexec.web.errors import ApiError
from rexec.web.settings import ComputeNode, ConfigError, WebSettings

log = logging.getLogger("rexec.web.compute")


@dataclass(slots=True)
class NodeState:
    config: ComputeNode
    #: The registry's id (None: a node from the settings).
    id: int | None = None
    held: int = 0
    reachable: bool | None = None
    last_error: str = ""
    draining: bool = False
    #: Every pool's numbers at the last check ("" is the default pool), or None.
    pools: dict[str, dict[str, int]] | None = None
    checked_at: float = 0.0
    #: Sessions opened here since the last check began (its numbers lag behind them).
    opened_since_check: int = 0
    #: Active sessions the database recorded here when last counted (used where no
    #: check has numbers: a node without a login, or one not checked yet).
    recorded: int = 0

    @property
    def state(self) -> str:
        if self.reachable is False:
            return "down"
        return "draining" if self.draining else "healthy"

    @property
    def free(self) -> int:
        own = max(0, self.config.capacity - self.held)
        default = (self.pools or {}).get("")
        if default is None:
            return max(0, own - self.recorded)
        seen = default["max"] - default["busy"] - self.config.reserve - self.opened_since_check
        return max(0, min(own, seen))

    @property
    def accepts_work(self) -> bool:
        return self.reachable is not False and not self.draining

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.config.name,
            "host": self.config.host,
            "port": self.config.port,
            "state": self.state,
            "source": "settings" if self.id is None else "registry",
            "lastError": self.last_error or None,
            "pools": self.pools or {},
            "checkedAgo": round(time.monotonic() - self.checked_at, 1) if self.checked_at else None,
        }


@dataclass
class Compute:
    settings: WebSettings
    nodes: list[NodeState] = field(default_factory=list)
    #: Called with a node a check found down (it was not before): the sessions there
    #: are ended, so requests in flight on it answer 410 instead of hanging (a
    #: partitioned node's connections see no end of stream).
    on_down: list[Any] = field(default_factory=list)
    #: Called with a node a check finds up again after it was down.
    on_up: list[Any] = field(default_factory=list)
    #: Client TLS contexts by (CA, certificate, key, CRL) file, with the files' change times
    #: they were loaded at: shared, and loaded again when a file changes.
    _contexts: dict[tuple[str, str, str, str], tuple[Any, ssl.SSLContext]] = field(
        default_factory=dict
    )

    def __post_init__(self) -> None:
        if not self.nodes:
            self.nodes = [NodeState(node) for node in self.settings.compute_nodes]
        for node in self.nodes:  # bad files fail at start, not at the first call
            self.tls_context(node)
        if self.settings.compute_tls_registry:
            self._context(*self._defaults(), "compute_tls")

    def _defaults(self) -> tuple[str, str, str, str]:
        s = self.settings
        return s.compute_tls_ca, s.compute_tls_cert, s.compute_tls_key, s.compute_tls_crl

    def _context(self, ca: str, cert: str, key: str, crl: str, where: str) -> ssl.SSLContext:
        """The client context of these files, made again when one of them changed (a
        rotated certificate or a new CRL is used from the next connection on); files
        that cannot be loaded any more leave the last good context in use, logged once
        per change."""
        files = (ca, cert, key, crl)
        stamp = _stamp(files)
        known = self._contexts.get(files)
        if known is not None and known[0] == stamp:
            return known[1]
        try:
            context = ssl.create_default_context(cafile=ca or None)  # none: the system's
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            if cert:
                context.load_cert_chain(cert, key or None)
            if crl:
                load_crls(context, crl)
        except (OSError, ssl.SSLError, ValueError) as exc:
            problem = f"{where}: TLS files {[f for f in files if f]}: {exc}"
            if known is None:
                raise ConfigError(problem) from None
            log.error("%s; the certificates loaded before stay in use", problem)
            self._contexts[files] = (stamp, known[1])
            return known[1]
        if known is not None:
            log.info("%s: TLS files changed, loaded again", where)
        self._contexts[files] = (stamp, context)
        return context

    def tls_context(self, node: NodeState) -> ssl.SSLContext | None:
        """The client context ``node`` is reached with over TLS, or None (plain QAP)."""
        config = node.config
        if config.tls:
            ca, cert, key, crl = self._defaults()
            if config.tls_cert:
                cert, key = config.tls_cert, config.tls_key
            return self._context(config.tls_ca or ca, cert, key, config.tls_crl or crl, config.name)
        if node.id is not None and self.settings.compute_tls_registry:
            return self._context(*self._defaults(), "compute_tls")
        return None

    def busy_error(self, reason: str) -> ApiError:
        return ApiError(503, reason, headers={"Retry-After": str(self.settings.retry_after)})

    def qap(self, node: NodeState) -> dict[str, Any]:
        """How to reach ``node`` over QAP: the keyword arguments of ``aconnect``,
        ``aattach`` and the pool commands (address, login, and for a node over TLS the
        client context and the name its certificate must carry)."""
        config = node.config
        kwargs: dict[str, Any] = {
            "host": config.host,
            "port": config.port,
            "user": config.user,
            "password": config.password,
        }
        context = self.tls_context(node)
        if context is not None:
            kwargs["tls"] = context
            kwargs["server_hostname"] = config.tls_server_name or config.host
        return kwargs

    def working(self) -> list[NodeState]:
        """The nodes new work may go to: not draining, not known to be down."""
        return [n for n in self.nodes if n.accepts_work]

    async def open(self) -> tuple[AsyncConnection, NodeState]:
        """A new session connection on the node with the most free shells (or 503)."""
        candidates = sorted((n for n in self.working() if n.free > 0), key=lambda n: -n.free)
        if not candidates:
            raise self.busy_error("no R shell free: every compute node is busy, draining or down")
        errors = []
        for node in candidates:
            node.held += 1  # reserved before the await, so concurrent opens cannot overbook
            node.opened_since_check += 1
            try:
                connection = await rexec.client.aconnect(
                    **self.qap(node), timeout=self.settings.connect_timeout
                )
            except (ClientError, OSError) as exc:
                node.held -= 1
                timed_out = isinstance(exc, TimeoutError)
                node.reachable = timed_out  # a timeout means busy, not down
                node.last_error = "no shell free in time" if timed_out else str(exc)
                errors.append(f"{node.config.name}: {node.last_error}")
                log.warning("compute node %s: %s", node.config.name, node.last_error)
                continue
            connection.timeout = None  # executions may run as long as they need
            node.reachable = True
            node.last_error = ""
            return connection, node
        raise self.busy_error("no R shell available (" + "; ".join(errors) + ")")

    def release(self, node: NodeState) -> None:
        node.held = max(0, node.held - 1)

    async def check(self, node: NodeState) -> None:
        """Ask the node for its pools (authenticated); mark it healthy or down."""
        config = node.config
        qap = self.qap(node)
        if config.user is None:  # poolStatus needs a login: reachability only
            try:
                connection = await rexec.client.aconnect(
                    **qap, timeout=self.settings.connect_timeout
                )
                await connection.close()
                node.reachable, node.last_error = True, ""
            except (ClientError, OSError) as exc:
                node.reachable, node.last_error = isinstance(exc, TimeoutError), str(exc)
            node.checked_at = time.monotonic()
            return
        from rexec.client._async import apool_status

        # Sessions opened while the check is under way may be missing from its numbers:
        # only those opened before it are forgotten when it answers.
        opened_before = node.opened_since_check
        try:
            status = await apool_status(
                **{**qap, "password": config.password or ""},
                timeout=self.settings.connect_timeout,
            )
        except (ClientError, OSError) as exc:
            was_up = node.reachable is not False
            node.reachable, node.last_error = False, str(exc) or repr(exc)
            node.pools = None
            if was_up:
                log.warning("compute node %s is down: %s", config.name, exc)
                for callback in self.on_down:
                    await callback(node)
        else:
            back = node.reachable is False
            if back:
                log.info("compute node %s is back", config.name)
            node.reachable, node.last_error = True, ""
            node.pools = status.get("pools", {})
            node.opened_since_check = max(0, node.opened_since_check - opened_before)
            if back:
                for callback in self.on_up:
                    await callback(node)
        node.checked_at = time.monotonic()

    def status(self) -> list[dict[str, Any]]:
        return [
            {
                **n.describe(),
                "pool": {
                    "size": n.config.capacity,
                    "max": n.config.pool_max,
                    "busy": n.held,
                    "free": n.free,
                },
            }
            for n in self.nodes
        ]


def _stamp(files: tuple[str, ...]) -> tuple[Any, ...]:
    """The files' identities and change times (a rotation replaces or rewrites them)."""
    stamps: list[Any] = []
    for name in files:
        try:
            info = os.stat(name) if name else None
        except OSError:
            info = None
        stamps.append(None if info is None else (info.st_ino, info.st_mtime_ns, info.st_size))
    return tuple(stamps)
