"""Every captured byte vector of the protocol reference (§8, §4.1, §4.7), byte for byte."""

from __future__ import annotations

import struct

import pytest

from rexec.protocol import (
    DT,
    NULL,
    OOB_SEND,
    RESP_OK,
    XT,
    Cmd,
    Err,
    Sexp,
    bytes_param,
    decode_params,
    decode_sexp,
    encode_params,
    encode_sexp,
    encode_strings,
    error,
    id_string,
    int_param,
    message,
    ok,
    parse_id_string,
    request,
    sexp_param,
    string_param,
    unpack_header,
)
from rexec.protocol.constants import NA_INTEGER, NA_REAL_BYTES


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def ints(*values: int) -> Sexp:
    return Sexp(XT.ARRAY_INT, struct.pack(f"<{len(values)}i", *values))


def strs(*values: str | None) -> Sexp:
    return Sexp(XT.ARRAY_STR, encode_strings(values))


def sym(name: str) -> Sexp:
    return Sexp(XT.SYMNAME, name)


def tagged(*pairs: tuple[Sexp, str | None]) -> Sexp:
    return Sexp(XT.LIST_TAG, [(v, NULL if t is None else sym(t)) for v, t in pairs])


def joined(chunks) -> bytes:
    return b"".join(chunks)


# --------------------------------------------------------------------------- §8.1


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, h("52737276 30313033 51415031 0d0a0d0a 2d2d2d2d 2d2d2d2d 2d2d2d2d 2d2d0d0a")),
        (
            {"auth": True, "salt": "xm", "plaintext": True},
            b"Rsrv0103QAP1\r\n\r\nARucKxm ARpt--\r\n",
        ),
        ({"auth": True, "salt": "y1", "tls": True}, b"Rsrv0103QAP1\r\n\r\nARucKy1 TLS\n--\r\n"),
        ({"auth": True}, b"Rsrv0103QAP1\r\n\r\nARpt----------\r\n"),
    ],
)
def test_id_strings(kwargs, expected):
    assert len(expected) == 32
    assert id_string(**kwargs) == expected


@pytest.mark.parametrize(
    ("data", "attributes", "salt"),
    [
        (id_string(), (), None),
        (b"Rsrv0103QAP1\r\n\r\nARucKxm ARpt--\r\n", ("ARuc", "Kxm", "ARpt"), "xm"),
        (b"Rsrv0103QAP1\r\n\r\nARucKy1 TLS\n--\r\n", ("ARuc", "Ky1", "TLS"), "y1"),
        (b"Rsrv0103QAP1\r\n\r\n----------DV74\r\n", ("DV74",), None),
    ],
)
def test_parse_id_strings(data, attributes, salt):
    info = parse_id_string(data)
    assert (info.version, info.protocol, info.attributes, info.salt) == (
        103,
        "QAP1",
        attributes,
        salt,
    )


# --------------------------------------------------------------------------- §8.2

EVAL_1L = [
    h("03000000 08000000 00000000 00000000 04040000 314c0000"),  # classic
    h("03000000 0c000000 00000000 00000000 44040000 00000000 314c0000"),  # pyRserve
    h("03000000 09000000 00000000 00000000 04040000 314c0a00 00"),  # Java
    h("03000000 14000000 00000000 00000000 04100000 314c0001 01010101 01010101 01010101"),
]


@pytest.mark.parametrize("frame", EVAL_1L, ids=["classic", "pyRserve", "java", "node-rio"])
def test_eval_string_styles(frame):
    header = unpack_header(frame)
    assert (header.cmd, header.length, header.msg_id) == (Cmd.EVAL, len(frame) - 16, 0)
    params = decode_params(frame[16:])
    assert len(params) == 1
    assert params[0].dt == DT.STRING
    expected = b"1L\n" if frame is EVAL_1L[2] else b"1L"
    assert params[0].value == expected


