"""Blocking QAP1 I/O on one client socket: buffered reads, scatter-gather writes.

A small request usually arrives whole with one ``recv_into`` into a reusable buffer
(header and payload together); a large payload is read straight into a buffer of its
own size, or into memory the caller provides (an R vector), so big data is not copied.
"""

from __future__ import annotations

import socket
from typing import Any

from rexec.protocol import framing
from rexec.protocol.constants import HEADER_LENGTH

_BUFFER = 1 << 16
_DISCARD_CHUNK = 1 << 20
_JOIN_LIMIT = 1 << 16


class Closed(Exception):
    """The client went away (or must be disconnected)."""


class IdleTimeout(Closed):
    """Nothing arrived within the socket's timeout (limits.idle_timeout)."""


class TruncatedHeader(Closed):
    """The peer sent 1-15 header bytes and stopped (Rserve answers ERR_conn_broken)."""


class Wire:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray(_BUFFER)
        self._view = memoryview(self._buffer)
        self._start = 0
        self._end = 0

    def reset(self, sock: socket.socket) -> None:
        """Continue on another socket (TLS switch, re-attach); buffered bytes are dropped."""
        self.sock = sock
        self._start = self._end = 0

    # ------------------------------------------------------------------ reading
    @property
    def buffered(self) -> int:
        return self._end - self._start

    def _fill(self, need: int) -> bool:
        """Buffer at least ``need`` bytes (≤ the buffer size); False at end of stream."""
        if self._start and len(self._buffer) - self._start < need:
            size = self.buffered
            self._buffer[:size] = bytes(self._view[self._start : self._end])
            self._start, self._end = 0, size
        while self.buffered < need:
            n = self._recv(self._view[self._end :])
            if n == 0:
                return False
            self._end += n
        return True

    def read_header(self) -> framing.Header:
        if not self._fill(HEADER_LENGTH):
            if self.buffered:
                raise TruncatedHeader
            raise Closed
        header = framing.unpack_header(self._view[self._start : self._start + HEADER_LENGTH])
        self._start += HEADER_LENGTH
        return header

    def peek(self, n: int) -> memoryview:
        """Up to ``n`` already received (or receivable) bytes, without consuming them."""
        n = min(n, len(self._buffer))
        if not self._fill(n):
            raise Closed
        return self._view[self._start : self._start + n]

    def read_payload(self, length: int) -> memoryview:
        """The next ``length`` bytes. Valid until the next read from this wire."""
        if length <= len(self._buffer):
            if not self._fill(length):
                raise Closed
            view = self._view[self._start : self._start + length]
            self._start += length
            return view
        view = memoryview(bytearray(length))
        self.read_into(view)
        return view

    def read_into(self, target: Any) -> None:
        """Fill the writable buffer ``target`` exactly (buffered bytes first)."""
        view = memoryview(target).cast("B")
        have = min(self.buffered, len(view))
        view[:have] = self._view[self._start : self._start + have]
        self._start += have
        got = have
        while got < len(view):
            n = self._recv(view[got:])
            if n == 0:
                raise Closed
            got += n

    def discard(self, length: int) -> None:
        have = min(self.buffered, length)
        self._start += have
        length -= have
        scratch = bytearray(min(length, _DISCARD_CHUNK))
        while length:
            n = self._recv(memoryview(scratch)[: min(length, len(scratch))])
            if n == 0:
                raise Closed
            length -= n

    def _recv(self, view: memoryview) -> int:
        try:
            return self.sock.recv_into(view)
        except TimeoutError as exc:
            raise IdleTimeout from exc
        except OSError as exc:  # reset by the peer and the like
            raise Closed from exc

    # ------------------------------------------------------------------ writing
    def send(self, chunks: list[Any]) -> None:
        try:
            if len(chunks) == 1:
                self.sock.sendall(chunks[0])
                return
            total = sum(len(c) if type(c) is bytes else memoryview(c).nbytes for c in chunks)
            if total <= _JOIN_LIMIT:
                self.sock.sendall(b"".join(chunks))
                return
            views = [memoryview(c).cast("B") for c in chunks]
            while views:
                sent = self.sock.sendmsg(views)
                while sent:
                    if sent >= len(views[0]):
                        sent -= len(views.pop(0))
                    else:
                        views[0] = views[0][sent:]
                        sent = 0
        except OSError as exc:
            raise Closed from exc
