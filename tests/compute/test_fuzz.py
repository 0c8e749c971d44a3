"""Hostile input at the socket: random and mutated frames against a running server.

Each case is sent on its own connection, which is then half-closed; the server must
answer with error replies and/or close within a second, stay up, and not grow. The cases
include every QAP command code.
"""

from __future__ import annotations

import random
import socket
import struct
import time

import pytest

from rexec.protocol import Cmd, request, sexp_param, string_param
from rexec.protocol.codec import from_python
from tests.qap import RawClient


def _frame(cmd: int, *params) -> bytes:
    return b"".join(bytes(c) for c in request(cmd, params))


VALID = [
    _frame(Cmd.EVAL, string_param("1 + 1")),
    _frame(Cmd.VOID_EVAL, string_param("x <- 'a'")),
    _frame(Cmd.SET_SEXP, string_param("v"), sexp_param(from_python([1.5, None, "a"]))),
    _frame(Cmd.SET_SEXP, string_param("v"), sexp_param(from_python({"a": [1, 2], "b": "x"}))),
    _frame(Cmd.SER_EVAL) + b"X\n\x00\x00\x00\x03",
    _frame(Cmd.LOGIN, string_param("u\np")),
]


def _deep(depth: int) -> bytes:
    body = struct.pack("<I", 0)  # XT_NULL
    for _ in range(depth):
        body = struct.pack("<I", 16 | len(body) << 8) + body  # XT_VECTOR around it
    param = struct.pack("<I", 10 | len(body) << 8) + body
    return struct.pack("<IIII", Cmd.EVAL, len(param), 0, 0) + param


def cases(seed: int = 1234, count: int = 240) -> list[bytes]:
    rng = random.Random(seed)
    out: list[bytes] = [
        b"",
        b"\x00" * 16,
        b"\x03\x00\x00\x00\xff\xff\xff\xff\x00\x00\x00\x00\xff\xff\xff\xff",  # 4 GB x 4 GB
        struct.pack("<IIII", Cmd.EVAL, 0xFFFFFFF0, 0, 0) + b"x" * 100,
        struct.pack("<IIII", Cmd.SER_EVAL, 0x7FFFFFFF, 0, 3) + b"X\n",
        struct.pack("<IIII", Cmd.EVAL, 8, 0, 0) + b"\x04\x04\x00\x00\xff\xfe\x00\x00",
        struct.pack("<IIII", Cmd.EVAL, 4, 0, 0) + b"\x0a\xff\xff\xff",
        struct.pack("<IIII", Cmd.EVAL, 12, 0, 0) + b"\x4a\x04\x00\x00\xff\xff\xff\xff\x00\x00",
        _deep(300),
        _deep(5000),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    while len(out) < count:
        kind = rng.randrange(4)
        if kind == 0:
            out.append(rng.randbytes(rng.randrange(1, 200)))
        else:
            data = bytearray(rng.choice(VALID))
            if kind == 1:  # flip bytes
                for _ in range(rng.randrange(1, 6)):
                    data[rng.randrange(len(data))] = rng.randrange(256)
            elif kind == 2:  # truncate
                data = data[: rng.randrange(len(data))]
            else:  # rewrite a length field
                offset = rng.choice([4, 12, 16, 20])
                if offset + 4 <= len(data):
                    data[offset : offset + 4] = struct.pack("<I", rng.randrange(2**32))
            out.append(bytes(data))
    return out + every_command(rng)


def every_command(rng: random.Random) -> list[bytes]:
    """Each QAP command code rexec knows (and codes it does not), with no payload, a
    string, an int and random bytes: hostile use of every command, detach, shutdown and
    the control commands among them."""
    codes = sorted({int(c) for c in Cmd} | {0x00, 0x07, 0x2F, 0x40, 0x4F, 0x60, 0xFF})
    out = []
    for code in codes:
        out += [
            _frame(code),
            _frame(code, string_param("Sys.getpid()")),
            struct.pack("<IIII", code, 8, 0, 0) + struct.pack("<Ii", 3 | 4 << 8, 1),
            struct.pack("<IIII", code, 24, 0, 0) + rng.randbytes(24),
        ]
    return out


def _pss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("Pss:"))


@pytest.mark.slow
def test_hostile_frames_end_in_an_error_or_a_close(rexec_factory) -> None:
    server = rexec_factory(**{"pool.initial": 4, "pool.max": 8, "limits.idle_timeout": 5.0})
    before = _pss_kb(server.process.pid)
    slow = []
    for i, data in enumerate(cases()):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            assert sock.recv(32, socket.MSG_WAITALL).startswith(b"Rsrv")
            try:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the server may close first
            started = time.monotonic()
            sock.settimeout(1.0)
            try:
                while sock.recv(65536):
                    pass
            except TimeoutError:
                slow.append(i)
            except ConnectionResetError:
                pass
            if time.monotonic() - started > 1.0:
                slow.append(i)
    assert not slow, f"cases {slow[:10]} got no error or close within a second"
    assert server.process.poll() is None
    with RawClient(server.port) as c:
        assert c.eval("1L").value() == 1
    assert _pss_kb(server.process.pid) < before + 50_000  # the supervisor did not grow
