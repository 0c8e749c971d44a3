"""A minimal blocking QAP1 client for tests that need exact bytes on the wire."""

from __future__ import annotations

import socket
from typing import Any

from rexec.protocol import (
    Cmd,
    Header,
    decode_params,
    error_status,
    message,
    request,
    string_param,
    to_python,
    unpack_header,
)
from rexec.protocol.constants import RESP_OK


class Reply:
    def __init__(self, header: Header, payload: bytes) -> None:
        self.header = header
        self.payload = payload

    @property
    def ok(self) -> bool:
        return self.header.cmd == RESP_OK

    @property
    def status(self) -> int:
        return error_status(self.header.cmd)

    def value(self) -> Any:
        assert self.ok, f"error status {self.status:#x}"
        # rexec.protocol.values' rules: a length-one vector is a scalar (as in pyRserve)
        return to_python(decode_params(self.payload)[0].value)


class RawClient:
    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.id_string = self._read(32)

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed by the server")
            data += chunk
        return data

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, cmd: int, *params: Any) -> None:
        self.sock.sendall(b"".join(bytes(c) for c in request(cmd, params)))

    def send_message(self, cmd: int, payload: bytes) -> None:
        self.sock.sendall(b"".join(bytes(c) for c in message(cmd, [payload])))

    def reply(self) -> Reply:
        self.last_header = self._read(16)
        header = unpack_header(self.last_header)
        return Reply(header, self._read(header.length))

    def eval(self, code: str) -> Reply:
        self.send(Cmd.EVAL, string_param(code))
        return self.reply()

    def closed_by_server(self) -> bool:
        """True once the server has closed the connection (anything it sent first, such
        as an ID string before a refusal, is read and dropped)."""
        try:
            while chunk := self.sock.recv(64):
                if len(chunk) > 32:
                    return False
            return True
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
