"""Liveness and readiness for load balancers and Kubernetes, and the web nodes'
heartbeats in the database.

``GET /healthz`` answers 200 while the process serves requests; ``GET /readyz`` answers
200 when the database answers and at least one compute node takes work, else 503. Both
need no login and say nothing but states.

Every web node writes a heartbeat row (``web_nodes``) every ``heartbeat_interval``
seconds; ``/status`` lists the live ones. SQLite serves one web node only: a web node
that finds another one's fresh heartbeat in its SQLite database refuses to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import socket
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import delete, select

from rexec.web.db import Database, WebNodeRecord, utcnow
from rexec.web.settings import WebSettings

log = logging.getLogger("rexec.web.health")
router = APIRouter(tags=["status"])


class SQLiteTaken(RuntimeError):
    """Another web node is alive on this SQLite database."""


class Heartbeat:
    def __init__(self, db: Database, settings: WebSettings) -> None:
        self.db = db
        self.settings = settings
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.address = f"{settings.host}:{settings.port}"
        #: Web nodes alive on this database at the last beat (this one included).
        self.alive = 1

    def _fresh_since(self) -> dt.datetime:
        return utcnow() - dt.timedelta(seconds=3 * self.settings.heartbeat_interval)

    def start(self) -> None:
        with self.db.session() as db:
            if self.db.kind == "sqlite":
                alive = db.scalars(
                    select(WebNodeRecord).where(
                        WebNodeRecord.seen_at > self._fresh_since(), WebNodeRecord.id != self.id
                    )
                ).first()
                if alive is not None:
                    raise SQLiteTaken(
                        f"web node {alive.address} ({alive.id}) is alive on this SQLite "
                        "database, which serves one web node only: use PostgreSQL "
                        "(database.url = postgresql://...) for several"
                    )
            db.add(WebNodeRecord(id=self.id, address=self.address))
        self.beat()

    def beat(self) -> None:
        with self.db.session() as db:
            row = db.get(WebNodeRecord, self.id)
            if row is None:
                db.add(WebNodeRecord(id=self.id, address=self.address))
            else:
                row.seen_at = utcnow()
            week = utcnow() - dt.timedelta(days=7)
            db.execute(delete(WebNodeRecord).where(WebNodeRecord.seen_at < week))
            fresh = db.scalars(
                select(WebNodeRecord.id).where(WebNodeRecord.seen_at > self._fresh_since())
            ).all()
            self.alive = max(1, len(set(fresh) | {self.id}))

    def stop(self) -> None:
        with contextlib.suppress(Exception), self.db.session() as db:
            db.execute(delete(WebNodeRecord).where(WebNodeRecord.id == self.id))

    async def keep_beating(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            try:
                await asyncio.to_thread(self.beat)
            except Exception as exc:
                log.warning("heartbeat not written: %s", exc)

    def listing(self) -> list[dict[str, Any]]:
        fresh = self._fresh_since()
        with self.db.session() as db:
            rows = db.scalars(select(WebNodeRecord).order_by(WebNodeRecord.started_at))
            return [
                {
                    "id": r.id,
                    "address": r.address,
                    "alive": r.seen_at > fresh,
                    "self": r.id == self.id,
                }
                for r in rows
            ]


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """200 while this web node serves requests (no login)."""
    return {"status": "alive"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """200 when the database answers and a compute node takes work, else 503 (no login)."""
    node = request.app.state.node
    database = await asyncio.to_thread(node.db.ping)
    compute = bool(node.compute.working())
    ready = database and compute
    body = {
        "status": "ready" if ready else "not ready",
        "database": "pass" if database else "fail",
        "compute": "pass" if compute else "fail",
    }
    return JSONResponse(body, status_code=200 if ready else 503)
