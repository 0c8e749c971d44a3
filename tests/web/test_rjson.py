"""JSON conversion of R values: each documented case goes R -> JSON -> R unchanged; the
rules are rexec.protocol.values' (the Python client's), JSON input agrees with to_sexp."""

from __future__ import annotations

import math

import pytest

from rexec.protocol import XT
from rexec.protocol.values import to_python, to_sexp
from rexec.web import rjson
from tests.web.conftest import Web

CASES = [
    ("c(1.5, NA, 3)", "numeric", [1.5, None, 3.0]),
    ("2.5", "numeric", 2.5),
    ("c(1L, NA)", "integer", [1, None]),
    ("c(TRUE, NA, FALSE)", "logical", [True, None, False]),
    ("c('a', NA)", "character", ["a", None]),
    ("c(a = 1, b = 2)", "numeric", {"a": 1.0, "b": 2.0}),
    ("list(x = 1L, y = list('n', TRUE), z = NULL)", "list", {"x": 1, "y": ["n", True], "z": None}),
    ("list(1, 'b')", "list", [1.0, "b"]),
    ("factor(c('lo', 'hi', NA, 'lo'))", "factor", ["lo", "hi", None, "lo"]),
    ("factor(c('a', 'b'), ordered = TRUE)", "ordered", ["a", "b"]),
    ("as.Date(c('2024-02-29', NA))", "Date", ["2024-02-29", None]),
    (
        "as.POSIXct(c('2024-01-02 03:04:05', NA), tz = 'UTC')",
        "POSIXct",
        ["2024-01-02T03:04:05Z", None],
    ),
    ("matrix(1:6, 2)", "matrix", [[1, 3, 5], [2, 4, 6]]),
    ("matrix(c(0.5, NA, 1, 2), 2)", "matrix", [[0.5, 1.0], [None, 2.0]]),
    (
        "data.frame(n = c(1.5, NA), i = 1:2, s = c('a', NA), l = c(TRUE, NA))",
        "data.frame",
        {"n": [1.5, None], "i": [1, 2], "s": ["a", None], "l": [True, None]},
    ),
    ("NULL", "NULL", None),
    ("as.raw(c(0, 255))", "raw", "AP8="),
]


@pytest.fixture(scope="module")
def r(web: Web):
    with web.client() as client:
        sid = client.post("/sessions", json={}).json()["id"]

        def execute(code: str, inputs=(), outputs=()) -> dict:
            body = {
                "code": code,
                "inputParameters": list(inputs),
                "outputParameters": list(outputs),
            }
            reply = client.post(f"/sessions/{sid}/execute", json=body)
            assert reply.status_code == 200, reply.text
            result = reply.json()
            assert result["success"], result["errorMessage"]
            return result

        yield execute
        client.delete(f"/sessions/{sid}")


@pytest.mark.parametrize(("expression", "type_", "json_value"), CASES)
def test_r_to_json_and_back(r, expression: str, type_: str, json_value) -> None:
    (out,) = r(f"original <- {expression}", outputs=["original"])["outputParameters"]
    assert out == {"name": "original", "value": json_value, "type": type_}
    back = r(
        "same <- identical(original, copy) || isTRUE(all.equal(original, copy))",
        inputs=[{"name": "copy", "value": out["value"], "type": out["type"]}],
        outputs=["same"],
    )
    assert back["outputParameters"][0]["value"] is True, expression


def test_untyped_json_is_inferred(r) -> None:
    inputs = [
        {"name": "i", "value": 3},
        {"name": "d", "value": 3.0},
        {"name": "v", "value": [1, 2.5, None]},
        {"name": "s", "value": ["a", None]},
        {"name": "l", "value": {"a": 1, "b": "x"}},
        {"name": "m", "value": [1, "x"]},
        {"name": "n", "value": None},
    ]
    code = "k <- c(class(i), class(d), class(v), class(s), class(l), class(m), class(n))"
    result = r(code, inputs=inputs, outputs=["k"])
    assert result["outputParameters"][0]["value"] == [
        "integer",
        "numeric",
        "numeric",
        "character",
        "list",
        "list",
        "NULL",
    ]


def test_non_finite_numbers_are_null(r) -> None:
    out = r("x <- c(NaN, Inf, -Inf, 1)", outputs=["x"])["outputParameters"][0]
    assert out["value"] == [None, None, None, 1.0]


#: Names that do not make an object (duplicated, empty or NA) are dropped, as in the Python
#: client: the value is an array (before, duplicates collapsed into an object and kept
#: only the last value of each name).
NAMES_DROPPED = [
    ("c(a = 1, a = 2)", "numeric", [1.0, 2.0]),
    ("c(1, b = 2)", "numeric", [1.0, 2.0]),
    ("setNames(1, '')", "numeric", [1.0]),  # named, so not a scalar either
    ("setNames(1:2, c('a', NA))", "integer", [1, 2]),
    ("list(a = 1L, a = 'x')", "list", [1, "x"]),
    ("list(a = 1L, list(b = 2L, b = 3L))", "list", [1, [2, 3]]),
    (
        "data.frame(a = 1:2, a = c('x', 'y'), check.names = FALSE)",
        "data.frame",
        [[1, 2], ["x", "y"]],
    ),
]


@pytest.mark.parametrize(("expression", "type_", "json_value"), NAMES_DROPPED)
def test_names_that_do_not_make_an_object_are_dropped(
    r, expression: str, type_: str, json_value
) -> None:
    (out,) = r(f"original <- {expression}", outputs=["original"])["outputParameters"]
    assert out == {"name": "original", "value": json_value, "type": type_}


# --------------------------------------------------------------------------- JSON -> R


@pytest.mark.parametrize(
    "value",
    [
        None,
        3,
        2.5,
        "x",
        True,
        2**40,
        [1, None, 3],
        [1, 2**31],
        [-(2**31), 1],
        [1, 2.5, None],
        [True, None],
        ["a", None],
        [None, None],
        [],
        [1, "a"],
        [True, 1],
        {"a": [1, 2], "b": {"c": None}},
        {},
        [[1, 2], [3]],
        float("nan"),
    ],
    ids=repr,
)
def test_untyped_json_is_what_the_python_client_sends(value) -> None:
    assert rjson.from_json(value) == to_sexp(value)


@pytest.mark.parametrize(
    ("value", "type_"),
    [
        ([1, None], "integer"),
        ([1.5, None], "numeric"),
        ([1.5, float("nan")], "numeric"),
        ([True, None], "logical"),
        (["a", None], "character"),
        ({"a": 1, "b": "x"}, "list"),
    ],
)
def test_typed_json_agrees_with_inferred(value, type_) -> None:
    assert rjson.from_json(value, type_) == rjson.from_json(value)


def test_null_is_na_and_nan_stays_nan() -> None:
    doubles = to_python(rjson.from_json([None, float("nan")], "numeric"))
    assert doubles[0] is None and math.isnan(doubles[1])
    assert rjson.from_json([2**40, 1]).xt == XT.ARRAY_DOUBLE  # beyond 32 bits: doubles
    assert rjson.from_json([2**40], "numeric") == rjson.from_json([2**40])


@pytest.mark.parametrize(
    ("value", "type_"), [(10**400, None), ([1, 10**400], None), (2**40, "integer")]
)
def test_unrepresentable_numbers_are_conversion_errors(value, type_) -> None:
    with pytest.raises(rjson.ConversionError):
        rjson.from_json(value, type_)
