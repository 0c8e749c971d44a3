"""One QAP1 session: the request loop a shell runs on its client socket.

Runs inside the shell process, blocking: read a 16-byte header, read the payload
straight into one buffer, dispatch, send the reply with one ``sendmsg`` where possible.
R work goes through :class:`rexec.rshell.shell.RShell`; bytes through :mod:`rexec.protocol`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from rexec.compute.channel import Channel
from rexec.compute.shell import encoding
from rexec.compute.shell.console import ConsoleStream
from rexec.compute.shell.detach import Detached
from rexec.compute.shell.files import SessionFiles
from rexec.compute.shell.limits import Limits
from rexec.compute.shell.wire import Closed, IdleTimeout, TruncatedHeader, Wire
from rexec.config import Config
from rexec.protocol import framing
from rexec.protocol.codec import REPLY_MARGIN, encode_sexp, length_header
from rexec.protocol.constants import (
    DT,
    OOB_MSG,
    OOB_SEND,
    XT,
    Cmd,
    Err,
    error_status,
)
from rexec.protocol.errors import ProtocolError
from rexec.protocol.params import (
    Param,
    bytes_param,
    decode_params,
    encode_params,
    int_param,
    plain_vector_assignment,
    sexp_param,
    string_param,
)
from rexec.protocol.sexp import Sexp
from rexec.rshell import embedded
from rexec.rshell.shell import RError, RShell

log = logging.getLogger("rexec.session")

#: setSEXP payloads above this size holding one plain numeric vector are read straight
#: into the new R vector (no intermediate buffer, no second copy).
_DIRECT_ASSIGN = 1 << 20
_SERIALIZED = frozenset({Cmd.SER_EVAL, Cmd.SER_EEVAL, Cmd.SER_ASSIGN})


class Ended(Closed):
    """The session ends for good (a park that ran out, an explicit end): never reparked."""


class Resumed(Exception):
    """Another connection took the session over between requests."""


class Session:
    def __init__(self, sock: socket.socket, shell: RShell, channel: Channel, config: Config):
        self.sock = sock
        self.wire = Wire(sock)
        self.shell = shell
        self.channel = channel
        self.config = config
        self.auth_required = config["auth.required"]
        self.authenticated = False
        self.maxinbuf = config["limits.maxinbuf"]
        self.maxsendbuf = config["limits.maxsendbuf"]
        self.limits = Limits(config, shell)
        self.log_commands = config["log.commands"]
        self.name = ""  # the session id the server gave this connection
        self.console = ConsoleStream(lambda value: self._out_of_band(value, 0, False))
        #: Parked once (rexec): attachSession may take it over, a lost connection parks it.
        self.resumable = False
        self.park_seconds = 0.0
        self.peer = ""  # the client's address, as the supervisor accepted it
        self.draining = False
        self.outcome = "closed-by-client"
        self.waiting = False
        self.files = SessionFiles(os.getcwd())
        self.wire_encoding = encoding.select(shell, config["session.encoding"].encode())
        self._cmd = 0
        self._handlers: dict[int, Callable[[memoryview], list[Any]]] = {
            Cmd.LOGIN: self.login,
            Cmd.EVAL: self.eval,
            Cmd.VOID_EVAL: self.void_eval,
            Cmd.SET_SEXP: self.set_sexp,
            Cmd.ASSIGN_SEXP: self.assign_sexp,
            Cmd.SER_EVAL: self.ser_eval,
            Cmd.SER_EEVAL: self.ser_eeval,
            Cmd.SER_ASSIGN: self.ser_assign,
            Cmd.SHUTDOWN: self.shutdown,
            Cmd.SET_BUFFER_SIZE: self.set_buffer_size,
            Cmd.SET_ENCODING: self.set_encoding,
            Cmd.DETACH_SESSION: self.detach_session,
            Cmd.DETACHED_VOID_EVAL: self.detached_void_eval,
            Cmd.OPEN_FILE: self.open_file,
            Cmd.CREATE_FILE: self.create_file,
            Cmd.READ_FILE: self.read_file,
            Cmd.WRITE_FILE: self.write_file,
            Cmd.CLOSE_FILE: self.close_file,
            Cmd.REMOVE_FILE: self.remove_file,
            Cmd.CANCEL: self.cancel,
            Cmd.SWITCH: self.switch,
            Cmd.CTRL_EVAL: self.control,
            Cmd.CTRL_SOURCE: self.control,
            Cmd.CTRL_SHUTDOWN: self.control,
        }

    def attach(self, sock: socket.socket) -> None:
        """Serve ``sock`` (a session may be built before its connection arrives)."""
        self.sock = sock
        self.wire.reset(sock)

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        """Serve until the client leaves (the supervisor greeted it and checked its login)."""
        self.sock.settimeout(None)
        self.limits.apply()
        if self.config["session.oob"]:
            self.shell.set_oob_handler(self._out_of_band)
        try:
            while True:
                try:
                    self.step()
                except Resumed:
                    continue
                except Closed as exc:  # TruncatedHeader and IdleTimeout too
                    if not self._repark(exc):
                        raise
        except TruncatedHeader:
            self.outcome = "truncated-header"
            with contextlib.suppress(Closed):
                self._send([framing.error(Err.CONN_BROKEN)])
        except IdleTimeout:
            self.outcome = "idle-timeout"
            log.warning(
                "session %s closed: idle for %ss (limits.idle_timeout)",
                self.name,
                self.config["limits.idle_timeout"],
            )
        except Closed:
            pass
        finally:
            self.files.close()
            self.sock.close()

    def drain(self, signum: int, frame: object) -> None:
        """SIGTERM (the server is stopping): finish the running request, then close;
        between requests, close at once."""
        self.draining = True
        if self.waiting:
            raise Closed

    def step(self) -> None:
        self.waiting = True  # between requests: a SIGTERM may close at once
        if self.draining:
            raise Closed
        self.limits.waiting()
        if self.resumable:
            self._between_requests()
        header = self.wire.read_header()
        self.waiting = False
        cmd, length = header.cmd, header.length
        debug = log.isEnabledFor(logging.DEBUG)
        started = time.perf_counter() if debug or self.log_commands else 0.0
        if length >= self.maxinbuf:  # special commands too (Rserve exempts them)
            self.wire.discard(length)
            self._send([framing.error(Err.DATA_OVERFLOW)])
            log.warning("request of %d bytes refused (limits.maxinbuf)", length)
            return
        if self.auth_required and not self.authenticated and cmd not in (Cmd.LOGIN, Cmd.SWITCH):
            self.wire.discard(length)
            self._send([framing.error(Err.AUTH_FAILED)])
            raise Closed
        self._cmd = cmd
        shell = self.shell
        streaming = self.config["session.console_oob"] or shell.option_true(b"rexec.console.oob")
        embedded.console_hook = self.console.write if streaming else None
        shell.begin_command()
        self.limits.start_request()
        try:
            if cmd == Cmd.SET_SEXP and length > _DIRECT_ASSIGN and self._direct_assign(length):
                reply = framing.ok()
            elif cmd in _SERIALIZED and length > _DIRECT_ASSIGN:
                raw, memory = shell.new_raw(length)  # R's serialize() bytes, received in place
                self.wire.read_into(memory)
                reply = self._handlers[cmd](raw)
            else:
                reply = self._handlers.get(cmd, self.invalid)(self.wire.read_payload(length))
        except ProtocolError as exc:
            reply = [framing.error(exc.status)]
        except RError as exc:
            reply = [framing.error(exc.status & 0x7F)]
        finally:
            shell.end_command()
            embedded.console_hook = None
        try:
            if streaming:
                self.console.flush()
            self._send(reply)
        finally:
            shell.release()
        if shell.interrupted in ("timeout", "cpu"):
            log.warning(
                "session %s: request 0x%x interrupted: %s limit",
                self.name,
                cmd,
                "wall-clock" if shell.interrupted == "timeout" else "CPU",
            )
            if shell.interrupted == "cpu":
                self.outcome = "cpu-limit"
                raise Closed  # the CPU budget is spent: this shell is done
        if self.draining:
            self.outcome = "server-stopping"
            raise Closed
        if self.log_commands:
            log.info(
                "session=%s event=command cmd=0x%x bytes=%d outcome=%s duration=%.6fs",
                self.name,
                cmd,
                length,
                _outcome(reply),
                time.perf_counter() - started,
            )
        elif debug:
            log.debug("cmd 0x%x %d bytes in %.6fs", cmd, length, time.perf_counter() - started)

    # ------------------------------------------------------------------ I/O
    def _send(self, chunks: list[Any]) -> None:
        self.wire.send(chunks)

    def _direct_assign(self, length: int) -> bool:
        """setSEXP of one plain numeric vector: receive it into the R vector itself."""
        head = self.wire.peek(64)
        prefix = plain_vector_assignment(head)
        if prefix is None or prefix.offset + prefix.body_length != length:
            return False
        self.wire.discard(prefix.offset)
        vector, memory = self.shell.new_vector(prefix.xt, prefix.body_length)
        self.wire.read_into(memory)
        self.shell.assign(self.shell.string(self._text(prefix.name)), vector)
        return True

    def _out_of_band(self, value: Any, code: int, wait: bool) -> Any:
        """Send an OOB_SEND/OOB_MSG frame from R code; for OOB_MSG read the client's answer."""
        if self.wire_encoding != "utf-8":
            value = encoding.recode(value, "utf-8", self.wire_encoding)
        chunks, _ = encode_params([sexp_param(value)])
        self._send(framing.message((OOB_MSG if wait else OOB_SEND) | (code & 0xFFF), chunks))
        if not wait:
            return None
        header = self.wire.read_header()
        params = self._params(self.wire.read_payload(header.length))
        if not params or params[0].dt not in (DT.SEXP, DT.STRING):
            raise ProtocolError("an OOB answer carries an R object or a string", Err.INV_PAR)
        answer = params[0].value
        if params[0].dt == DT.STRING:
            answer = Sexp(XT.ARRAY_STR, self._text(answer) + b"\x00")
        elif self.wire_encoding != "utf-8":
            answer = encoding.recode(answer, self.wire_encoding, "utf-8")
        return answer

    # ------------------------------------------------------------------ helpers
    def _params(self, payload: memoryview) -> list[Param]:
        return decode_params(payload)

    def _result(self, x: Any) -> list[Any]:
        value = self.shell.to_sexp(x)
        if self.wire_encoding != "utf-8":
            value = encoding.recode(value, "utf-8", self.wire_encoding)
        # Rserve's header choice, and its send buffer's bytes in a raw vector's padding
        chunks, length = encode_sexp(value, margin=REPLY_MARGIN, sendbuf=self.shell.sendbuf)
        header = length_header(DT.SEXP, length)
        return self._within_maxsendbuf([header, *chunks], len(header) + length)

    def _within_maxsendbuf(self, chunks: list[Any], length: int) -> list[Any]:
        if self.maxsendbuf and length > self.maxsendbuf:
            log.warning(
                "session %s: reply of %d bytes refused (limits.maxsendbuf)", self.name, length
            )
            size = min(length, 0xFFFFFFFF).to_bytes(4, "little")
            return [framing.error(Err.OBJECT_TOO_BIG, payload=size)]
        return framing.ok(chunks)

    def _text(self, text: bytes) -> bytes:
        """Client text as it came: the shell marks it with the session's encoding."""
        return text

    def _object(self, value: Any) -> Any:
        return self.shell.from_sexp(value)  # strings marked with the session's encoding

    def _evaluate(self, payload: memoryview) -> Any:
        params = self._params(payload)
        if not params or params[0].dt not in (DT.STRING, DT.SEXP):
            raise ProtocolError("eval needs a string or an R object", Err.INV_PAR)
        if params[0].dt == DT.STRING:
            return self.shell.eval_text(self._text(params[0].value))
        return self.shell.hold(self.shell.try_eval(self._object(params[0].value)))

    # ------------------------------------------------------------------ commands
    def eval(self, payload: memoryview) -> list[Any]:
        return self._result(self._evaluate(payload))

    def void_eval(self, payload: memoryview) -> list[Any]:
        self._evaluate(payload)
        return framing.ok()

    def _assign(self, payload: memoryview, parse_name: bool) -> list[Any]:
        params = self._params(payload)
        if len(params) < 2 or params[0].dt != DT.STRING:
            raise ProtocolError("assignment needs a name and a value", Err.INV_PAR)
        name_text = self._text(params[0].value)
        if parse_name:
            exprs = self.shell.parse(name_text)
            if not len(exprs_items := self._expression_items(exprs)):
                raise ProtocolError("empty name", Err.INV_PAR)
            name = exprs_items[0]
        else:
            name = self.shell.string(name_text)
        value = params[1]
        if value.dt == DT.STRING:
            r_value = self.shell.string(self._text(value.value))
        elif value.dt == DT.SEXP:
            r_value = self._object(value.value)
        else:
            raise ProtocolError("the value must be a string or an R object", Err.INV_PAR)
        self.shell.assign(name, r_value)
        return framing.ok()

    def _expression_items(self, exprs: Any) -> list[Any]:
        from rexec.rshell.embedded import rlib

        return [rlib.VECTOR_ELT(exprs, i) for i in range(rlib.Rf_xlength(exprs))]

    def set_sexp(self, payload: memoryview) -> list[Any]:
        return self._assign(payload, parse_name=False)

    def assign_sexp(self, payload: memoryview) -> list[Any]:
        return self._assign(payload, parse_name=True)

    def ser_eval(self, payload: memoryview) -> list[Any]:
        data = self.shell.ser_eval(payload, rounds=1)
        return self._within_maxsendbuf([data], len(data))

    def ser_eeval(self, payload: memoryview) -> list[Any]:
        data = self.shell.ser_eval(payload, rounds=2)
        return self._within_maxsendbuf([data], len(data))

    def ser_assign(self, payload: memoryview) -> list[Any]:
        self.shell.ser_assign(payload)
        return framing.ok()

    def login(self, payload: memoryview) -> list[Any]:
        params = self._params(payload)
        if not params or params[0].dt != DT.STRING:
            raise ProtocolError("login needs user and password", Err.INV_PAR)
        if self.authenticated:  # a second login is an invalid command in Rserve
            return [framing.error(Err.INV_CMD)]
        user, _, rest = bytes(params[0].value).partition(b"\n")
        password = rest.split(b"\n")[0].split(b"\r")[0]
        answer = self.channel.request(
            {
                "op": "login",
                "user": user.decode("utf-8", "replace"),
                "password": password.decode("utf-8", "replace"),
            }
        )
        if answer.get("ok"):
            self.authenticated = True
            return framing.ok()
        if self.auth_required:
            self._send([framing.error(Err.AUTH_FAILED)])
            raise Closed
        return [framing.error(Err.INV_CMD)]

    def shutdown(self, payload: memoryview) -> list[Any]:
        """The supervisor decides (``server.shutdown``, and who it saw log in)."""
        if not self.channel.request({"op": "shutdown"}).get("ok"):
            log.warning("shutdown refused (server.shutdown = %s)", self.config["server.shutdown"])
            return [framing.error(Err.DISABLED)]
        self._send(framing.ok())
        raise Closed

    # ------------------------------------------------------------------ files
    def _file_access(self) -> None:
        if not self.config["session.fileio"]:
            raise ProtocolError("file commands are disabled (session.fileio)", Err.ACCESS_DENIED)

    def _name(self, payload: memoryview) -> bytes:
        params = self._params(payload)
        if not params or params[0].dt != DT.STRING:
            raise ProtocolError("a file name is needed", Err.INV_PAR)
        return params[0].value

    def open_file(self, payload: memoryview) -> list[Any]:
        self._file_access()
        self.files.open(self._name(payload), create=False)
        return framing.ok()

    def create_file(self, payload: memoryview) -> list[Any]:
        self._file_access()
        self.files.open(self._name(payload), create=True)
        return framing.ok()

    def read_file(self, payload: memoryview) -> list[Any]:
        self._file_access()
        params = self._params(payload)
        size = params[0].value if len(params) == 1 and params[0].dt == DT.INT else None
        data = self.files.read(size)
        return framing.ok([data] if data else [])

    def write_file(self, payload: memoryview) -> list[Any]:
        self._file_access()
        params = self._params(payload)
        self.files._handle()  # Rserve checks for an open file before the parameter
        if not params or params[0].dt != DT.BYTESTREAM:
            raise ProtocolError("writeFile needs a byte stream", Err.INV_PAR)
        self.files.write(params[0].value)
        return framing.ok()

    def close_file(self, payload: memoryview) -> list[Any]:
        self._file_access()
        self.files.close()
        return framing.ok()

    def remove_file(self, payload: memoryview) -> list[Any]:
        self._file_access()
        self.files.remove(self._name(payload))
        return framing.ok()

    # ------------------------------------------------------------------ session settings
    def set_buffer_size(self, payload: memoryview) -> list[Any]:
        """Accepted and ignored: replies are streamed, there is no send buffer to size."""
        params = self._params(payload)
        if not params or params[0].dt != DT.INT:
            raise ProtocolError("setBufferSize needs an int", Err.INV_PAR)
        return framing.ok()

    def set_encoding(self, payload: memoryview) -> list[Any]:
        name = bytes(self._name(payload))
        if name not in encoding.ENCODINGS:
            raise ProtocolError(f"unknown encoding {name!r}", Err.INV_PAR)
        self.wire_encoding = encoding.select(self.shell, name)
        return framing.ok()

    # ------------------------------------------------------------------ detaching
    def _detach(self) -> Detached:
        """Ask the supervisor (a detached session counts against ``session.detach_max``,
        and needs a login when authentication is on), then detach."""
        if not self.channel.request({"op": "detach"}).get("ok"):
            raise ProtocolError("no detached session allowed now", Err.DETACH_FAILED)
        detached = Detached(self.config["server.host"], self.peer)
        chunks, _ = encode_params([int_param(detached.port), bytes_param(detached.key)])
        self._send(framing.ok(chunks))
        self.sock.close()
        log.info("session detached; re-attach on port %d", detached.port)
        return detached

    def _reattach(self, detached: Detached) -> None:
        self.limits.pause()
        sock = detached.wait(self.config["session.detach_timeout"])
        if sock is None:
            raise Closed
        self.sock = sock
        self.wire.reset(sock)
        log.info("session re-attached")

    def detach_session(self, payload: memoryview) -> list[Any]:
        params = self._params(payload)
        if params and params[0].dt == DT.INT:  # rexec: park for attachSession
            return self._park(float(params[0].value))
        self._reattach(self._detach())
        return framing.ok()

    def _park(self, seconds: float) -> list[Any]:
        """rexec's parked session (detachSession with a timeout in seconds; 0 ends the
        session). The reply carries port 0 and a key the supervisor made; the
        connection closes and the session waits, within min(timeout,
        ``session.park_timeout``), for the supervisor to hand it the connection of
        whoever sends attachSession with that key to the server's own port (through
        TLS and its login, from any address); that connection's first reply is an
        empty RESP_OK, as after Rserve's re-attach.

        From then on the session is *resumable*: the key stays good while it is
        attached, so attachSession from another connection takes it over between
        requests (the current connection is closed), and a connection that goes away
        (its client died, or left) parks the session again instead of ending it."""
        if seconds <= 0:
            self.resumable = False
            self._send(framing.ok())
            raise Ended
        reply = self.channel.request({"op": "park"})
        if not reply.get("ok"):
            raise ProtocolError("this session may not be parked", Err.DETACH_FAILED)
        key = bytes.fromhex(reply["key"])
        chunks, _ = encode_params([int_param(0), bytes_param(key)])
        self._send(framing.ok(chunks))
        self.sock.close()
        self.park_seconds = max(0.0, min(seconds, self.config["session.park_timeout"]))
        self.resumable = True
        self._wait_for_resume()
        return framing.ok()

    def _wait_for_resume(self) -> None:
        """Parked: wait for the supervisor's ``resume`` (or end the session)."""
        self.limits.pause()
        log.info("session parked for up to %.0fs", self.park_seconds)
        ready, _, _ = select.select([self.channel.sock], [], [], self.park_seconds)
        if not ready or not self._take_over():
            log.info("parked session not resumed within %.0fs; ending it", self.park_seconds)
            raise Ended

    def _take_over(self) -> bool:
        """Serve the connection a ``resume`` message brings (False: none came)."""
        message, fds = self.channel.receive()
        if message is None or message.get("op") != "resume" or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            return False
        self.peer, self.name = message["peer"], message["session"]
        self.attach(socket.socket(fileno=fds[0]))
        self.sock.settimeout(None)
        log.info("session resumed")
        return True

    def _between_requests(self) -> None:
        """A resumable session waits for its client's next request or for a takeover
        (attachSession from another connection, passed on by the supervisor): then the
        old connection closes and the new one gets attachSession's RESP_OK."""
        if self.wire.buffered:
            return
        ready, _, _ = select.select([self.sock, self.channel.sock], [], [])
        if self.channel.sock in ready:
            old = self.sock
            if not self._take_over():
                raise Ended  # the supervisor went away
            with contextlib.suppress(OSError):
                old.close()
            self._send(framing.ok())
            raise Resumed

    def _repark(self, reason: Exception) -> bool:
        """A resumable session's connection went away: wait to be resumed again (its
        key still good, the supervisor's record unchanged); False when it is to end."""
        if not self.resumable or self.draining or isinstance(reason, Ended):
            return False
        with contextlib.suppress(OSError):
            self.sock.close()
        log.info("session %s: its connection went away (%s)", self.name, type(reason).__name__)
        self._wait_for_resume()
        self._send(framing.ok())
        return True

    def detached_void_eval(self, payload: memoryview) -> list[Any]:
        params = self._params(payload)
        if not params or params[0].dt != DT.STRING:
            raise ProtocolError("detachedVoidEval needs a string", Err.INV_PAR)
        code = self._text(params[0].value)
        self.shell.parse(code)  # a parse error is answered before detaching, as in Rserve
        self.shell.release()
        try:
            detached = self._detach()
        except ProtocolError as exc:
            return [framing.error(exc.status)]
        try:
            self.shell.eval_text(code)
            reply = framing.ok()
        except RError as exc:
            reply = [framing.error(exc.status & 0x7F)]
        self._reattach(detached)
        return reply

    def switch(self, payload: memoryview) -> list[Any]:
        """CMD_switch "TLS" is answered by the supervisor, which terminates TLS, before the
        connection reaches a shell (RSclient switches right after the ID string); here,
        after other commands, it is refused."""
        params = self._params(payload)
        if not params or params[0].dt != DT.STRING:
            raise ProtocolError("switch needs a protocol name", Err.INV_PAR)
        if bytes(params[0].value) != b"TLS":
            return [framing.error(Err.UNSUPPORTED_CMD)]
        return [framing.error(Err.DISABLED)]

    # ------------------------------------------------------------------ control
    def control(self, payload: memoryview) -> list[Any]:
        """ctrlEval/ctrlSource/ctrlShutdown: server-wide, for authenticated users only."""
        if not self.config["control.enabled"]:
            return [framing.error(Err.UNSUPPORTED_CMD)]  # as Rserve 1.8
        if not self.authenticated:
            return [framing.error(Err.ACCESS_DENIED)]
        if self._cmd == Cmd.CTRL_SHUTDOWN:
            answer = self.channel.request({"op": "control", "kind": "shutdown", "text": ""})
            if not answer.get("ok"):
                return [framing.error(Err.ACCESS_DENIED)]
            self._send(framing.ok())
            raise Closed
        text = bytes(self._name(payload)).decode(self.wire_encoding, "replace")
        kind = "eval" if self._cmd == Cmd.CTRL_EVAL else "source"
        answer = self.channel.request({"op": "control", "kind": kind, "text": text})
        if answer.get("denied"):
            return [framing.error(Err.ACCESS_DENIED)]
        return framing.ok() if answer.get("ok") else [framing.error(Err.R_ERROR)]

    def cancel(self, payload: memoryview) -> list[Any]:
        """deployr-rserve's CMD_cancel: interrupt the evaluation running in shell ``pid``."""
        params = self._params(payload)
        if not params or params[0].dt != DT.INT:
            raise ProtocolError("cancel needs the pid of an R shell", Err.INV_PAR)
        answer = self.channel.request({"op": "cancel", "pid": params[0].value})
        return framing.ok() if answer.get("ok") else [framing.error(Err.INV_PAR)]

    def invalid(self, payload: memoryview) -> list[Any]:
        return [framing.error(Err.INV_CMD)]


