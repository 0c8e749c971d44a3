"""Message payloads as parameter lists (§2.2): decoding with Rserve's tolerance, encoding.

Real clients disagree on the details (8-byte headers everywhere, stray trailing bytes,
0x01 or missing string padding), so the decoder accepts exactly what Rserve accepts
and the encoder writes exactly what Rserve writes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from rexec.protocol.codec import BytesLike, byte_view, decode_sexp, encode_sexp, length_header
from rexec.protocol.constants import DT, DT_LARGE, MAX_PARAMS, XT
from rexec.protocol.errors import ProtocolError
from rexec.protocol.sexp import Sexp

_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_DT_BY_CODE = {int(d): d for d in DT}


@dataclass(slots=True)
class Param:
    """One parameter: ``DT.INT`` → int, ``DT.STRING`` → bytes (up to the first NUL),
    ``DT.BYTESTREAM`` → bytes-like, ``DT.SEXP`` → :class:`Sexp`; other types keep their
    raw body."""

    dt: int
    value: Any


def string_param(text: str | bytes) -> Param:
    """A DT_STRING parameter; text is sent as UTF-8."""
    return Param(DT.STRING, text.encode("utf-8") if isinstance(text, str) else bytes(text))


def int_param(n: int) -> Param:
    """A DT_INT parameter."""
    return Param(DT.INT, n)


def sexp_param(s: Sexp) -> Param:
    """A DT_SEXP parameter carrying an encoded R object."""
    return Param(DT.SEXP, s)


def bytes_param(data: BytesLike) -> Param:
    """A DT_BYTESTREAM parameter (exact length, no padding)."""
    return Param(DT.BYTESTREAM, data)


def decode_params(payload: BytesLike) -> list[Param]:
    """Parse a request payload the way Rserve does.

    Stops at the end of the payload, at a zero header word, or after 16 parameters;
    1-3 trailing bytes are ignored (Rserve reads them as a zero-filled word). Bodies are
    memoryview slices of ``payload``. A body that runs past the payload raises
    :class:`ProtocolError` with ``Err.INV_PAR``.
    """
    view = byte_view(payload)
    end = len(view)
    pos = 0
    params: list[Param] = []
    while len(params) < MAX_PARAMS and end - pos >= 4:
        (word,) = _U32.unpack_from(view, pos)
        if word == 0:
            break
        dt, length = word & 0xFF, word >> 8
        pos += 4
        if dt & DT_LARGE:
            if end - pos < 4:
                raise ProtocolError("truncated large parameter header")
            length |= _U32.unpack_from(view, pos)[0] << 24
            pos += 4
            dt ^= DT_LARGE
        if length > end - pos:
            raise ProtocolError(f"parameter declares {length} bytes, only {end - pos} remain")
        params.append(_decode_value(dt, view[pos : pos + length]))
        pos += length
    return params


def _decode_value(dt: int, body: memoryview) -> Param:
    if dt == DT.STRING:
        text = bytes(body)
        nul = text.find(b"\x00")
        return Param(DT.STRING, text if nul < 0 else text[:nul])
    if dt == DT.INT:
        if len(body) < 4:
            raise ProtocolError(f"DT_INT parameter of {len(body)} bytes")
        return Param(DT.INT, _I32.unpack_from(body)[0])
    if dt == DT.SEXP:
        return Param(DT.SEXP, decode_sexp(body)[0])
    return Param(_DT_BY_CODE.get(dt, dt), body)


def encode_params(params: list[Param]) -> tuple[list[BytesLike], int]:
    """Encode parameters as Rserve does; returns ``(chunks, total_length)``.

    Headers are 4 bytes unless a body exceeds 0xfffff0 bytes; strings are NUL-terminated
    and NUL-padded to a multiple of 4. Bytestream and vector data are not copied.
    """
    chunks: list[BytesLike] = []
    total = 0
    for param in params:
        body, length = _encode_value(param)
        header = length_header(int(param.dt), length)
        chunks.append(header)
        chunks.extend(body)
        total += len(header) + length
    return chunks, total


def _encode_value(param: Param) -> tuple[list[BytesLike], int]:
    dt, value = param.dt, param.value
    if dt == DT.SEXP:
        return encode_sexp(value)
    if dt == DT.INT:
        return [(_I32 if value < 0 else _U32).pack(value)], 4
    if dt == DT.STRING:
        text = value.encode("utf-8") if isinstance(value, str) else value
        length = len(text) + 1
        return [text, b"\x00" * (1 + -length % 4)], length + -length % 4
    view = byte_view(value)
    return [view], view.nbytes


@dataclass(frozen=True, slots=True)
class VectorAssignment:
    """The start of a setSEXP request that assigns one plain numeric vector."""

    name: bytes
    xt: int
    body_length: int
    offset: int  # where the vector's data starts in the payload


def plain_vector_assignment(prefix: BytesLike) -> VectorAssignment | None:
    """Recognise ``setSEXP(name, <int/double/complex vector without attributes>)`` from the
    first bytes of its payload, so a server can receive the data straight into place.
    None when the payload is anything else (then decode it the ordinary way)."""
    view = byte_view(prefix)
    try:
        name_type, name_length, pos = _param_header(view, 0)
        if name_type != DT.STRING or pos + name_length > len(view):
            return None
        name = bytes(view[pos : pos + name_length]).split(b"\x00", 1)[0]
        sexp_type, sexp_length, pos = _param_header(view, pos + name_length)
        if sexp_type != DT.SEXP:
            return None
        xt_type, body_length, data = _param_header(view, pos)
    except (ProtocolError, IndexError):
        return None
    if xt_type not in (XT.ARRAY_INT, XT.ARRAY_DOUBLE, XT.ARRAY_CPLX) or not name:
        return None
    if data - pos + body_length != sexp_length:
        return None
    return VectorAssignment(name, xt_type, body_length, data)


def _param_header(view: memoryview, pos: int) -> tuple[int, int, int]:
    """(type without the large flag, length, position after the header). The type keeps
    any other flag bits, so an object with attributes is not mistaken for a plain one."""
    if pos + 4 > len(view):
        raise ProtocolError("short header")
    word = _U32.unpack_from(view, pos)[0]
    code, length = word & 0xFF, word >> 8
    if code & 0x40:
        if pos + 8 > len(view):
            raise ProtocolError("short header")
        return code & ~0x40, length | _U32.unpack_from(view, pos + 4)[0] << 24, pos + 8
    return code, length, pos + 4
