"""ID strings, headers, FrameBuffer and message builders."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rexec.protocol import (
    RESP_ERR,
    Cmd,
    Err,
    FrameBuffer,
    Header,
    ProtocolError,
    bytes_param,
    decode_params,
    error,
    error_status,
    id_string,
    message,
    pack_header,
    parse_id_string,
    request,
    string_param,
    unpack_header,
)


def frame_bytes(cmd: int, payload: bytes, msg_id: int = 0) -> bytes:
    return b"".join(message(cmd, [payload], msg_id))


def drain(buffer: FrameBuffer) -> list[tuple[int, int, bytes | None]]:
    frames = []
    while (frame := buffer.next_frame()) is not None:
        payload = None if frame.payload is None else bytes(frame.payload)
        frames.append((frame.header.cmd, frame.header.length, payload))
    return frames


# --------------------------------------------------------------------------- ID string


def test_id_string_variants_are_32_bytes():
    for auth in (False, True):
        for plaintext in (False, True):
            for salt in (None, "./"):
                for tls in (False, True):
                    data = id_string(auth=auth, plaintext=plaintext, salt=salt, tls=tls)
                    assert len(data) == 32
                    assert data.endswith(
                        b"\r\n" if not (auth and salt and plaintext and tls) else b"TLS\n"
                    )
                    parse_id_string(data)


def test_tls_takes_first_free_slot():
    assert id_string(tls=True) == b"Rsrv0103QAP1\r\n\r\nTLS\n----------\r\n"
    assert id_string(auth=True, tls=True)[16:24] == b"ARptTLS\n"
    full = id_string(auth=True, salt="ab", plaintext=True, tls=True)
    assert full == b"Rsrv0103QAP1\r\n\r\nARucKab ARptTLS\n"
    assert parse_id_string(full).attributes == ("ARuc", "Kab", "ARpt", "TLS")


def test_id_string_rejects_bad_input():
    with pytest.raises(ValueError):
        id_string(auth=True, salt="x")
    with pytest.raises(ValueError):
        id_string(auth=True, salt="x y")


@pytest.mark.parametrize(
    "data",
    [b"", b"Rsrv0103QAP1", b"RsOC" + bytes(28), b"RSpx0103QAP1\r\n\r\n" + b"-" * 14 + b"\r\n"],
)
def test_parse_id_string_rejects(data):
    with pytest.raises(ProtocolError):
        parse_id_string(data)


# --------------------------------------------------------------------------- headers


def test_header_round_trip_64_bit_length():
    data = pack_header(Cmd.EVAL, 0x1_2345_6789, 7)
    assert data == bytes.fromhex("03000000 89674523 07000000 01000000".replace(" ", ""))
    assert unpack_header(data) == Header(Cmd.EVAL, 0x1_2345_6789, 7)


def test_short_header_is_connection_broken():
    with pytest.raises(ProtocolError) as info:
        unpack_header(bytes(15))
    assert info.value.status == Err.CONN_BROKEN


def test_error_builder():
    data = error(Err.OBJECT_TOO_BIG, payload=b"\x00\x01\x00\x00")
    header = unpack_header(data)
    assert header.cmd & 0xFFFFFF == RESP_ERR
    assert error_status(header.cmd) == Err.OBJECT_TOO_BIG
    assert (header.length, data[16:]) == (4, b"\x00\x01\x00\x00")
    with pytest.raises(ValueError):
        error(128)


def test_request_chunks_keep_large_data():
    blob = bytearray(100_000)
    chunks = request(Cmd.WRITE_FILE, [string_param("a"), bytes_param(blob)])
    assert unpack_header(chunks[0]).length == 8 + 4 + len(blob)
    assert any(getattr(c, "obj", None) is blob for c in chunks)


# --------------------------------------------------------------------------- FrameBuffer

STREAM = (
    frame_bytes(Cmd.EVAL, b"\x04\x04\x00\x001L\x00\x00")
    + frame_bytes(Cmd.CLOSE_FILE, b"")
    + frame_bytes(Cmd.VOID_EVAL, bytes(range(37)), msg_id=5)
)
EXPECTED = [
    (Cmd.EVAL, 8, b"\x04\x04\x00\x001L\x00\x00"),
    (Cmd.CLOSE_FILE, 0, b""),
    (Cmd.VOID_EVAL, 37, bytes(range(37))),
]


def test_split_at_every_byte_boundary():
    for cut in range(len(STREAM) + 1):
        buffer = FrameBuffer()
        buffer.feed(STREAM[:cut])
        first = drain(buffer)
        buffer.feed(STREAM[cut:])
        assert first + drain(buffer) == EXPECTED
        assert not buffer.in_frame


def test_byte_by_byte_and_state():
    buffer = FrameBuffer()
    seen = []
    for i in range(len(STREAM)):
        buffer.feed(STREAM[i : i + 1])
        seen += drain(buffer)
    assert seen == EXPECTED
    buffer.feed(STREAM[:5])
    assert buffer.in_header and buffer.in_frame
    buffer.feed(STREAM[5:20])
    assert not buffer.in_header and buffer.in_frame


def test_feed_copies_caller_buffer():
    data = bytearray(frame_bytes(Cmd.EVAL, b"abcd"))
    buffer = FrameBuffer()
    buffer.feed(data)
    data[16:] = b"zzzz"
    assert bytes(buffer.next_frame().payload) == b"abcd"


def test_oversized_payload_is_discarded_without_allocation():
    declared = 50 * 1024 * 1024
    buffer = FrameBuffer(max_payload=1000)
    chunk = bytes(64 * 1024)
    tracemalloc.start()
    try:
        buffer.feed(pack_header(Cmd.EVAL, declared))
        sent = 0
        while sent < declared:
            piece = chunk[: declared - sent]
            buffer.feed(piece)
            sent += len(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024
    frame = buffer.next_frame()
    assert frame.oversized and frame.payload is None and frame.header.length == declared
    buffer.feed(frame_bytes(Cmd.EVAL, b"ok"))
    assert drain(buffer) == [(Cmd.EVAL, 2, b"ok")]


def test_limit_boundary():
    buffer = FrameBuffer(max_payload=4)
    buffer.feed(frame_bytes(Cmd.EVAL, b"123") + frame_bytes(Cmd.EVAL, b"1234"))
    assert drain(buffer) == [(Cmd.EVAL, 3, b"123"), (Cmd.EVAL, 4, None)]


def test_special_commands_are_exempt_unless_asked():
    data = frame_bytes(Cmd.SER_EVAL, bytes(100))
    buffer = FrameBuffer(max_payload=10)
    buffer.feed(data)
    assert drain(buffer) == [(Cmd.SER_EVAL, 100, bytes(100))]
    buffer = FrameBuffer(max_payload=10, limit_special=True)
    buffer.feed(data)
    assert drain(buffer) == [(Cmd.SER_EVAL, 100, None)]


def test_unlimited_buffer_grows_for_large_payloads():
    payload = bytes(range(256)) * 8192  # 2 MiB: above the preallocation bound
    buffer = FrameBuffer(max_payload=None)
    data = frame_bytes(Cmd.EVAL, payload)
    for i in range(0, len(data), 100_000):
        buffer.feed(data[i : i + 100_000])
    assert drain(buffer) == [(Cmd.EVAL, len(payload), payload)]


@settings(max_examples=60, deadline=None)
@given(
    frames=st.lists(
        st.tuples(st.integers(0, 0xFFFFFFFF), st.binary(max_size=40)), min_size=1, max_size=6
    ),
    cuts=st.lists(st.integers(0, 400), max_size=8),
)
def test_any_split_yields_the_same_frames(frames, cuts):
    data = b"".join(frame_bytes(cmd, payload) for cmd, payload in frames)
    buffer = FrameBuffer(max_payload=None)
    got = []
    previous = 0
    for cut in [*sorted(c for c in cuts if c <= len(data)), len(data)]:
        buffer.feed(data[previous:cut])
        previous = cut
        got += drain(buffer)
    assert got == [(cmd, len(payload), payload) for cmd, payload in frames]


def test_small_messages_are_one_chunk_and_large_data_stays_separate():
    assert len(request(Cmd.EVAL, [string_param("1L")])) == 1
    big = bytes(1 << 17)
    chunks = message(Cmd.SER_EVAL, [b"ab", big, b"cd", b"ef"])
    assert [len(c) for c in chunks] == [18, 1 << 17, 4]
    assert chunks[1] is big
    assert b"".join(chunks)[16:] == b"ab" + big + b"cdef"


def test_frames_feed_the_parameter_parser():
    buffer = FrameBuffer()
    buffer.feed(b"".join(request(Cmd.SET_SEXP, [string_param("x"), string_param("1")])))
    frame = buffer.next_frame()
    assert [p.value for p in decode_params(frame.payload)] == [b"x", b"1"]
