"""Differential tests: the same request to a real Rserve and to rexec must get the same answer.

Two real clients: pyRserve (QAP eval/voidEval/setSEXP with its own encoder and decoder)
and RSclient driven from Rscript (serEval/serAssign via RS.eval/RS.assign, and QAP eval
of language objects via RS.eval.qap).
"""

from __future__ import annotations

import subprocess
import textwrap

import numpy as np
import pyRserve
import pytest

from tests.conftest import UTF8, Server

EXPRESSIONS = [
    "1L",
    "1+1",
    "c(1.5, NA)",
    "'a'",
    "TRUE",
    "c(TRUE, NA, FALSE)",
    "NA",
    "NULL",
    "NA_character_",
    "character(0)",
    "''",
    "NA_integer_",
    "NaN",
    "c(Inf, -Inf)",
    "1i",
    "complex(real = 1:3, imaginary = -1)",
    "as.raw(1:5)",
    "list(1L, 'a')",
    "list(a = 1, b = list(c = 'x', d = NULL))",
    "c(a = 1L, b = 2L)",
    "factor(c('x', 'y', 'x'))",
    "matrix(1:6, 2)",
    "matrix(c(1.5, 2.5, 3.5, 4.5), 2, dimnames = list(c('r1', 'r2'), c('c1', 'c2')))",
    "data.frame(x = 1:2, y = c('a', 'b'))",
    "data.frame(n = c(1.5, 2.5), row.names = c('p', 'q'))",
    "letters",
    "1:100",
    "seq(0, 1, by = 0.25)",
    "as.character(1:50)",
    "c(a = 'x', b = NA)",
    "'\u00e9t\u00e9 \u65e5\u672c'",
    "R.version.string",
    "Sys.Date() - Sys.Date()",
    "as.Date('2024-02-29')",
    "array(1:24, c(2, 3, 4))",
    "x <- 5",
    "invisible(7)",
    "",
    "# only a comment",
    "quote(x)",
    "sum",
    "globalenv()",
    "1:3 + 0.5",
    "rep(c(TRUE, FALSE, NA), 30)",
    "strsplit('a,b,c', ',')",
    "lm",
]

ERRORS = ["stop('boom')", "1+", ")", "nonexistent_function()", "log(-1, base = 'x')"]


def _normalise(value: object) -> object:
    """Make pyRserve results comparable with == (numpy arrays, NaN, nested lists)."""
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str, value.shape, repr(value.tolist()))
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_normalise(v) for v in value])
    if hasattr(value, "keys") and hasattr(value, "values"):
        keys = value.keys() if callable(value.keys) else value.keys
        values = value.values() if callable(value.values) else value.values
        return (
            type(value).__name__,
            list(keys),
            [_normalise(v) for v in values],
            _normalise(getattr(value, "attr", None)),
        )
    if type(value).__name__ == "Closure":  # its repr holds an id(); compare the type only
        return "Closure"
    if hasattr(value, "attr"):
        return (type(value).__name__, repr(value), _normalise(value.attr))
    return (type(value).__name__, repr(value))


def _pyrserve_eval(port: int, code: str) -> object:
    conn = pyRserve.connect(port=port)
    try:
        return _normalise(conn.eval(code))
    except Exception as exc:  # the error class and text are part of the answer
        return ("error", type(exc).__name__, str(exc))
    finally:
        conn.close()


@pytest.fixture(scope="module")
def pyrserve_pair(rserve: Server, rexec_server: Server):
    """One pyRserve connection to each server (connect sleeps 200 ms: reuse them)."""
    a = pyRserve.connect(port=rserve.port)
    b = pyRserve.connect(port=rexec_server.port)
    yield a, b
    a.close()
    b.close()


@pytest.mark.parametrize("code", EXPRESSIONS)
def test_pyrserve_eval_matches_rserve(pyrserve_pair, code: str) -> None:
    reference, candidate = pyrserve_pair
    expected = _normalise(reference.eval(code))
    assert _normalise(candidate.eval(code)) == expected


