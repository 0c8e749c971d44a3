"""The compute-node registry every web node shares (the database's ``compute_nodes``),
and the loop that keeps each web node's view of every node current.

Owners add, drain and remove nodes (``/computenodes``, ``rexec nodes``). A node's QAP
login is stored sealed (Fernet: AES-128-CBC with an HMAC) under a key derived from the
``node_secret`` the web nodes share (a Kubernetes Secret, an environment variable),
never in clear and never with its key in the database. Without a ``node_secret``, a web
node on SQLite (one box) keeps a generated key in a file of its own next to the
database (mode 0600); on PostgreSQL, registering a node with a login needs the secret.

Compute nodes can also register themselves (``POST /computenodes/register``, with the
``registration_token`` the web nodes share; :meth:`Registry.register`): an upsert by
host and port, so a node that restarts updates its record. A stopping node drains
itself (:meth:`Registry.drain_self`); that drain, marked as the node's own in ``meta``,
ends with its next registration, while a drain an Owner made stays until an Owner ends
it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import logging
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from rexec.web.compute import Compute, NodeState
from rexec.web.db import Database, Meta, RegisteredNode, utcnow
from rexec.web.errors import ApiError
from rexec.web.settings import ComputeNode, WebSettings

log = logging.getLogger("rexec.web.nodes")


class Sealer:
    """Seal and open node passwords with the web nodes' shared secret."""

    def __init__(self, secret: bytes | None) -> None:
        self._fernet = (
            Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"rexec nodes\0" + secret).digest()))
            if secret
            else None
        )

    @property
    def ready(self) -> bool:
        return self._fernet is not None

    def seal(self, text: str) -> str:
        if self._fernet is None:
            raise ApiError(
                503,
                "no node_secret: set it (the same on every web node) to store node logins",
            )
        return self._fernet.encrypt(text.encode()).decode("ascii")

    def open(self, token: str) -> str | None:
        if self._fernet is None:
            return None
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except InvalidToken:
            return None


def node_secret(settings: WebSettings, database: Database) -> bytes | None:
    """The shared secret: the setting, else (SQLite only) a key file of this database's."""
    secret = settings.node_secret
    if secret:
        return secret.encode()
    filename = database.engine.url.database
    if database.kind != "sqlite" or not filename or filename == ":memory:":
        return None  # sealing then needs node_secret (no file to keep a key next to)
    path = Path(filename + ".node-key")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return path.read_bytes().strip() or None
    with os.fdopen(fd, "wb") as handle:
        key = base64.urlsafe_b64encode(os.urandom(32))
        handle.write(key)
    return key


_SELF_DRAINED = "compute-node-stopping:"


def _self_drained(node_id: int) -> str:
    """The ``meta`` key marking a drain the node made itself (it stops); its value is
    when."""
    return f"{_SELF_DRAINED}{node_id}"


def token_matches(expected: str, given: str) -> bool:
    """Constant-time comparison (of digests: the length is not told either)."""
    digest = hashlib.sha256
    return hmac.compare_digest(digest(expected.encode()).digest(), digest(given.encode()).digest())


