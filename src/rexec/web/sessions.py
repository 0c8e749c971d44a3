"""Sessions: each web session is one R shell on a compute node, reachable from any web node.

The database holds everything about a session: its record and history, its compute
node, and where its shell waits between requests — parked on that node (rexec's
detachSession with a timeout) under a key only the database knows. A request on any web
node takes a lease on the session (a conditional update: one request at a time, 409
otherwise), resumes the shell with the key (attachSession on the node's own port, after
the node's login), does its work, parks the shell again and stores the new key. So a
web node holds no session state: killing one loses nothing but the requests it was
serving, and sessions need no sticky load balancing.

A lease ends with its request, or when its web node's heartbeat goes stale (it died
mid-request: then its shell ended with the connection, and the session answers 410).
Console output arrives as the shell's OOB messages while an execution runs; the web
node running it keeps it in memory for its own readers and writes it to the record
every ``CONSOLE_FLUSH`` seconds for readers on other web nodes. A session idle longer
than ``session_idle_timeout`` is closed by whichever web node's reaper finds it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import func, or_, select, update

import rexec.client
from rexec.client import AsyncConnection, ClientError, ConnectionLost, RError, SessionGone
from rexec.client import convert as conv
from rexec.protocol import Sexp
from rexec.web import rcode, rjson
from rexec.web.auth import Principal
from rexec.web.compute import Compute, NodeState
from rexec.web.db import Database, Execution, RSession, Snapshot, WebNodeRecord, utcnow
from rexec.web.errors import ApiError

log = logging.getLogger("rexec.web.sessions")
T = TypeVar("T")

#: Most console output kept per execution (as R's own limit before).
CONSOLE_LIMIT = 1 << 20
#: How often a running execution's console output is written for other web nodes.
CONSOLE_FLUSH = 0.25
#: A parked shell outlives the idle timeout by this much (the reaper closes it first).
PARK_SLACK = 300.0


@dataclass(slots=True)
class Running:
    """An execution this web node runs: its console output so far, and its end."""

    number: int
    chunks: list[str] = field(default_factory=list)
    size: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, text: str) -> None:
        if self.size < CONSOLE_LIMIT:
            text = text[: CONSOLE_LIMIT - self.size]
            self.chunks.append(text)
            self.size += len(text)
            self.changed.set()

    @property
    def text(self) -> str:
        return "".join(self.chunks)


@dataclass(slots=True)
class Handle:
    """A session as a request finds it in the database."""

    id: str
    owner_id: int
    node: NodeState
    pid: int | None
    workdir: str
    executions: int
    running: int | None


class Sessions:
    def __init__(
        self, db: Database, compute: Compute, idle_timeout: float, execution_timeout: float = 0.0
    ) -> None:
        self.db = db
        self.compute = compute
        self.idle_timeout = idle_timeout
        self.execution_timeout = execution_timeout
        #: This web node's heartbeat id (set by the app) and how stale a holder may be.
        self.holder_id = "web"
        self.heartbeat_ttl = 30.0
        #: Connections in use by this web node's requests now, by session id.
        self.attached: dict[str, tuple[AsyncConnection, NodeState]] = {}
        #: Executions this web node runs now, by session id.
        self.running: dict[str, Running] = {}

    # ------------------------------------------------------------------ lifetime
    async def open(self, user: Principal, name: str, snapshot_id: str | None) -> RSession:
        content = (
            await asyncio.to_thread(self.snapshot_content, user, snapshot_id)
            if snapshot_id
            else None
        )
        connection, node = await self.compute.open()
        row = None
        try:
            info = await connection.eval(rcode.SETUP, timeout=60)
            if content is not None:
                await connection.call("rexec_restore", content)
            row = await asyncio.to_thread(
                self._insert, user, name, node.config.name, connection.pid, str(info["workdir"])
            )
            key = await connection.park(self._park_seconds)
        except (ClientError, OSError) as exc:
            await connection.close()
            if row is not None:
                await asyncio.to_thread(self._mark, row.id, None)
            raise ApiError(503, f"could not prepare an R session: {exc}") from exc
        finally:
            self.compute.release(node)
        await asyncio.to_thread(self._release, row.id, key, None)
        log.info("session %s opened for %s on %s", row.id, user.username, node.config.name)
        return row

    @property
    def _park_seconds(self) -> float:
        return self.idle_timeout + PARK_SLACK

    def _insert(
        self, user: Principal, name: str, node: str, pid: int | None, workdir: str
    ) -> RSession:
        with self.db.session() as db:
            row = RSession(
                owner_id=user.id,
                name=name,
                node=node,
                pid=pid,
                workdir=workdir,
                holder=self.holder_id,
            )
            db.add(row)
            db.flush()
        return row

    async def close(self, session_id: str, state: str | None = None) -> None:
        """End the session: its shell (resumed, then closed), then the record — deleted,
        or with ``state`` kept and marked so. A session another web node is using is
        marked, and that node ends it when its request is done."""
        row = await asyncio.to_thread(self._get, session_id)
        if row is None:
            return
        attached = self.attached.get(session_id)
        if attached is not None:  # a request of ours runs on it: it sees the end
            await attached[0].close()
        elif row.state == "active" and await asyncio.to_thread(self._claim, session_id):
            with contextlib.suppress(ApiError):  # gone or unreachable: it times out there
                connection = await self._resume(row)
                await connection.close()  # a resumed connection that closes ends the shell
        await asyncio.to_thread(self._mark, session_id, state)

    def _get(self, session_id: str) -> RSession | None:
        with self.db.session() as db:
            return db.get(RSession, session_id)

    def _mark(self, session_id: str, state: str | None) -> None:
        with self.db.session() as db:
            row = db.get(RSession, session_id)
            if row is not None:
                if state is None:
                    db.delete(row)
                else:
                    row.state, row.park_key, row.holder, row.running = state, None, None, None

    async def node_down(self, node: NodeState) -> None:
        """A compute node found down: its sessions are gone (410), and requests of ours
        waiting on it see the end now (a partitioned node's connections never end)."""
        for session_id, (connection, where) in list(self.attached.items()):
            if where is node:
                log.warning("session %s: its compute node %s is down", session_id, node.config.name)
                await connection.close()
        count = await asyncio.to_thread(self._node_gone, node.config.name)
        if count:
            log.warning("%d sessions on compute node %s are gone", count, node.config.name)

    def _node_gone(self, name: str) -> int:
        with self.db.session() as db:
            result = db.execute(
                update(RSession)
                .where(RSession.node == name, RSession.state == "active")
                .values(state="gone", park_key=None, holder=None, running=None)
            )
            return int(result.rowcount or 0)

    async def close_all(self) -> None:
        """This web node stops: requests of its own still running lose their sessions
        (their connections close); every other session stays for the other web nodes."""
        for session_id, (connection, _node) in list(self.attached.items()):
            await connection.close()
            await asyncio.to_thread(self._mark, session_id, "gone")

    async def reap(self, interval: float = 30.0) -> None:
        """Close sessions idle for longer than the timeout (runs until cancelled)."""
        while True:
            await asyncio.sleep(min(interval, max(self.idle_timeout / 4, 0.05)))
            try:
                idle = await asyncio.to_thread(self._idle)
                for session_id in idle:
                    log.info("session %s idle, closed", session_id)
                    await self.close(session_id, "closed")
            except Exception:  # the database may be away for a while: try again later
                log.exception("reaping idle sessions failed")

    def _idle(self) -> list[str]:
        since = utcnow() - dt.timedelta(seconds=self.idle_timeout)
        with self.db.session() as db:
            query = select(RSession.id).where(
                RSession.state == "active", RSession.last_active < since
            )
            return list(db.scalars(query.where(self._unheld())))

    # ------------------------------------------------------------------ leases
    def _unheld(self) -> Any:
        """SQL: nobody holds the session, or its holder's heartbeat is stale."""
        fresh = select(WebNodeRecord.id).where(
            WebNodeRecord.seen_at > utcnow() - dt.timedelta(seconds=self.heartbeat_ttl)
        )
        return or_(RSession.holder.is_(None), RSession.holder.not_in(fresh))

    def _claim(self, session_id: str) -> bool:
        """Take the session's lease (one conditional update); False if another holds it."""
        return self._claim_row(session_id) is not None

    def _claim_row(self, session_id: str) -> RSession | None:
        """Take the lease and read the record, in one transaction; None if held."""
        with self.db.session() as db:
            result = db.execute(
                update(RSession)
                .where(RSession.id == session_id, RSession.state == "active", self._unheld())
                .values(holder=self.holder_id)
                .execution_options(synchronize_session=False)
            )
            return db.get(RSession, session_id) if result.rowcount else None

    def _release(self, session_id: str, key: bytes | None, executions: int | None) -> bool:
        """End the lease, keeping ``key``; False when the session was closed meanwhile
        (another web node's DELETE or reaper): then the parked shell is to be ended."""
        with self.db.session() as db:
            row = db.get(RSession, session_id)
            if row is None or row.state != "active":
                return key is None
            row.holder, row.last_active, row.running = None, utcnow(), None
            row.park_key = key.hex() if key is not None else None
            if executions is not None:
                row.executions = executions
            if key is None:
                row.state = "gone"
            return True

    async def _resume(self, row: RSession) -> AsyncConnection:
        """The session's shell on a new connection (410 when it is not there any more,
        503 when its node cannot be reached now). The caller holds the lease, and
        releases it: with no key after a 410 (the session is gone), else the old one."""
        node = self._node(row.node)
        if row.park_key is None or node is None or node.state == "down":
            raise ApiError(410, "session is gone (its compute node is down or unknown)")
        try:
            connection = await rexec.client.aattach(
                key=bytes.fromhex(row.park_key),
                pid=row.pid,
                timeout=self.compute.settings.connect_timeout,
                **self.compute.qap(node),
            )
        except (SessionGone, ConnectionLost) as exc:
            raise ApiError(410, f"session is gone: its R shell is not there ({exc})") from exc
        except (ClientError, OSError) as exc:
            raise self.compute.busy_error(
                f"could not reach compute node {row.node}: {exc}"
            ) from exc
        connection.timeout = None  # executions may run as long as they need
        return connection

    def _node(self, name: str) -> NodeState | None:
        return next((n for n in self.compute.nodes if n.config.name == name), None)

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

    async def get(self, user: Principal, session_id: str) -> Handle:
        """The session (404 unknown, 410 closed or gone)."""
        row = await asyncio.to_thread(self.record, user, session_id)
        node = self._node(row.node)
        if row.state != "active" or node is None:
            raise ApiError(410, f"session is {'closed' if row.state == 'closed' else 'gone'}")
        return Handle(row.id, row.owner_id, node, row.pid, row.workdir, row.executions, row.running)

    async def use(
        self,
        handle: Handle,
        action: Callable[[AsyncConnection], Awaitable[T]],
        *,
        executions: int | None = None,
    ) -> T:
        """Run R work on the session: 409 if a request holds it, 410 if its shell is gone."""
        row = await asyncio.to_thread(self._claim_row, handle.id)
        if row is None:
            raise ApiError(409, "the session is busy with another request")
        key: bytes | None = None
        try:
            try:
                connection = await self._resume(row)
            except ApiError as exc:
                if exc.status != 410 and row.park_key:  # unreachable now: it stays parked
                    key = bytes.fromhex(row.park_key)
                raise
            self.attached[handle.id] = (connection, handle.node)
            try:
                result = await action(connection)
                key = await connection.park(self._park_seconds)
            except (ConnectionLost, OSError) as exc:
                raise ApiError(410, f"the session's R shell is gone: {exc}") from exc
            finally:
                self.attached.pop(handle.id, None)
                if key is None:
                    await connection.close()
            return result
        finally:
            if not await asyncio.to_thread(self._release, handle.id, key, executions):
                await self._end_parked(row, key)

    async def _end_parked(self, row: RSession, key: bytes | None) -> None:
        """The session was closed while a request of ours used it: end its shell."""
        node = self._node(row.node)
        if key is None or node is None:
            return
        with contextlib.suppress(ClientError, OSError):
            connection = await rexec.client.aattach(
                key=key, timeout=self.compute.settings.connect_timeout, **self.compute.qap(node)
            )
            await connection.close()

    # ------------------------------------------------------------------ execute
    async def execute(
        self,
        handle: Handle,
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
        state: dict[str, Any] = {}

        async def run(connection: AsyncConnection) -> dict[str, Any]:
            number = await asyncio.to_thread(self._start, handle.id)
            running = state["running"] = self.running[handle.id] = Running(number)
            state["started"] = utcnow()
            connection.on_oob = lambda value, code: _console(running, value)
            publisher = asyncio.ensure_future(self._publish(handle.id, running))
            try:
                return await self._timed(connection, handle, values, code, running, outputs)
            finally:
                connection.on_oob = None
                running.done.set()
                publisher.cancel()
                self.running.pop(handle.id, None)

        try:
            result = await self.use(handle, run, executions=None)
        finally:
            if "running" in state:  # the number is taken even when the shell went away
                await asyncio.to_thread(self._count, handle.id, state["running"].number)
        running = state["running"]
        record = Execution(
            session_id=handle.id,
            number=running.number,
            code=code,
            success=result["success"],
            error_message=result["errorMessage"],
            console_output=result["consoleOutput"],
            warnings=result["warnings"],
            changed_files=result["changedFiles"],
            started_at=state["started"],
            finished_at=utcnow(),
        )
        await asyncio.to_thread(self._record, record)
        if result.pop("timedOut", False):
            raise ApiError(
                504,
                f"execution {running.number} ran past sessions.execution_timeout "
                f"({self.execution_timeout:g} s) and was interrupted; the session is kept",
            )
        return {"executionId": running.number, **result}

    def _start(self, session_id: str) -> int:
        with self.db.session() as db:
            row = db.get(RSession, session_id)
            assert row is not None
            row.running, row.console_live = row.executions + 1, ""
            return row.executions + 1

    def _count(self, session_id: str, number: int) -> None:
        with self.db.session() as db:
            row = db.get(RSession, session_id)
            if row is not None:
                row.executions = max(row.executions, number)
                row.console_live = ""

    async def _publish(self, session_id: str, running: Running) -> None:
        """Write the console output so far to the record, for other web nodes' readers."""
        written = 0
        while True:
            await running.changed.wait()
            running.changed.clear()
            if running.size != written:
                written = running.size
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self._console_so_far, session_id, running.text)
            await asyncio.sleep(CONSOLE_FLUSH)

    def _console_so_far(self, session_id: str, text: str) -> None:
        with self.db.session() as db:
            row = db.get(RSession, session_id)
            if row is not None and row.holder == self.holder_id:
                row.console_live = text

    async def _timed(
        self,
        connection: AsyncConnection,
        handle: Handle,
        values: list[tuple[str, Sexp]],
        code: str,
        running: Running,
        outputs: list[str],
    ) -> dict[str, Any]:
        work = asyncio.ensure_future(self._run(connection, values, code, running, outputs))
        done, _ = await asyncio.wait({work}, timeout=self.execution_timeout or None)
        if done:
            return work.result()
        # Past the timeout: interrupt it (the session stays); R's handler then answers.
        with contextlib.suppress(ClientError, OSError, TimeoutError):
            await asyncio.wait_for(connection.cancel(), 10)
        try:
            result = await asyncio.wait_for(asyncio.shield(work), 10)
        except TimeoutError:  # R did not stop: the shell goes, and the session
            work.cancel()
            await connection.close()
            raise ApiError(504, "the execution ran past its timeout and did not stop") from None
        return {**result, "timedOut": True}

    async def _run(
        self,
        connection: AsyncConnection,
        inputs: list[tuple[str, Sexp]],
        code: str,
        running: Running,
        outputs: list[str],
    ) -> dict[str, Any]:
        for name, value in inputs:
            await connection.assign(name, value)
        number = running.number
        try:
            raw = await connection.call("rexec_execute", code, f"plot-{number}", convert="raw")
            result = conv.to_python(raw)
        except RError as exc:  # interrupted outside the R-level handler, or similar
            result = {
                "success": False,
                "error": "execution cancelled" if exc.status == 127 else exc.message,
                "warnings": [],
                "changed": [],
            }
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
            "consoleOutput": running.text,
            "outputParameters": parameters,
            "changedFiles": changed,
            "plots": [f for f in changed if f.startswith(f"plot-{number}-") and f.endswith(".png")],
        }

    def _record(self, execution: Execution) -> None:
        """Add to the history, unless the session was deleted meanwhile."""
        with self.db.session() as db:
            if db.get(RSession, execution.session_id) is not None:
                db.add(execution)

    def _add(self, row: Any) -> None:
        with self.db.session() as db:
            db.add(row)

    async def cancel(self, handle: Handle) -> None:
        """Interrupt the session's running execution, from any web node (CMD_cancel to
        its compute node with the shell's pid)."""
        if handle.running is None and handle.id not in self.running:
            raise ApiError(409, "no execution is running")
        if handle.pid is None:
            raise ApiError(409, "the session's shell cannot be interrupted (pid unknown)")
        from rexec.client._async import acancel

        try:
            await acancel(
                handle.pid,
                timeout=self.compute.settings.connect_timeout,
                **self.compute.qap(handle.node),
            )
        except (ClientError, OSError) as exc:
            raise self.compute.busy_error(f"could not reach the compute node: {exc}") from exc

    async def console(self, handle: Handle) -> AsyncIterator[bytes]:
        """The running execution's output as it is written, then the rest; with nothing
        running, the last execution's output. From this web node's memory when it runs
        the execution, else from the record the running web node writes."""
        running = self.running.get(handle.id)
        if running is not None:
            sent = 0
            while True:
                text = running.text
                if len(text) > sent:
                    yield text[sent:].encode()
                    sent = len(text)
                if running.done.is_set():
                    return
                running.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(running.done.wait(), 0.1)
        if handle.running is None:
            yield (await asyncio.to_thread(self.last_console, handle.id)).encode()
            return
        sent = 0
        number = handle.running
        while True:
            row = await asyncio.to_thread(self._get, handle.id)
            if row is None:
                return
            if row.running != number:  # finished: the rest is in its history
                text = await asyncio.to_thread(self.console_of, handle.id, number)
                if len(text) > sent:
                    yield text[sent:].encode()
                return
            if len(row.console_live) > sent:
                yield row.console_live[sent:].encode()
                sent = len(row.console_live)
            await asyncio.sleep(CONSOLE_FLUSH)

    def console_of(self, session_id: str, number: int) -> str:
        with self.db.session() as db:
            row = db.scalars(
                select(Execution).where(
                    Execution.session_id == session_id, Execution.number == number
                )
            ).first()
        return row.console_output if row is not None else ""

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

    async def snapshot(self, user: Principal, handle: Handle, name: str) -> Snapshot:
        content: bytes = await self.use(handle, lambda c: c.call("rexec_snapshot"))
        row = Snapshot(
            owner_id=user.id, name=name, session_id=handle.id, size=len(content), content=content
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
            active = (
                db.scalar(
                    select(func.count()).select_from(RSession).where(RSession.state == "active")
                )
                or 0
            )
        return {"active": int(active), "attached": len(self.attached), "recorded": int(total)}


def _console(running: Running, value: Sexp) -> None:
    """An OOB message from the shell: console output is kept, anything else dropped."""
    message = conv.to_python(value)
    if (
        isinstance(message, list)
        and len(message) == 2
        and message[0] in ("console.out", "console.err")
        and isinstance(message[1], str)
    ):
        running.add(message[1])


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.replace(tzinfo=dt.UTC).isoformat()