def test_classic_eval_is_what_we_send():
    assert joined(request(Cmd.EVAL, [string_param("1L")])) == EVAL_1L[0]


def test_login_plain():
    frame = h("01000000 10000000 00000000 00000000 040c0000 75736572 0a707764 00000000")
    assert joined(request(Cmd.LOGIN, [string_param("user\npwd")])) == frame
    assert decode_params(frame[16:])[0].value == b"user\npwd"


def test_void_eval():
    frame = h("02000000 0c000000 00000000 00000000 04080000 78203c2d 20350000")
    assert joined(request(Cmd.VOID_EVAL, [string_param("x <- 5")])) == frame
    assert decode_params(frame[16:])[0].value == b"x <- 5"


def test_set_sexp_all_large_headers():
    frame = h(
        "20000000 24000000 00000000 00000000 44040000 00000000 76320000"
        " 4a100000 00000000 60080000 00000000 07000000 08000000"
    )
    header = unpack_header(frame)
    assert (header.cmd, header.length) == (Cmd.SET_SEXP, 0x24)
    name, value = decode_params(frame[16:])
    assert (name.dt, name.value) == (DT.STRING, b"v2")
    assert value.dt == DT.SEXP
    assert value.value == ints(7, 8)


def test_eval_sexp_call():
    payload = h("0a180000 16140000 13040000 73756d00 20080000 01000000 02000000")
    call = Sexp(XT.LANG_NOTAG, [sym("sum"), ints(1, 2)])
    (param,) = decode_params(payload)
    assert param.dt == DT.SEXP
    assert param.value == call
    assert joined(request(Cmd.EVAL, [sexp_param(call)]))[16:] == payload


def test_unknown_command():
    header = unpack_header(h("99000000 00000000 00000000 00000000"))
    assert (header.cmd, header.length) == (0x99, 0)
    assert error(Err.INV_CMD) == h("02000143 00000000 00000000 00000000")


# --------------------------------------------------------------------------- §8.3

