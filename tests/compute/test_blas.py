"""Multi-threaded math: R's BLAS is OpenBLAS and every shell gets ``shell.threads``.

Real servers and real R. A session reads its count from ``Sys.getenv``; the count
OpenBLAS itself reports (``openblas_get_num_threads()``, which base R cannot call: it
takes no pointer) is read through :mod:`rexec.rshell.blas` in a process that does what
the template does: start R, run BLAS code, fork, configure the child as a shell.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from bench.servers import UTF8
from rexec.rshell.blas import cores
from tests.qap import RawClient

pytestmark = pytest.mark.slow

#: The environment variables a session reads its count from.
COUNT = 'paste(Sys.getenv(c("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")), collapse = " ")'

#: crossprod (OpenBLAS dsyrk, threaded at this size) against column sums (no BLAS);
#: small integers, so both are exact.
CROSSPROD = """
m <- matrix((seq_len(600 * 200) %% 7) - 3, 600)
reference <- sapply(seq_len(ncol(m)), function(j) colSums(m * m[, j]))
identical(crossprod(m), reference) && identical(m %*% t(m[1:50, ]), tcrossprod(m, m[1:50, ]))
"""


def _session(port: int, code: str) -> object:
    with RawClient(port) as client:
        return client.eval(code).value()


def test_r_uses_openblas_in_a_shell(rexec_factory) -> None:
    server = rexec_factory(**{"pool.initial": 1, "pool.max": 2})
    blas = _session(server.port, 'extSoftVersion()[["BLAS"]]')
    lapack = _session(server.port, "La_library()")
    assert "openblas" in str(blas), blas
    assert "openblas" in str(lapack), lapack


@pytest.mark.parametrize("pool_max", [1, 2])
def test_default_is_cores_divided_by_pool_max(rexec_factory, pool_max: int) -> None:
    server = rexec_factory(**{"pool.initial": 1, "pool.max": pool_max})
    expected = max(1, cores() // pool_max)
    assert _session(server.port, COUNT) == f"{expected} {expected}"


@pytest.mark.parametrize(
    ("mode", "threads"), [("fork", 1), ("fork", 2), ("spawn", 1), ("spawn", 2)]
)
def test_shell_threads_is_what_a_session_sees(rexec_factory, mode: str, threads: int) -> None:
    server = rexec_factory(
        **{"pool.initial": 1, "pool.max": 2, "pool.mode": mode, "shell.threads": threads}
    )
    assert _session(server.port, COUNT) == f"{threads} {threads}"
    # every shell, not only the first: a second connection gets a fresh one
    with RawClient(server.port) as first, RawClient(server.port) as second:
        pids = {first.eval("Sys.getpid()").value(), second.eval("Sys.getpid()").value()}
        assert len(pids) == 2
        assert first.eval(COUNT).value() == second.eval(COUNT).value() == f"{threads} {threads}"
        # programs a session starts inherit it
        child = 'system2("sh", c("-c", shQuote("echo $OPENBLAS_NUM_THREADS")), stdout = TRUE)'
        assert second.eval(child).value() == str(threads)
    assert _session(server.port, CROSSPROD) is True


_FORKED_SHELLS = textwrap.dedent(
    """
    import json, os, sys
    from rexec.config import Config
    from rexec.rshell import blas, embedded

    embedded.start_r()
    from rpy2 import rinterface

    def r(code):
        return rinterface.evalr(code)[0]

    # the template: R started, its BLAS already busy (start-up code), then shells forked
    r("m <- matrix(runif(250000), 500); invisible(crossprod(m))")
    template = blas.get_threads()
    pid = os.fork()
    if pid == 0:  # what a variable alone does: nothing to the library already loaded
        os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = "1"
        print(json.dumps({"env_only": blas.get_threads()}), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
    for setting in json.loads(sys.argv[1]):
        pid = os.fork()
        if pid == 0:
            blas.configure_shell(Config({"shell.threads": setting, "pool.max": 2}))
            print(json.dumps({
                "setting": setting,
                "library": blas.get_threads(),
                "r_env": r('Sys.getenv("OPENBLAS_NUM_THREADS")'),
                "omp_env": r('Sys.getenv("OMP_NUM_THREADS")'),
                "crossprod": bool(r("isTRUE(all.equal(crossprod(m), t(m) %*% m))")),
            }), flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
    print(json.dumps({"template": template, "after": blas.get_threads()}), flush=True)
    """
)


def test_forked_shell_sets_the_loaded_library() -> None:
    """OPENBLAS_NUM_THREADS alone would not do: the library read it before the fork."""
    env = {k: v for k, v in UTF8.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    run = subprocess.run(
        [sys.executable, "-c", _FORKED_SHELLS, json.dumps([1, 2, 0])],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    env_only, *shells, template = lines
    # OpenBLAS's own default in the template: every core (it read no variable)
    assert template == {"template": cores(), "after": cores()}
    assert env_only == {"env_only": cores()}
    default = max(1, cores() // 2)
    assert shells == [
        {
            "setting": setting,
            "library": expected,
            "r_env": str(expected),
            "omp_env": str(expected),
            "crossprod": True,
        }
        for setting, expected in ((1, 1), (2, 2), (0, default))
    ]


def test_documented_r_setter_runs_in_a_session(rexec_factory) -> None:
    """The R-level way (documented): OpenBLAS's Fortran-style setter through .C."""
    server = rexec_factory(**{"pool.initial": 1, "pool.max": 2, "shell.threads": 1})
    code = 'dyn.load(La_library()); invisible(.C("openblas_set_num_threads_", 2L)); TRUE'
    with RawClient(server.port) as client:
        assert client.eval(code).value() is True
        assert client.eval(CROSSPROD).value() is True