def _outcome(reply: list[Any]) -> str:
    """'ok' or 'error 0x..' for a reply about to be (or just) sent, for the log."""
    word = int.from_bytes(bytes(memoryview(reply[0])[:4]), "little") if reply else 0
    return "ok" if word == framing.RESP_OK else f"error 0x{error_status(word):x}"


#: The session a shell prepared before it said ready (see :func:`warm_up`).
_prepared: list[Session] = []


def serve(
    sock: socket.socket, shell: RShell, channel: Channel, config: Config, message: dict[str, Any]
) -> None:
    """Worker handler: serve one client connection until it closes."""
    shell.enable_interrupts()
    session = _prepared.pop() if _prepared else Session(sock, shell, channel, config)
    session.attach(sock)
    session.name = str(message.get("session", ""))
    session.peer = str(message.get("peer", ""))
    session.authenticated = message.get("user") is not None
    signal.signal(signal.SIGTERM, session.drain)
    started = time.monotonic()
    log.info("session=%s shell=%d event=started", session.name, os.getpid())
    try:
        session.run()
    finally:
        log.info(
            "session=%s shell=%d event=ended outcome=%s duration=%.3fs",
            session.name,
            os.getpid(),
            session.outcome,
            time.monotonic() - started,
        )


def warm_up(shell: RShell, config: Config, channel: Channel | None = None) -> None:
    """Before the shell is offered: serve one eval request end to end over a socket pair
    (with no limits armed), format a log line, and build the session the connection will
    use — so the first real request pays neither for cold code nor, in a forked shell, for
    copying the pages that code touches."""
    quiet = Config(
        {
            **config.to_dict(),
            "limits.idle_timeout": 0,
            "limits.eval_timeout": 0,
            "log.commands": False,
        }
    )
    ours, theirs = socket.socketpair()
    try:
        rehearsal = Session(ours, shell, None, quiet)  # type: ignore[arg-type]
        rehearsal.authenticated = True  # a rehearsal, not a client: no login to check
        theirs.sendall(b"".join(bytes(c) for c in framing.request(Cmd.EVAL, [_ONE])))
        rehearsal.step()
        theirs.recv(1 << 16)
    finally:
        ours.close()
        theirs.close()
    record = log.makeRecord(log.name, logging.INFO, __file__, 0, "warm %s", ("up",), None)
    for handler in logging.getLogger().handlers:
        handler.format(record)
    if channel is not None:
        _prepared.append(Session(None, shell, channel, config))  # type: ignore[arg-type]


_ONE = string_param("1")


serve.warm_up = warm_up  # type: ignore[attr-defined]