@pytest.mark.parametrize("code", ERRORS)
def test_pyrserve_errors_match_rserve(rserve: Server, rexec_server: Server, code: str) -> None:
    assert _pyrserve_eval(rexec_server.port, code) == _pyrserve_eval(rserve.port, code)


@pytest.mark.parametrize(
    "value",
    [
        3,
        2.5,
        "text",
        True,
        [1.5, 2.5],
        np.array([1, 2, 3], dtype=np.int32),
        np.array([1.5, np.nan]),
        np.array([[1.0, 2.0], [3.0, 4.0]]),
        np.array(["a", "bb"]),
        np.array([True, False]),
        None,
    ],
    ids=repr,
)
def test_pyrserve_assign_matches_rserve(pyrserve_pair, value: object) -> None:
    reference, candidate = pyrserve_pair
    for conn in pyrserve_pair:
        conn.r.assigned = value
    for probe in ("assigned", "typeof(assigned)", "attributes(assigned)"):
        assert _normalise(candidate.eval(probe)) == _normalise(reference.eval(probe)), probe


RSCLIENT_SCRIPT = r"""
options(warn = 1)
library(RSclient)
ports <- as.integer(commandArgs(TRUE))
a <- RS.connect(port = ports[1]); b <- RS.connect(port = ports[2])
outcome <- function(f) tryCatch(list(ok = f()), error = function(e) list(error = TRUE))
exprs <- list(
  quote(1 + 1), quote(R.version.string), quote(letters), quote(c(a = 1L, b = NA)),
  quote(data.frame(x = 1:3, y = c("a", "b", NA), z = factor(c("u", "v", "u")))),
  quote(list(s = quote(a + b), n = NULL)), quote(matrix(rnorm(4) * 0, 2)),
  quote(as.POSIXct("2024-01-02 03:04:05", tz = "UTC")), quote(1:1e5), quote(NULL),
  quote(stop("boom")), quote(ls()), quote(Sys.setenv(A = "1")), quote(nchar(Sys.getenv("A"))),
  quote(serialize(1:3, NULL)), quote(environmentName(globalenv())), quote(new.env())
)
for (i in seq_along(exprs)) {
  e <- exprs[[i]]
  ra <- outcome(function() RS.eval(a, e, lazy = FALSE))
  rb <- outcome(function() RS.eval(b, e, lazy = FALSE))
  same <- if (is.environment(ra$ok)) is.environment(rb$ok) else identical(ra, rb)
  cat(sprintf("serEval %d %s\n", i, same))
  qa <- outcome(function() RS.eval.qap(a, e))
  qb <- outcome(function() RS.eval.qap(b, e))
  cat(sprintf("qap %d %s\n", i, identical(qa, qb)))
}
for (v in list(1:3, "x", list(p = 1, q = "r"), data.frame(k = 1:2), NULL, c(TRUE, NA))) {
  RS.assign(a, "v", v); RS.assign(b, "v", v)
  cat(sprintf("assign %s\n", identical(RS.eval(a, v), RS.eval(b, v))))
}
invisible(RS.eval(a, x <- 42)); invisible(RS.eval(b, x <- 42))
cat(sprintf("state %s\n", identical(RS.eval(a, x * 2), RS.eval(b, x * 2))))
invisible(RS.close(a)); invisible(RS.close(b))
"""


def test_rsclient_matches_rserve(rserve: Server, rexec_server: Server) -> None:
    result = subprocess.run(
        [
            "Rscript",
            "-e",
            textwrap.dedent(RSCLIENT_SCRIPT),
            str(rserve.port),
            str(rexec_server.port),
        ],
        capture_output=True,
        text=True,
        env=UTF8,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) > 30
    mismatches = [line for line in lines if not line.endswith("TRUE")]
    assert not mismatches, "\n".join(mismatches)
