"""The SEXP codec: :class:`Sexp` trees to QAP1 bytes and back, as Rserve 1.8 does it.

Encoding returns a list of buffer chunks so that large vector bodies go to the socket
without being copied; small pieces (headers, short vectors) are joined into a few
chunks so that ``socket.sendmsg`` stays well under its iovec limit. Decoding returns
vector data as zero-copy ``memoryview`` slices of the input and raises only
:class:`ProtocolError`, whatever the bytes.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterable
from typing import Any

from rexec.protocol.constants import (
    LARGE_THRESHOLD,
    NA_INTEGER,
    NA_LOGICAL_BYTE,
    XT,
    XT_HAS_ATTR,
    XT_LARGE,
)
from rexec.protocol.errors import ProtocolError
from rexec.protocol.sexp import Sexp

BytesLike = bytes | bytearray | memoryview

_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_HEADER_LARGE = struct.Struct("<II")
_NA_REAL_LOW_WORD = 1954
#: Pieces smaller than this are joined; larger ones are passed through uncopied.
_COPY_LIMIT = 1 << 16
_MAX_LENGTH = 1 << 56

_XT_BY_CODE = {int(x): x for x in XT}
_ITEM_SIZE = {XT.ARRAY_INT: 4, XT.ARRAY_DOUBLE: 8, XT.ARRAY_CPLX: 16}
_SEQUENCES = frozenset({XT.VECTOR, XT.VECTOR_EXP, XT.LIST_NOTAG, XT.LANG_NOTAG})
_PAIRLISTS = frozenset({XT.LIST_TAG, XT.LANG_TAG})
# Naming an enum member is a class-attribute lookup each time: the hot paths compare with
# these module-level aliases and sets instead.
_NULL, _S4, _CLOS, _STR, _RAW = XT.NULL, XT.S4, XT.CLOS, XT.STR, XT.RAW
_BOOLS, _STRINGS, _UNKNOWN = XT.ARRAY_BOOL, XT.ARRAY_STR, XT.UNKNOWN
_TEXTS = frozenset({XT.STR, XT.SYMNAME})
_COUNTED = frozenset({XT.ARRAY_BOOL, XT.RAW})  # a leading int32 count, then bytes
_NOTAG = frozenset({XT.LIST_NOTAG, XT.LANG_NOTAG})
_BODYLESS = frozenset({XT.NULL, XT.S4})
_CONTAINERS = _SEQUENCES | _PAIRLISTS | {XT.CLOS}


class Symbol(str):
    """An R symbol (``quote(x)``), distinct from a string (as ``rexec.protocol.values``
    returns it)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Symbol({str.__repr__(self)})"


def byte_view(data: Any) -> memoryview:
    """A flat unsigned-byte view of any contiguous buffer (bytes, array, numpy...)."""
    view = data if isinstance(data, memoryview) else memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def nbytes(chunk: BytesLike) -> int:
    """Length in bytes of a buffer chunk (cheap for ``bytes``, the usual case)."""
    return len(chunk) if type(chunk) is bytes else byte_view(chunk).nbytes


# --------------------------------------------------------------------------- encoding


#: Rserve adds this margin to a reply's top-level size estimate before encoding it.
REPLY_MARGIN = 4096
_LEAVES = frozenset(
    {
        XT.NULL,
        XT.S4,
        XT.ARRAY_INT,
        XT.ARRAY_DOUBLE,
        XT.ARRAY_CPLX,
        XT.ARRAY_STR,
        XT.ARRAY_BOOL,
        XT.RAW,
        XT.STR,
        XT.SYMNAME,
        XT.UNKNOWN,
    }
)
# How an entry of the encoder's work list relates to its parent record.
_DATA, _CHILD, _UNCOUNTED_CHILD = 0, 1, 2


