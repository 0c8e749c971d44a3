"""The BLAS/OpenMP thread count of an R shell (``shell.threads``).

R links its BLAS (Debian: the ``libblas.so.3`` alternative, OpenBLAS with
``libopenblas0-pthread``) and libgomp into ``libR.so``, so both are loaded, and have
read their environment, when R starts: in the template, before any shell exists.
OpenBLAS reads ``OPENBLAS_NUM_THREADS`` (and libgomp ``OMP_NUM_THREADS``) once, when
the library loads; setting the variable in a forked shell changes nothing for the copy
of the library it inherited. So each shell calls the libraries' own setters on the
already-loaded objects (``openblas_set_num_threads``, ``omp_set_num_threads``, found
with ``dlopen(..., RTLD_NOLOAD)``: never a second copy), and then sets the variables
too, to the count the library reports, so R code (``Sys.getenv("OPENBLAS_NUM_THREADS")``)
and the programs it starts see the same number.

OpenBLAS's own ``pthread_atfork`` handler stops its worker threads before a fork; a
shell starts the workers it needs at its first multi-threaded call.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Mapping
from functools import cache
from typing import Any

from rexec import host

log = logging.getLogger("rexec.blas")

#: Variables set in every shell to its thread count.
ENVIRONMENT = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


@cache
def cores() -> int:
    """CPUs this process may use: its affinity mask (``taskset``, cpusets) and its
    control group's CPU quota (a container's CPU limit), rounded up. Read once per
    template (:func:`prepare`), so forked shells inherit the answer instead of reading
    the control group's files again."""
    return host.usable_cpus()


def shell_threads(config: Mapping[str, Any]) -> int:
    """The thread count ``config`` gives each shell: ``shell.threads``, or for 0 (or
    less) the cores divided by ``pool.max``, at least 1 (a full pool then uses each
    core once)."""
    wanted = int(config["shell.threads"])
    if wanted > 0:
        return wanted
    return max(1, cores() // max(1, int(config["pool.max"])))


def _loaded(name: str) -> ctypes.CDLL | None:
    """``name`` if this process has already loaded it (``RTLD_NOLOAD``), else None."""
    try:
        return ctypes.CDLL(name, mode=os.RTLD_NOLOAD)
    except OSError:
        return None


def _mapped_files() -> list[str]:
    paths = set()
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(None, 5)
                if len(fields) == 6:
                    paths.add(fields[5].strip())
    except OSError:
        return []
    return sorted(p for p in paths if p.startswith("/") and ".so" in p)


_found: list[ctypes.CDLL | None] = []


def openblas() -> ctypes.CDLL | None:
    """The OpenBLAS this process has loaded (through R), or None if its BLAS is another.
    Looked up once (the template does it, so forked shells inherit the answer)."""
    if not _found:
        _found.append(_find_openblas())
    return _found[0]


def _find_openblas() -> ctypes.CDLL | None:
    candidates = ["libopenblas.so.0"]
    # Another soname (a self-built OpenBLAS, the 'libblas.so.3' wrapper): whatever BLAS
    # file is mapped already; dlsym on it also searches its dependencies.
    candidates += [p for p in _mapped_files() if "blas" in os.path.basename(p).lower()]
    for name in candidates:
        library = _loaded(name)
        if library is not None and hasattr(library, "openblas_get_num_threads"):
            return library
    return None


def get_threads() -> int | None:
    """The thread count OpenBLAS itself reports (``openblas_get_num_threads()``), or
    None without OpenBLAS."""
    library = openblas()
    if library is None:
        return None
    getter = library.openblas_get_num_threads
    getter.restype = ctypes.c_int
    getter.argtypes = []
    return int(getter())


@cache
def _gomp() -> ctypes.CDLL | None:
    return _loaded("libgomp.so.1")


def prepare() -> None:
    """Find the libraries once, before shells are forked (``/proc/self/maps`` of an R
    process is long, and each shell would read it again), and the CPUs."""
    openblas()
    _gomp()
    cores()


def set_threads(count: int) -> int:
    """Make this process' BLAS and OpenMP use ``count`` threads from now on; return the
    count in effect (OpenBLAS's own, which caps at the maximum it was built for)."""
    count = max(1, int(count))
    effective = count
    library = openblas()
    if library is not None:
        setter = getattr(library, "openblas_set_num_threads", None)
        if setter is None:  # GotoBLAS's name; OpenBLAS's pthread build has both
            setter = getattr(library, "goto_set_num_threads", None)
        if setter is not None:
            setter.argtypes = [ctypes.c_int]
            setter.restype = None
            setter(count)
        effective = get_threads() or count
    gomp = _gomp()
    if gomp is not None:
        gomp.omp_set_num_threads.argtypes = [ctypes.c_int]
        gomp.omp_set_num_threads.restype = None
        gomp.omp_set_num_threads(effective)
    for name in ENVIRONMENT:
        os.environ[name] = str(effective)
    return effective


def configure_shell(config: Mapping[str, Any]) -> None:
    """Apply ``shell.threads`` in this shell (called before it says ready). Best effort:
    a BLAS that cannot be told is logged, never a failed shell."""
    try:
        wanted = shell_threads(config)
        effective = set_threads(wanted)
    except Exception:  # a shell without thread control still serves
        log.warning("could not set the BLAS thread count", exc_info=True)
        return
    if effective != wanted:
        log.warning("shell.threads: BLAS uses %d threads, not %d", effective, wanted)
    else:
        log.debug("BLAS/OpenMP threads: %d", effective)
