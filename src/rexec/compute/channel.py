"""The control channel between the supervisor and one worker: JSON lines over a
Unix socket pair, plus file descriptors passed alongside (SCM_RIGHTS).

The worker side is blocking (a shell has nothing else to do); the supervisor side
is asyncio (see :mod:`rexec.compute.supervisor.pool`).
"""

from __future__ import annotations

import json
import socket
from typing import Any

MAX_MESSAGE = 64 * 1024


def encode(message: dict[str, Any]) -> bytes:
    """One message as a JSON line."""
    return json.dumps(message).encode() + b"\n"


class Channel:
    """Blocking worker end of a control socket."""

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
            data, new_fds, _flags, _addr = socket.recv_fds(self.sock, MAX_MESSAGE, 4)
            fds.extend(new_fds)
            if not data:
                return None, fds
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line), fds

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send and wait for the supervisor's answer (used for logins and the like)."""
        self.send(message)
        reply, _ = self.receive()
        if reply is None:
            raise ConnectionError("supervisor went away")
        return reply


class AsyncChannelReader:
    """Supervisor end: read JSON-line messages, and any descriptors passed with them,
    from a non-blocking control socket inside the asyncio loop."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.setblocking(False)
        self._fd = sock.fileno()
        self._buffer = b""
        self._fds: list[int] = []
        self._eof = False
        self._waiter: Any = None

    def close(self) -> None:
        """Stop reading: a pending :meth:`receive` returns (None, []) at once."""
        self._eof = True
        self._buffer = b""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def receive(self) -> tuple[dict[str, Any] | None, list[int]]:
        """The next message with the descriptors received so far; (None, []) at EOF."""
        import asyncio

        loop = asyncio.get_running_loop()
        while b"\n" not in self._buffer:
            if self._eof:
                return None, []
            if self.sock.fileno() == -1:  # closed on our side
                return None, []
            ready = self._waiter = loop.create_future()
            loop.add_reader(self._fd, _settle, ready)
            try:
                await ready
            finally:
                loop.remove_reader(self._fd)
                self._waiter = None
            if self._eof:
                return None, []
            try:
                data, fds, _flags, _addr = socket.recv_fds(self.sock, MAX_MESSAGE, 4)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data, fds = b"", []
            self._fds.extend(fds)
            if not data:
                self._eof = True
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        fds, self._fds = self._fds, []
        return json.loads(line), fds


def _settle(future: Any) -> None:
    if not future.done():
        future.set_result(None)