class SendBuffer:
    """Rserve's send buffer, as far as its replies let it show.

    Rserve encodes every eval reply into one buffer it keeps for the whole connection
    (2 MB), and its encoder never writes the 1-3 bytes that pad a raw vector to a whole
    word: they are whatever an earlier reply left at that offset, and pyRserve hands them
    to users as part of the vector. This is an image of that buffer. Pass one to
    :func:`encode_sexp` for each eval reply of a connection, in order, and the padding
    comes out as Rserve's.

    A reply Rserve estimates too big for the buffer goes through a temporary one, and
    from then on Rserve frees and allocates its buffer after every reply (it never resets
    its note of the temporary buffer), so later padding is whatever memory ``malloc``
    hands back, which nobody can predict; this image then gives zeros, as fresh memory.
    """

    SIZE = 2 * 1024 * 1024  # Rserve's default (sndBS)

    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self._image = bytearray()
        self._fresh_each_reply = False

    def place(self, out: list[BytesLike], pads: list[int], estimate: int) -> None:
        """One reply: fill the padding chunks ``out[i]`` (``i`` in ``pads``, ascending)
        from the image, then record the reply's bytes in it. ``estimate`` is Rserve's
        size estimate of the reply's object (without :data:`REPLY_MARGIN`)."""
        if self._fresh_each_reply:
            return
        if estimate + REPLY_MARGIN > self.size - 64:  # Rserve: a temporary buffer
            self._fresh_each_reply = True
            self._image = bytearray()
            return
        image = self._image
        waiting = iter(pads)
        pad = next(waiting, -1)
        pos = 0
        for i, chunk in enumerate(out):
            n = nbytes(chunk)
            if i == pad:
                left = image[pos : pos + n]
                out[i] = chunk = bytes(left) + bytes(n - len(left))
                pad = next(waiting, -1)
            image[pos : pos + n] = chunk  # grows the image when the reply is the longest yet
            pos += n


def encode_sexp(
    s: Sexp, *, margin: int = 0, sendbuf: SendBuffer | None = None
) -> tuple[list[BytesLike], int]:
    """Encode ``s`` as Rserve would; returns ``(chunks, total_length)``.

    Like Rserve, an object gets the 8-byte (large) header when Rserve's *estimate* of its
    size (:func:`storage_estimate`, plus ``margin`` for the top-level object — Rserve
    adds :data:`REPLY_MARGIN` for an eval reply) exceeds 0xfffff0, so replies match
    Rserve's byte for byte even just below 16 MB. Objects nested to any depth are
    encoded without recursion, as Rserve answers a list nested thousands of levels deep.
    With ``sendbuf`` (eval replies), raw vectors are padded from Rserve's send buffer.

    Raises ``ValueError``/``TypeError`` when ``s`` itself is malformed (a local bug,
    not a protocol error).
    """
    if s.attr is None and s.xt in _ITEM_SIZE:  # the common reply: a bare numeric vector
        view = byte_view(s.value)
        size = view.nbytes
        if size % _ITEM_SIZE[s.xt]:
            raise ValueError(f"{XT(s.xt).name} data of {size} bytes is not whole elements")
        estimate = 4 + size if 4 + size <= LARGE_THRESHOLD else 8 + size
        header = length_header(int(s.xt), size, large=estimate + margin > LARGE_THRESHOLD)
        chunks: list[BytesLike] = [header + view] if size < _COPY_LIMIT else [header, view]
        if sendbuf is not None:
            sendbuf.place(chunks, [], estimate)
        return chunks, len(header) + size
    out: list[BytesLike] = []
    pads: list[int] = []
    total, estimate = _encode_tree(s, out, margin, pads)
    if sendbuf is not None:
        sendbuf.place(out, pads, estimate)
    return coalesce(out), total


