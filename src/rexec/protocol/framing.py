"""QAP1 framing: the 32-byte ID string, 16-byte headers, a receive buffer, message builders.

Builders return lists of buffer chunks (header first) for ``socket.sendmsg`` or
``b"".join``, so large payloads are never copied just to be framed.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from rexec.protocol.codec import BytesLike, byte_view, coalesce, nbytes
from rexec.protocol.constants import (
    HEADER_LENGTH,
    ID_STRING_LENGTH,
    RESP_ERR,
    RESP_OK,
    Err,
    is_special,
)
from rexec.protocol.errors import ProtocolError
from rexec.protocol.params import Param, encode_params

_HEADER = struct.Struct("<IIII")
_ID_PREFIX = b"Rsrv0103QAP1\r\n\r\n"
_ID_FILLER = b"-\r\n "
_SALT_ALPHABET = frozenset(b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
#: Rserve's default ``maxinbuf`` (256 MiB).
DEFAULT_MAX_PAYLOAD = 256 * 1024 * 1024


# --------------------------------------------------------------------------- ID string


def id_string(
    *, auth: bool = False, plaintext: bool = False, salt: str | None = None, tls: bool = False
) -> bytes:
    """The 32 bytes a server sends first, laid out as Rserve 1.8 does.

    With ``auth`` and a two-character crypt ``salt``: ``ARuc``, ``K<salt> `` and ``ARpt``
    if ``plaintext``; with ``auth`` and no salt, plain text is the only method: ``ARpt``.
    ``tls`` puts ``TLS\\n`` into the first free slot; like Rserve, that is the slot at 28
    holding the terminator when the other three are taken.
    """
    slots: list[bytes] = []
    if auth:
        if salt is None:
            slots.append(b"ARpt")
        else:
            raw = salt.encode("ascii")
            if len(raw) != 2 or not _SALT_ALPHABET.issuperset(raw):
                raise ValueError(f"crypt salt must be two characters of [./0-9A-Za-z]: {salt!r}")
            slots += [b"ARuc", b"K" + raw + b" "]
            if plaintext:
                slots.append(b"ARpt")
    if tls:
        slots.append(b"TLS\n")
    attrs = b"".join(slots)
    if len(slots) == 4:  # Rserve then writes TLS over the final "--\r\n" slot
        return _ID_PREFIX + attrs
    return _ID_PREFIX + attrs + b"-" * (14 - len(attrs)) + b"\r\n"


@dataclass(frozen=True, slots=True)
class IdInfo:
    """What a server's ID string announces (``version`` 103 for ``0103``)."""

    version: int
    protocol: str
    attributes: tuple[str, ...]

    @property
    def salt(self) -> str | None:
        """The crypt salt from a ``K`` attribute, if any."""
        for attr in self.attributes:
            if attr.startswith("K"):
                return attr[1:3]
        return None


def parse_id_string(data: BytesLike) -> IdInfo:
    """Parse the first 32 bytes a server sent.

    Attributes are 4-byte tokens after byte 12, found by skipping filler bytes
    (``-``, CR, LF, space) rather than by slot, so deployr's unaligned ``DV74`` is seen
    too; trailing filler is stripped (``"Kxm"``, ``"TLS"``).
    """
    raw = bytes(data[:ID_STRING_LENGTH])
    if len(raw) < ID_STRING_LENGTH or raw[:4] != b"Rsrv":
        raise ProtocolError(f"not an Rserve ID string: {raw!r}", Err.CONN_BROKEN)
    version = raw[4:8]
    if not version.isdigit():
        raise ProtocolError(f"bad protocol version {version!r}", Err.CONN_BROKEN)
    attributes = []
    pos = 12
    while pos < ID_STRING_LENGTH:
        if raw[pos] in _ID_FILLER:
            pos += 1
            continue
        token = raw[pos : pos + 4].rstrip(_ID_FILLER)
        attributes.append(token.decode("latin-1"))
        pos += 4
    return IdInfo(int(version), raw[8:12].decode("latin-1"), tuple(attributes))


# --------------------------------------------------------------------------- headers


@dataclass(frozen=True, slots=True)
class Header:
    """A message header; ``length`` is the full 64-bit payload length."""

    cmd: int
    length: int
    msg_id: int = 0


def pack_header(cmd: int, length: int, msg_id: int = 0) -> bytes:
    """16 header bytes: low 32 bits of ``length`` at offset 4, high 32 bits at 12."""
    return _HEADER.pack(cmd, length & 0xFFFFFFFF, msg_id, length >> 32)


def unpack_header(data: BytesLike) -> Header:
    """Parse the first 16 bytes of ``data``."""
    if len(data) < HEADER_LENGTH:
        raise ProtocolError(f"truncated header ({len(data)} bytes)", Err.CONN_BROKEN)
    cmd, low, msg_id, high = _HEADER.unpack_from(data)
    return Header(cmd, low | high << 32, msg_id)


# --------------------------------------------------------------------------- receiving


