"""One embedded R session: parse, evaluate, assign, (un)serialize — as Rserve does.

Every call into R that can raise an R error runs under ``R_tryEval`` (which catches
the error in C), never as a bare C call from Python: an R error ``longjmp``-ing
through Python frames would corrupt the interpreter. Error replies carry Rserve's
statuses, and R's own error handler runs, so ``geterrmessage()`` stays meaningful.
"""

from __future__ import annotations

import ctypes
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from rexec.protocol.codec import SendBuffer
from rexec.protocol.constants import Err
from rexec.protocol.sexp import Sexp
from rexec.rshell import capi, embedded
from rexec.rshell.embedded import ffi, rlib


class RError(Exception):
    """An R-level failure; ``status`` is the Rserve error status to answer with."""

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message or f"R error (status {status})")
        self.status = status


@dataclass(frozen=True, slots=True)
class Startup:
    """Code every session starts from (run once in the template, or in each spawned shell)."""

    packages: tuple[str, ...] = ()
    source: tuple[str, ...] = ()
    eval: tuple[str, ...] = ()
    r_args: tuple[str, ...] = field(default=("--vanilla", "--quiet"))


#: Texts that R's lexer could reject with error() (a longjmp) instead of a parse status;
#: they take the slower, guarded path through parse() under tryCatch.
_RISKY = re.compile(rb"[^\t\n\r\x20-\x7e]|\\|0[xX]|(?<![\w.])[rR][\"']")
_FAST_PARSE_LIMIT = 4096
_BRACKET_LIMIT = 40


#: ``handler(value, code, wait)`` sends an out-of-band frame; with ``wait`` it returns the
#: client's answer. Raising an exception turns into an R error in the calling code.
OobHandler = Callable[[Sexp, int, bool], Sexp | None]


#: Read at import, which workers do before they switch to the shell account: that
#: account may not be able to read this package's files (a checkout under a 0700 dir).
_HELPERS = resources.files("rexec.rshell").joinpath("helpers.R").read_bytes()


