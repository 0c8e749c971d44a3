"""The client's sans-I/O core, shared by the blocking and the asyncio connection.

Every operation is a generator: it yields the request to send (a list of buffer chunks),
receives the reply :class:`Frame`, and returns the operation's result. The two
connection classes only move bytes; all protocol decisions (error statuses, fetching
``geterrmessage()``, login, conversions) live here, so they cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any, Literal

from rexec.client import convert as conv
from rexec.protocol import (
    DT,
    RESP_OK,
    XT,
    Cmd,
    Err,
    Frame,
    FrameBuffer,
    IdInfo,
    Sexp,
    bytes_param,
    decode_params,
    error_status,
    int_param,
    message,
    parse_id_string,
    request,
    sexp_param,
    string_param,
)
from rexec.protocol.codec import BytesLike
from rexec.protocol.constants import ID_STRING_LENGTH, OOB_MSG, OOB_SEND
from rexec.protocol.errors import ProtocolError

Convert = Literal["python", "numpy", "raw"]
Operation = Generator[list[BytesLike], Frame, Any]

#: The evaluation statuses after which R's ``geterrmessage()`` describes the error.
_R_ERROR_STATUSES = frozenset({Err.R_ERROR, Err.SER_ERROR})
_STATUS_TEXT = {
    Err.PARSE_NULL: "parse error",
    Err.PARSE_INCOMPLETE: "incomplete R code",
    Err.PARSE_ERROR: "R code does not parse",
    Err.PARSE_EOF: "unexpected end of R code",
}


class ClientError(Exception):
    """The connection failed or the server refused a command (not an R error)."""


class ConnectionLost(ClientError):
    """The connection broke (closed by the server, reset, timed out); it cannot be reused."""


class SessionGone(ClientError):
    """attachSession found no parked session with that key (it ended, or timed out)."""


class RError(ClientError):
    """R reported an error: ``status`` is the QAP status, ``message`` R's error text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __repr__(self) -> str:
        return f"RError({self.status}, {self.message!r})"


class Core:
    """Bytes in, frames out: the server's 32-byte greeting, then reply frames."""

    def __init__(self) -> None:
        self._greeting = bytearray()
        self.info: IdInfo | None = None
        self._frames = FrameBuffer(None)

    def receive(self, data: BytesLike) -> None:
        view = memoryview(data)
        if self.info is None:
            take = ID_STRING_LENGTH - len(self._greeting)
            self._greeting += view[:take]
            view = view[take:]
            if len(self._greeting) == ID_STRING_LENGTH:
                self.info = parse_id_string(self._greeting)
        if len(view):
            self._frames.feed(view)

    def next_frame(self) -> Frame | None:
        return self._frames.next_frame()

    @property
    def needs_login(self) -> bool:
        assert self.info is not None
        return any(a in ("ARpt", "ARuc") for a in self.info.attributes)


# ============================================================================ replies


def _payload(frame: Frame) -> memoryview:
    if frame.header.cmd != RESP_OK:
        raise ClientError(f"unexpected reply {frame.header.cmd:#x}")
    return frame.payload if frame.payload is not None else memoryview(b"")


def _status(frame: Frame) -> int | None:
    """None for RESP_OK, the error status otherwise."""
    return None if frame.header.cmd == RESP_OK else error_status(frame.header.cmd)


def _sexp(frame: Frame) -> Sexp:
    params = decode_params(_payload(frame))
    if not params or params[0].dt != DT.SEXP:
        return Sexp(XT.NULL)
    return params[0].value


def converted(s: Sexp, convert: Convert) -> Any:
    if convert == "raw":
        return s
    if convert == "numpy":
        return conv.to_numpy(s)
    if convert == "python":
        return conv.to_python(s)
    raise ValueError(f"convert must be 'python', 'numpy' or 'raw', not {convert!r}")


