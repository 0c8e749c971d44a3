"""The asyncio connection: the same sans-I/O operations over asyncio streams."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from typing import Any

from rexec.client import _core
from rexec.client._core import ClientError, ConnectionLost, Convert, Core, Operation, RError
from rexec.protocol import OOB_MSG, Err, Frame, Sexp
from rexec.protocol.codec import BytesLike

_RECV_SIZE = 1 << 20


class AsyncConnection:
    """One QAP1 session driven by asyncio. Requests on one connection are serialised
    with a lock; :meth:`cancel` uses a connection of its own and never waits for it.

    With ``tls`` (a client :class:`ssl.SSLContext`) the connection is TLS from the first
    byte (a rexec compute node's ``tls.port``, Rserve's ``qap.tls.port``); the server's
    certificate is checked against ``server_hostname`` (default: ``host``) when the
    context checks host names, and the context's certificate, if it has one, is the
    client certificate a node with ``tls.client = require`` asks for."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float | None,
        *,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.tls, self.server_hostname = tls, server_hostname
        self.pid: int | None = None
        self._cancelling = False
        self._user: str | None = None
        self._password: str | None = None
        self._core = Core()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        #: Called with each out-of-band message (value, code) while a request runs: R's
        #: self.oobSend()/self.oobMessage() and, with console.oob, console output as
        #: list("console.out", text). For oobMessage its return value is the answer.
        #: Without it OOB_SEND is dropped and OOB_MSG answered with NULL.
        self.on_oob: Callable[[Sexp, int], Any] | None = None

    async def _open(
        self, user: str | None, password: str | None, fetch_pid: bool, pool: str | None = None
    ) -> None:
        try:
            self._reader, self._writer = await asyncio.wait_for(self._connect(), self.timeout)
            await asyncio.wait_for(self._greeting(), self.timeout)
            if user is not None:
                await self._login(user, password or "")
            if pool is not None:
                await self._run(_core.use_pool_op(pool))
            if fetch_pid and (user is not None or not self._core.needs_login):
                self.pid = await self._run(_core.pid_op())
        except BaseException as exc:
            await self.close()
            if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
                raise ConnectionLost(f"cannot connect: {exc!r}") from exc
            raise

    def _connect(self) -> Any:
        if self.tls is None:
            return asyncio.open_connection(self.host, self.port)
        name = self.server_hostname or self.host
        return asyncio.open_connection(self.host, self.port, ssl=self.tls, server_hostname=name)

    async def _greeting(self) -> None:
        while self._core.info is None:
            await self._receive()

    # ------------------------------------------------------------------ I/O
    async def _receive(self) -> None:
        if self._reader is None:
            raise ConnectionLost("connection is closed")
        data = await self._reader.read(_RECV_SIZE)
        if not data:
            raise ConnectionLost("connection closed by the server")
        self._core.receive(data)

    async def _exchange(self, chunks: list[BytesLike]) -> Frame:
        if self._writer is None:
            raise ConnectionLost("connection is closed")
        self._writer.writelines(chunks)
        await self._writer.drain()
        while True:
            while (frame := self._core.next_frame()) is None:
                await self._receive()
            kind = _core.oob_kind(frame)
            if kind is None:
                return frame
            value, code = _core.oob_value(frame)
            answer = self.on_oob(value, code) if self.on_oob is not None else None
            if kind == OOB_MSG:
                self._writer.writelines(_core.oob_answer(frame, answer))
                await self._writer.drain()

    async def _run(self, op: Operation, timeout: float | None = -1.0) -> Any:
        async with self._lock:
            try:
                chunks = next(op)
                while True:
                    frame = await asyncio.wait_for(
                        self._exchange(chunks), self.timeout if timeout == -1.0 else timeout
                    )
                    chunks = op.send(frame)
            except StopIteration as stop:
                return stop.value
            except RError as exc:
                if self._cancelling and exc.status == Err.R_ERROR:
                    raise RError(exc.status, "evaluation cancelled") from None
                raise
            except ConnectionLost:
                await self.close()
                raise
            except (OSError, asyncio.CancelledError) as exc:
                # A reply may still arrive: the stream is out of step, so it is closed.
                await self.close()
                if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
                    raise ConnectionLost(f"connection lost: {exc!r}") from exc
                raise
            finally:
                self._cancelling = False

    # ------------------------------------------------------------------ commands
    @property
    def closed(self) -> bool:
        return self._writer is None

    @property
    def busy(self) -> bool:
        """True while a request is in flight."""
        return self._lock.locked()

    async def eval(
        self, code: str, *, convert: Convert = "python", timeout: float | None = -1.0
    ) -> Any:
        """Evaluate R code and return its value (``timeout`` overrides the connection's)."""
        return await self._run(_core.eval_op(code, convert), timeout)

    async def void_eval(self, code: str, *, timeout: float | None = -1.0) -> None:
        await self._run(_core.void_eval_op(code), timeout)

    async def assign(self, name: str, value: Any) -> None:
        await self._run(_core.assign_op(name, value))

    async def call(
        self, fn_name: str, *args: Any, convert: Convert = "python", **kwargs: Any
    ) -> Any:
        return await self._run(_core.call_op(fn_name, args, kwargs, convert))

    async def ser_eval(self, data: BytesLike) -> bytes:
        return await self._run(_core.ser_eval_op(data))

    async def login(self, user: str, password: str) -> None:
        await self._login(user, password)
        self.pid = await self._run(_core.pid_op())

    async def _login(self, user: str, password: str) -> None:
        self._user, self._password = user, password
        try:
            await self._run(_core.login_op(user, password))
        except ClientError:
            await self.close()
            raise

    async def cancel(self) -> bool:
        """Interrupt the running evaluation via a side connection (see Connection.cancel)."""
        if self.pid is None:
            raise ClientError("the shell's pid is unknown (log in first)")
        self._cancelling = True
        side = AsyncConnection(
            self.host,
            self.port,
            self.timeout or 30.0,
            tls=self.tls,
            server_hostname=self.server_hostname,
        )
        await side._open(self._user, self._password, fetch_pid=False)
        async with side:
            return await side._run(_core.cancel_op(self.pid))

    async def park(self, timeout: float) -> bytes:
        """Park this session on a rexec compute node (the connection closes) and return
        the key that resumes it: :func:`aattach`, from any client of the node."""
        try:
            return await self._run(_core.park_op(timeout))
        finally:
            await self.close()

    async def end_session(self) -> None:
        """End a parked-once (resumable) session and close the connection; a plain
        close would leave it parked, waiting to be resumed."""
        try:
            await self._run(_core.end_session_op())
        finally:
            await self.close()

    @property
    def stale(self) -> bool:
        """True when the server has closed this connection (a takeover, an idle
        timeout), as far as this event loop has seen."""
        return self._reader is None or self._reader.at_eof()

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def __aenter__(self) -> AsyncConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"pid {self.pid}"
        tls = " tls" if self.tls is not None else ""
        return f"<rexec.client.AsyncConnection {self.host}:{self.port}{tls} {state}>"