class RShell:
    """The R of this process. Create after :func:`embedded.start_r`; one per process."""

    def __init__(self) -> None:
        from rexec.rshell.convert import Converter

        self._nil = rlib.R_NilValue
        self._global = rlib.R_GlobalEnv
        self._error = ffi.new("int *")
        self._status = ffi.new("ParseStatus *")
        self._held = 0
        self._interruptible = False
        self.interrupted = ""  # why the last request was interrupted, if it was
        source = _HELPERS
        text = rlib.Rf_protect(rlib.Rf_mkString(source))
        exprs = rlib.Rf_protect(self._parse_vector(text))  # our own code: parses cleanly
        self._helpers = self.try_eval(rlib.VECTOR_ELT(exprs, 0))
        rlib.R_PreserveObject(self._helpers)
        rlib.Rf_unprotect(2)
        self._fn = {
            name: rlib.Rf_findVarInFrame(self._helpers, rlib.Rf_install(name.encode()))
            for name in ("safe_parse",)
        }
        self._install = {name: rlib.Rf_install(name.encode()) for name in ("unserialize",)}
        self.converter = Converter(self._helpers, self.call)
        #: Rserve's send buffer for this shell's one connection (raw vectors' padding).
        self.sendbuf = SendBuffer()
        self._oob: OobHandler | None = None
        self._symbols: dict[bytes, int] = {}
        self._install_oob_bridge()

    # ------------------------------------------------------------------ interrupts
    def enable_interrupts(self) -> None:
        """Let SIGINT interrupt a running evaluation (status 127), as R's console does.

        R's own handlers are off under rpy2; Python's handler runs during evaluation
        because R calls back into Python (R_ProcessEvents) when it checks for
        interrupts. Between requests the signal is ignored, so a late cancel cannot hit
        the next request (see begin_command/end_command).
        """
        signal.signal(signal.SIGINT, lambda signum, frame: self.interrupt("cancelled"))

    def interrupt(self, reason: str) -> bool:
        """Interrupt the running request (from a signal handler); False between requests."""
        if not self._interruptible:
            return False
        self.interrupted = reason
        rlib.R_interrupts_pending = 1
        return True

    def begin_command(self) -> None:
        """A request starts: from now on :meth:`interrupt` stops R."""
        rlib.R_interrupts_pending = 0
        self.interrupted = ""
        self._interruptible = True

    @property
    def busy(self) -> bool:
        """True while a request runs (between begin_command and end_command)."""
        return self._interruptible

    def end_command(self) -> None:
        self._interruptible = False
        rlib.R_interrupts_pending = 0

    def option_true(self, name: bytes) -> bool:
        """Whether R's option ``name`` is TRUE (one lookup in R's options list; rpy2's
        interface lacks Rf_GetOption1, so it is called through ctypes)."""
        symbol = self._symbols.get(name)
        if symbol is None:
            symbol = self._symbols[name] = _options_api().install(name)
        api = _options_api()
        return bool(api.as_logical(api.get_option(symbol)) == 1)

    # ------------------------------------------------------------------ out-of-band
    def set_oob_handler(self, handler: OobHandler | None) -> None:
        """Route self.oobSend()/self.oobMessage() of this session's R code to ``handler``."""
        self._oob = handler

    def _install_oob_bridge(self) -> None:
        import rpy2.rinterface as ri

        reply_symbol = rlib.Rf_install(b"oob_reply")

        def bridge(what: Any, code: Any, wait: Any) -> Any:
            if self._oob is None:
                return ri.StrSexpVector(
                    ["OOB command is disallowed by the current configuration (session.oob)"]
                )
            try:
                reply = self._oob(self.to_sexp(what.__sexp__._cdata), int(code[0]), bool(wait[0]))
            except Exception as exc:
                return ri.StrSexpVector([f"OOB failed: {exc}"])
            if reply is not None:
                value = self.converter.from_sexp(reply)
                rlib.Rf_defineVar(reply_symbol, value, self._helpers)
                rlib.Rf_unprotect(1)
            return ri.BoolSexpVector([True])

        self._bridge = ri.rternalize(bridge)  # keeps the R closure alive with this shell
        rlib.Rf_defineVar(rlib.Rf_install(b"bridge"), self._bridge.__sexp__._cdata, self._helpers)

    # ------------------------------------------------------------------ lifetime
    def hold(self, x: Any) -> Any:
        """PROTECT ``x`` until :meth:`release`; returns ``x``."""
        rlib.Rf_protect(x)
        self._held += 1
        return x

    def release(self) -> None:
        """Drop every object held since the last release (call after the reply is sent)."""
        if self._held:
            rlib.Rf_unprotect(self._held)
            self._held = 0

    # ------------------------------------------------------------------ evaluation
    def try_eval(self, expr: Any, status: int = Err.R_ERROR) -> Any:
        """Evaluate ``expr`` in the global environment; raise :class:`RError` on error."""
        result = rlib.R_tryEval(expr, self._global, self._error)
        if self._error[0]:
            raise RError(status)
        return result

    def call(self, fn: Any, *args: Any, status: int = Err.R_ERROR) -> Any:
        """Call R function object ``fn`` on already-evaluated ``args`` (unprotected result)."""
        makers = (rlib.Rf_lang1, rlib.Rf_lang2, rlib.Rf_lang3, rlib.Rf_lang4)
        expr = rlib.Rf_protect(makers[len(args)](fn, *args))
        try:
            return self.try_eval(expr, status)
        finally:
            rlib.Rf_unprotect(1)

    # ------------------------------------------------------------------ encoding
    #: CMD_setEncoding's names and how Rserve then marks the strings it receives.
    MARKS = {b"native": rlib.CE_NATIVE, b"utf8": rlib.CE_UTF8, b"latin1": rlib.CE_LATIN1}

    def set_string_encoding(self, name: bytes) -> None:
        """The session's string encoding (``native``, ``utf8`` or ``latin1``): client text
        keeps its bytes and is marked with it, as in Rserve (R translates where needed)."""
        self.converter.string_encoding = self.MARKS[name]

    def _char(self, text: bytes) -> Any:
        """A CHARSXP for client text, marked with the session's encoding."""
        return rlib.Rf_mkCharLenCE(text, len(text), self.converter.string_encoding)

    def parse(self, code: bytes) -> Any:
        """Parse ``code`` into an expression vector (held); parse failures raise RError."""
        text = rlib.Rf_protect(rlib.Rf_ScalarString(self._char(code)))
        try:
            exprs = self._parse_guarded(code, text)
        finally:
            rlib.Rf_unprotect(1)
        return self.hold(exprs)

    def _parse_guarded(self, code: bytes, text: Any) -> Any:
        if self._safe_to_parse_directly(code):
            return self._parse_vector(text)
        saved = capi.error_message()
        outcome = self.call(self._fn["safe_parse"], text)
        if outcome.sxpinfo.type == rlib.EXPRSXP:
            return outcome
        capi.restore_error_message(saved)
        message = ffi.string(rlib.R_CHAR(rlib.STRING_ELT(outcome, 0)))
        if message.startswith(b"<text>:"):  # a grammar error: the parser gives a status
            return self._parse_vector(text)
        raise RError(Err.PARSE_ERROR, message.decode("utf-8", "replace"))

    def _safe_to_parse_directly(self, code: bytes) -> bool:
        if len(code) > _FAST_PARSE_LIMIT or _RISKY.search(code):
            return False
        return code.count(b"(") + code.count(b"[") + code.count(b"{") <= _BRACKET_LIMIT

    def _parse_vector(self, text: Any) -> Any:
        expr = rlib.R_ParseVector(text, -1, self._status, self._nil)
        status = self._status[0]
        if status != rlib.PARSE_OK:
            raise RError(status)
        return expr

    def eval_text(self, code: bytes) -> Any:
        """Rserve's eval: each top-level expression in turn; the last value (held)."""
        exprs = self.parse(code)
        n = rlib.Rf_xlength(exprs)
        if exprs.sxpinfo.type != rlib.EXPRSXP or n == 0:
            return exprs  # empty or comment-only text evaluates to the empty expression
        result = self._nil
        for i in range(n):
            result = self.try_eval(rlib.VECTOR_ELT(exprs, i))
        return self.hold(result)

    def eval_object(self, s: Sexp) -> Any:
        """Evaluate a decoded object (a call or symbol sent as DT_SEXP)."""
        return self.hold(self.try_eval(self.from_sexp(s)))

    def run_code(self, code: bytes) -> Any:
        exprs = self.parse(code)
        result = self._nil
        for i in range(rlib.Rf_xlength(exprs)):
            result = self.try_eval(rlib.VECTOR_ELT(exprs, i))
        self.release()
        return result

    def reseed(self) -> None:
        """Forget the inherited random-number state, so each forked shell seeds afresh."""
        self.run_code(
            b'if (exists(".Random.seed", envir = globalenv(), inherits = FALSE)) '
            b'rm(".Random.seed", envir = globalenv())'
        )

    # ------------------------------------------------------------------ conversion
    def to_sexp(self, x: Any) -> Sexp:
        return self.converter.to_sexp(x)

    def from_sexp(self, s: Sexp) -> Any:
        """The R object for ``s``, held until :meth:`release`."""
        x = self.converter.from_sexp(s)
        self._held += 1
        return x

    def string(self, text: bytes) -> Any:
        """A character vector holding client text (held), marked as :meth:`parse` marks."""
        return self.hold(rlib.Rf_ScalarString(self._char(text)))

    def raw(self, data: Any) -> Any:
        n = len(data)
        x = self.hold(rlib.Rf_allocVector(rlib.RAWSXP, n))
        if n:
            ffi.memmove(rlib.RAW(x), data, n)
        return x

    def new_vector(self, xt: int, nbytes: int) -> tuple[Any, Any]:
        """A fresh (held) R vector of XT type ``xt`` and ``nbytes`` of data, and a
        writable view of its data for a socket to receive into."""
        from rexec.protocol.constants import XT

        kind, accessor, width = {
            XT.ARRAY_INT: (rlib.INTSXP, rlib.INTEGER, 4),
            XT.ARRAY_DOUBLE: (rlib.REALSXP, rlib.REAL, 8),
            XT.ARRAY_CPLX: (rlib.CPLXSXP, rlib.COMPLEX, 16),
        }[xt]
        x = self.hold(rlib.Rf_allocVector(kind, nbytes // width))
        return x, (ffi.buffer(accessor(x), nbytes) if nbytes else bytearray())

    def new_raw(self, nbytes: int) -> tuple[Any, Any]:
        """A fresh (held) raw vector and a writable view of its bytes."""
        x = self.hold(rlib.Rf_allocVector(rlib.RAWSXP, nbytes))
        return x, (ffi.buffer(rlib.RAW(x), nbytes) if nbytes else bytearray())

    def _as_raw(self, payload: Any) -> Any:
        """An R raw vector: ``payload`` itself if it already is one, else a copy of it."""
        if isinstance(payload, ffi.CData):
            return payload
        return self.raw(payload)

    def raw_view(self, x: Any) -> Any:
        n = rlib.Rf_xlength(x)
        return ffi.buffer(rlib.RAW(x), n) if n else b""

    # ------------------------------------------------------------------ assignment
    def assign(self, name: Any, value: Any) -> None:
        """``name <- value`` in the global environment; ``name`` is a symbol or string SEXP.

        Goes through R's ``<-`` with the value quoted, so a locked binding or
        environment is an R error, not a crash.
        """
        quoted = self.hold(rlib.Rf_lang2(rlib.Rf_install(b"quote"), value))
        self.call(rlib.Rf_install(b"<-"), name, quoted)

    def symbol(self, name: bytes) -> Any:
        if not 0 < len(name) <= 10000:
            raise RError(Err.INV_PAR, "invalid variable name")
        return rlib.Rf_install(name)

    # ------------------------------------------------------------------ serialization
    def ser_eval(self, payload: Any, rounds: int = 1) -> Any:
        """Rserve's serEval/serEEval: raw serialize() in, raw serialize() of the value out."""
        unserialize = self._install["unserialize"]
        expr = self.hold(self.call(unserialize, self._as_raw(payload), status=Err.SER_ERROR))
        value = expr
        for _ in range(rounds):
            value = self.hold(self.try_eval(value, status=Err.SER_ERROR))
        serialized = self.hold(
            self.try_eval(
                self.hold(rlib.Rf_lang3(rlib.Rf_install(b"serialize"), value, self._nil)),
                status=Err.SER_ERROR,
            )
        )
        if serialized.sxpinfo.type != rlib.RAWSXP:
            raise RError(Err.NOT_SERIALIZABLE)
        return self.raw_view(serialized)

    def ser_assign(self, payload: Any) -> None:
        """Rserve's serAssign: the payload is serialize(list(name, value))."""
        pair = self.hold(
            self.call(self._install["unserialize"], self._as_raw(payload), status=Err.SER_ERROR)
        )
        if pair.sxpinfo.type != rlib.VECSXP or rlib.Rf_xlength(pair) < 2:
            raise RError(Err.INV_PAR)
        expr = self.hold(
            rlib.Rf_lang3(
                rlib.Rf_install(b"<-"), rlib.VECTOR_ELT(pair, 0), rlib.VECTOR_ELT(pair, 1)
            )
        )
        self.try_eval(expr, status=Err.SER_ERROR)


def start(startup: Startup = Startup()) -> RShell:
    """Start R in this process, run the start-up code and return the shell."""
    embedded.start_r(startup.r_args)
    shell = RShell()
    steps = [f"library({package!r})" for package in startup.packages]
    steps += [f"source({path!r})" for path in startup.source]
    for code in [*steps, *startup.eval]:
        try:
            shell.run_code(code.encode())
        except RError as exc:  # say what R said (the status alone tells nothing)
            said = capi.error_message().decode("utf-8", "replace").strip()
            raise RError(exc.status, said or str(exc)) from None
    return shell


@dataclass(frozen=True)
class _OptionsApi:
    install: Any
    get_option: Any
    as_logical: Any


@cache
def _options_api() -> _OptionsApi:
    lib = embedded._libr()
    install, get_option, as_logical = lib.Rf_install, lib.Rf_GetOption1, lib.Rf_asLogical
    install.argtypes, install.restype = [ctypes.c_char_p], ctypes.c_void_p
    get_option.argtypes, get_option.restype = [ctypes.c_void_p], ctypes.c_void_p
    as_logical.argtypes, as_logical.restype = [ctypes.c_void_p], ctypes.c_int
    return _OptionsApi(install, get_option, as_logical)