def _fail(status: int) -> Operation:
    """Raise the error for ``status``, asking R for its message when there is one."""
    if status in _R_ERROR_STATUSES:
        frame = yield request(Cmd.EVAL, [string_param("geterrmessage()")])
        text = ""
        if _status(frame) is None:
            value = conv.to_python(_sexp(frame))
            text = value.strip() if isinstance(value, str) else ""
        raise RError(status, text or f"R error (status {status})")
    if status in _STATUS_TEXT:
        raise RError(status, _STATUS_TEXT[Err(status)])
    name = Err(status).name if status in Err._value2member_map_ else "unknown"
    raise ClientError(f"server refused the command: status {status:#x} ({name})")


def _command(chunks: list[BytesLike]) -> Operation:
    """Send one request; return the reply frame, raising on an error status."""
    frame = yield chunks
    status = _status(frame)
    if status is not None:
        yield from _fail(status)
    return frame


# ============================================================================ operations


def _code(code: str | Sexp) -> Any:
    return sexp_param(code) if isinstance(code, Sexp) else string_param(code)


def eval_op(code: str | Sexp, convert: Convert) -> Operation:
    frame = yield from _command(request(Cmd.EVAL, [_code(code)]))
    return converted(_sexp(frame), convert)


def void_eval_op(code: str | Sexp) -> Operation:
    yield from _command(request(Cmd.VOID_EVAL, [_code(code)]))


def assign_op(name: str, value: Any) -> Operation:
    yield from _command(
        request(Cmd.SET_SEXP, [string_param(name), sexp_param(conv.to_sexp(value))])
    )


def call_op(
    fn_name: str, args: tuple[Any, ...], kwargs: dict[str, Any], convert: Convert
) -> Operation:
    items = [(Sexp(XT.SYMNAME, fn_name), Sexp(XT.NULL))]
    items += [(conv.to_sexp(a), Sexp(XT.NULL)) for a in args]
    items += [(conv.to_sexp(v), Sexp(XT.SYMNAME, k)) for k, v in kwargs.items()]
    call = Sexp(XT.LANG_TAG, items) if kwargs else Sexp(XT.LANG_NOTAG, [v for v, _ in items])
    return (yield from eval_op(call, convert))


def ser_eval_op(data: BytesLike) -> Operation:
    frame = yield from _command(message(Cmd.SER_EVAL, [data]))
    return bytes(_payload(frame))


def login_op(user: str, password: str) -> Operation:
    frame = yield request(Cmd.LOGIN, [string_param(f"{user}\n{password}")])
    status = _status(frame)
    if status is not None:
        raise ClientError(
            "login failed" if status == Err.AUTH_FAILED else f"login refused: status {status:#x}"
        )


def pid_op() -> Operation:
    """The R shell's process id (needed to cancel its evaluations)."""
    frame = yield from _command(request(Cmd.EVAL, [string_param("Sys.getpid()")]))
    value = conv.to_python(_sexp(frame))
    return int(value) if isinstance(value, int | float) else None


def cancel_op(pid: int) -> Operation:
    """True when an evaluation was interrupted, False when the shell was not evaluating."""
    frame = yield request(Cmd.CANCEL, [int_param(pid)])
    status = _status(frame)
    if status == Err.INV_PAR:
        return False
    if status is not None:
        raise ClientError(f"cancel refused: status {status:#x} (not supported by this server?)")
    return True


# rexec's parked sessions: detachSession with a timeout, attachSession on the main port.


def park_op(timeout: float) -> Operation:
    """Park the session (its connection then closes); returns the 32-byte key that
    resumes it, on any connection to the same compute node, within ``timeout`` s."""
    frame = yield request(Cmd.DETACH_SESSION, [int_param(max(1, int(timeout)))])
    status = _status(frame)
    if status is not None:
        raise ClientError(f"park refused: status {status:#x}")
    params = decode_params(_payload(frame))
    if len(params) != 2 or params[1].dt != DT.BYTESTREAM:
        raise ClientError("park: the reply carries no key (not a rexec compute node?)")
    return bytes(params[1].value)


