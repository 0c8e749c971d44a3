"""The web node's application factory: settings in, a FastAPI app out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request

from rexec.web import (
    api_auth,
    api_nodes,
    api_services,
    api_sessions,
    api_snapshots,
    docs,
    errors,
    health,
)
from rexec.web.auth import Auth, CurrentUser
from rexec.web.batch import Batches
from rexec.web.compute import Compute
from rexec.web.db import Database
from rexec.web.metrics import install as install_metrics
from rexec.web.nodes import Registry
from rexec.web.services import Services
from rexec.web.sessions import Sessions
from rexec.web.settings import WebSettings

log = logging.getLogger("rexec.web")


@dataclass
class WebNode:
    """Everything a request handler needs, reachable as ``request.app.state.node``."""

    settings: WebSettings
    db: Database
    auth: Auth
    compute: Compute
    sessions: Sessions
    services: Services
    batches: Batches
    registry: Registry
    heartbeat: health.Heartbeat
    started: float = field(default_factory=time.time)

    @classmethod
    def build(cls, settings: WebSettings) -> WebNode:
        db = Database(settings.database_url)
        compute = Compute(settings)
        services = Services(db, compute)
        heartbeat = health.Heartbeat(db, settings)
        sessions = Sessions(db, compute, settings.session_idle_timeout, settings.execution_timeout)
        # A session's lease is this node's while its heartbeat is fresh (see sessions.py).
        sessions.holder_id = heartbeat.id
        sessions.heartbeat_ttl = 3 * settings.heartbeat_interval
        return cls(
            settings,
            db,
            Auth(db, settings),
            compute,
            sessions,
            services,
            Batches(db, services, settings),
            Registry(db, compute, settings),
            heartbeat,
        )


def bootstrap_admin(node: WebNode, password: str | None) -> str | None:
    """On first start (no users at all) create Owner ``admin``; returns a generated password."""
    if node.auth.has_users():
        return None
    generated = None
    if not password:
        password = generated = secrets.token_urlsafe(12)
    node.auth.create_user("admin", password, "Owner")
    return generated


def create_app(settings: WebSettings | None = None, node: WebNode | None = None) -> FastAPI:
    node = node or WebNode.build(settings or WebSettings())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The batch queue is bound to this event loop (uvicorn's).
        node.batches.wake = asyncio.Event()
        await asyncio.to_thread(node.heartbeat.start)  # SQLite: refused if another is alive
        node.services.peers = lambda: node.heartbeat.alive  # they share service shells
        node.compute.on_down.append(node.sessions.node_down)
        node.compute.on_up.append(node.sessions.node_back)
        await node.registry.refresh()  # registered nodes are known before any request
        loops = [
            asyncio.ensure_future(node.heartbeat.keep_beating()),
            asyncio.ensure_future(node.registry.keep_checking()),
            asyncio.ensure_future(node.sessions.reap()),
            asyncio.ensure_future(node.services.keep_reconciling()),
            asyncio.ensure_future(node.batches.run()),
        ]
        try:
            yield
        finally:
            for task in loops:
                task.cancel()
            await node.batches.close()
            await node.services.close()
            await node.sessions.close_all()
            await asyncio.to_thread(node.heartbeat.stop)

    app = FastAPI(
        title="rexec web node",
        version="1",
        description="Sessions, execution, workspaces, files and snapshots on R compute nodes; "
        "published R services, called one record at a time or in batches.",
        lifespan=lifespan,
        docs_url=None,  # served by rexec.web.docs from local assets
        redoc_url=None,
    )
    app.state.node = node
    errors.install(app)
    docs.install(app)
    install_metrics(app)  # GET /metrics, and counts every request and service call
    app.include_router(api_auth.router)
    app.include_router(api_sessions.router)
    app.include_router(api_snapshots.router)
    app.include_router(api_services.router)
    app.include_router(api_nodes.router)
    app.include_router(health.router)

    @app.get("/status", tags=["status"])
    def status(user: CurrentUser, request: Request) -> dict[str, Any]:
        """The web node, its database and each compute node's pool (as this node sees it)."""
        database_ok = node.db.ping()
        compute = node.compute.status()
        states = [c["state"] for c in compute]
        code = "pass"
        if not database_ok or (states and all(s == "down" for s in states)):
            code = "fail"
        elif "down" in states or any(c["pool"]["free"] == 0 for c in compute):
            code = "warn"
        return {
            "statusCode": code,
            "webNode": {
                "uptime": round(time.time() - node.started, 1),
                "sessions": node.sessions.counts(),
            },
            "webNodes": node.heartbeat.listing(),
            "database": {"type": node.db.kind, "state": "pass" if database_ok else "fail"},
            "computeNodes": compute,
        }

    return app
