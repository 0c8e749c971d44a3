"""SEXP codec: decoder tolerance and strictness, strings, Python values (the one set of
rules of rexec.protocol.values, here on the codec's own objects)."""

from __future__ import annotations

import array
import math
import struct

import pytest

from rexec.protocol import (
    NULL,
    XT,
    ProtocolError,
    Sexp,
    Symbol,
    decode_sexp,
    decode_strings,
    encode_sexp,
    encode_strings,
    from_python,
    to_python,
)
from rexec.protocol.codec import MAX_DEPTH, SendBuffer
from rexec.protocol.constants import NA_INTEGER, NA_REAL_BYTES


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def encoded(s: Sexp) -> bytes:
    chunks, length = encode_sexp(s)
    data = b"".join(chunks)
    assert len(data) == length
    return data


def ints(*values: int) -> Sexp:
    return Sexp(XT.ARRAY_INT, struct.pack(f"<{len(values)}i", *values))


# --------------------------------------------------------------------------- tolerance


def test_pyrserve_null_with_bogus_length():
    # pyRserve: every header large, NULL claims 4 body bytes it never sends.
    data = h("50140000 00000000 40040000 00000000 60040000 00000000 05000000")
    value, end = decode_sexp(data)
    assert value == Sexp(XT.VECTOR, [NULL, ints(5)])
    assert end == len(data)
    assert decode_sexp(h("40040000 00000000")) == (NULL, 8)
    assert decode_sexp(h("00040000")) == (NULL, 4)


def test_large_headers_accepted_at_any_size():
    assert decode_sexp(h("62040000 00000000 61000101"))[0] == Sexp(XT.ARRAY_STR, b"a\x00")
    assert decode_sexp(h("53080000 00000000 73756d00 00000000"))[0] == Sexp(XT.SYMNAME, "sum")


def test_legacy_scalars_decode_to_arrays():
    assert decode_sexp(h("01040000 05000000"))[0] == ints(5)
    assert decode_sexp(h("02080000 00000000 0000f03f"))[0] == Sexp(
        XT.ARRAY_DOUBLE, struct.pack("<d", 1.0)
    )
    assert decode_sexp(h("06040000 01000000"))[0] == Sexp(XT.ARRAY_BOOL, b"\x01")


def decoded_strings(data: bytes) -> list[str | None]:
    s, end = decode_sexp(data)
    assert s.xt == XT.ARRAY_STR and end == len(data)
    return decode_strings(s.value)


def test_string_array_counts_nul_bytes_like_rserve():
    assert decoded_strings(h("22040000 61006200")) == ["a", "b"]
    assert decode_sexp(h("22040000 61000101"))[0] == Sexp(XT.ARRAY_STR, b"a\x00")
    # NUL padding makes extra empty strings in Rserve too.
    assert decoded_strings(h("22040000 61000000")) == ["a", "", ""]
    # Bytes after the last NUL are ignored, whatever they are.
    assert decode_sexp(h("22080000 6100ffff ffffffff"))[0] == Sexp(XT.ARRAY_STR, b"a\x00")
    assert decoded_strings(h("22040000 01010101")) == []


def test_bool_and_raw_padding_content_is_ignored():
    assert decode_sexp(h("24080000 02000000 01000000"))[0] == Sexp(XT.ARRAY_BOOL, b"\x01\x00")
    assert decode_sexp(h("25080000 01000000 ab123456"))[0] == Sexp(XT.RAW, b"\xab")


def test_symbol_text_stops_at_first_nul():
    assert decode_sexp(h("13080000 61620063 64000000"))[0] == Sexp(XT.SYMNAME, "ab")


def test_attributes_on_null_are_kept():
    attr = Sexp(XT.LIST_TAG, [(ints(1), Sexp(XT.SYMNAME, "x"))])
    value = Sexp(XT.NULL, None, attr)
    data = encoded(value)
    assert data[:4] == h("80140000")
    assert decode_sexp(data) == (value, len(data))


def test_vectors_are_zero_copy():
    data = bytearray(encoded(Sexp(XT.VECTOR, [ints(1, 2), Sexp(XT.RAW, b"xyz")])))
    value, _ = decode_sexp(data)
    first, raw = value.value
    assert isinstance(first.value, memoryview) and first.value.obj is data
    assert isinstance(raw.value, memoryview) and raw.value.obj is data
    assert bytes(raw.value) == b"xyz"


def test_decode_at_offset():
    data = b"junk" + encoded(ints(9)) + b"tail"
    assert decode_sexp(data, 4) == (ints(9), 12)
    with pytest.raises(ProtocolError):
        decode_sexp(data, 100)