async def aconnect(
    host: str = "127.0.0.1",
    port: int = 6311,
    *,
    user: str | None = None,
    password: str | None = None,
    timeout: float | None = None,
    pool: str | None = None,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> AsyncConnection:
    """Open an asyncio connection (and log in when ``user`` is given); with ``pool``,
    its shell comes from that named pool of a rexec compute node; with ``tls``, over
    TLS from the first byte (see :class:`AsyncConnection`)."""
    connection = AsyncConnection(host, port, timeout, tls=tls, server_hostname=server_hostname)
    await connection._open(user, password, fetch_pid=True, pool=pool)
    return connection


async def aattach(
    host: str,
    port: int,
    key: bytes,
    *,
    user: str | None = None,
    password: str | None = None,
    timeout: float | None = None,
    pid: int | None = None,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> AsyncConnection:
    """Resume a parked session (:meth:`AsyncConnection.park`) on a new connection;
    ``pid``: its shell's process id, if known, for :meth:`AsyncConnection.cancel`.
    Raises :class:`SessionGone` when no session is parked under ``key``."""
    connection = AsyncConnection(host, port, timeout, tls=tls, server_hostname=server_hostname)
    await connection._open(None, None, fetch_pid=False)
    login = (user, password or "") if user is not None else None
    try:
        await connection._run(_core.attach_op(key, login))
    except BaseException:
        await connection.close()
        raise
    if user is not None:
        connection._user, connection._password = user, password
    connection.pid = pid
    return connection


# rexec's named pools, as rexec.client.define_pool & co. (each on a connection of its own).
async def adefine_pool(
    name: str,
    init: str = "",
    *,
    initial: int = 1,
    max: int = 4,
    host: str = "127.0.0.1",
    port: int = 6311,
    user: str,
    password: str,
    timeout: float | None = 300.0,
    data: bytes | None = None,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> None:
    connection = AsyncConnection(host, port, timeout, tls=tls, server_hostname=server_hostname)
    await connection._open(user, password, fetch_pid=False)
    async with connection:
        await connection._run(_core.define_pool_op(name, init, initial, max, data))


async def aremove_pool(
    name: str,
    *,
    host: str = "127.0.0.1",
    port: int = 6311,
    user: str,
    password: str,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> None:
    connection = AsyncConnection(host, port, 30.0, tls=tls, server_hostname=server_hostname)
    await connection._open(user, password, fetch_pid=False)
    async with connection:
        await connection._run(_core.remove_pool_op(name))


async def acancel(
    pid: int,
    *,
    host: str = "127.0.0.1",
    port: int = 6311,
    user: str | None = None,
    password: str | None = None,
    timeout: float = 30.0,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> bool:
    """CMD_cancel for shell ``pid`` on a connection of its own (no shell taken): True
    when an evaluation was interrupted."""
    connection = AsyncConnection(host, port, timeout, tls=tls, server_hostname=server_hostname)
    await connection._open(user, password, fetch_pid=False)
    async with connection:
        return await connection._run(_core.cancel_op(pid))


async def apool_status(
    *,
    host: str = "127.0.0.1",
    port: int = 6311,
    user: str,
    password: str,
    timeout: float = 10.0,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> dict[str, Any]:
    connection = AsyncConnection(host, port, timeout, tls=tls, server_hostname=server_hostname)
    await connection._open(user, password, fetch_pid=False)
    async with connection:
        return await connection._run(_core.pool_status_op())
