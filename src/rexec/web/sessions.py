"""Live sessions: each web session is one QAP connection (one R shell) held by this node.

The database keeps the session's record and history; the connection lives in this
process. A session whose connection is gone (shell died, web node restarted) answers
410 Gone; a session idle longer than ``session_idle_timeout`` is closed by a reaper.
One request at a time per session: a second one while it is busy gets 409.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import func, select

from rexec.client import AsyncConnection, ClientError, ConnectionLost, RError
from rexec.client import convert as conv
from rexec.protocol import Sexp
from rexec.web import rcode, rjson
from rexec.web.auth import Principal
from rexec.web.compute import Compute, NodeState
from rexec.web.db import Database, Execution, RSession, Snapshot, utcnow
from rexec.web.errors import ApiError

log = logging.getLogger("rexec.web.sessions")
T = TypeVar("T")


@dataclass(slots=True)
class Running:
    """The execution in progress: where its console goes, and its end."""

    console_path: str
    done: asyncio.Event = field(default_factory=asyncio.Event)
    console: str = ""


@dataclass(slots=True)
class Live:
    id: str
    owner_id: int
    connection: AsyncConnection
    node: NodeState
    workdir: str
    tempdir: str
    executions: int = 0
    last_active: float = field(default_factory=time.monotonic)
    running: Running | None = None

    @property
    def busy(self) -> bool:
        return self.connection.busy or self.running is not None


class Sessions:
    def __init__(
        self, db: Database, compute: Compute, idle_timeout: float, execution_timeout: float = 0.0
    ) -> None:
        self.db = db
        self.compute = compute
        self.idle_timeout = idle_timeout
        self.execution_timeout = execution_timeout
        self.live: dict[str, Live] = {}

    # ------------------------------------------------------------------ lifetime
    async def open(self, user: Principal, name: str, snapshot_id: str | None) -> RSession:
        content = (
            await asyncio.to_thread(self.snapshot_content, user, snapshot_id)
            if snapshot_id
            else None
        )
        connection, node = await self.compute.open()
        try:
            info = await connection.eval(rcode.SETUP, timeout=60)
            if content is not None:
                await connection.call("rexec_restore", content)
        except (ClientError, OSError) as exc:
            await connection.close()
            self.compute.release(node)
            raise ApiError(503, f"could not prepare an R session: {exc}") from exc
        row = await asyncio.to_thread(self._insert, user, name, node.config.name)
        self.live[row.id] = Live(
            row.id, user.id, connection, node, str(info["workdir"]), str(info["tempdir"])
        )
        log.info("session %s opened for %s on %s", row.id, user.username, node.config.name)
        return row

    def _insert(self, user: Principal, name: str, node: str) -> RSession:
        with self.db.session() as db:
            row = RSession(owner_id=user.id, name=name, node=node)
            db.add(row)
            db.flush()
        return row

    async def close(self, session_id: str, state: str | None = None) -> None:
        """End the live part; with ``state`` keep the record marked so, else delete it.
        The record first: a reader that no longer finds the live part then finds why."""
        await asyncio.to_thread(self._mark, session_id, state)
        live = self.live.pop(session_id, None)
        if live is not None:
            await live.connection.close()
            self.compute.release(live.node)

    def _mark(self, session_id: str, state: str | None) -> None:
        with self.db.session() as db:
            row = db.get(RSession, session_id)
            if row is not None:
                if state is None:
                    db.delete(row)
                else:
                    row.state = state

    async def node_down(self, node: NodeState) -> None:
        """End the sessions on a compute node found down: their requests answer 410."""
        for live in [live for live in self.live.values() if live.node is node]:
            log.warning("session %s: its compute node %s is down", live.id, node.config.name)
            await live.connection.close()  # a request waiting on it sees the end now
            await self.close(live.id, "gone")

    async def close_all(self) -> None:
        for session_id in list(self.live):
            await self.close(session_id, "closed")

    async def reap(self, interval: float = 30.0) -> None:
        """Close sessions idle for longer than the timeout (runs until cancelled)."""
        while True:
            await asyncio.sleep(min(interval, max(self.idle_timeout / 4, 0.05)))
            now = time.monotonic()
            for live in list(self.live.values()):
                if not live.busy and now - live.last_active > self.idle_timeout:
                    log.info("session %s idle, closed", live.id)
                    await self.close(live.id, "closed")

    # ------------------------------------------------------------------ lookup
    def record(self, user: Principal, session_id: str) -> RSession:
        with self.db.session() as db:
            row = db.get(RSession, session_id)
        if row is None or not (user.is_owner or row.owner_id == user.id):
            raise ApiError(404, "no such session")
        return row

    def visible(self, user: Principal) -> list[RSession]:
        with self.db.session() as db:
            query = select(RSession).order_by(RSession.created_at)
            if not user.is_owner:
                query = query.where(RSession.owner_id == user.id)
            return list(db.scalars(query))

    async def get(self, user: Principal, session_id: str) -> Live:
        """The live session (404 unknown, 410 gone)."""
        row = await asyncio.to_thread(self.record, user, session_id)
        live = self.live.get(session_id)
        if row.state != "active" or live is None or live.connection.closed:
            if row.state == "active":
                await self.close(session_id, "gone")
            raise ApiError(410, f"session is {'closed' if row.state == 'closed' else 'gone'}")
        return live

    async def use(
        self, live: Live, action: Callable[[AsyncConnection], Awaitable[T]], *, wait: bool = False
    ) -> T:
        """Run R work on the session: 409 if busy, 410 if the shell goes away meanwhile."""
        if live.busy and not wait:
            raise ApiError(409, "the session is busy with another request")
        live.last_active = time.monotonic()
        try:
            return await action(live.connection)
        except ConnectionLost as exc:
            await self.close(live.id, "gone")
            raise ApiError(410, f"the session's R shell is gone: {exc}") from exc
        finally:
            live.last_active = time.monotonic()
            await asyncio.to_thread(self._touch, live.id)

    def _touch(self, session_id: str) -> None:
        with self.db.session() as db:
            row = db.get(RSession, session_id)
            if row is not None:
                row.last_active = utcnow()

    # ------------------------------------------------------------------ execute
    async def execute(
        self,
        live: Live,
        code: str,
        inputs: list[tuple[str, Any, str | None]],
        outputs: list[str],
    ) -> dict[str, Any]:
        values = []
        for name, value, type_ in inputs:
            try:
                values.append((name, rjson.from_json(value, type_)))
            except rjson.ConversionError as exc:
                raise ApiError(400, f"input parameter {name!r}: {exc}") from None
        if live.busy:
            raise ApiError(409, "the session is busy with another request")
        number = live.executions + 1
        running = Running(os.path.join(live.tempdir, f"rexec-console-{number}.txt"))
        live.running = running
        started = utcnow()
        timed_out = False
        try:
            work = asyncio.ensure_future(
                self.use(
                    live, lambda c: self._run(c, values, code, running, number, outputs), wait=True
                )
            )
            done, _ = await asyncio.wait({work}, timeout=self.execution_timeout or None)
            if not done:  # interrupt it (the session stays); R's handler then answers
                timed_out = True
                with contextlib.suppress(ClientError, OSError, TimeoutError):
                    await asyncio.wait_for(live.connection.cancel(), 10)
                try:
                    await asyncio.wait_for(asyncio.shield(work), 10)
                except TimeoutError:  # R did not stop: the shell goes, and the session
                    work.cancel()
                    await self.close(live.id, "gone")
                    raise ApiError(
                        504, "the execution ran past its timeout and did not stop"
                    ) from None
            result = work.result()
        finally:
            live.running = None
            running.done.set()
        live.executions = number
        record = Execution(
            session_id=live.id,
            number=number,
            code=code,
            success=result["success"],
            error_message=result["errorMessage"],
            console_output=result["consoleOutput"],
            warnings=result["warnings"],
            changed_files=result["changedFiles"],
            started_at=started,
            finished_at=utcnow(),
        )
        await asyncio.to_thread(self._add, record)
        if timed_out:
            raise ApiError(
                504,
                f"execution {number} ran past sessions.execution_timeout "
                f"({self.execution_timeout:g} s) and was interrupted; the session is kept",
            )
        return {"executionId": number, **result}

    async def _run(
        self,
        connection: AsyncConnection,
        inputs: list[tuple[str, Sexp]],
        code: str,
        running: Running,
        number: int,
        outputs: list[str],
    ) -> dict[str, Any]:
        for name, value in inputs:
            await connection.assign(name, value)
        try:
            raw = await connection.call(
                "rexec_execute", code, running.console_path, f"plot-{number}", convert="raw"
            )
            result = conv.to_python(raw)
        except RError as exc:  # interrupted outside the R-level handler, or similar
            result = {
                "success": False,
                "error": "execution cancelled" if exc.status == 127 else exc.message,
                "warnings": [],
                "console": "",
                "changed": [],
            }
        running.console = result["console"] or ""
        changed = _strings(result["changed"])
        parameters = []
        if outputs:
            fetched = await connection.call("rexec_outputs", outputs, convert="raw")
            found, values = fetched.value
            flags = conv.to_python(found)
            flags = flags if isinstance(flags, list) else [flags]
            for name, present, value in zip(outputs, flags, values.value, strict=True):
                parameters.append(
                    {
                        "name": name,
                        "value": rjson.to_json(value) if present else None,
                        "type": rjson.r_type(value) if present else None,
                    }
                )
        return {
            "success": bool(result["success"]),
            "errorMessage": result["error"],
            "warnings": _strings(result["warnings"]),
            "consoleOutput": running.console,
            "outputParameters": parameters,
            "changedFiles": changed,
            "plots": [f for f in changed if f.startswith(f"plot-{number}-") and f.endswith(".png")],
        }

    def _add(self, row: Any) -> None:
        with self.db.session() as db:
            db.add(row)

    async def console(self, live: Live) -> AsyncIterator[bytes]:
        """The running execution's output as it is written (same host), then the rest."""
        running = live.running
        if running is None:
            yield (await asyncio.to_thread(self.last_console, live.id)).encode()
            return
        sent = 0
        handle = None
        try:
            while not running.done.is_set():
                if handle is None and os.path.exists(running.console_path):
                    with contextlib.suppress(OSError):
                        handle = open(running.console_path, "rb")  # noqa: SIM115
                if handle is not None:
                    chunk = handle.read()
                    if chunk:
                        sent += len(chunk)
                        yield chunk
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(running.done.wait(), 0.1)
        finally:
            if handle is not None:
                handle.close()
        rest = running.console.encode()[sent:]
        if rest:
            yield rest

    def last_console(self, session_id: str) -> str:
        with self.db.session() as db:
            row = db.scalars(
                select(Execution)
                .where(Execution.session_id == session_id)
                .order_by(Execution.number.desc())
                .limit(1)
            ).first()
        return row.console_output if row is not None else ""

    def history(self, session_id: str) -> list[Execution]:
        with self.db.session() as db:
            query = select(Execution).where(Execution.session_id == session_id)
            return list(db.scalars(query.order_by(Execution.number)))

    # ------------------------------------------------------------------ snapshots
    def snapshot_content(self, user: Principal, snapshot_id: str | None) -> bytes:
        with self.db.session() as db:
            row = db.get(Snapshot, snapshot_id)
            if row is None or not (user.is_owner or row.owner_id == user.id):
                raise ApiError(404, "no such snapshot")
            return bytes(row.content)

    async def snapshot(self, user: Principal, live: Live, name: str) -> Snapshot:
        content: bytes = await self.use(live, lambda c: c.call("rexec_snapshot"))
        row = Snapshot(
            owner_id=user.id, name=name, session_id=live.id, size=len(content), content=content
        )
        await asyncio.to_thread(self._add, row)
        return row

    def snapshots(self, user: Principal) -> list[Snapshot]:
        with self.db.session() as db:
            query = select(Snapshot).order_by(Snapshot.created_at)
            if not user.is_owner:
                query = query.where(Snapshot.owner_id == user.id)
            return list(db.scalars(query))

    def snapshot_record(self, user: Principal, snapshot_id: str) -> Snapshot:
        with self.db.session() as db:
            row = db.get(Snapshot, snapshot_id)
            if row is None or not (user.is_owner or row.owner_id == user.id):
                raise ApiError(404, "no such snapshot")
            return row

    def delete_snapshot(self, user: Principal, snapshot_id: str) -> None:
        with self.db.session() as db:
            row = db.get(Snapshot, snapshot_id)
            if row is None or not (user.is_owner or row.owner_id == user.id):
                raise ApiError(404, "no such snapshot")
            db.delete(row)

    def counts(self) -> dict[str, int]:
        with self.db.session() as db:
            total = db.scalar(select(func.count()).select_from(RSession)) or 0
        return {"live": len(self.live), "recorded": int(total)}


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.replace(tzinfo=dt.UTC).isoformat()