@dataclass(frozen=True, slots=True)
class Frame:
    """A received message. ``payload`` is None when it was discarded as oversized."""

    header: Header
    payload: memoryview | None

    @property
    def oversized(self) -> bool:
        """True when the payload reached ``max_payload`` and was dropped (ERR 0x4b)."""
        return self.payload is None


class FrameBuffer:
    """Collects received bytes and cuts them into frames (sans-I/O, like h11's buffer).

    A payload of ``max_payload`` bytes or more is consumed and dropped as it arrives, so
    a hostile length never makes the buffer allocate it; the frame is still reported
    (``oversized``) so a server can answer ``Err.DATA_OVERFLOW`` and carry on, as
    Rserve does. Special commands (raw payloads) are exempt in Rserve; set
    ``limit_special`` to apply the limit to them too. ``max_payload=None`` means no limit.
    """

    def __init__(
        self, max_payload: int | None = DEFAULT_MAX_PAYLOAD, *, limit_special: bool = False
    ) -> None:
        self.max_payload = max_payload
        self.limit_special = limit_special
        self._frames: deque[Frame] = deque()
        self._head = bytearray()
        self._header: Header | None = None
        self._payload: bytearray | None = None  # None while discarding
        self._wanted = 0  # payload bytes still to receive or discard
        self._preallocated = False

    @property
    def in_header(self) -> bool:
        """1-15 header bytes are pending (Rserve answers ERR 0x42 if the peer stops here)."""
        return bool(self._head)

    @property
    def in_frame(self) -> bool:
        """Part of a frame (header or payload) has arrived but not all of it."""
        return bool(self._head) or self._header is not None

    def feed(self, data: BytesLike) -> None:
        """Add received bytes. Data is copied (at most once), never referenced later."""
        view = byte_view(data)
        pos, end = 0, len(view)
        while pos < end:
            if self._header is None:
                take = min(HEADER_LENGTH - len(self._head), end - pos)
                self._head += view[pos : pos + take]
                pos += take
                if len(self._head) == HEADER_LENGTH:
                    self._start(unpack_header(self._head))
                continue
            take = min(self._wanted, end - pos)
            if self._payload is not None:
                if self._preallocated:
                    filled = len(self._payload) - self._wanted
                    self._payload[filled : filled + take] = view[pos : pos + take]
                else:
                    self._payload += view[pos : pos + take]
            self._wanted -= take
            pos += take
            if self._wanted == 0:
                self._finish()

    def next_frame(self) -> Frame | None:
        """The next complete frame, or None until more data is fed."""
        return self._frames.popleft() if self._frames else None

    def _start(self, header: Header) -> None:
        self._head.clear()
        self._header = header
        self._wanted = header.length
        limited = self.limit_special or not is_special(header.cmd)
        if limited and self.max_payload is not None and header.length >= self.max_payload:
            self._payload = None
        else:
            # Preallocate what the configured limit allows; grow anything else as it comes.
            bound = self.max_payload if self.max_payload is not None else 1 << 20
            self._preallocated = header.length <= bound
            self._payload = bytearray(header.length) if self._preallocated else bytearray()
        if self._wanted == 0:
            self._finish()

    def _finish(self) -> None:
        assert self._header is not None
        payload = None if self._payload is None else memoryview(self._payload)
        self._frames.append(Frame(self._header, payload))
        self._header = None
        self._payload = None


# --------------------------------------------------------------------------- sending


def message(cmd: int, chunks: Iterable[BytesLike] = (), msg_id: int = 0) -> list[BytesLike]:
    """Frame any payload (a request with a raw body, an OOB message, a response).

    Small pieces are joined (header included), large ones are passed through.
    """
    body = list(chunks)
    length = sum(nbytes(c) for c in body)
    return coalesce([pack_header(cmd, length, msg_id), *body])


def response(cmd: int, chunks: Iterable[BytesLike] = (), msg_id: int = 0) -> list[BytesLike]:
    """A response with command word ``cmd`` (``RESP_OK`` or a ``RESP_ERR`` word)."""
    return message(cmd, chunks, msg_id)


def ok(chunks: Iterable[BytesLike] = (), msg_id: int = 0) -> list[BytesLike]:
    """A ``RESP_OK`` response carrying ``chunks`` (empty for voidEval, login, ...)."""
    return message(RESP_OK, chunks, msg_id)


def error(status: int, *, payload: bytes = b"", msg_id: int = 0) -> bytes:
    """A ``RESP_ERR`` response: status in bits 24-30, payload normally empty.

    (``Err.OBJECT_TOO_BIG`` carries 4 bytes, the size that would have been needed.)
    """
    if not 0 <= status <= 0x7F:
        raise ValueError(f"error status {status} does not fit in 7 bits")
    return pack_header(RESP_ERR | status << 24, len(payload), msg_id) + payload


def request(cmd: int, params: Iterable[Param] = (), msg_id: int = 0) -> list[BytesLike]:
    """A request whose payload is a parameter list."""
    chunks, length = encode_params(list(params))
    return coalesce([pack_header(cmd, length, msg_id), *chunks])