# --------------------------------------------------------------------------- strictness


@pytest.mark.parametrize(
    "data",
    [
        h(""),
        h("2004"),  # truncated header
        h("60040000"),  # truncated large header
        h("20080000 01000000"),  # length past the end
        h("61ffffff ffffffff 00000000"),  # 56-bit length past the end
        h("20030000 010203"),  # ints not a multiple of 4
        h("21040000 00000000"),  # doubles not a multiple of 8
        h("26080000 00000000 00000000"),  # complex not a multiple of 16
        h("24080000 05000000 01000000"),  # bool count beyond data
        h("25040000 ffffffff"),  # raw count "negative"
        h("24000000"),  # bool without count
        h("09000000"),  # unknown type 9
        h("04000000"),  # old XT_LANG is not supported
        h("15080000 20040000 01000000"),  # tagged list without the tag
        h("12040000 00000000"),  # closure: formals only, body missing
        h("30000000"),  # UNKNOWN without its int
        h("10080000 20080000 01000000"),  # child longer than its parent
        h("a0040000 15080000 00000000"),  # attribute longer than the object
        h("06000000"),  # legacy BOOL without its byte
    ],
)
def test_malformed_input_raises_protocol_error(data):
    with pytest.raises(ProtocolError):
        decode_sexp(data)


def nested(depth: int) -> bytes:
    data = encoded(NULL)
    for _ in range(depth):
        data = struct.pack("<I", XT.VECTOR | len(data) << 8) + data
    return data


def test_depth_limit():
    assert decode_sexp(nested(256), max_depth=256)[1] == len(nested(256))
    with pytest.raises(ProtocolError):
        decode_sexp(nested(257), max_depth=256)
    assert decode_sexp(nested(300), max_depth=None)[1] == len(nested(300))
    assert MAX_DEPTH >= 100_000  # by default far beyond what Rserve itself decodes


def test_deep_nesting_decodes_without_recursion():
    headers = []
    length = 4  # the innermost NULL
    for _ in range(20_000):  # deeper than the interpreter's recursion limit, large headers
        code = XT.VECTOR | 0x40 | (length & 0xFFFFFF) << 8
        headers.append(struct.pack("<II", code, length >> 24))
        length += 8
    data = b"".join(reversed(headers)) + encoded(NULL)
    value, end = decode_sexp(data)
    assert end == len(data)
    depth = 0
    while value.xt == XT.VECTOR:
        (value,) = value.value
        depth += 1
    assert depth == 20_000 and value == NULL


def test_deep_nesting_encodes_without_recursion():
    k, f, a = (Sexp(XT.SYMNAME, name) for name in "kfa")
    value = ints(1)
    for i in range(20_000):  # lists, calls with tags and attributes, in turn
        if i % 2:
            value = Sexp(XT.VECTOR, [value], Sexp(XT.LIST_TAG, [(ints(i), k)]))
        else:
            value = Sexp(XT.LANG_TAG, [(f, NULL), (value, a)])
    data = encoded(value)
    assert decode_sexp(data) == (value, len(data))
    assert data[:4] == struct.pack("<I", XT.VECTOR | 0x80 | (len(data) - 4) << 8)


# --------------------------------------------------------------------------- encoding


def test_large_threshold_follows_rserves_size_estimate():
    # Rserve counts the 4-byte header in its estimate: large once header + body > 0xfffff0.
    small = encoded(Sexp(XT.ARRAY_INT, bytes(0xFFFFEC)))
    assert small[:4] == h("20ecffff")
    large = encoded(Sexp(XT.ARRAY_INT, bytes(0xFFFFF0)))
    assert large[:8] == h("60f0ffff 00000000")
    assert decode_sexp(large)[1] == len(large)
    # ... and it over-counts short strings: 4 + align(len + 1) each.
    strings = encoded(Sexp(XT.ARRAY_STR, b"a\x00" * 2_100_000))
    assert strings[0] == 0x40 | XT.ARRAY_STR


@pytest.mark.parametrize(
    ("sexp", "error"),
    [
        (Sexp(XT.ARRAY_INT, b"\x00\x01"), ValueError),
        (Sexp(XT.ARRAY_STR, b"abc"), ValueError),
        (Sexp(XT.SYMNAME, "a\x00b"), ValueError),
        (Sexp(XT.LANG, []), ValueError),
        (Sexp(XT.ARRAY_INT, None), TypeError),
    ],
)
def test_encoder_rejects_malformed_sexp(sexp, error):
    with pytest.raises(error):
        encode_sexp(sexp)


def test_small_pieces_are_coalesced():
    value = Sexp(XT.VECTOR, [ints(i) for i in range(2000)])
    chunks, _ = encode_sexp(value)
    assert len(chunks) == 1


