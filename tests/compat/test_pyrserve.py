"""pyRserve against Rserve and rexec: the same answers (values and errors) for every case."""

from __future__ import annotations

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
