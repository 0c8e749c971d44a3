"""The bench's own QAP1 load client: blocking sockets and the ``rexec.protocol`` codec.

It does the same small amount of work against either server: requests are encoded
once and reused, replies are read into one preallocated buffer with ``recv_into`` and
only their parameter list is decoded (vector data stays a zero-copy view).
"""

from __future__ import annotations

import socket
from typing import Any

from rexec.protocol import (
    XT,
    Cmd,
    Sexp,
    decode_params,
    request,
    sexp_param,
    string_param,
    unpack_header,
)
from rexec.protocol.constants import RESP_OK


class QapError(Exception):
    """A reply with an error status, or a server that closed the connection."""


def eval_request(code: str) -> bytes:
    """The bytes of ``CMD_eval`` for ``code`` (encoded once, sent many times)."""
    return b"".join(bytes(c) for c in request(Cmd.EVAL, [string_param(code)]))


def set_doubles_request(name: str, data: Any) -> list[Any]:
    """``CMD_setSEXP name <- <double vector>``; ``data`` is any float64 buffer (not copied)."""
    return request(Cmd.SET_SEXP, [string_param(name), sexp_param(Sexp(XT.ARRAY_DOUBLE, data))])


class Client:
    def __init__(self, port: int, timeout: float = 60.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._header = bytearray(16)
        self.id_string = bytes(self._read_into(bytearray(32)))
        if not self.id_string.startswith(b"Rsrv"):
            raise QapError(f"not a QAP1 server: {self.id_string!r}")

    def _read_into(self, buffer: bytearray) -> memoryview:
        view = memoryview(buffer)
        got, want = 0, len(buffer)
        while got < want:
            n = self.sock.recv_into(view[got:])
            if n == 0:
                raise QapError("connection closed by the server")
            got += n
        return view

    def send(self, data: bytes | list[Any]) -> None:
        if isinstance(data, bytes):
            self.sock.sendall(data)
        else:
            for chunk in data:
                self.sock.sendall(chunk)

    def reply(self) -> memoryview:
        """Read one reply; returns its payload. Raises :class:`QapError` on an error status."""
        header = unpack_header(self._read_into(self._header))
        payload = self._read_into(bytearray(header.length)) if header.length else memoryview(b"")
        if header.cmd != RESP_OK:
            raise QapError(f"error reply {header.cmd:#x}")
        return payload

    def call(self, data: bytes | list[Any]) -> memoryview:
        self.send(data)
        return self.reply()

    def eval(self, code: str) -> Sexp:
        """Evaluate ``code``; the reply's first parameter, decoded (vectors as views)."""
        return decode_params(self.call(eval_request(code)))[0].value

    def void(self, code: str) -> None:
        self.call(request(Cmd.VOID_EVAL, [string_param(code)]))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