def _encode_tree(root: Sexp, out: list[BytesLike], margin: int, pads: list[int]) -> tuple[int, int]:
    """Append the encoding of ``root`` to ``out``; returns (length, Rserve's estimate).

    No recursion: objects are visited in wire order (header, attributes, data or
    children) from a work list, each leaving a record that names its parent. A record
    always precedes its descendants', so one backward pass over the records knows every
    body's length and size estimate by the time it writes that object's header.
    ``pads`` receives the indexes in ``out`` of raw vectors' padding.
    """
    slots: list[int] = []  # where the object's header goes in ``out``
    codes: list[int] = []
    parents: list[int] = []
    lengths: list[int] = []  # body bytes: the object's own data, then its children's
    estimates: list[int] = []  # Rserve's getStorageSize, built up the same way
    counted: list[bool] = []  # part of the parent's estimate (a STR's attributes are not)
    work: list[tuple[Sexp, int, int]] = [(root, -1, _CHILD)]
    while work:
        s, parent, role = work.pop()
        if role == _DATA:  # a leaf's data, after its attributes
            lengths[parent] = _encode_leaf(s, out, pads)
            continue
        index = len(slots)
        slots.append(len(out))
        out.append(b"")  # the header, made in the backward pass
        xt, attr, value = s.xt, s.attr, s.value
        codes.append(int(xt) if attr is None else int(xt) | XT_HAS_ATTR)
        parents.append(parent)
        counted.append(role == _CHILD)
        lengths.append(0)
        if xt in _LEAVES:
            estimates.append(4 + _leaf_estimate(s))
            if attr is None:
                lengths[index] = _encode_leaf(s, out, pads)
            else:
                work.append((s, index, _DATA))
                work.append((attr, index, _UNCOUNTED_CHILD if xt == _STR else _CHILD))
            continue
        estimate = 4
        if xt in _SEQUENCES:
            children = value
            if xt in _NOTAG:
                estimate += 8 * len(value)  # Rserve counts each absent tag (R's NULL) as 8
        elif xt in _PAIRLISTS:
            children = [part for item, tag in value for part in (item, tag)]
        elif xt == _CLOS:
            formals, body = value
            children = [formals, body]
        else:
            raise ValueError(f"cannot encode SEXP type {xt!r}")
        estimates.append(estimate)
        work.extend((child, index, _CHILD) for child in reversed(children))
        if attr is not None:
            work.append((attr, index, _CHILD))
    length = estimate = 0
    for index in range(len(slots) - 1, -1, -1):
        estimate = estimates[index]
        if estimate > LARGE_THRESHOLD:
            estimate += 4  # Rserve counts the large header's extra word
        length = lengths[index]
        parent = parents[index]
        large = length > LARGE_THRESHOLD or (
            estimate + (margin if parent < 0 else 0) > LARGE_THRESHOLD
        )
        header = length_header(codes[index], length, large=large)
        out[slots[index]] = header
        length += len(header)
        if parent >= 0:
            lengths[parent] += length
            if counted[index]:
                estimates[parent] += estimate
    return length, estimate


def storage_estimate(s: Sexp) -> int:
    """Rserve's ``getStorageSize`` for the R object behind ``s``: the size it *expects*
    to need, which decides its large headers (it over-counts short strings and NULLs)."""
    return _encode_tree(s, [], 0, [])[1]