NA_REAL = NA_REAL_BYTES
RESULTS = [
    ("1L", ints(1), "0a080000 20040000 01000000"),
    (
        "c(1.5, NA)",
        Sexp(XT.ARRAY_DOUBLE, struct.pack("<d", 1.5) + NA_REAL),
        "0a140000 21100000 00000000 0000f83f a2070000 0000f07f",
    ),
    ('"a"', strs("a"), "0a080000 22040000 61000101"),
    ("TRUE", Sexp(XT.ARRAY_BOOL, b"\x01"), "0a0c0000 24080000 01000000 01ffffff"),
    (
        "c(TRUE, NA, FALSE)",
        Sexp(XT.ARRAY_BOOL, b"\x01\x02\x00"),
        "0a0c0000 24080000 03000000 010200ff",
    ),
    ("NA", Sexp(XT.ARRAY_BOOL, b"\x02"), "0a0c0000 24080000 01000000 02ffffff"),
    ("NULL", NULL, "0a040000 00000000"),
    ("NA_character_", strs(None), "0a080000 22040000 ff000101"),
    ("character(0)", Sexp(XT.ARRAY_STR, b""), "0a040000 22000000"),
    ('""', strs(""), "0a080000 22040000 00010101"),
    ("NA_integer_", ints(NA_INTEGER), "0a080000 20040000 00000080"),
    ("NaN", Sexp(XT.ARRAY_DOUBLE, h("00000000 0000f87f")), "0a0c0000 21080000 00000000 0000f87f"),
    (
        "1i",
        Sexp(XT.ARRAY_CPLX, struct.pack("<2d", 0.0, 1.0)),
        "0a140000 26100000 00000000 00000000 00000000 0000f03f",
    ),
    (
        "as.raw(1:5)",
        Sexp(XT.RAW, b"\x01\x02\x03\x04\x05"),
        "0a100000 250c0000 05000000 01020304 05000000",
    ),
    ("quote(x)", sym("x"), "0a080000 13040000 78000000"),
    (
        'list(1L, "a")',
        Sexp(XT.VECTOR, [ints(1), strs("a")]),
        "0a140000 10100000 20040000 01000000 22040000 61000101",
    ),
    (
        "c(a=1L, b=2L)",
        Sexp(XT.ARRAY_INT, ints(1, 2).value, tagged((strs("a", "b"), "names"))),
        "0a240000 a0200000 15140000 22040000 61006200 13080000 6e616d65 73000000 01000000 02000000",
    ),
    (
        'factor(c("x","y","x"))',
        Sexp(
            XT.ARRAY_INT,
            ints(1, 2, 1).value,
            tagged((strs("x", "y"), "levels"), (strs("factor"), "class")),
        ),
        "0a400000 a03c0000 152c0000 22040000 78007900 13080000 6c657665 6c730000"
        " 22080000 66616374 6f720001 13080000 636c6173 73000000 01000000 02000000 01000000",
    ),
    (
        "matrix(1:4, 2)",
        Sexp(XT.ARRAY_INT, ints(1, 2, 3, 4).value, tagged((ints(2, 2), "dim"))),
        "0a2c0000 a0280000 15140000 20080000 02000000 02000000 13040000 64696d00"
        " 01000000 02000000 03000000 04000000",
    ),
    (
        'data.frame(x=1:2, y=c("a","b"))',
        Sexp(
            XT.VECTOR,
            [ints(1, 2), strs("a", "b")],
            tagged(
                (strs("x", "y"), "names"),
                (strs("data.frame"), "class"),
                (ints(NA_INTEGER, -2), "row.names"),
            ),
        ),
        "0a680000 90640000 154c0000 22040000 78007900 13080000 6e616d65 73000000"
        " 220c0000 64617461 2e667261 6d650001 13080000 636c6173 73000000 20080000"
        " 00000080 feffffff 130c0000 726f772e 6e616d65 73000000 20080000 01000000"
        " 02000000 22040000 61006200",
    ),
    ("globalenv()", Sexp(XT.UNKNOWN, 4), "0a080000 30040000 04000000"),
]
#: Results whose response header the reference spells out in full.
HEADERS = {
    "1L": "01000100 0c000000 00000000 00000000",
    "c(1.5, NA)": "01000100 18000000 00000000 00000000",
    '"a"': "01000100 0c000000 00000000 00000000",
    "TRUE": "01000100 10000000",
    "NULL": "01000100 08000000",
    'list(1L, "a")': "01000100 18000000",
    "c(a=1L, b=2L)": "01000100 28000000",
    'factor(c("x","y","x"))': "01000100 44000000",
    "matrix(1:4, 2)": "01000100 30000000",
    'data.frame(x=1:2, y=c("a","b"))': "01000100 6c000000",
}


@pytest.mark.parametrize(("expr", "sexp", "payload"), RESULTS, ids=[r[0] for r in RESULTS])
def test_eval_results(expr, sexp, payload):
    payload = h(payload)
    chunks, length = encode_params([sexp_param(sexp)])
    frame = joined(ok(chunks))
    assert length == len(payload)
    assert frame[16:] == payload
    assert frame[:16] == struct.pack("<IIII", RESP_OK, len(payload), 0, 0)
    if expr in HEADERS:
        assert frame.startswith(h(HEADERS[expr]))
    (param,) = decode_params(payload)
    assert param.dt == DT.SEXP
    assert param.value == sexp
    decoded, end = decode_sexp(payload, 4)
    assert (decoded, end) == (sexp, len(payload))


# --------------------------------------------------------------------------- §4.7 extras


