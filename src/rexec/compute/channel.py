"""The control channel between the supervisor and one worker: JSON lines over a Unix
socket pair, plus file descriptors passed alongside (SCM_RIGHTS).

The worker side is blocking (a shell has nothing else to do); the supervisor side is
asyncio (see :mod:`rexec.compute.supervisor.pool`).

Workers are hostile. Session R code can write anything to its shell's end of the
channel, so what a worker may say is a small typed schema (:data:`FROM_SHELL`,
:data:`FROM_TEMPLATE`): a line longer than :data:`MAX_LINE`, a field of the wrong type,
an unknown message or descriptors a worker has no business passing are a
:class:`ChannelViolation`, and the supervisor ends that worker. Every line also carries
the sender's process id as the kernel saw it (SCM_CREDENTIALS), so a message from a
process R code started (even one that inherited the socket) is told apart from its shell.
Descriptors received here are close-on-exec, so no program R code runs inherits them.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from dataclasses import dataclass
from typing import Any

#: Longest message line, in either direction (the newline excluded).
MAX_LINE = 64 * 1024
#: Longest string field in a message from a worker (control code may be long).
MAX_TEXT = 60 * 1024
_MAX_FDS = 4
#: A first request is served (by a shell that accepted it, or handed to one) once this
#: much of its payload has arrived: a client cannot hold a shell with half a request.
PEEK_LIMIT = 64 * 1024
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid

#: What a shell may send: op -> {field: type}. Nothing else is accepted.
FROM_SHELL: dict[str, dict[str, type]] = {
    "ready": {"tempdir": str},
    # An idle shell's own connection (pool.direct_accept): before any session code ran.
    "accepted": {"peer": str, "port": int},  # it serves a connection it accepted itself
    "claimed": {},  # the answer to "claim": it waits for "serve"
    "handback": {},  # with the descriptor of a connection that sent nothing in time
    "login": {"user": str, "password": str},
    "cancel": {"pid": int},
    "control": {"kind": str, "text": str},
    "shutdown": {},
    "detach": {},
    "park": {},  # rexec: keep the session for attachSession on the server's port
}
#: What the template may send.
FROM_TEMPLATE: dict[str, dict[str, type]] = {
    "ready": {},
    "result": {"ok": bool},
    "failed": {"reason": str},  # its start-up code failed (then it exits)
}


class ChannelViolation(Exception):
    """A worker sent something outside the schema: it is not to be trusted any more."""


@dataclass(frozen=True, slots=True)
class Received:
    message: dict[str, Any] | None  # None at end of stream
    fds: list[int]
    pid: int  # the sender's pid, from the kernel (0 when unknown)


def encode(message: dict[str, Any]) -> bytes:
    """One message as a JSON line."""
    return json.dumps(message).encode() + b"\n"


def validate(line: bytes, schema: dict[str, dict[str, type]]) -> dict[str, Any]:
    """The message in ``line`` if it fits ``schema``; else :class:`ChannelViolation`."""
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ChannelViolation(f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ChannelViolation("not an object")
    op = message.get("op")
    fields = schema.get(op) if isinstance(op, str) else None
    if fields is None:
        raise ChannelViolation(f"unknown message {op!r}")
    if set(message) != {"op", *fields}:
        raise ChannelViolation(f"{op}: fields {sorted(message)}, expected {sorted(fields)}")
    for name, kind in fields.items():
        value = message[name]
        if type(value) is not kind:  # bool is not an int here, nor an int a bool
            raise ChannelViolation(f"{op}.{name}: {type(value).__name__}, expected {kind}")
        if kind is str and len(value) > MAX_TEXT:
            raise ChannelViolation(f"{op}.{name}: {len(value)} characters")
    return message


def passcred(sock: socket.socket) -> None:
    """Ask the kernel to tell this end who sent each message (SO_PASSCRED)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)


def _recvmsg(sock: socket.socket) -> tuple[bytes, list[int], int]:
    space = socket.CMSG_SPACE(_MAX_FDS * 4) + socket.CMSG_SPACE(_CRED.size)
    data, ancillary, _flags, _addr = sock.recvmsg(MAX_LINE, space, socket.MSG_CMSG_CLOEXEC)
    fds: list[int] = []
    pid = 0
    for level, kind, payload in ancillary:
        if level != socket.SOL_SOCKET:
            continue
        if kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            fds += list(struct.unpack(f"{usable // 4}i", payload[:usable]))
        elif kind == socket.SCM_CREDENTIALS and len(payload) >= _CRED.size:
            pid = _CRED.unpack(payload[: _CRED.size])[0]
    return data, fds, pid


