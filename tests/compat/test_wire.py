"""Byte-for-byte differential tests: the same request bytes to Rserve and to rexec must
produce the same reply bytes (header and payload)."""

from __future__ import annotations

import pytest

from rexec.protocol import Cmd, bytes_param, int_param, request, sexp_param, string_param
from rexec.protocol.codec import encode_strings, from_python
from rexec.protocol.constants import XT
from rexec.protocol.sexp import Sexp
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


# ------------------------------------------------------------- strings' encoding marks
def _strings(*items: bytes | None) -> Sexp:
    return Sexp(XT.ARRAY_STR, encode_strings(items))


def _call(function: str, *args: Sexp) -> Sexp:
    return Sexp(XT.LANG_NOTAG, [Sexp(XT.SYMNAME, function), *args])


#: What the server made of the strings: their marks, their bytes, and equality.
MARKS_PROBE = (
    "list(Encoding(v), Encoding(s), Encoding(lit), lapply(v[1:2], charToRaw), "
    "charToRaw(s), charToRaw(lit), v[1] == s, v[1] == lit, is.na(v[3]))"
)


@pytest.mark.parametrize(
    ("encoding", "text"),
    [
        (None, "\u00e9t\u00e9 \u65e5\u672c".encode()),
        ("native", "na\u00efve".encode()),
        ("utf8", "\u00e9t\u00e9 \u65e5\u672c".encode()),
        ("latin1", "caf\u00e9 \u00e0".encode("latin-1")),
        ("latin1", b"\x80\x81 \xe9"),  # cp1252-only and undefined bytes: R translates
    ],
    ids=lambda v: repr(v)[:24],
)
def test_strings_from_the_client_are_marked_as_rserve_marks_them(
    rserve: Server, rexec_server: Server, encoding: str | None, text: bytes
) -> None:
    """Rserve keeps the bytes of strings it receives and marks them with the session's
    encoding — native ("unknown"), UTF-8 or latin1 — whether they come in a QAP-encoded
    object (setSEXP, or a call sent to eval), as a DT_STRING value or in eval text."""
    messages = [] if encoding is None else [_frame(Cmd.SET_ENCODING, string_param(encoding))]
    messages += [
        _frame(Cmd.SET_SEXP, string_param("v"), sexp_param(_strings(text, b"plain", None))),
        _frame(Cmd.SET_SEXP, string_param("s"), string_param(text)),
        _frame(Cmd.VOID_EVAL, string_param(b"lit <- '" + text + b"'")),
        _frame(Cmd.EVAL, sexp_param(_call("Encoding", _strings(text, b"a")))),
        _frame(Cmd.EVAL, string_param(MARKS_PROBE)),
    ]
    _same(rserve, rexec_server, messages)


@pytest.mark.parametrize(
    "code",
    [
        "'\\u00e9\\u20ac\\u65e5x'",
        "c(a = '\\u00e9', b = NA, '\\u2713')",
        "rawToChar(as.raw(c(0xff, 0x41)))",
    ],
)
def test_strings_to_a_latin1_client_as_rserve_converts_them(
    rserve: Server, rexec_server: Server, code: str
) -> None:
    """With setEncoding latin1, what latin1 cannot hold is dropped (R's reEnc), not '?'."""
    messages = [
        _frame(Cmd.SET_ENCODING, string_param("latin1")),
        _frame(Cmd.EVAL, string_param(code)),
    ]
    _same(rserve, rexec_server, messages)


# ------------------------------------------------------------- raw vectors' padding
def _evals(*codes: str) -> list[bytes]:
    return [_frame(Cmd.EVAL, string_param(code)) for code in codes]


@pytest.mark.parametrize(
    "codes",
    [
        # what an earlier reply left at the same offset shows through
        ("list(strrep('z', 40))", "as.raw(1:5)", "as.raw(1:6)", "as.raw(1:7)", "as.raw(1:5)"),
        ("c(a = 'xyzw', b = 'qrst')", "list(as.raw(1), 'k', as.raw(2:3), as.raw(1:9))"),
        ("structure(as.raw(1:3), extra = strrep('p', 33))", "structure(as.raw(1:2), n = 1L)"),
        ("strrep('y', 5000)", "list(1:1000, as.raw(7))", "as.raw(0:10)"),
        # a reply just small enough for Rserve's 2 MB send buffer, then shorter ones
        (
            "seq_len(250000) + 0.5",
            "strrep('w', 99)",
            "as.raw(9)",
            "list(strrep('a', 201), as.raw(1:2))",
        ),
    ],
    ids=lambda codes: codes[0][:24],
)
def test_raw_vector_padding_as_rserve_sends_it(
    rserve: Server, rexec_server: Server, codes: tuple[str, ...]
) -> None:
    """Rserve never writes the bytes that pad a raw vector to a whole word: they are
    whatever an earlier reply left in its send buffer (pyRserve shows them as data)."""
    _same(rserve, rexec_server, _evals(*codes))


# ------------------------------------------------------------- deep nesting
DEEP_LIST = "local({x <- list(); for (i in 1:1000) x <- list(x); x})"
DEEP_CALL = "local({x <- 1; for (i in 1:500) x <- call('f', x, a = i); x})"
DEEP_MIXED = (
    "local({x <- 'leaf'; for (i in 1:3000) x <- if (i %% 3) structure(list(x), n = i) "
    "else as.pairlist(list(k = x)); x})"
)


@pytest.mark.parametrize("code", [DEEP_LIST, DEEP_CALL, DEEP_MIXED], ids=["list", "call", "mixed"])
def test_deeply_nested_results(rserve: Server, rexec_server: Server, code: str) -> None:
    """A list nested 1000 levels, a call nested 500: Rserve answers, so must rexec."""
    _same(rserve, rexec_server, _evals(code, "1L"))


def test_deeply_nested_objects_from_the_client(rserve: Server, rexec_server: Server) -> None:
    """setSEXP and eval of deeply nested objects: decoded as Rserve decodes them."""
    deep = Sexp(XT.ARRAY_STR, b"x\x00")
    for i in range(2000):
        deep = Sexp(XT.VECTOR, [deep]) if i % 2 else _call("list", deep)
    rebuilt = "local({x <- 'x'; for (i in 1:1000) x <- list(list(x)); x})"
    _same(
        rserve,
        rexec_server,
        [
            _frame(Cmd.SET_SEXP, string_param("v"), sexp_param(deep)),
            _frame(Cmd.EVAL, string_param("is.list(v)")),
            _frame(Cmd.EVAL, sexp_param(deep)),
            _frame(Cmd.EVAL, string_param(f"identical(.Last.value, {rebuilt})")),
            _frame(Cmd.VOID_EVAL, string_param(f"w <- {rebuilt}")),
            _frame(Cmd.EVAL, string_param("w")),
        ],
    )


# ------------------------------------------------------------- the search path
def test_search_path_as_in_rserve(rserve: Server, rexec_server: Server) -> None:
    """No environment of rexec's own on the search path; the OOB functions stay usable."""
    _same(
        rserve,
        rexec_server,
        _evals("search()", "ls(globalenv(), all.names = TRUE)", "environmentName(topenv())"),
    )
