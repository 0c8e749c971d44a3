"""The blocking connection: a socket driving the sans-I/O operations of ``_core``."""

from __future__ import annotations

import socket
import ssl
from typing import Any

from rexec.client import _core
from rexec.client._core import ClientError, ConnectionLost, Convert, Core, Operation, RError
from rexec.protocol import Err, Frame
from rexec.protocol.codec import BytesLike

_RECV_SIZE = 1 << 20
_JOIN_LIMIT = 1 << 16


class Connection:
    """One QAP1 session (one R shell on the server). Not safe for concurrent requests
    from several threads, except :meth:`cancel`, which uses a connection of its own.

    With ``tls`` (a client :class:`ssl.SSLContext`) the connection is TLS from the first
    byte (a rexec compute node's ``tls.port``); ``server_hostname`` (default ``host``)
    is the name the server's certificate is checked against."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6311,
        *,
        user: str | None = None,
        password: str | None = None,
        timeout: float | None = None,
        pool: str | None = None,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        _fetch_pid: bool = True,
    ) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.tls, self.server_hostname = tls, server_hostname
        self._user, self._password = user, password
        self.pid: int | None = None
        self._cancelling = False
        self._core = Core()
        self._sock: socket.socket | None = socket.create_connection((host, port), timeout=timeout)
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                self._sock = tls.wrap_socket(self._sock, server_hostname=server_hostname or host)
            while self._core.info is None:
                self._receive()
            if user is not None:
                self._login(user, password or "")
            if pool is not None:
                self._run(_core.use_pool_op(pool))
            if _fetch_pid and (user is not None or not self._core.needs_login):
                self.pid = self._run(_core.pid_op())
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ I/O
    def _receive(self) -> None:
        if self._sock is None:
            raise ConnectionLost("connection is closed")
        data = self._sock.recv(_RECV_SIZE)
        if not data:
            raise ConnectionLost("connection closed by the server")
        self._core.receive(data)

    def _send(self, chunks: list[BytesLike]) -> None:
        if self._sock is None:
            raise ConnectionLost("connection is closed")
        if sum(memoryview(c).nbytes for c in chunks) <= _JOIN_LIMIT:
            self._sock.sendall(b"".join(chunks))
            return
        for chunk in chunks:  # large vector bodies go out uncopied
            self._sock.sendall(chunk)

    def _frame(self) -> Frame:
        while (frame := self._core.next_frame()) is None:
            self._receive()
        return frame

    def _run(self, op: Operation) -> Any:
        try:
            chunks = next(op)
            while True:
                self._send(chunks)
                chunks = op.send(self._frame())
        except StopIteration as stop:
            return stop.value
        except RError as exc:
            if self._cancelling and exc.status == Err.R_ERROR:
                raise RError(exc.status, "evaluation cancelled") from None
            raise
        except ConnectionLost:
            self.close()
            raise
        except OSError as exc:  # timeouts too: a late reply would desynchronise the stream
            self.close()
            raise ConnectionLost(f"connection lost: {exc!r}") from exc
        finally:
            self._cancelling = False

    # ------------------------------------------------------------------ commands
    @property
    def closed(self) -> bool:
        return self._sock is None

    def eval(self, code: str, *, convert: Convert = "python") -> Any:
        """Evaluate R code (text, or a language object as a Sexp) and return its value."""
        return self._run(_core.eval_op(code, convert))

    def void_eval(self, code: str) -> None:
        """Evaluate R code without transferring the result."""
        self._run(_core.void_eval_op(code))

    def assign(self, name: str, value: Any) -> None:
        """Bind ``name`` in R's global environment to ``value`` (Python, numpy or pandas)."""
        self._run(_core.assign_op(name, value))

    def call(self, fn_name: str, *args: Any, convert: Convert = "python", **kwargs: Any) -> Any:
        """Call the R function ``fn_name`` with converted arguments; return its value."""
        return self._run(_core.call_op(fn_name, args, kwargs, convert))

    def ser_eval(self, data: BytesLike) -> bytes:
        """serEval: ``data`` is an R-serialized expression, the reply R-serialized too."""
        return self._run(_core.ser_eval_op(data))

    def login(self, user: str, password: str) -> None:
        """Log in (plain text, as Rserve's ``ARpt``). A refused login closes the connection."""
        self._login(user, password)
        self.pid = self._run(_core.pid_op())

    def _login(self, user: str, password: str) -> None:
        self._user, self._password = user, password
        try:
            self._run(_core.login_op(user, password))
        except ClientError:
            self.close()
            raise

    def cancel(self) -> bool:
        """Interrupt the evaluation running on this connection (from any thread).

        Opens a side connection and sends CMD_cancel with this shell's pid; the running
        call then raises :class:`RError` (status 127) and the session stays usable.
        Returns False when the server has no session with this pid (it ended).
        """
        if self.pid is None:
            raise ClientError("the shell's pid is unknown (log in first)")
        self._cancelling = True
        with Connection(
            self.host,
            self.port,
            user=self._user,
            password=self._password,
            timeout=self.timeout if self.timeout is not None else 30.0,
            tls=self.tls,
            server_hostname=self.server_hostname,
            _fetch_pid=False,
        ) as side:
            return side._run(_core.cancel_op(self.pid))

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"pid {self.pid}"
        tls = " tls" if self.tls is not None else ""
        return f"<rexec.client.Connection {self.host}:{self.port}{tls} {state}>"


def connect(
    host: str = "127.0.0.1",
    port: int = 6311,
    *,
    user: str | None = None,
    password: str | None = None,
    timeout: float | None = None,
    pool: str | None = None,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> Connection:
    """Open a blocking connection (and log in when ``user`` is given); with ``pool``,
    its shell comes from that named pool of a rexec compute node; with ``tls`` (an
    :class:`ssl.SSLContext`), over TLS from the first byte."""
    return Connection(
        host,
        port,
        user=user,
        password=password,
        timeout=timeout,
        pool=pool,
        tls=tls,
        server_hostname=server_hostname,
    )


# rexec's named pools: a compute node's own commands (Rserve has none), each on a
# connection of its own, before any ordinary request, with a login the node verifies.
def define_pool(
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
    """Start (or replace) the named pool whose template runs ``init`` once; returns when
    its first shells are ready. Connections then choose it with ``connect(pool=name)``.
    ``data`` is staged in a file for the template, named by ``.rexec_pool_data`` in R."""
    with Connection(
        host,
        port,
        user=user,
        password=password,
        timeout=timeout,
        tls=tls,
        server_hostname=server_hostname,
        _fetch_pid=False,
    ) as c:
        c._run(_core.define_pool_op(name, init, initial, max, data))


def remove_pool(
    name: str,
    *,
    host: str = "127.0.0.1",
    port: int = 6311,
    user: str,
    password: str,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> None:
    with Connection(
        host,
        port,
        user=user,
        password=password,
        tls=tls,
        server_hostname=server_hostname,
        _fetch_pid=False,
    ) as c:
        c._run(_core.remove_pool_op(name))


def pool_status(
    *,
    host: str = "127.0.0.1",
    port: int = 6311,
    user: str,
    password: str,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> dict[str, Any]:
    """Every pool's numbers (idle, busy, starting, max, ...), the default pool as ""."""
    with Connection(
        host,
        port,
        user=user,
        password=password,
        tls=tls,
        server_hostname=server_hostname,
        _fetch_pid=False,
    ) as c:
        return c._run(_core.pool_status_op())
