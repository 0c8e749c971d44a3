"""Sessions: each web session is one R shell on a compute node, reachable from any web node.

The database holds everything about a session: its record and history, its compute
node, and the key that resumes its shell — parked on that node at open (rexec's
detachSession with a timeout) and from then on *resumable*: attachSession with the key
on the node's own port (after the node's login) gets the shell, whether it is waiting
parked or attached to another web node's connection (which it then closes, between
requests), and a connection that goes away parks it again.

A request on any web node takes a lease on the session (a conditional update: one
request at a time, 409 otherwise), uses the connection it kept from the session's last
request here — or resumes the shell with the key — and ends the lease, keeping the
connection. So a web node holds no state another needs: killing one closes its
connections, which parks their sessions for the others; sessions need no sticky load
balancing, and consecutive requests on one web node cost no extra round trip.

A lease ends with its request, or when its web node's heartbeat goes stale. Console
output arrives as the shell's OOB messages while an execution runs; the web node running
it keeps it in memory for its own readers and writes it to the record every
``CONSOLE_FLUSH`` seconds for readers on other web nodes. A session idle longer than
``session_idle_timeout`` is closed by whichever web node's reaper finds it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import func, or_, select, update

import rexec.client
from rexec.client import AsyncConnection, ClientError, ConnectionLost, RError, SessionGone
from rexec.client import convert as conv
from rexec.client._async import acancel
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
#: How long shells of sessions declared gone with their node are sought once it is back.
GONE_RETRY = 60.0
#: Most connections a web node keeps open to sessions between their requests.
CACHED_MAX = 512


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
        #: Connections kept from earlier requests (the shells stay resumable: another
        #: web node's attachSession takes a session over; closing one parks it).
        self.cached: dict[str, tuple[AsyncConnection, NodeState]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        #: Held while the recorded sessions are counted for a placement, and while a new
        #: session's record is written and its reservation ended: a placement never
        #: sees a session both recorded and reserved, or neither.
        self._placing = asyncio.Lock()

    # ------------------------------------------------------------------ lifetime
    async def open(self, user: Principal, name: str, snapshot_id: str | None) -> RSession:
        content = (
            await asyncio.to_thread(self.snapshot_content, user, snapshot_id)
            if snapshot_id
            else None
        )
        connection, node = await self._place()
        row, reserved = None, True
        try:
            info = await connection.eval(rcode.SETUP, timeout=60)
            if content is not None:
                await connection.call("rexec_restore", content)
            async with self._placing:
                row = await asyncio.to_thread(
                    self._insert, user, name, node.config.name, connection.pid, str(info["workdir"])
                )
                self.compute.release(node)  # recorded now: the record counts it
                reserved = False
            key = await connection.park(self._park_seconds)
        except (ClientError, OSError) as exc:
            await connection.close()
            if row is not None:
                await asyncio.to_thread(self._mark, row.id, None)
            raise ApiError(503, f"could not prepare an R session: {exc}") from exc
        finally:
            if reserved:
                self.compute.release(node)
        await asyncio.to_thread(self._parked, row.id, key)
        log.info("session %s opened for %s on %s", row.id, user.username, node.config.name)
        return row

    async def _place(self) -> tuple[AsyncConnection, NodeState]:
        """A connection for a new session. A node no check has numbers for (one without
        a login, or not checked yet) is counted from the sessions the database records
        there, since its parked sessions are held by no web node's connection."""
        if any(n.pools is None for n in self.compute.working()):
            async with self._placing:
                recorded = await asyncio.to_thread(self._sessions_by_node)
                for node in self.compute.nodes:
                    node.recorded = recorded.get(node.config.name, 0)
        # no await between the count and the reservation compute.open makes first
        return await self.compute.open()

    def _sessions_by_node(self) -> dict[str, int]:
        with self.db.session() as db:
            rows = db.execute(
                select(RSession.node, func.count())
                .where(RSession.state == "active")
                .group_by(RSession.node)
            )
            return {node: count for node, count in rows}

    def _parked(self, session_id: str, key: bytes) -> None:
        """The new session is parked under ``key`` (good until the session ends)."""
        with self.db.session() as db:
            row = db.get(RSession, session_id)
            if row is not None:
                row.park_key, row.holder, row.last_active = key.hex(), None, utcnow()

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
        """End the session: its shell, then the record — deleted, or with ``state`` kept
        and marked so. A session a request is using (here or on another web node) is
        marked first and its execution interrupted; that request's web node ends the
        shell when it is done."""
        row = await asyncio.to_thread(self._get, session_id)
        if row is None:
            return
        if row.state == "active" and await asyncio.to_thread(self._claim, session_id):
            with contextlib.suppress(ApiError, ClientError, OSError, TimeoutError):
                connection = self._take_cached(session_id) or await self._resume(row)
                await connection.end_session()
            await asyncio.to_thread(self._mark, session_id, state)
            return
        await asyncio.to_thread(self._mark, session_id, state)
        node = self._node(row.node)
        if row.state == "active" and row.pid and node is not None:
            with contextlib.suppress(ClientError, OSError, TimeoutError):
                await self._cancel(node, row.pid)

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
        for session_id, (connection, where) in list(self.cached.items()):
            if where is node:
                del self.cached[session_id]
                await connection.close()
        count = await asyncio.to_thread(self._node_gone, node.config.name)
        if count:
            log.warning("%d sessions on compute node %s are gone", count, node.config.name)

    def _node_gone(self, name: str) -> int:
        with self.db.session() as db:
            result = db.execute(
                update(RSession)
                .where(RSession.node == name, RSession.state == "active")
                .values(state="gone", holder=None, running=None)
            )
            return int(result.rowcount or 0)

    async def node_back(self, node: NodeState) -> None:
        """A compute node is reachable again (a partition healed): the shells of the
        sessions declared gone meanwhile may still be there (parked, or finishing what
        they ran); they are ended in the background, retried for a minute (a shell
        busy in R answers its takeover only when it is done)."""
        keys = await asyncio.to_thread(self._gone_keys, node.config.name)
        if keys:
            self._background(self._end_gone(node, dict(keys)))

    async def _end_gone(self, node: NodeState, keys: dict[str, str]) -> None:
        deadline = time.monotonic() + GONE_RETRY
        ended: list[str] = []
        while keys and time.monotonic() < deadline and node.state != "down":
            for session_id, key in list(keys.items()):
                try:
                    await (await self._attach(node, key)).end_session()
                    log.info(
                        "session %s: its shell, left while its node was down, ended", session_id
                    )
                except SessionGone:
                    pass
                except (ClientError, OSError, TimeoutError):
                    continue  # busy in R still, or unreachable: again soon
                ended.append(session_id)
                del keys[session_id]
            if keys:
                await asyncio.sleep(2)
        if ended:
            await asyncio.to_thread(self._forget_keys, ended)

    def _gone_keys(self, name: str) -> list[tuple[str, str]]:
        with self.db.session() as db:
            query = select(RSession.id, RSession.park_key).where(
                RSession.node == name, RSession.state == "gone", RSession.park_key.is_not(None)
            )
            return [(row[0], row[1]) for row in db.execute(query).all()]

    def _forget_keys(self, session_ids: list[str]) -> None:
        with self.db.session() as db:
            db.execute(update(RSession).where(RSession.id.in_(session_ids)).values(park_key=None))

    async def close_all(self) -> None:
        """This web node stops: the connections it kept close, which parks their
        sessions for the other web nodes (nothing is lost)."""
        for _connection, _node in list(self.cached.values()):
            await _connection.close()
        self.cached.clear()
        for task in list(self._closing):
            with contextlib.suppress(Exception):
                await task

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
    def _fresh(self) -> Any:
        """SQL: the web nodes whose leases hold (their heartbeats are fresh)."""
        since = utcnow() - dt.timedelta(seconds=self.heartbeat_ttl)
        return select(WebNodeRecord.id).where(WebNodeRecord.seen_at > since)

    def _unheld(self) -> Any:
        """SQL: nobody holds the session, or its holder's heartbeat is stale."""
        return or_(RSession.holder.is_(None), RSession.holder.not_in(self._fresh()))

    def live_holders(self) -> set[str]:
        """The web nodes whose leases hold: a session held by one of them is busy."""
        with self.db.session() as db:
            return set(db.scalars(self._fresh()))

    def _claim(self, session_id: str) -> bool:
        """Take the session's lease (one conditional update); False if another holds it."""
        return self._claim_row(session_id) is not None

    def _claim_row(self, session_id: str, starting: bool = False) -> RSession | None:
        """Take the lease and read the record, in one transaction; None if held. With
        ``starting``, an execution starts: it takes the next number (``running``)."""
        with self.db.session() as db:
            result = db.execute(
                update(RSession)
                .where(RSession.id == session_id, RSession.state == "active", self._unheld())
                .values(holder=self.holder_id)
                .execution_options(synchronize_session=False)
            )
            if not result.rowcount:
                return None
            row = db.get(RSession, session_id)
            if row is not None and starting:
                row.running, row.console_live = row.executions + 1, ""
            return row

    def _release(
        self, session_id: str, alive: bool, finish: Callable[[Any, RSession], None] | None
    ) -> bool:
        """End the lease (``alive`` False: the shell is gone, so is the session), after
        ``finish(db, row)`` in the same transaction; False when the session was closed
        meanwhile (another web node's DELETE or reaper): then its shell is to be ended."""
        with self.db.session() as db:
            row = db.get(RSession, session_id)
            if row is not None and finish is not None:
                finish(db, row)
            if row is None or row.state != "active":
                return not alive
            row.holder, row.last_active, row.running = None, utcnow(), None
            if not alive:  # the key stays: a partitioned node's shell may be ended later
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
            connection = await self._attach(node, row.park_key, row.pid)
        except (SessionGone, ConnectionLost) as exc:
            raise ApiError(410, f"session is gone: its R shell is not there ({exc})") from exc
        except (ClientError, OSError) as exc:
            raise self.compute.busy_error(
                f"could not reach compute node {row.node}: {exc}"
            ) from exc
        connection.timeout = None  # executions may run as long as they need
        return connection

    async def _attach(self, node: NodeState, key: str, pid: int | None = None) -> AsyncConnection:
        """A new connection to the session parked on ``node`` under ``key`` (hex)."""
        return await rexec.client.aattach(
            key=bytes.fromhex(key),
            pid=pid,
            timeout=self.compute.settings.connect_timeout,
            **self.compute.qap(node),
        )

    async def _cancel(self, node: NodeState, pid: int) -> bool:
        """CMD_cancel for shell ``pid`` on ``node`` (no shell taken)."""
        return await acancel(
            pid, timeout=self.compute.settings.connect_timeout, **self.compute.qap(node)
        )

    def _background(self, work: Awaitable[None]) -> None:
        """Run ``work`` on its own; :meth:`close_all` waits for it."""
        task = asyncio.ensure_future(work)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

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
        starting: bool = False,
        finish: Callable[[Any, RSession], None] | None = None,
    ) -> T:
        """Run R work on the session: 409 if a request holds it, 410 if its shell is gone,
        502 if the connection to it was lost while the work ran (its outcome unknown)."""
        row = await asyncio.to_thread(self._claim_row, handle.id, starting)
        if row is None:
            raise ApiError(409, "the session is busy with another request")
        handle.running = row.running
        gone = False
        try:
            connection = self._take_cached(handle.id) or await self._resume(row)
            self.attached[handle.id] = (connection, handle.node)
            try:
                result = await action(connection)
            except (ConnectionLost, OSError) as exc:
                self.attached.pop(handle.id, None)
                await connection.close()
                await self._check_after_loss(row)  # 410 when the shell went with it
                raise ApiError(
                    502, f"lost the connection to the session's R shell mid-request: {exc}"
                ) from exc
            self.attached.pop(handle.id, None)
            self._keep(handle.id, connection, handle.node)
            return result
        except ApiError as exc:
            gone = exc.status == 410
            raise
        finally:
            self.attached.pop(handle.id, None)
            if not await asyncio.to_thread(self._release, handle.id, not gone, finish):
                await self._end_here(handle.id)

    def _take_cached(self, session_id: str) -> AsyncConnection | None:
        """This web node's connection to the session from an earlier request, unless
        the shell closed it meanwhile (another web node took the session over)."""
        cached = self.cached.pop(session_id, None)
        if cached is None:
            return None
        if cached[0].stale:
            self._close_later(cached[0])
            return None
        return cached[0]

    def _keep(self, session_id: str, connection: AsyncConnection, node: NodeState) -> None:
        """Keep the connection for the next request here (at most ``CACHED_MAX``;
        closing one only parks its session)."""
        self.cached[session_id] = (connection, node)
        while len(self.cached) > CACHED_MAX:
            oldest = next(iter(self.cached))
            self._close_later(self.cached.pop(oldest)[0])

    def _close_later(self, connection: AsyncConnection) -> None:
        self._background(connection.close())

    async def _check_after_loss(self, row: RSession) -> None:
        """After a lost connection: is the shell still there? Resuming it tells (and the
        connection is kept); a 410 from :meth:`_resume` says it is gone."""
        with contextlib.suppress(TimeoutError):
            connection = await asyncio.wait_for(self._resume(row), 10)
            node = self._node(row.node)
            if node is not None:
                self._keep(row.id, connection, node)

    async def _end_here(self, session_id: str) -> None:
        """The session was closed (or deleted) while a request of ours used it: end its
        shell now, through the connection we hold."""
        cached = self.cached.pop(session_id, None)
        if cached is not None:
            with contextlib.suppress(ClientError, OSError):
                await cached[0].end_session()

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
            assert handle.running is not None
            running = state["running"] = self.running[handle.id] = Running(handle.running)
            state["started"] = utcnow()
            connection.on_oob = lambda value, code: _console(running, value)
            publisher = asyncio.ensure_future(self._publish(handle.id, running))
            try:
                result = state["result"] = await self._timed(
                    connection, handle, values, code, running, outputs
                )
                return result
            finally:
                connection.on_oob = None
                running.done.set()
                publisher.cancel()
                self.running.pop(handle.id, None)

        def finish(db: Any, row: RSession) -> None:
            """With the lease's end: the number is taken (even if the shell went away),
            and the history gets the execution."""
            if "running" not in state:
                return
            number = state["running"].number
            row.executions, row.console_live = max(row.executions, number), ""
            result = state.get("result")
            if result is not None:
                db.add(
                    Execution(
                        session_id=row.id,
                        number=number,
                        code=code,
                        success=result["success"],
                        error_message=result["errorMessage"],
                        console_output=result["consoleOutput"],
                        warnings=result["warnings"],
                        changed_files=result["changedFiles"],
                        started_at=state["started"],
                        finished_at=utcnow(),
                    )
                )

        result = await self.use(handle, run, starting=True, finish=finish)
        number = state["running"].number
        if result.pop("timedOut", False):
            raise ApiError(
                504,
                f"execution {number} ran past sessions.execution_timeout "
                f"({self.execution_timeout:g} s) and was interrupted; the session is kept",
            )
        return {"executionId": number, **result}

    async def _publish(self, session_id: str, running: Running) -> None:
        """Write the console output so far to the record, for other web nodes' readers."""
        written = 0
        while True:
            await asyncio.sleep(CONSOLE_FLUSH)  # a short execution writes nothing here
            await running.changed.wait()
            running.changed.clear()
            if running.size != written:
                written = running.size
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self._console_so_far, session_id, running.text)

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
        try:
            await self._cancel(handle.node, handle.pid)
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
                # ``changed`` is the publisher's (it writes the record for other web
                # nodes' readers): a reader here polls and leaves it alone
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(running.done.wait(), 0.1)
        if handle.running is None:
            yield (await asyncio.to_thread(self.console_of, handle.id, None)).encode()
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

    def console_of(self, session_id: str, number: int | None) -> str:
        """The console output of execution ``number`` (None: the last one) in history."""
        query = select(Execution).where(Execution.session_id == session_id)
        if number is not None:
            query = query.where(Execution.number == number)
        with self.db.session() as db:
            row = db.scalars(query.order_by(Execution.number.desc()).limit(1)).first()
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