class Registry:
    def __init__(self, db: Database, compute: Compute, settings: WebSettings) -> None:
        self.db = db
        self.compute = compute
        self.settings = settings
        self.sealer = Sealer(node_secret(settings, db))
        #: Each registered node's row as its NodeState was made from (host, port, user,
        #: sealed password, pool_max): a changed row (a re-registration) is taken up.
        self._made_from: dict[int, tuple[Any, ...]] = {}
        self._refreshing = asyncio.Lock()

    # ------------------------------------------------------------------ records
    def add(
        self,
        host: str,
        port: int,
        user: str | None,
        password: str | None,
        pool_max: int,
        tls: bool = False,
    ) -> int:
        try:
            with self.db.session() as db:
                return self._insert(db, host, port, user, password, pool_max, tls)
        except IntegrityError:
            raise ApiError(409, f"compute node {host}:{port} is registered") from None

    def remove(self, node_id: int) -> None:
        with self.db.session() as db:
            row = db.get(RegisteredNode, node_id)
            if row is None:
                raise ApiError(404, "no such compute node")
            db.delete(row)
            self._forget_self_drain(db, node_id)

    def drain(self, node_id: int, draining: bool = True) -> None:
        """An Owner's drain or undrain: it replaces a drain the node made itself."""
        with self.db.session() as db:
            row = db.get(RegisteredNode, node_id)
            if row is None:
                raise ApiError(404, "no such compute node")
            row.draining = draining
            self._forget_self_drain(db, node_id)

    @staticmethod
    def _forget_self_drain(db: Any, node_id: int) -> bool:
        marker = db.get(Meta, _self_drained(node_id))
        if marker is not None:
            db.delete(marker)
        return marker is not None

    @staticmethod
    def _by_address(db: Any, host: str, port: int) -> RegisteredNode | None:
        query = select(RegisteredNode).where(
            RegisteredNode.host == host, RegisteredNode.port == port
        )
        return db.scalars(query).first()

    def _insert(
        self,
        db: Any,
        host: str,
        port: int,
        user: str | None,
        password: str | None,
        pool_max: int,
        tls: bool,
    ) -> int:
        """A new registry row (its login sealed); its id."""
        sealed = self.sealer.seal(password or "") if user else None
        row = RegisteredNode(
            host=host, port=port, user=user, password_sealed=sealed, pool_max=pool_max, tls=tls
        )
        db.add(row)
        db.flush()
        return row.id

    def register(
        self,
        host: str,
        port: int,
        user: str | None,
        password: str | None,
        pool_max: int,
        tls: bool = False,
    ) -> tuple[int, bool]:
        """A node registering itself: (its id, whether it is new). Upserted by host and
        port; a drain the node made itself ends, an Owner's stays."""
        for attempt in range(2):
            try:
                with self.db.session() as db:
                    row = self._by_address(db, host, port)
                    if row is None:
                        return self._insert(db, host, port, user, password, pool_max, tls), True
                    if not user:
                        row.password_sealed = None
                    elif (
                        row.user != user
                        or row.password_sealed is None
                        or self.sealer.open(row.password_sealed) != (password or "")
                    ):  # sealed again only when it changed: the row stays as it is
                        row.password_sealed = self.sealer.seal(password or "")
                    row.user, row.pool_max, row.tls = user, pool_max, tls
                    if self._forget_self_drain(db, row.id):
                        row.draining = False
                    return row.id, False
            except IntegrityError:  # another web node inserted it meanwhile: update it
                if attempt:
                    raise ApiError(409, f"compute node {host}:{port} is registered") from None
        raise AssertionError("unreachable")

    def drain_self(self, host: str, port: int) -> str:
        """A registered node that stops: no new work goes there until it registers
        again. Already drained by an Owner, it stays the Owner's drain."""
        with self.db.session() as db:
            row = self._by_address(db, host, port)
            if row is None:
                raise ApiError(404, f"compute node {host}:{port} is not registered")
            marker = db.get(Meta, _self_drained(row.id))
            if row.draining and marker is None:
                return "draining (an Owner's drain: it stays after the node restarts)"
            row.draining = True
            if marker is None:
                db.add(Meta(key=_self_drained(row.id), value=utcnow().isoformat()))
            return "draining until the node registers again"

    def forget_stopped(self) -> list[str]:
        """Remove the nodes that drained themselves when they stopped and are down more
        than ``nodes.forget_after`` seconds after that (scaled away); their names."""
        after = self.settings.node_forget_after
        if after <= 0:
            return []
        cutoff = utcnow() - dt.timedelta(seconds=after)
        forgotten = []
        with self.db.session() as db:
            markers = db.scalars(select(Meta).where(Meta.key.startswith(_SELF_DRAINED)))
            for marker in list(markers):
                row = db.get(RegisteredNode, int(marker.key.removeprefix(_SELF_DRAINED)))
                if row is None:
                    db.delete(marker)
                    continue
                stopped = dt.datetime.fromisoformat(marker.value)
                if row.state == "down" and row.draining and stopped < cutoff:
                    forgotten.append(f"{row.host}:{row.port}")
                    db.delete(row)
                    db.delete(marker)
        for name in forgotten:
            log.warning("event=node-forgotten node=%s: drained itself and down since", name)
        return forgotten

    def _rows(self) -> list[RegisteredNode]:
        with self.db.session() as db:
            return list(db.scalars(select(RegisteredNode).order_by(RegisteredNode.id)))

    def _record_states(self, states: dict[int, tuple[str, Any]]) -> None:
        with self.db.session() as db:
            for node_id, (state, pools) in states.items():
                row = db.get(RegisteredNode, node_id)
                if row is not None:
                    row.state, row.pools, row.checked_at = state, pools, utcnow()

    # ------------------------------------------------------------------ the view
    async def refresh(self) -> None:
        """Bring this web node's node list in line with the registry (added, removed,
        drained nodes), keeping the counts of nodes it knows. One refresh at a time: the
        check loop's, begun before a node was added, must not end after the add's own
        and drop the node it made (the next refresh would make it again, its counts
        lost)."""
        async with self._refreshing:
            await self._refresh()

    async def _refresh(self) -> None:
        rows = await asyncio.to_thread(self._rows)
        known = {n.id: n for n in self.compute.nodes if n.id is not None}
        registered: list[NodeState] = []
        for row in rows:
            node = known.get(row.id)
            made_from = (row.host, row.port, row.user, row.password_sealed, row.pool_max)
            if node is not None and self._made_from.get(row.id) != made_from:
                node.config = self._config(row)  # re-registered: its counts stay
                self._made_from[row.id] = made_from
            if node is None:
                node = NodeState(self._config(row), id=row.id)
                self._made_from[row.id] = made_from
            node.draining = row.draining
            registered.append(node)
        static = [n for n in self.compute.nodes if n.id is None]
        self.compute.nodes = static + registered
        for gone in set(self._made_from) - {row.id for row in rows}:
            del self._made_from[gone]

    def _config(self, row: RegisteredNode) -> ComputeNode:
        password = self.sealer.open(row.password_sealed) if row.password_sealed else None
        if row.password_sealed and password is None:
            log.error(
                "compute node %s:%d: its login cannot be opened with this web node's node_secret",
                row.host,
                row.port,
            )
        return ComputeNode(row.host, row.port, row.user, password, row.pool_max, tls=row.tls)

    async def check_one(self, node: NodeState) -> None:
        await self.compute.check(node)
        if node.id is not None:
            await asyncio.to_thread(self._record_states, {node.id: (node.state, node.pools or {})})

    async def check(self) -> None:
        """Every node's health and pools, now (the registry's rows get their state)."""
        await asyncio.gather(*(self.compute.check(n) for n in self.compute.nodes))
        states = {n.id: (n.state, n.pools or {}) for n in self.compute.nodes if n.id is not None}
        if states:
            await asyncio.to_thread(self._record_states, states)

    async def keep_checking(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.refresh()
            try:
                await self.check()
            except Exception:
                log.exception("checking compute nodes failed")
            try:
                if await asyncio.to_thread(self.forget_stopped):
                    await self.refresh()
            except Exception:
                log.exception("forgetting stopped compute nodes failed")
            await asyncio.sleep(self.settings_interval)

    @property
    def settings_interval(self) -> float:
        return self.settings.node_check_interval

    def listing(self) -> list[dict[str, Any]]:
        return [n.describe() for n in self.compute.nodes]