# --------------------------------------------------------------------------- strings


@pytest.mark.parametrize(
    ("items", "wire"),
    [
        (["a"], "6100"),
        ([None], "ff00"),
        ([""], "00"),
        (["\udcff"], "ffff00"),  # the byte 0xff (surrogate-escaped) gets doubled
        (["\udcffab"], "ffff616200"),
        (["é", None, "x"], "c3a900 ff00 7800"),
        ([], ""),
    ],
)
def test_string_escapes(items, wire):
    assert encode_strings(items) == h(wire)
    assert decode_strings(h(wire)) == items


def test_string_array_padding_on_the_wire():
    assert encoded(Sexp(XT.ARRAY_STR, encode_strings(["\udcff"]))) == h("22040000 ffff0001")


def test_decode_strings_drops_one_leading_ff():
    assert decode_strings(h("ff61 00")) == ["a"]


def test_encode_strings_rejects_nul():
    with pytest.raises(ValueError):
        encode_strings(["a\x00b"])


# --------------------------------------------------------------------------- to/from Python


def test_to_python_values():
    na_real_quiet = h("a2070000 0000f87f")
    doubles = struct.pack("<d", 1.5) + NA_REAL_BYTES + na_real_quiet + h("00000000 0000f87f")
    converted = to_python(Sexp(XT.ARRAY_DOUBLE, doubles))
    assert converted[:3] == [1.5, None, None]  # NA_real_, signalling or quiet, is None
    assert math.isnan(converted[3])  # any other NaN stays NaN
    assert to_python(ints(1, NA_INTEGER)) == [1, None]
    assert to_python(ints(7)) == 7  # length one, no names: a scalar
    assert to_python(ints(NA_INTEGER)) is None
    assert to_python(ints()) == []
    assert to_python(Sexp(XT.ARRAY_BOOL, b"\x01\x00\x02")) == [True, False, None]
    assert to_python(Sexp(XT.ARRAY_CPLX, struct.pack("<2d", 1, 2) + NA_REAL_BYTES * 2)) == [
        1 + 2j,
        None,
    ]
    assert to_python(Sexp(XT.ARRAY_STR, b"a\x00")) == "a"
    assert to_python(Sexp(XT.RAW, memoryview(b"ab"))) == b"ab"
    assert to_python(NULL) is None
    assert to_python(Sexp(XT.SYMNAME, "x")) == Symbol("x")
    assert isinstance(to_python(Sexp(XT.SYMNAME, "x")), Symbol)
    assert to_python(Sexp(XT.STR, "x")) == "x"
    env = Sexp(XT.UNKNOWN, 4)
    assert to_python(env) is env


def names(*values: str | None) -> Sexp:
    return Sexp(
        XT.LIST_TAG, [(Sexp(XT.ARRAY_STR, encode_strings(values)), Sexp(XT.SYMNAME, "names"))]
    )


def test_to_python_lists():
    attr = names("a", "b")
    assert to_python(Sexp(XT.VECTOR, [ints(1), ints(2)], attr)) == {"a": 1, "b": 2}
    assert to_python(Sexp(XT.VECTOR, [ints(1)], attr)) == [1]  # names do not match
    assert to_python(Sexp(XT.ARRAY_INT, ints(1, 2).value, attr)) == {"a": 1, "b": 2}
    for unusable in (names("a", "a"), names("a", ""), names("a", None)):
        assert to_python(Sexp(XT.VECTOR, [ints(1), ints(2)], unusable)) == [1, 2]
        assert to_python(Sexp(XT.ARRAY_INT, ints(1, 2).value, unusable)) == [1, 2]
    assert to_python(Sexp(XT.ARRAY_INT, ints(1).value, names(""))) == [1]  # named: no scalar
    pairlist = Sexp(XT.LIST_TAG, [(ints(1), Sexp(XT.SYMNAME, "a")), (ints(2), NULL)])
    assert to_python(pairlist) == [1, 2]
    pairlist.value[1] = (ints(2), Sexp(XT.SYMNAME, "b"))
    assert to_python(pairlist) == {"a": 1, "b": 2}
    call = Sexp(XT.LANG_TAG, [(Sexp(XT.SYMNAME, "f"), NULL), (ints(1), Sexp(XT.SYMNAME, "a"))])
    assert to_python(call) is call  # language objects stay Sexp
    assert to_python(Sexp(XT.LIST_NOTAG, [ints(3)])) == [3]


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (None, NULL),
        (True, Sexp(XT.ARRAY_BOOL, b"\x01")),
        ([True, None, False], Sexp(XT.ARRAY_BOOL, b"\x01\x02\x00")),
        (7, ints(7)),
        ([1, None], ints(1, NA_INTEGER)),
        (2**40, Sexp(XT.ARRAY_DOUBLE, struct.pack("<d", 2.0**40))),
        ([1, 2.5], Sexp(XT.ARRAY_DOUBLE, struct.pack("<2d", 1, 2.5))),
        ([1.0, None], Sexp(XT.ARRAY_DOUBLE, struct.pack("<d", 1.0) + NA_REAL_BYTES)),
        (1j, Sexp(XT.ARRAY_CPLX, struct.pack("<2d", 0, 1))),
        ("a", Sexp(XT.ARRAY_STR, b"a\x00")),
        (["a", None], Sexp(XT.ARRAY_STR, b"a\x00\xff\x00")),
        (b"\x01\x02", Sexp(XT.RAW, b"\x01\x02")),
        (Symbol("x"), Sexp(XT.SYMNAME, "x")),
        ([], Sexp(XT.VECTOR, [])),
        ([1, "a"], Sexp(XT.VECTOR, [ints(1), Sexp(XT.ARRAY_STR, b"a\x00")])),
        ([None, None], Sexp(XT.VECTOR, [NULL, NULL])),
        ([True, 1], Sexp(XT.VECTOR, [Sexp(XT.ARRAY_BOOL, b"\x01"), ints(1)])),
    ],
)
def test_from_python(obj, expected):
    assert from_python(obj) == expected