def _leaf_estimate(s: Sexp) -> int:
    """The part of Rserve's estimate for an object without children, beyond its header."""
    xt, value = s.xt, s.value
    if xt in _ITEM_SIZE:
        return byte_view(value).nbytes
    if xt in _COUNTED:
        n = byte_view(value).nbytes
        return 4 + (-(-n // 4) * 4) if n > 1 else 4
    if xt == _STRINGS:
        return _strings_estimate(byte_view(value))
    if xt in _TEXTS:
        text = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        return (len(text) + 4) // 4 * 4
    return 0 if xt == _S4 else 4  # NULL and unknown types: one word


def _strings_estimate(body: memoryview) -> int:
    """Sum over elements of 4 + align(strlen + 1) (NA counts as "NA"), without a Python
    loop in the common cases: the bounds decide unless the total is close to 16 MB."""
    whole = body.obj if isinstance(body.obj, bytes) and len(body.obj) == body.nbytes else None
    n = (whole if whole is not None else bytes(body)).count(0)
    low, high = 4 * n + body.nbytes, 7 * n + body.nbytes
    if low > LARGE_THRESHOLD or high <= LARGE_THRESHOLD - 8:
        return low  # on the right side of the threshold either way
    total = 0
    for item in bytes(body).split(b"\x00")[:n]:
        length = 2 if item == b"\xff" else len(item) - (item[:1] == b"\xff")
        total += 4 + (length + 4) // 4 * 4
    return total


def length_header(code: int, length: int, *, large: bool | None = None) -> bytes:
    """A parameter or object header: 4 bytes, or 8 with the large flag (by default when
    the length exceeds 0xfffff0)."""
    if large is None:
        large = length > LARGE_THRESHOLD
    if not large:
        return _U32.pack(code | length << 8)
    if length >= _MAX_LENGTH:
        raise ValueError(f"{length} bytes exceed the 56-bit QAP1 length")
    return _HEADER_LARGE.pack(code | XT_LARGE | (length & 0xFFFFFF) << 8, length >> 24)


def _encode_leaf(s: Sexp, out: list[BytesLike], pads: list[int]) -> int:
    """Append the data of an object without children; returns its length."""
    xt, value = s.xt, s.value
    if xt in _BODYLESS:
        return 0
    if xt in _ITEM_SIZE:
        view = byte_view(value)
        if view.nbytes % _ITEM_SIZE[xt]:
            raise ValueError(f"{XT(xt).name} data of {view.nbytes} bytes is not whole elements")
        out.append(view)
        return view.nbytes
    if xt == _STRINGS:
        view = byte_view(value)
        if view.nbytes and view[-1] != 0:
            raise ValueError("ARRAY_STR data must end with a NUL")
        out.append(view)
        return view.nbytes + _pad(out, view.nbytes, b"\x01")
    if xt in _COUNTED:
        view = byte_view(value)
        if view.nbytes > 0x7FFFFFFF:
            raise ValueError(f"{XT(xt).name} of {view.nbytes} elements has no int32 count")
        out.append(_I32.pack(view.nbytes))
        out.append(view)
        if xt == _RAW and view.nbytes % 4:
            pads.append(len(out))  # Rserve leaves these bytes as its buffer has them
        return 4 + view.nbytes + _pad(out, view.nbytes, b"\xff" if xt == _BOOLS else b"\0")
    if xt in _TEXTS:
        text = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        text = bytes(text)
        if b"\x00" in text:
            raise ValueError(f"{XT(xt).name} text contains a NUL")
        data = text + b"\x00" * (4 - len(text) % 4)  # at least one NUL, padded to 4
        out.append(data)
        return len(data)
    if xt == _UNKNOWN:
        out.append(_I32.pack(value))
        return 4
    raise ValueError(f"cannot encode SEXP type {xt!r}")


def _pad(out: list[BytesLike], length: int, fill: bytes) -> int:
    pad = -length % 4
    if pad:
        out.append(fill * pad)
    return pad


def coalesce(chunks: Iterable[BytesLike]) -> list[BytesLike]:
    """Join runs of small chunks; chunks of 64 KiB or more are kept as they are (uncopied)."""
    merged: list[BytesLike] = []
    run: list[BytesLike] = []
    for chunk in chunks:
        if nbytes(chunk) < _COPY_LIMIT:
            run.append(chunk)
            continue
        if run:
            merged.append(b"".join(run) if len(run) > 1 else run[0])
            run = []
        merged.append(chunk)
    if run:
        merged.append(b"".join(run) if len(run) > 1 else run[0])
    return merged


# --------------------------------------------------------------------------- decoding


#: Nesting :func:`decode_sexp` accepts by default: deeper than Rserve's own recursive
#: decoder survives (its session dies between 40,000 and 50,000 levels), and a bound on
#: the decoder's memory (about 400 bytes a level) whatever a client sends.
MAX_DEPTH = 1 << 18


def decode_sexp(
    buf: BytesLike, offset: int = 0, *, max_depth: int | None = MAX_DEPTH
) -> tuple[Sexp, int]:
    """Decode one object at ``offset``; returns ``(sexp, end_offset)``.

    Vector values are memoryview slices of ``buf`` (no copy), so they stay valid only
    as long as ``buf`` is not modified. The decoder does not recurse, so nesting is
    limited only by ``max_depth`` (None: no limit).
    """
    view = byte_view(buf)
    if not 0 <= offset <= len(view):
        raise ProtocolError(f"offset {offset} outside a buffer of {len(view)} bytes")
    return _decode(view, offset, len(view), max_depth)


# What an open object's children are: elements, (value, tag) pairs, or formals and body.
_ELEMENTS, _PAIRS, _PARTS = 0, 1, 2
_KIND = {**dict.fromkeys(_SEQUENCES, _ELEMENTS), **dict.fromkeys(_PAIRLISTS, _PAIRS), _CLOS: _PARTS}


class _Open:
    """An object being decoded whose attributes or children are still to come."""

    __slots__ = ("attr", "in_attr", "item", "items", "kind", "stop", "xt")

    def __init__(self, xt: XT, stop: int, in_attr: bool, attr: Sexp | None = None) -> None:
        self.xt = xt
        self.kind = _KIND.get(xt, _ELEMENTS)
        self.stop = stop  # where its body ends (for a NULL: where its parent's does)
        self.in_attr = in_attr  # the next object decoded is its attribute list
        self.attr = attr
        self.items: list[Any] = []
        self.item: Sexp | None = None  # a pairlist value waiting for its tag


def _decode(view: memoryview, pos: int, end: int, max_depth: int | None) -> tuple[Sexp, int]:
    """Decode the object at ``pos``, nested objects from an explicit stack of open ones."""
    stack: list[_Open] = []
    limit = end  # where the innermost open object's body ends
    while True:
        if max_depth is not None and len(stack) > max_depth:
            raise ProtocolError(f"object nesting deeper than {max_depth}")
        if limit - pos < 4:
            raise ProtocolError("truncated object header")
        (word,) = _U32.unpack_from(view, pos)
        code, length = word & 0xFF, word >> 8
        pos += 4
        if code & XT_LARGE:
            if limit - pos < 4:
                raise ProtocolError("truncated large object header")
            length |= _U32.unpack_from(view, pos)[0] << 24
            pos += 4
        xt = _XT_BY_CODE.get(code & 0x3F)
        if xt is None:
            raise ProtocolError(f"unknown SEXP type {code & 0x3F}")
        if xt == _NULL:
            # Body-less whatever the length says: pyRserve declares 4 bytes it never sends.
            if code & XT_HAS_ATTR:
                stack.append(_Open(xt, limit, True))
                continue
            done: Sexp | None = Sexp(_NULL)
        else:
            stop = pos + length
            if stop > limit:
                raise ProtocolError(f"{xt.name} declares {length} bytes, only {limit - pos} remain")
            if code & XT_HAS_ATTR:
                stack.append(_Open(xt, stop, True))
                limit = stop
                continue
            if xt in _CONTAINERS:
                done, pos = _open(xt, pos, stop, None, stack)
                if done is None:
                    limit = stop
                    continue
            else:
                xt, value = _decode_leaf(xt, view, pos, stop)
                done, pos = Sexp(xt, value), stop
        # Hand each finished object to the one that contains it, closing those it completes.
        while True:
            if not stack:
                return done, pos
            top = stack[-1]
            if top.in_attr:
                stack.pop()
                if top.xt == _NULL:
                    done = Sexp(_NULL, None, done)
                    continue
                if top.xt in _CONTAINERS:
                    done, pos = _open(top.xt, pos, top.stop, done, stack)
                    if done is None:
                        break
                else:
                    xt, value = _decode_leaf(top.xt, view, pos, top.stop)
                    done, pos = Sexp(xt, value, done), top.stop
                continue
            kind = top.kind
            if kind == _ELEMENTS:
                top.items.append(done)
                if pos < top.stop:
                    break
                value = top.items
            elif kind == _PAIRS:
                if top.item is None:
                    if pos >= top.stop:
                        raise ProtocolError(f"{top.xt.name} element without a tag")
                    top.item = done
                    break  # its tag comes next
                top.items.append((top.item, done))
                top.item = None
                if pos < top.stop:
                    break
                value = top.items
            else:
                top.items.append(done)
                if len(top.items) < 2:
                    break
                value = (top.items[0], top.items[1])
            stack.pop()
            done, pos = Sexp(top.xt, value, top.attr), top.stop
        limit = stack[-1].stop


def _open(
    xt: XT, pos: int, stop: int, attr: Sexp | None, stack: list[_Open]
) -> tuple[Sexp | None, int]:
    """A container whose body runs from ``pos`` to ``stop``: finished and ``stop`` when it
    is empty, else (None, pos) with it pushed on ``stack`` for its children."""
    if pos >= stop and xt != _CLOS:
        return Sexp(xt, [], attr), stop
    stack.append(_Open(xt, stop, False, attr))
    return None, pos


def _decode_leaf(xt: XT, view: memoryview, pos: int, stop: int) -> tuple[XT, Any]:
    size = stop - pos
    if xt in (XT.INT, XT.DOUBLE):  # pre-0103 scalars are one-element arrays
        xt = XT.ARRAY_INT if xt == XT.INT else XT.ARRAY_DOUBLE
    width = _ITEM_SIZE.get(xt)
    if width is not None:
        if size % width:
            raise ProtocolError(f"{xt.name} body of {size} bytes is not whole elements")
        return xt, view[pos:stop]
    if xt == _STRINGS:
        return xt, view[pos : _last_nul(view, pos, stop)]
    if xt in _COUNTED:
        if size < 4:
            raise ProtocolError(f"{xt.name} body too short for its count")
        (count,) = _U32.unpack_from(view, pos)
        if count > size - 4:
            raise ProtocolError(f"{xt.name} count {count} exceeds its {size - 4} data bytes")
        return xt, view[pos + 4 : pos + 4 + count]
    if xt in _TEXTS:
        text = bytes(view[pos:stop])
        nul = text.find(b"\x00")
        return xt, (text if nul < 0 else text[:nul]).decode("utf-8", "surrogateescape")
    if xt == _S4:
        return xt, None
    if xt == _UNKNOWN:
        if size < 4:
            raise ProtocolError("UNKNOWN body too short")
        return xt, _I32.unpack_from(view, pos)[0]
    if xt == XT.BOOL:  # pre-0.6-4 logical scalar: one byte in a word
        if size < 1:
            raise ProtocolError("empty BOOL body")
        return XT.ARRAY_BOOL, view[pos : pos + 1]
    raise ProtocolError(f"unsupported SEXP type {xt.name}")


def _last_nul(view: memoryview, start: int, stop: int) -> int:
    """End of the last NUL-terminated element: Rserve ignores bytes after it (padding)."""
    i = stop
    while i > start and stop - i < 8:  # valid padding is at most 3 bytes
        if view[i - 1] == 0:
            return i
        i -= 1
    return start + bytes(view[start:stop]).rfind(b"\x00") + 1


# --------------------------------------------------------------------------- values


def encode_strings(items: Iterable[str | bytes | None]) -> bytes:
    """ARRAY_STR data (without padding): UTF-8, NUL-terminated, NA as ``ff 00``."""
    parts = []
    for item in items:
        if item is None:
            parts.append(b"\xff")
            continue
        data = item.encode("utf-8", "surrogateescape") if isinstance(item, str) else item
        if b"\x00" in data:
            raise ValueError("R strings cannot contain NUL")
        parts.append(b"\xff" + data if data[:1] == b"\xff" else data)
    if not parts:
        return b""
    parts.append(b"")
    return b"\x00".join(parts)


def decode_strings(data: BytesLike) -> list[str | None]:
    """Elements of ARRAY_STR data, following Rserve: one per NUL, trailing bytes dropped."""
    pieces = bytes(data).split(b"\x00")
    del pieces[-1]  # after the last NUL: padding or nothing
    return [
        (None if len(p) == 1 else p[1:].decode("utf-8", "surrogateescape"))
        if p[:1] == b"\xff"
        else p.decode("utf-8", "surrogateescape")
        for p in pieces
    ]


_NA_REAL = struct.unpack("<d", struct.pack("<II", _NA_REAL_LOW_WORD, 0x7FF00000))[0]
_INT32_MIN = -(2**31) + 1  # -2**31 is NA_integer_
_INT32_MAX = 2**31 - 1
#: Buffer formats (as numpy / array.array report them) sent without conversion.
_NATIVE_FORMATS = {
    "d": XT.ARRAY_DOUBLE,
    "<d": XT.ARRAY_DOUBLE,
    "Zd": XT.ARRAY_CPLX,
    "<Zd": XT.ARRAY_CPLX,
    "i": XT.ARRAY_INT,
    "<i": XT.ARRAY_INT,
}


def from_python(obj: Any) -> Sexp:
    """A :class:`Sexp` for a Python value.

    None, bool, int, float, complex, str, bytes and :class:`Symbol` map to the matching
    R type; a list or tuple of one scalar kind (None meaning NA) becomes an atomic
    vector, any other list a generic list; a dict becomes a named list. One-dimensional
    float64/int32/complex128 buffers (numpy, ``array``) are sent as they are.
    """
    if obj is None:
        return Sexp(XT.NULL)
    if isinstance(obj, Sexp):
        return obj
    if isinstance(obj, Symbol):
        return Sexp(XT.SYMNAME, str(obj))
    if isinstance(obj, (bytes, bytearray)):
        return Sexp(XT.RAW, bytes(obj))
    if isinstance(obj, dict):
        names = Sexp(XT.ARRAY_STR, encode_strings(str(k) for k in obj))
        attr = Sexp(XT.LIST_TAG, [(names, Sexp(XT.SYMNAME, "names"))])
        return Sexp(XT.VECTOR, [from_python(v) for v in obj.values()], attr)
    if isinstance(obj, (list, tuple)):
        atomic = _atomic(obj)
        return atomic if atomic is not None else Sexp(XT.VECTOR, [from_python(v) for v in obj])
    if _kind(obj) is not None:
        atomic = _atomic([obj])
        assert atomic is not None
        return atomic
    try:
        view = memoryview(obj)
    except TypeError:
        raise TypeError(f"cannot convert {type(obj).__name__} to an R object") from None
    if view.ndim == 0 and hasattr(obj, "item"):  # a numpy scalar
        return from_python(obj.item())
    if view.format in ("B", "b", "c"):
        return Sexp(XT.RAW, bytes(view))
    xt = _NATIVE_FORMATS.get(view.format)
    if xt is None or view.ndim != 1 or sys.byteorder != "little":
        raise TypeError(f"cannot send a buffer of format {view.format!r}, ndim {view.ndim}")
    return Sexp(xt, byte_view(view))


def _kind(value: Any) -> type | None:
    """The R-relevant scalar kind of ``value`` (subclasses such as numpy scalars count)."""
    if isinstance(value, bool):
        return bool
    if isinstance(value, Symbol):
        return None
    for kind in (int, float, complex, str):
        if isinstance(value, kind):
            return kind
    return None


def _atomic(items: Any) -> Sexp | None:
    """The atomic vector for a homogeneous sequence, or None when it is not one."""
    kinds = {_kind(v) for v in items if v is not None}
    if None in kinds or not kinds or (len(kinds) > 1 and kinds != {int, float}):
        return None
    if kinds == {bool}:
        data = bytes(NA_LOGICAL_BYTE if v is None else int(v) for v in items)
        return Sexp(XT.ARRAY_BOOL, data)
    if kinds == {int} and all(v is None or _INT32_MIN <= v <= _INT32_MAX for v in items):
        data = [NA_INTEGER if v is None else int(v) for v in items]
        return Sexp(XT.ARRAY_INT, struct.pack(f"<{len(data)}i", *data))
    if kinds <= {int, float}:
        floats = [_NA_REAL if v is None else float(v) for v in items]
        return Sexp(XT.ARRAY_DOUBLE, struct.pack(f"<{len(floats)}d", *floats))
    if kinds == {complex}:
        parts: list[float] = []
        for v in items:
            parts += (_NA_REAL, _NA_REAL) if v is None else (v.real, v.imag)
        return Sexp(XT.ARRAY_CPLX, struct.pack(f"<{len(parts)}d", *parts))
    return Sexp(XT.ARRAY_STR, encode_strings(items))
