"""Start the embedded R of this process and give it a private identity after a fork.

Everything rexec does with R's C API goes through rpy2's low-level interface
(``rinterface_lib.openrlib``): its ``ffi`` and ``rlib`` objects are re-exported here so
the rest of :mod:`rexec.rshell` imports them from one place.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from rpy2.rinterface_lib import openrlib

_started = False
ffi: Any = openrlib.ffi
rlib: Any = openrlib.rlib

#: Keeps the bytes behind R_TempDir alive after we repoint it.
_tempdir_buffer: ctypes.Array[ctypes.c_char] | None = None


def ensure_utf8_locale() -> None:
    """Make R start in a UTF-8 locale, as clients (pyRserve, Java, RSclient) assume UTF-8."""
    current = os.environ.get("LC_ALL") or os.environ.get("LC_CTYPE") or os.environ.get("LANG", "")
    if "utf-8" not in current.lower() and "utf8" not in current.lower():
        os.environ["LC_ALL"] = "C.UTF-8"


def start_r(args: Sequence[str] = ("--vanilla", "--quiet")) -> None:
    """Initialise R once in this process (no-op if already started)."""
    global _started
    if _started:
        return
    ensure_utf8_locale()
    from rpy2 import rinterface
    from rpy2.rinterface_lib import callbacks, embedded

    embedded.set_initoptions(("rexec", *args))
    # rpy2 switches R's C stack check off (for R called from other threads); shells only
    # call R from the main thread, and without the check deep recursion is a segfault
    # instead of R's "C stack usage is too close to the limit" error.
    embedded._DEFAULT_C_STACK_LIMIT = 0
    rinterface.initr_simple()
    # R's console output goes straight to this process' stdout/stderr, as in Rserve,
    # without rpy2's per-line Python print().
    callbacks.consolewrite_print = _write_stdout
    callbacks.consolewrite_warnerror = _write_stderr
    # A session has no terminal: readline() and friends read an empty line.
    callbacks.consoleread = lambda prompt: ""
    _started = True


#: Where R's console output goes instead of stdout/stderr while set: called with the
#: text and whether it is R's error stream (see rexec.compute.shell.console).
console_hook: Callable[[str, bool], None] | None = None


def _write_stdout(text: str) -> None:
    if console_hook is not None:
        console_hook(text, False)
        return
    sys.stdout.write(text)
    sys.stdout.flush()


def _write_stderr(text: str) -> None:
    if console_hook is not None:
        console_hook(text, True)
        return
    sys.stderr.write(text)
    sys.stderr.flush()


@cache
def _libr() -> ctypes.CDLL:
    from rpy2 import situation

    home = situation.get_r_home()
    path = situation.get_rlib_path(home, "Linux") if home else None
    return ctypes.CDLL(path or "libR.so", mode=ctypes.RTLD_GLOBAL)


def current_tempdir() -> str:
    value = ctypes.c_char_p.in_dll(_libr(), "R_TempDir").value
    return value.decode() if value else ""


def new_tempdir(parent: str | None = None, path: str | None = None) -> str:
    """Give this R a session temp directory of its own and return its path.

    A forked shell would otherwise share the template's ``tempdir()``, owned by
    whoever started the template.
    """
    global _tempdir_buffer
    if path is None:
        path = tempfile.mkdtemp(prefix="Rtmp", dir=parent)
    else:
        os.mkdir(path, 0o700)
    _tempdir_buffer = ctypes.create_string_buffer(path.encode())
    pointer = ctypes.c_void_p.in_dll(_libr(), "R_TempDir")
    pointer.value = ctypes.addressof(_tempdir_buffer)
    os.environ["R_SESSION_TMPDIR"] = path
    return path


def remove_tempdir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
