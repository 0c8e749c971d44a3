"""The handful of R C-API entry points rpy2's compiled interface does not expose.

They are exported by libR and never raise R errors, so calling them through
ctypes is safe; each takes and returns SEXP pointers as integers.
"""

from __future__ import annotations

import ctypes
from functools import cache
from typing import Any

from rexec.rshell import embedded


@cache
def _lib() -> ctypes.CDLL:
    lib = embedded._libr()
    lib.SET_ATTRIB.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.SET_ATTRIB.restype = None
    lib.SET_OBJECT.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.SET_OBJECT.restype = None
    lib.SET_S4_OBJECT.argtypes = [ctypes.c_void_p]
    lib.SET_S4_OBJECT.restype = None
    lib.R_curErrorBuf.argtypes = []
    lib.R_curErrorBuf.restype = ctypes.c_void_p
    lib.Rf_allocS4Object.argtypes = []
    lib.Rf_allocS4Object.restype = ctypes.c_void_p
    return lib


# rpy2's compiled struct declares a 12-byte sxpinfo, so its ``.attrib`` and ``.u``
# fields sit 8 bytes too far; R's real layout (R >= 3.5, 64-bit) is: sxpinfo (8 bytes),
# attrib, gengc_next_node, gengc_prev_node, then the union (closure: formals, body, env).
_ATTRIB, _FORMALS, _BODY = 1, 4, 5


def attrib(x: Any) -> Any:
    """ATTRIB(x), read from the object header."""
    return embedded.ffi.cast("SEXP *", x)[_ATTRIB]


def closure_parts(x: Any) -> tuple[Any, Any]:
    """FORMALS(x) and BODY(x) of a closure."""
    words = embedded.ffi.cast("SEXP *", x)
    return words[_FORMALS], words[_BODY]


def _address(x: Any) -> int:
    return int(embedded.ffi.cast("uintptr_t", x))


def set_attrib(x: Any, attributes: Any) -> None:
    """Install a ready-made attribute pairlist, as Rserve's decoder does (no validation)."""
    _lib().SET_ATTRIB(_address(x), _address(attributes))


def set_object(x: Any) -> None:
    """Mark ``x`` as an object, so S3 dispatch sees its class attribute."""
    _lib().SET_OBJECT(_address(x), 1)


def set_s4(x: Any) -> None:
    _lib().SET_S4_OBJECT(_address(x))


def alloc_s4() -> Any:
    return embedded.ffi.cast("SEXP", _lib().Rf_allocS4Object())


def set_language(x: Any) -> None:
    """Turn a freshly built pairlist into a call (LANGSXP)."""
    x.sxpinfo.type = embedded.rlib.LANGSXP


def error_message() -> bytes:
    """The text ``geterrmessage()`` returns (R's error buffer)."""
    return ctypes.string_at(_lib().R_curErrorBuf())


def restore_error_message(text: bytes) -> None:
    """Put back a saved error buffer: a parse failure must not change geterrmessage()."""
    ctypes.memmove(_lib().R_curErrorBuf(), text + b"\0", len(text) + 1)