def test_closure_and_other_composites():
    formals = tagged((sym(""), "a"), (Sexp(XT.ARRAY_DOUBLE, struct.pack("<d", 2.0)), "b"))
    body = Sexp(XT.LANG_NOTAG, [sym("+"), sym("a"), sym("b")])
    closure = Sexp(XT.CLOS, (formals, body))
    data = joined(encode_sexp(closure)[0])
    assert data[:4] == h("12440000")
    assert decode_sexp(data) == (closure, len(data))
    assert joined(encode_sexp(sym(""))[0]) == h("13040000 00000000")
    assert joined(encode_sexp(Sexp(XT.UNKNOWN, 8))[0]) == h("30040000 08000000")
    call = Sexp(
        XT.LANG_TAG,
        [
            (sym("f"), NULL),
            (sym("x"), NULL),
            (Sexp(XT.ARRAY_DOUBLE, struct.pack("<d", 1)), sym("a")),
        ],
    )
    data = joined(encode_sexp(call)[0])
    assert data[:1] == b"\x17"
    assert decode_sexp(data)[0] == call


# --------------------------------------------------------------------------- §8.4


@pytest.mark.parametrize(
    ("status", "first_word"),
    [
        (Err.R_ERROR, "0200017f"),
        (Err.PARSE_INCOMPLETE, "02000102"),
        (Err.PARSE_ERROR, "02000103"),
        (Err.SER_ERROR, "02000101"),
        (Err.AUTH_FAILED, "02000141"),
        (Err.NOT_OPEN, "02000147"),
        (Err.DISABLED, "02000161"),
        (Err.DATA_OVERFLOW, "0200014b"),
    ],
)
def test_error_replies(status, first_word):
    assert error(status) == h(first_word) + bytes(12)


def test_empty_ok():
    assert joined(ok()) == h("01000100 00000000 00000000 00000000")


def test_detach_session_reply():
    key = bytes(range(32))
    chunks, _ = encode_params([int_param(40000), bytes_param(key)])
    frame = joined(ok(chunks))
    expected = (
        h("01000100 2c000000 00000000 00000000 01040000")
        + struct.pack("<I", 40000)
        + h("05200000")
        + key
    )
    assert frame == expected
    port, blob = decode_params(frame[16:])
    assert (port.dt, port.value, blob.dt, bytes(blob.value)) == (DT.INT, 40000, DT.BYTESTREAM, key)


def test_oob_frames():
    chunks, _ = encode_params([sexp_param(strs("x"))])
    assert joined(message(OOB_SEND | 0, chunks)) == h(
        "00100200 0c000000 00000000 00000000 0a080000 22040000 78000101"
    )
    chunks, _ = encode_params([sexp_param(Sexp(XT.VECTOR, [strs("hi"), ints(1)]))])
    assert joined(message(OOB_SEND | 7, chunks))[:16] == h("07100200 18000000 00000000 00000000")


# --------------------------------------------------------------------------- §4.1 large


def test_numeric_2100000_uses_large_headers_without_copying():
    data = memoryview(bytearray(2_100_000 * 8))
    chunks, length = encode_params([sexp_param(Sexp(XT.ARRAY_DOUBLE, data))])
    frame_chunks = ok(chunks)
    head = joined(c for c in frame_chunks if len(c) < 1024)
    assert head == (
        h("01000100") + struct.pack("<I", 16_800_016) + bytes(8) + h("4a085900 01000000")
    ) + h("61005900 01000000")
    assert length == 16_800_016
    assert any(isinstance(c, memoryview) and c.obj is data.obj for c in frame_chunks)
    payload = joined(frame_chunks)[16:]
    (param,) = decode_params(payload)
    assert param.value.xt == XT.ARRAY_DOUBLE
    assert len(param.value.value) == 16_800_000


def test_only_oversized_element_and_its_list_are_large():
    big = Sexp(XT.ARRAY_DOUBLE, bytes(2_100_000 * 8))
    chunks, length = encode_sexp(Sexp(XT.VECTOR, [big, ints(1)]))
    data = joined(chunks)
    assert data[0] == XT.VECTOR | 0x40
    assert data[8:16] == h("61005900 01000000")
    assert data[16 + 16_800_000 :] == h("20040000 01000000")
    assert decode_sexp(data)[1] == length == len(data)
