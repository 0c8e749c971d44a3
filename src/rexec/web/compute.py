"""The web node's side of the compute nodes: opening session connections, counting them.

A web session holds one QAP connection, i.e. one R shell. The web node counts the
connections it holds per node and refuses (503 with Retry-After) once a node is at
capacity instead of queueing; a node that does not greet within ``connect_timeout``
(its pool is full of other clients' sessions) is treated the same way. Nothing waits
unboundedly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import rexec.client
from rexec.client import AsyncConnection, ClientError
from rexec.web.errors import ApiError
from rexec.web.settings import ComputeNode, WebSettings

log = logging.getLogger("rexec.web.compute")


@dataclass(slots=True)
class NodeState:
    config: ComputeNode
    held: int = 0
    reachable: bool | None = None
    last_error: str = ""

    @property
    def free(self) -> int:
        return max(0, self.config.capacity - self.held)


class Compute:
    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self.nodes = [NodeState(node) for node in settings.compute_nodes]

    def busy_error(self, reason: str) -> ApiError:
        return ApiError(503, reason, headers={"Retry-After": str(self.settings.retry_after)})

    async def open(self) -> tuple[AsyncConnection, NodeState]:
        """A new session connection on the node with the most free capacity (or 503)."""
        candidates = sorted(
            (n for n in self.nodes if n.free > 0 and n.reachable is not False),
            key=lambda n: -n.free,
        ) or sorted((n for n in self.nodes if n.free > 0), key=lambda n: -n.free)
        if not candidates:
            raise self.busy_error("no R shell free: every compute node is at capacity")
        errors = []
        for node in candidates:
            node.held += 1  # reserved before the await, so concurrent opens cannot overbook
            try:
                connection = await rexec.client.aconnect(
                    node.config.host,
                    node.config.port,
                    user=node.config.user,
                    password=node.config.password,
                    timeout=self.settings.connect_timeout,
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

    def status(self) -> list[dict[str, Any]]:
        return [
            {
                "name": n.config.name,
                "state": {None: "unknown", True: "pass", False: "fail"}[n.reachable],
                "lastError": n.last_error or None,
                "pool": {
                    "size": n.config.capacity,
                    "max": n.config.pool_max,
                    "busy": n.held,
                    "free": n.free,
                },
            }
            for n in self.nodes
        ]
