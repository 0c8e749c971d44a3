"""Byte-for-byte differential tests: the same request bytes to Rserve and to rexec must
produce the same reply bytes (header and payload)."""

from __future__ import annotations

import pytest

from rexec.protocol import Cmd, bytes_param, int_param, request, sexp_param, string_param
from rexec.protocol.codec import from_python
from tests.compat.cases import ERRORS, EXPRESSIONS, SETUP
from tests.conftest import Server
from tests.qap import RawClient


def _exchange(port: int, messages: list[bytes]) -> list[bytes]:
    """Send each message in turn on a fresh connection; collect each raw reply."""
    with RawClient(port) as c:
        c.send(Cmd.VOID_EVAL, string_param(SETUP))
        c.reply()
        replies = []
        for data in messages:
            c.send_raw(data)
            reply = c.reply()
            replies.append(bytes(c.last_header) + reply.payload)
        return replies


def _frame(cmd: int, *params) -> bytes:
    return b"".join(bytes(chunk) for chunk in request(cmd, params))


def _same(rserve: Server, rexec_server: Server, messages: list[bytes]) -> None:
    expected = _exchange(rserve.port, messages)
    actual = _exchange(rexec_server.port, messages)
    for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert got.hex() == want.hex(), f"message {i}"


@pytest.mark.parametrize("code", EXPRESSIONS)
def test_eval_reply_bytes(rserve: Server, rexec_server: Server, code: str) -> None:
    _same(rserve, rexec_server, [_frame(Cmd.EVAL, string_param(code))])


@pytest.mark.parametrize("code", ERRORS)
def test_error_reply_bytes_and_message(rserve: Server, rexec_server: Server, code: str) -> None:
    _same(
        rserve,
        rexec_server,
        [_frame(Cmd.EVAL, string_param(code)), _frame(Cmd.EVAL, string_param("geterrmessage()"))],
    )


@pytest.mark.parametrize(
    "messages",
    [
        [_frame(Cmd.VOID_EVAL, string_param("x <- 5")), _frame(Cmd.EVAL, string_param("x"))],
        [_frame(Cmd.VOID_EVAL, string_param("stop('v')"))],
        [_frame(Cmd.VOID_EVAL, string_param("1+"))],
        [
            _frame(Cmd.SET_SEXP, string_param("v"), sexp_param(from_python([1, 2, None]))),
            _frame(Cmd.EVAL, string_param("v")),
        ],
        [
            _frame(Cmd.SET_SEXP, string_param("s"), string_param("text")),
            _frame(Cmd.EVAL, string_param("s")),
        ],
        [
            _frame(Cmd.ASSIGN_SEXP, string_param("`odd name`"), string_param("t")),
            _frame(Cmd.EVAL, string_param("`odd name`")),
        ],
        [_frame(Cmd.ASSIGN_SEXP, string_param("1+"), string_param("t"))],
        [_frame(Cmd.SET_SEXP, string_param("only"))],
        [_frame(Cmd.EVAL, int_param(1))],
        [_frame(Cmd.EVAL)],
        [_frame(0x99)],
        [_frame(Cmd.ATTACH_SESSION)],
        [_frame(Cmd.SET_BUFFER_SIZE, int_param(1 << 20)), _frame(Cmd.EVAL, string_param("1"))],
        [_frame(Cmd.SET_BUFFER_SIZE)],
        [_frame(Cmd.SET_ENCODING, string_param("utf8"))],
        [_frame(Cmd.SET_ENCODING, string_param("nonsense"))],
        [
            _frame(Cmd.SET_ENCODING, string_param("latin1")),
            _frame(Cmd.EVAL, string_param("'caf\u00e9'")),
        ],
        [_frame(Cmd.CTRL_EVAL, string_param("1"))],
        [_frame(Cmd.CTRL_SHUTDOWN)],
        [_frame(Cmd.SWITCH, string_param("TLS"))],
        [_frame(Cmd.READ_FILE)],
        [_frame(Cmd.WRITE_FILE, bytes_param(b"x"))],
        [_frame(Cmd.OPEN_FILE, string_param("does-not-exist"))],
        [_frame(Cmd.REMOVE_FILE, string_param("does-not-exist"))],
        [
            _frame(Cmd.CREATE_FILE, string_param("f.bin")),
            _frame(Cmd.WRITE_FILE, bytes_param(b"\x00\x01\x02hello")),
            _frame(Cmd.CLOSE_FILE),
            _frame(Cmd.OPEN_FILE, string_param("f.bin")),
            _frame(Cmd.READ_FILE, int_param(4)),
            _frame(Cmd.READ_FILE),
            _frame(Cmd.READ_FILE),
            _frame(Cmd.CLOSE_FILE),
            _frame(Cmd.REMOVE_FILE, string_param("f.bin")),
            _frame(Cmd.EVAL, string_param("file.exists('f.bin')")),
        ],
        [_frame(Cmd.EVAL, sexp_param(from_python([1.5, 2.5])))],
    ],
    ids=lambda messages: f"{len(messages)}-messages",
)
def test_command_reply_bytes(rserve: Server, rexec_server: Server, messages) -> None:
    _same(rserve, rexec_server, messages)


ROUND_TRIPS = [
    "methods::new('dgCMatrix_stand_in', x = c(1, 2))",
    "data.frame(a = 1:3, f = factor(c('u', 'v', 'u')), s = c('x', NA, 'z'))",
    "data.frame(n = c(1.5, 2.5), row.names = c('p', 'q'))",
    "ordered(c('lo', 'hi'), levels = c('lo', 'hi'))",
    "as.POSIXct('2024-01-02 03:04:05', tz = 'UTC')",
    "as.Date('2024-02-29') + 0:2",
    "matrix(1:6, 2, dimnames = list(c('a', 'b'), NULL))",
    "quote(f(x, a = 1))",
    "expression(1 + 2, z)",
    "list(a = 1, b = list(c = 'x', d = NULL))",
    "c(a = '\u00e9', b = NA)",
    "complex(real = 1:2, imaginary = c(NA, 1))",
    "as.raw(0:10)",
    "function(a, b = 2) a + b",
    "globalenv()",
]


@pytest.mark.parametrize("code", ROUND_TRIPS)
def test_objects_sent_back_decode_alike(rserve: Server, rexec_server: Server, code: str) -> None:
    """Client -> server decoding: an object as the server encoded it is sent back with
    setSEXP, and both servers must rebuild the same R value."""
    with RawClient(rserve.port) as c:
        c.send(Cmd.VOID_EVAL, string_param(SETUP))
        c.reply()
        encoded = c.eval(code).payload  # one DT_SEXP parameter
    name = string_param("v")
    name_bytes = b"".join(bytes(x) for x in request(Cmd.SET_SEXP, [name]))[16:]
    payload = name_bytes + encoded
    header = (Cmd.SET_SEXP).to_bytes(4, "little") + len(payload).to_bytes(4, "little") + bytes(8)
    _same(
        rserve,
        rexec_server,
        [
            header + payload,
            _frame(Cmd.EVAL, string_param(f"identical(v, {code})")),
            _frame(Cmd.EVAL, string_param("v")),
        ],
    )
