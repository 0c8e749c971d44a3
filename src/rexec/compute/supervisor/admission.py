"""A connection before it has an R shell.

The supervisor greets every connection and gives it a shell only once its first
ordinary request has arrived whole (or its first :data:`PEEK_LIMIT` bytes have), so a
client that connects and stalls, or sends half a request, holds a file descriptor here
and never a shell. On plain TCP the request is only peeked at (``SO_RCVLOWAT`` makes
the kernel wake us when enough bytes are in), so its bytes still go straight from the
kernel to the shell. A TLS connection is decrypted here anyway; what was read is
replayed into the shell's side of the relay.

The few requests that need no R — a login, the switch to TLS, a cancel — are answered
here before any shell is involved: a login is decided where the users file is.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from rexec.compute.channel import PEEK_LIMIT
from rexec.compute.supervisor import tls
from rexec.protocol.constants import HEADER_LENGTH

#: Largest login, switch or cancel request read here.
SMALL_REQUEST = 4096


class Gone(Exception):
    """The client closed, stalled past its deadline or broke the protocol."""

    def __init__(self, reason: str, partial: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.partial = partial  # 1-15 header bytes arrived before the end (ERR_conn_broken)


class Pending:
    """Plain TCP: peek at what the kernel buffered; never consume an ordinary request."""

    is_tls = False

    def __init__(self, sock: socket.socket, peer: str) -> None:
        self.sock = sock
        self.peer = peer
        sock.setblocking(False)

    async def buffered(self, n: int, deadline: float) -> bytes:
        """Wait until ``n`` bytes are buffered and return them, unconsumed."""
        sock = self.sock
        data = _peek(sock, n)
        if data is not None and len(data) >= n:  # the usual case: it is all in already
            return data
        loop = asyncio.get_running_loop()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, n)
            while True:
                data = _peek(sock, n)
                if data is not None and len(data) >= n:
                    return data
                if data == b"" or (data is not None and _hung_up(sock)):
                    raise Gone("closed by the client", partial=bool(data) and n == HEADER_LENGTH)
                if data:  # part of it is in: never spin if the kernel wakes us early
                    await asyncio.sleep(0.005)
                await _readable(loop, sock, deadline)
        finally:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)

    async def read(self, n: int, deadline: float) -> bytes:
        await self.buffered(n, deadline)
        return self.sock.recv(n)

    async def send(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.sock_sendall(self.sock, data), 10)
        except (OSError, TimeoutError) as exc:
            raise Gone(f"could not send: {exc!r}") from None

    async def start_tls(self, context: ssl.SSLContext) -> TlsPending:
        try:
            reader, writer = await tls.accept(self.sock.dup(), context)
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            raise Gone(f"TLS handshake failed: {exc!r}") from None
        self.sock.close()
        return TlsPending(reader, writer, self.peer)

    def take(self, track: Callable[[Awaitable[Any]], None]) -> socket.socket:
        """The socket to hand to a shell (the caller closes its own copy after)."""
        return self.sock

    def close(self) -> None:
        self.sock.close()


class TlsPending:
    """TLS: the plain text is read here; what a shell must still see is replayed."""

    is_tls = True

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str):
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self._buffer = bytearray()
        self._taken = False

    async def buffered(self, n: int, deadline: float) -> bytes:
        while len(self._buffer) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Gone("no complete request in time")
            try:
                data = await asyncio.wait_for(self.reader.read(PEEK_LIMIT), remaining)
            except TimeoutError:
                raise Gone("no complete request in time") from None
            except (OSError, ssl.SSLError) as exc:
                raise Gone(f"connection error: {exc!r}") from None
            if not data:
                partial = bool(self._buffer) and n == HEADER_LENGTH
                raise Gone("closed by the client", partial=partial)
            self._buffer += data
        return bytes(self._buffer[:n])

    async def read(self, n: int, deadline: float) -> bytes:
        data = await self.buffered(n, deadline)
        del self._buffer[:n]
        return data

    async def send(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), 10)
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            raise Gone(f"could not send: {exc!r}") from None

    async def start_tls(self, context: ssl.SSLContext) -> TlsPending:
        raise Gone("already TLS")

    def take(self, track: Callable[[Awaitable[Any]], None]) -> socket.socket:
        inner, outer = socket.socketpair()
        track(self._relay(outer, bytes(self._buffer)))
        self._taken = True
        return inner

    async def _relay(self, outer: socket.socket, prefix: bytes) -> None:
        try:
            await tls.relay(self.reader, self.writer, outer, prefix)
        finally:
            outer.close()
            self._close_writer()

    def close(self) -> None:
        if not self._taken:
            self._close_writer()

    def _close_writer(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise Gone("no complete request in time")
    ready = loop.create_future()
    fd = sock.fileno()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await asyncio.wait_for(ready, remaining)
    except TimeoutError:
        raise Gone("no complete request in time") from None
    finally:
        loop.remove_reader(fd)


def _peek(sock: socket.socket, n: int) -> bytes | None:
    """Up to ``n`` buffered bytes, unconsumed; None when none are there yet."""
    try:
        return sock.recv(n, socket.MSG_PEEK)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError as exc:
        raise Gone(f"connection error: {exc}") from None


def _hung_up(sock: socket.socket) -> bool:
    """Did the peer close (or reset) while fewer bytes than we wait for are buffered?"""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN | select.POLLRDHUP)
    return any(
        events & (select.POLLRDHUP | select.POLLHUP | select.POLLERR)
        for _fd, events in poller.poll(0)
    )
