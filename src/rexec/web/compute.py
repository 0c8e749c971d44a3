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
this web node opened there since. Where no check has run, the web node counts the
connections it holds against ``pool_max - reserve``. When every node is full the
answer is 503 with Retry-After; nothing waits unboundedly.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import rexec.client
from rexec.client import AsyncConnection, ClientError
from rexec.web.errors import ApiError
from rexec.web.settings import ComputeNode, WebSettings

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
    #: Sessions opened here since the last check (the check's numbers lag behind them).
    opened_since_check: int = 0

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
            return own
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

    def __post_init__(self) -> None:
        if not self.nodes:
            self.nodes = [NodeState(node) for node in self.settings.compute_nodes]

    def busy_error(self, reason: str) -> ApiError:
        return ApiError(503, reason, headers={"Retry-After": str(self.settings.retry_after)})

    @staticmethod
    def qap(node: NodeState) -> dict[str, Any]:
        """How to reach ``node`` over QAP: the keyword arguments of ``aconnect``,
        ``aattach`` and the pool commands (address, login)."""
        config = node.config
        return {
            "host": config.host,
            "port": config.port,
            "user": config.user,
            "password": config.password,
        }

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
        if config.user is None:  # poolStatus needs a login: reachability only
            try:
                connection = await rexec.client.aconnect(
                    config.host, config.port, timeout=self.settings.connect_timeout
                )
                await connection.close()
                node.reachable, node.last_error = True, ""
            except (ClientError, OSError) as exc:
                node.reachable, node.last_error = isinstance(exc, TimeoutError), str(exc)
            node.checked_at = time.monotonic()
            return
        from rexec.client._async import apool_status

        try:
            status = await apool_status(
                host=config.host,
                port=config.port,
                user=config.user,
                password=config.password or "",
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
            if node.reachable is False:
                log.info("compute node %s is back", config.name)
            node.reachable, node.last_error = True, ""
            node.pools = status.get("pools", {})
            node.opened_since_check = 0
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
