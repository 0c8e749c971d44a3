"""Property tests: round trips of random objects, and fuzzed input never escapes ProtocolError."""

from __future__ import annotations

import contextlib
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rexec.protocol import (
    XT,
    FrameBuffer,
    ProtocolError,
    Sexp,
    decode_params,
    decode_sexp,
    encode_params,
    encode_sexp,
    encode_strings,
    sexp_param,
    to_python,
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=8)


def sized_binary(size: int) -> st.SearchStrategy[bytes]:
    return st.lists(st.binary(min_size=size, max_size=size), max_size=6).map(b"".join)


symbols = text.map(lambda name: Sexp(XT.SYMNAME, name))
tags = st.one_of(st.just(Sexp(XT.NULL)), symbols)
leaves = st.one_of(
    st.just(Sexp(XT.NULL)),
    st.builds(Sexp, st.just(XT.ARRAY_INT), sized_binary(4)),
    st.builds(Sexp, st.just(XT.ARRAY_DOUBLE), sized_binary(8)),
    st.builds(Sexp, st.just(XT.ARRAY_CPLX), sized_binary(16)),
    st.builds(Sexp, st.just(XT.ARRAY_BOOL), st.binary(max_size=9)),
    st.builds(Sexp, st.just(XT.RAW), st.binary(max_size=9)),
    st.builds(
        Sexp, st.just(XT.ARRAY_STR), st.lists(st.none() | text, max_size=5).map(encode_strings)
    ),
    symbols,
    text.map(lambda value: Sexp(XT.STR, value)),
    st.builds(Sexp, st.just(XT.UNKNOWN), st.integers(0, 30)),
    st.just(Sexp(XT.S4)),
)


def extend(children: st.SearchStrategy[Sexp]) -> st.SearchStrategy[Sexp]:
    sequences = st.sampled_from([XT.VECTOR, XT.VECTOR_EXP, XT.LIST_NOTAG, XT.LANG_NOTAG])
    pairlists = st.sampled_from([XT.LIST_TAG, XT.LANG_TAG])
    attributes = st.lists(st.tuples(children, symbols), min_size=1, max_size=3).map(
        lambda pairs: Sexp(XT.LIST_TAG, pairs)
    )
    return st.one_of(
        st.builds(Sexp, sequences, st.lists(children, max_size=4)),
        st.builds(Sexp, pairlists, st.lists(st.tuples(children, tags), max_size=4)),
        st.builds(Sexp, st.just(XT.CLOS), st.tuples(children, children)),
        st.builds(lambda s, attr: Sexp(s.xt, s.value, attr), children, attributes),
    )


sexps = st.recursive(leaves, extend, max_leaves=25)


def encoded(s: Sexp) -> bytes:
    chunks, length = encode_sexp(s)
    data = b"".join(chunks)
    assert len(data) == length
    return data


def pyrserve_style(s: Sexp) -> bytes:
    """Re-encode with an 8-byte header on every object and NULL claiming 4 absent bytes."""
    data = encoded(s)
    out, _ = _relarge(data, 0)
    return out


def _relarge(data: bytes, pos: int) -> tuple[bytes, int]:
    (word,) = struct.unpack_from("<I", data, pos)
    code, length = word & 0xFF, word >> 8
    head = 4
    if code & 0x40:
        length |= struct.unpack_from("<I", data, pos + 4)[0] << 24
        head = 8
    xt = code & 0x3F
    start = pos + head
    if xt == XT.NULL:
        length = 0
        if code & 0x80:
            attr, end = _relarge(data, start)
            return struct.pack("<BQ", code | 0x40, len(attr))[:8] + attr, end
        return struct.pack("<BQ", code | 0x40, 4)[:8], start
    stop = start + length
    body = b""
    cursor = start
    if code & 0x80:
        attr, cursor = _relarge(data, cursor)
        body += attr
    if xt in (
        XT.VECTOR,
        XT.VECTOR_EXP,
        XT.LIST_NOTAG,
        XT.LANG_NOTAG,
        XT.LIST_TAG,
        XT.LANG_TAG,
        XT.CLOS,
    ):
        while cursor < stop:
            child, cursor = _relarge(data, cursor)
            body += child
    else:
        body += data[cursor:stop]
    return struct.pack("<BQ", code | 0x40, len(body))[:8] + body, stop


@FAST
@given(sexps)
def test_round_trip(s):
    data = encoded(s)
    assert decode_sexp(data) == (s, len(data))
    to_python(s)  # never fails on a well-formed object


@FAST
@given(sexps)
def test_large_headers_everywhere_decode_the_same(s):
    data = pyrserve_style(s)
    assert decode_sexp(data) == (s, len(data))


@FAST
@given(st.lists(sexps, max_size=3))
def test_params_round_trip(values):
    chunks, length = encode_params([sexp_param(v) for v in values])
    payload = b"".join(chunks)
    assert len(payload) == length
    assert [p.value for p in decode_params(payload)] == values[:16]


def only_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_sexp(data, max_depth=64)
    with contextlib.suppress(ProtocolError):
        decode_params(data)


@FAST
@given(st.binary(max_size=64))
def test_random_bytes(data):
    only_protocol_errors(data)


@FAST
@given(sexps, st.data())
def test_mutated_and_truncated_encodings(s, draw):
    data = bytearray(encoded(s))
    for _ in range(draw.draw(st.integers(0, 4))):
        index = draw.draw(st.integers(0, len(data) - 1))
        data[index] = draw.draw(st.integers(0, 255))
    cut = draw.draw(st.integers(0, len(data)))
    only_protocol_errors(bytes(data[:cut]))
    only_protocol_errors(bytes(data))
    payload = bytearray(b"".join(encode_params([sexp_param(s)])[0]))
    index = draw.draw(st.integers(0, len(payload) - 1))
    payload[index] ^= draw.draw(st.integers(1, 255))
    only_protocol_errors(bytes(payload))


@FAST
@given(st.binary(max_size=200), st.lists(st.integers(0, 200), max_size=5))
def test_frame_buffer_accepts_any_bytes(data, cuts):
    buffer = FrameBuffer(max_payload=64)
    previous = 0
    for cut in [*sorted(c for c in cuts if c <= len(data)), len(data)]:
        buffer.feed(data[previous:cut])
        previous = cut
    while (frame := buffer.next_frame()) is not None:
        assert frame.oversized or len(frame.payload) == frame.header.length