def end_session_op() -> Operation:
    """End a resumable session for good (detachSession with a timeout of 0): closing its
    connection would only park it again."""
    frame = yield request(Cmd.DETACH_SESSION, [int_param(0)])
    status = _status(frame)
    if status is not None:
        raise ClientError(f"ending the session refused: status {status:#x}")


def attach_op(key: bytes, login: tuple[str, str] | None = None) -> Operation:
    """Resume a parked session on this fresh connection; with ``login``, the login and
    the attachSession go out together (one round trip: the server answers in order)."""
    attach = request(Cmd.ATTACH_SESSION, [bytes_param(key)])
    if login is not None:
        frame = yield [*request(Cmd.LOGIN, [string_param(f"{login[0]}\n{login[1]}")]), *attach]
        status = _status(frame)
        if status is not None:
            raise ClientError(
                "login failed" if status == Err.AUTH_FAILED else f"login refused: {status:#x}"
            )
        frame = yield []
    else:
        frame = yield attach
    status = _status(frame)
    if status is not None:
        raise SessionGone(f"no parked session with that key ({_message(frame) or hex(status)})")


# ============================================================================ out-of-band


def oob_kind(frame: Frame) -> int | None:
    """OOB_SEND or OOB_MSG for an out-of-band frame (R's self.oobSend/oobMessage, or
    console output with ``console.oob``), None for a reply."""
    kind = frame.header.cmd & 0x0FFFF000
    return kind if kind in (OOB_SEND, OOB_MSG) else None


def oob_value(frame: Frame) -> tuple[Sexp, int]:
    params = decode_params(frame.payload or b"")
    value = params[0].value if params and params[0].dt == DT.SEXP else Sexp(XT.NULL)
    return value, frame.header.cmd & 0xFFF


def oob_answer(frame: Frame, answer: Any) -> list[BytesLike]:
    """The reply to an OOB_MSG: ``answer`` (an Sexp, or a value ``to_sexp`` takes)."""
    value = answer if isinstance(answer, Sexp) else conv.to_sexp(answer)
    return message(frame.header.cmd, [sexp_param(value)])


# rexec's named pools (rexec.compute.supervisor.pools); Rserve answers ERR_inv_cmd.


def _pool_command(cmd: int, text: str, data: BytesLike | None = None) -> Operation:
    params = [string_param(text)] if data is None else [string_param(text), bytes_param(data)]
    frame = yield request(cmd, params)
    status = _status(frame)
    if status is not None:
        reason = _message(frame)
        if status == Err.INV_CMD:
            reason = "not a rexec compute node, or not before the first request"
        raise ClientError(f"pool command refused (status {status:#x}): {reason}")
    return frame


def _message(frame: Frame) -> str:
    try:
        params = decode_params(frame.payload or b"")
    except ProtocolError:
        return ""
    if params and params[0].dt == DT.STRING:
        return bytes(params[0].value).split(b"\0")[0].decode("utf-8", "replace")
    return ""


def use_pool_op(name: str) -> Operation:
    """Take this connection's shell from the named pool (before any other request)."""
    yield from _pool_command(Cmd.USE_POOL, name)


def define_pool_op(
    name: str, init: str, initial: int, most: int, data: BytesLike | None = None
) -> Operation:
    """``data``: bytes the pool's template finds in the file ``.rexec_pool_data`` names
    (in R) while ``init`` runs, e.g. a snapshot to restore."""
    spec = {"name": name, "init": init, "initial": initial, "max": most}
    yield from _pool_command(Cmd.DEFINE_POOL, json.dumps(spec), data)


def remove_pool_op(name: str) -> Operation:
    yield from _pool_command(Cmd.REMOVE_POOL, name)


def pool_status_op() -> Operation:
    frame = yield from _pool_command(Cmd.POOL_STATUS, "")
    return json.loads(_message(frame))
