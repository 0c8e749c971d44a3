"""The web node's settings: one frozen dataclass, filled from flags or ``REXEC_WEB_*``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class ComputeNode:
    """A compute node (``rexec serve``) the web node opens sessions on.

    ``capacity`` is how many sessions this web node may hold there: the node's
    ``pool.max`` less ``reserve`` shells kept free so a cancel (which needs a
    connection of its own) always gets through.
    """

    host: str = "127.0.0.1"
    port: int = 6311
    user: str | None = None
    password: str | None = None
    pool_max: int = 8
    reserve: int = 1

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def capacity(self) -> int:
        return max(1, self.pool_max - self.reserve)


@dataclass(frozen=True, slots=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 12800
    #: SQLAlchemy URL; ``postgresql://`` URLs use psycopg 3.
    database_url: str = "sqlite:///rexec-web.db"
    compute_nodes: tuple[ComputeNode, ...] = field(default_factory=lambda: (ComputeNode(),))
    #: HS256 key for access tokens; empty: generated once and kept in the database,
    #: so every web node sharing the database accepts every token.
    jwt_secret: str = ""
    access_token_ttl: int = 3600
    refresh_token_ttl: int = 14 * 24 * 3600
    session_idle_timeout: float = 3600.0
    #: Seconds to wait for a compute node's greeting (it queues us while its pool is full).
    connect_timeout: float = 5.0
    retry_after: int = 5
    #: Largest request body accepted for uploads (bytes).
    max_upload: int = 256 * 1024 * 1024
    #: Delay after the n-th consecutive failed login: min(base * 2 ** (n - 1), max).
    login_delay_base: float = 0.25
    login_delay_max: float = 8.0
    #: Published services: pool sizes a new service version gets on each compute node.
    service_pool_initial: int = 1
    service_pool_max: int = 4
    #: Largest maxPoolSize ``POST /services/{name}/{version}/pool`` accepts.
    service_pool_limit: int = 16
    #: Calls one shell serves (isolation "shell") before it is replaced by a fresh one.
    service_recycle_after: int = 100
    #: Seconds a call waits for a free shell of its service before 503.
    service_wait: float = 5.0
    #: Default and largest per-call timeout (seconds) of a service.
    service_timeout: float = 60.0
    service_max_timeout: float = 3600.0
    #: Largest initCode (characters; it travels to the compute node with the pool).
    service_max_init_code: int = 40 * 1024
    #: Largest snapshot + model data of a service (bytes).
    service_max_data: int = 256 * 1024 * 1024
    #: Seconds a compute node has to start a service's template (restore + initCode).
    service_define_timeout: float = 300.0
    #: Seconds a service record is cached by the call path (PATCH and DELETE on another
    #: web node take this long to be seen here).
    service_cache_ttl: float = 2.0
    #: Seconds between checks that every compute node runs the pools of every service.
    service_reconcile_interval: float = 30.0
    #: Largest parallelCount of a batch, and items this web node runs at once.
    batch_parallel_max: int = 8
    batch_workers: int = 8
    #: Seconds a running batch item's claim lasts without renewal: a web node that
    #: stopped loses its items after this long, and they fail (they never run twice).
    batch_lease: float = 30.0
    #: Seconds between this web node's checks of every compute node (health, pools).
    node_check_interval: float = 5.0
    #: Secret shared by the web nodes that seals the compute nodes' logins in the
    #: registry; empty on SQLite: a key file next to the database (rexec.web.nodes).
    node_secret: str = ""

    def with_env(self, environ: dict[str, str] | None = None) -> WebSettings:
        """Override scalar settings from ``REXEC_WEB_<NAME>`` variables."""
        environ = dict(os.environ if environ is None else environ)
        changes: dict[str, Any] = {}
        for f in fields(self):
            raw = environ.get(f"REXEC_WEB_{f.name.upper()}")
            current = getattr(self, f.name)
            if raw is None or not isinstance(current, str | int | float):
                continue
            changes[f.name] = type(current)(raw)
        return replace(self, **changes)
