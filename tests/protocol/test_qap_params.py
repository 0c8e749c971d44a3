"""Parameter lists: Rserve's parser tolerance (§2.2) and Rserve's encoding."""

from __future__ import annotations

import struct

import pytest

from rexec.protocol import (
    DT,
    XT,
    Err,
    Param,
    ProtocolError,
    Sexp,
    bytes_param,
    decode_params,
    encode_params,
    int_param,
    sexp_param,
    string_param,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def encoded(*params: Param) -> bytes:
    chunks, length = encode_params(list(params))
    data = b"".join(chunks)
    assert len(data) == length
    return data


def test_stops_at_zero_word():
    payload = h("04040000 314c0000 00000000 04040000 41420000")
    assert [p.value for p in decode_params(payload)] == [b"1L"]


def test_reads_at_most_16_params():
    payload = encoded(*[int_param(i) for i in range(20)])
    assert [p.value for p in decode_params(payload)] == list(range(16))


@pytest.mark.parametrize("stray", [b"\x00", b"\x00\x00\x00", b"\x01", b"\xff\xff\xff"])
def test_ignores_one_to_three_trailing_bytes(stray):
    assert [p.value for p in decode_params(encoded(int_param(7)) + stray)] == [7]


def test_empty_payload_has_no_params():
    assert decode_params(b"") == []


@pytest.mark.parametrize(
    "payload",
    [
        h("41040000 00000000 07000000"),  # DT_INT
        h("44040000 00000000 61620000"),  # DT_STRING
        h("45030000 00000000 616263"),  # DT_BYTESTREAM, unaligned
        h("4a080000 00000000 20040000 07000000"),  # DT_SEXP
    ],
)
def test_large_header_on_every_type(payload):
    (param,) = decode_params(payload)
    assert param.value in (7, b"ab", b"abc") or param.value == Sexp(XT.ARRAY_INT, h("07000000"))


def test_unaligned_string_then_next_param():
    payload = h("04090000") + b"user\npwd\x00" + h("01040000 05000000")
    login, number = decode_params(payload)
    assert (login.value, number.value) == (b"user\npwd", 5)


def test_string_padding_variants():
    assert decode_params(h("04080000 61000101 01010101"))[0].value == b"a"
    assert decode_params(h("04080000 61000000 00000000"))[0].value == b"a"
    assert decode_params(h("04030000 616263"))[0].value == b"abc"  # no NUL at all
    assert decode_params(h("04040000 00626364"))[0].value == b""


def test_unaligned_bytestream_then_next_param():
    payload = h("05050000 0102030405 04040000 78000000")
    data, text = decode_params(payload)
    assert (data.dt, bytes(data.value), text.value) == (DT.BYTESTREAM, h("0102030405"), b"x")


def test_unknown_types_keep_their_body():
    (param,) = decode_params(h("03080000 00000000 0000f03f"))
    assert (param.dt, bytes(param.value)) == (DT.DOUBLE, h("00000000 0000f03f"))
    (param,) = decode_params(h("3f020000 abcd"))
    assert (param.dt, bytes(param.value)) == (0x3F, h("abcd"))


@pytest.mark.parametrize(
    "payload",
    [
        h("04080000 61000000"),  # string longer than the payload
        h("44040000"),  # large header cut short
        h("44040000 01000000 00000000"),  # 56-bit length far past the end
        h("01020000 0700"),  # DT_INT shorter than an int
        h("0a040000 20080000"),  # SEXP longer than its parameter
    ],
)
def test_overruns_are_invalid_parameters(payload):
    with pytest.raises(ProtocolError) as info:
        decode_params(payload)
    assert info.value.status == Err.INV_PAR


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("", "04040000 00000000"),
        ("abc", "04040000 61626300"),
        ("abcd", "04080000 61626364 00000000"),
        ("é", "04040000 c3a90000"),
    ],
)
def test_string_encoding(text, wire):
    assert encoded(string_param(text)) == h(wire)


def test_int_and_bytes_encoding():
    assert encoded(int_param(-1), bytes_param(b"\x01\x02\x03")) == h(
        "01040000 ffffffff 05030000 010203"
    )


def test_large_string_gets_large_header_and_is_not_copied():
    text = b"x" * 0xFFFFEC  # NUL + padding make exactly 0xfffff0: still a 4-byte header
    chunks, length = encode_params([string_param(text)])
    assert chunks[0] == h("04f0ffff")
    assert length == 4 + 0xFFFFF0
    text = b"x" * 0xFFFFF0
    chunks, length = encode_params([Param(DT.STRING, text)])
    assert chunks[0] == h("44f4ffff 00000000")
    assert chunks[1] is text
    assert length == 8 + 0xFFFFF4


def test_round_trip_mixed():
    params = [
        string_param("name"),
        sexp_param(Sexp(XT.ARRAY_DOUBLE, struct.pack("<d", 2.5))),
        int_param(3),
        bytes_param(b"\x00\xff"),
    ]
    decoded = decode_params(encoded(*params))
    assert [p.dt for p in decoded] == [DT.STRING, DT.SEXP, DT.INT, DT.BYTESTREAM]
    assert decoded[0].value == b"name"
    assert decoded[1].value == params[1].value
    assert decoded[2].value == 3
    assert bytes(decoded[3].value) == b"\x00\xff"
