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

from rexec.web import api_auth, api_sessions, api_snapshots, docs, errors
from rexec.web.auth import Auth, CurrentUser
from rexec.web.compute import Compute
from rexec.web.db import Database
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
    started: float = field(default_factory=time.time)

    @classmethod
    def build(cls, settings: WebSettings) -> WebNode:
        db = Database(settings.database_url)
        compute = Compute(settings)
        return cls(
            settings,
            db,
            Auth(db, settings),
            compute,
            Sessions(db, compute, settings.session_idle_timeout),
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
        reaper = asyncio.ensure_future(node.sessions.reap())
        try:
            yield
        finally:
            reaper.cancel()
            await node.sessions.close_all()

    app = FastAPI(
        title="rexec web node",
        version="1",
        description="Sessions, execution, workspaces, files and snapshots on R compute nodes.",
        lifespan=lifespan,
        docs_url=None,  # served by rexec.web.docs from local assets
        redoc_url=None,
    )
    app.state.node = node
    errors.install(app)
    docs.install(app)
    app.include_router(api_auth.router)
    app.include_router(api_sessions.router)
    app.include_router(api_snapshots.router)

    @app.get("/status", tags=["status"])
    def status(user: CurrentUser, request: Request) -> dict[str, Any]:
        """The web node, its database and each compute node's pool (as this node sees it)."""
        database_ok = node.db.ping()
        compute = node.compute.status()
        states = [c["state"] for c in compute]
        code = "fail" if not database_ok or "fail" in states else "pass"
        if code == "pass" and any(c["pool"]["free"] == 0 for c in compute):
            code = "warn"
        return {
            "statusCode": code,
            "webNode": {
                "uptime": round(time.time() - node.started, 1),
                "sessions": node.sessions.counts(),
            },
            "database": {"type": node.db.kind, "state": "pass" if database_ok else "fail"},
            "computeNodes": compute,
        }

    return app