class Channel:
    """Blocking worker end of a control socket (the supervisor is trusted here)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""

    def send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        data = encode(message)
        if fds:
            socket.send_fds(self.sock, [data], fds)
        else:
            self.sock.sendall(data)

    def receive(self) -> tuple[dict[str, Any] | None, list[int]]:
        """The next message and any descriptors that came with it; (None, []) at EOF."""
        fds: list[int] = []
        while b"\n" not in self._buffer:
            data, new_fds, _pid = _recvmsg(self.sock)
            fds.extend(new_fds)
            if not data:
                return None, fds
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line), fds

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send and wait for the supervisor's answer (used for logins and the like)."""
        self.send(message)
        while True:
            reply, fds = self.receive()
            for fd in fds:
                os.close(fd)
            if reply is None:
                raise ConnectionError("supervisor went away")
            if reply.get("op") != "claim":  # one that crossed this shell's "accepted"
                return reply


class AsyncChannelReader:
    """Supervisor end: read messages from a worker inside the asyncio loop, validated
    against ``schema``, with the sender's pid. The buffer never grows past one line."""

    def __init__(self, sock: socket.socket, schema: dict[str, dict[str, type]]) -> None:
        self.sock = sock
        self.schema = schema
        self.sock.setblocking(False)
        passcred(sock)
        self._fd = sock.fileno()
        self._buffer = b""
        self._start = 0  # stream offset of the buffer's first byte
        #: Descriptors received, by the stream offset where the read carrying them ended:
        #: the kernel ends a read after the segment they came with, and a sender sends
        #: them with one whole line, so they belong to the line holding that offset's
        #: last byte (a read may also return the lines before it).
        self._fds: list[tuple[int, list[int]]] = []
        self._pid = 0
        self._eof = False
        self._waiter: Any = None

    def close(self) -> None:
        """Stop reading: a pending :meth:`receive` returns at once, at end of stream."""
        self._eof = True
        self._buffer = b""
        for fd in self._take_fds(None):
            os.close(fd)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def receive(self) -> Received:
        """The next valid message; ``message`` None at end of stream. Raises
        :class:`ChannelViolation` for anything outside the schema."""
        import asyncio

        loop = asyncio.get_running_loop()
        while b"\n" not in self._buffer:
            if self._eof or self.sock.fileno() == -1:
                return Received(None, self._take_fds(None), self._pid)
            ready = self._waiter = loop.create_future()
            loop.add_reader(self._fd, _settle, ready)
            try:
                await ready
            finally:
                loop.remove_reader(self._fd)
                self._waiter = None
            if self._eof:
                return Received(None, self._take_fds(None), self._pid)
            try:
                data, new_fds, pid = _recvmsg(self.sock)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data, new_fds, pid = b"", [], 0
            if new_fds:
                self._fds.append((self._start + len(self._buffer) + len(data), new_fds))
            if pid and self._pid and pid != self._pid and self._buffer:
                raise ChannelViolation(f"a line begun by pid {self._pid} continued by {pid}")
            self._pid = pid or self._pid
            if not data:
                self._eof = True
            self._buffer += data
            if b"\n" not in self._buffer and len(self._buffer) > MAX_LINE:
                raise ChannelViolation(f"a line of more than {MAX_LINE} bytes")
        line, _, self._buffer = self._buffer.partition(b"\n")
        end = self._start + len(line) + 1
        self._start = end
        fds = self._take_fds(end)
        if len(line) > MAX_LINE:
            for fd in fds:
                os.close(fd)
            raise ChannelViolation(f"a line of {len(line)} bytes")
        try:
            message = validate(line, self.schema)
        except ChannelViolation:
            for fd in fds:
                os.close(fd)
            raise
        return Received(message, fds, self._pid)

    def _take_fds(self, end: int | None) -> list[int]:
        """The descriptors that came with the stream up to ``end`` (None: all)."""
        taken = [fd for stop, fds in self._fds if end is None or stop <= end for fd in fds]
        self._fds = [(stop, fds) for stop, fds in self._fds if end is not None and stop > end]
        return taken


def _settle(future: Any) -> None:
    if not future.done():
        future.set_result(None)