def test_from_python_dict_and_buffers():
    value = from_python({"x": 1.5, "y": "b"})
    assert value.xt == XT.VECTOR
    assert to_python(value) == {"x": 1.5, "y": "b"}
    doubles = array.array("d", [1.0, 2.0])
    assert from_python(doubles) == Sexp(XT.ARRAY_DOUBLE, doubles.tobytes())
    assert from_python(array.array("i", [3])) == ints(3)
    with pytest.raises(TypeError):
        from_python(object())
    with pytest.raises(TypeError):
        from_python(array.array("h", [1]))


def test_from_python_numpy_is_zero_copy():
    np = pytest.importorskip("numpy")
    data = np.arange(4, dtype=np.float64)
    value = from_python(data)
    assert value.xt == XT.ARRAY_DOUBLE
    assert value.value.obj is data or np.shares_memory(np.frombuffer(value.value), data)
    assert to_python(from_python(np.float64(2.5))) == 2.5
    assert to_python(from_python(np.int32(3))) == 3
    assert to_python(from_python(np.arange(3, dtype=np.int32))) == [0, 1, 2]


# --------------------------------------------------------------------------- send buffer


def raw(data: bytes) -> Sexp:
    return Sexp(XT.RAW, data)


def replied(s: Sexp, buffer: SendBuffer | None) -> bytes:
    chunks, length = encode_sexp(s, margin=4096, sendbuf=buffer)
    data = b"".join(bytes(chunk) for chunk in chunks)
    assert len(data) == length
    return data


def test_raw_padding_comes_from_rserves_send_buffer():
    buffer = SendBuffer()
    assert replied(raw(b"\x01" * 5), buffer) == h("250c0000 05000000 01010101 01000000")
    replied(Sexp(XT.ARRAY_STR, b"z" * 40 + b"\x00"), buffer)
    assert replied(raw(b"\x02" * 5), buffer)[-3:] == b"zzz"  # what that reply left there
    inner = Sexp(XT.VECTOR, [raw(b"\x03"), Sexp(XT.ARRAY_STR, b"long text here\x00")])
    assert replied(inner, buffer)[13:16] == b"zzz"  # the padding of a raw inside a list
    assert replied(Sexp(XT.VECTOR, [raw(b"\x03")]), buffer)[13:16] == b"zzz"  # never written
    replied(Sexp(XT.ARRAY_INT, b"\x07" * 64), buffer)  # the bare-vector path records too
    assert replied(raw(b"\x04"), buffer)[-3:] == b"\x07\x07\x07"
    assert replied(raw(b"\x04"), None)[-3:] == bytes(3)  # without a buffer: zeros


def test_after_a_reply_too_big_for_the_buffer_padding_is_zeros():
    buffer = SendBuffer()
    replied(Sexp(XT.ARRAY_STR, b"z" * 40 + b"\x00"), buffer)
    replied(Sexp(XT.ARRAY_DOUBLE, bytes(8 * 300_000)), buffer)  # over 2 MB
    replied(Sexp(XT.ARRAY_STR, b"z" * 40 + b"\x00"), buffer)
    assert replied(raw(b"\x05"), buffer)[-3:] == bytes(3)
