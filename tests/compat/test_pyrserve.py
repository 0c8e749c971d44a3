"""pyRserve against Rserve and rexec: the same answers (values and errors) for every case."""

from __future__ import annotations

import sys

import numpy as np
import pyRserve
import pytest

from tests.compat.cases import ERRORS, EXPRESSIONS, SETUP
from tests.conftest import Server


def normalise(value: object) -> object:
    """Make pyRserve results comparable with == (arrays, NaN, tagged lists, closures)."""
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str, value.shape, repr(value.tolist()))
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [normalise(v) for v in value])
    if type(value).__name__ == "Closure":  # its repr holds an id(); compare the type only
        return "Closure"
    if hasattr(value, "keys") and hasattr(value, "values"):
        keys = value.keys() if callable(value.keys) else value.keys
        values = value.values() if callable(value.values) else value.values
        attr = getattr(value, "attr", None)
        return (type(value).__name__, list(keys), [normalise(v) for v in values], normalise(attr))
    if hasattr(value, "attr"):
        return (type(value).__name__, repr(value), normalise(value.attr))
    return (type(value).__name__, repr(value))


def answer(conn: pyRserve.rconn.RConnector, code: str) -> object:
    try:
        return normalise(conn.eval(code))
    except Exception as exc:  # the error class and text are part of the answer
        return ("error", type(exc).__name__, str(exc))


@pytest.fixture(scope="module")
def pair(rserve: Server, rexec_server: Server):
    """One pyRserve connection to each server (connect sleeps 200 ms: reuse them)."""
    conns = (pyRserve.connect(port=rserve.port), pyRserve.connect(port=rexec_server.port))
    for conn in conns:
        conn.voidEval(SETUP)
    yield conns
    for conn in conns:
        conn.close()


@pytest.mark.parametrize("code", EXPRESSIONS + ERRORS)
def test_eval(pair, code: str) -> None:
    reference, candidate = pair
    assert answer(candidate, code) == answer(reference, code)


@pytest.mark.parametrize(
    "value",
    [
        3,
        2.5,
        "text",
        "\u00e9t\u00e9",
        True,
        None,
        [1.5, 2.5],
        ["a", 1],
        np.array([1, 2, 3], dtype=np.int32),
        np.array([1.5, np.nan]),
        np.array([[1.0, 2.0], [3.0, 4.0]]),
        np.array(["a", "bb"]),
        np.array([True, False]),
        np.array([1 + 2j]),
        np.arange(100000, dtype=np.float64),
    ],
    ids=lambda v: type(v).__name__ + repr(v)[:30],
)
def test_assign(pair, value: object) -> None:
    reference, candidate = pair
    for conn in pair:
        conn.r.assigned = value
    for probe in ("assigned", "typeof(assigned)", "attributes(assigned)"):
        assert answer(candidate, probe) == answer(reference, probe), probe


def test_function_call_and_void_eval(pair) -> None:
    reference, candidate = pair
    for conn in pair:
        conn.voidEval("scale_by <- function(x, k = 2) x * k")
    assert normalise(candidate.r.scale_by(np.array([1.0, 2.0]), k=3)) == normalise(
        reference.r.scale_by(np.array([1.0, 2.0]), k=3)
    )


@pytest.fixture
def fresh(rserve: Server, rexec_server: Server):
    """New pyRserve connections, for cases that depend on what a session sent before."""
    conns = (pyRserve.connect(port=rserve.port), pyRserve.connect(port=rexec_server.port))
    yield conns
    for conn in conns:
        conn.close()


def test_raw_vectors_with_their_padding(fresh) -> None:
    """pyRserve returns a raw vector's padding bytes as data; Rserve leaves there what an
    earlier reply wrote into its send buffer."""
    codes = ["list(strrep('z', 40))", "as.raw(1:5)", "list(as.raw(1:2), 'x')", "as.raw(1:7)"]
    reference, candidate = ([answer(conn, code) for code in codes] for conn in fresh)
    assert candidate == reference


@pytest.mark.parametrize(
    "code",
    [
        "local({x <- list(); for (i in 1:1000) x <- list(x); x})",
        "local({x <- 1; for (i in 1:500) x <- call('f', x, a = i); x})",
    ],
    ids=["list-1000", "call-500"],
)
def test_deeply_nested_results(fresh, code: str) -> None:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(50_000)  # pyRserve's own parser recurses
    try:
        reference, candidate = (answer(conn, code) for conn in fresh)
        assert candidate == reference
    finally:
        sys.setrecursionlimit(limit)


def test_assigned_strings_keep_rserves_encoding_marks(fresh) -> None:
    """Strings pyRserve sends are left unmarked ("unknown") by Rserve, as native text."""
    for conn in fresh:
        conn.r.s = np.array(["\u00e9t\u00e9", "a"])
        conn.r.t = "\u65e5\u672c"
        conn.r.l = ["na\u00efve", 1]
    probe = "c(Encoding(c(s, t, l[[1]], '\u00e9')), s == '\u00e9t\u00e9')"
    reference, candidate = (answer(conn, probe) for conn in fresh)
    assert candidate == reference
