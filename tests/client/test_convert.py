"""Value conversion: Python/numpy/pandas -> Sexp -> Python/numpy/pandas without a server,
then the one set of rules (rexec.protocol.values) on the same R values from a real
Rserve and a real rexec compute node."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pandas as pd
import pytest

import rexec.client
from rexec.client import convert
from rexec.protocol import XT, Sexp, decode_sexp, encode_sexp
from rexec.web import rjson
from tests.conftest import Server


def wire(value: object):
    """Encode as the server would receive it, then decode as the client would."""
    chunks, _ = encode_sexp(convert.to_sexp(value))
    return decode_sexp(b"".join(bytes(c) for c in chunks))[0]


def test_numeric_arrays_are_views_of_the_wire_bytes() -> None:
    s = wire(np.arange(1000, dtype="f8"))
    out = convert.to_numpy(s)
    assert out.dtype == np.dtype("<f8") and out.base is not None  # no copy
    np.testing.assert_array_equal(out, np.arange(1000.0))
    ints = convert.to_numpy(wire(np.arange(5, dtype=np.int64)))
    assert ints.dtype == np.dtype("<i4")
    big = wire(np.array([2**40], dtype=np.int64))
    assert big.xt == XT.ARRAY_DOUBLE


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.5, 1.5),
        ([1, None, 3], [1, None, 3]),
        (["a", None], ["a", None]),
        ([True, None], [True, None]),
        ({"a": 1, "b": [1.0, 2.0]}, {"a": 1, "b": [1.0, 2.0]}),
        (dt.date(2024, 2, 29), dt.date(2024, 2, 29)),
        ([dt.date(2024, 1, 1), None], [dt.date(2024, 1, 1), None]),
        (b"\x00\x01", b"\x00\x01"),
        (None, None),
    ],
)
def test_python_round_trip(value: object, expected: object) -> None:
    assert convert.to_python(wire(value)) == expected


def test_matrix_is_column_major_on_the_wire() -> None:
    m = np.arange(6.0).reshape(2, 3)
    s = wire(m)
    assert convert.dims(s) == (2, 3)
    np.testing.assert_array_equal(convert.to_numpy(s), m)
    assert convert.to_python(s) == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]


def test_data_frame_round_trip_with_missing_values() -> None:
    frame = pd.DataFrame(
        {
            "x": [1.0, np.nan, 3.0],
            "n": pd.array([1, None, 3], dtype="Int64"),
            "f": pd.Categorical(["a", None, "b"], categories=["b", "a"], ordered=True),
            "s": ["p", None, "r"],
            "b": pd.array([True, None, False], dtype="boolean"),
            "d": pd.to_datetime(["2020-01-01", None, "2021-06-30"]).astype("datetime64[s]"),
        }
    )
    s = wire(frame)
    assert convert.classes(s) == ["data.frame"]
    back = convert.to_numpy(s)
    assert list(back.columns) == list(frame.columns)
    assert np.isnan(back["x"][1]) and back["x"][2] == 3.0
    assert np.isnan(back["n"][1]) and back["n"][0] == 1
    assert isinstance(back["f"].dtype, pd.CategoricalDtype) and back["f"].cat.ordered
    assert list(back["f"].cat.categories) == ["b", "a"] and pd.isna(back["f"][1])
    assert back["s"].tolist() == ["p", None, "r"]
    assert back["b"].tolist() == [True, None, False]
    assert pd.isna(back["d"][1]) and back["d"][2] == pd.Timestamp("2021-06-30")
    plain = convert.to_python(s)
    assert plain["f"] == ["a", None, "b"] and plain["x"][1] is None


def test_pandas_nan_is_na_but_numpy_nan_stays_nan() -> None:
    na = convert.na_mask(wire(pd.Series([np.nan, 1.0])))
    assert na.tolist() == [True, False]
    assert convert.na_mask(wire(np.array([np.nan, 1.0]))).tolist() == [False, False]


# --------------------------------------------------------------------------- differential

#: R values whose Python rendering must be the same from Rserve and from rexec, and whose
#: JSON rendering (rexec.web.rjson, sessions and services) must be the JSON view of it.
EXPRESSIONS = [
    # names: a dict only for unique, non-empty, non-NA names
    "c(a = 1, b = 2)",
    "c(a = 1, a = 2)",
    "c(1, b = 2)",
    "setNames(1, '')",
    "setNames(1:2, c('a', NA))",
    "c(a = 1L)",
    "list(a = 1, a = 'x', 3)",
    "list(x = 1L, y = list('a', TRUE), z = NULL)",
    # NA in every type
    "NA",
    "c(TRUE, NA, FALSE)",
    "NA_integer_",
    "c(1L, NA)",
    "NA_real_",
    "c(1.5, NA, 3)",
    "NA_character_",
    "c('a', NA, 'na\u00efve', '\u65e5\u672c')",
    "NA_complex_",
    "c(1+2i, NA, complex(real = NaN, imaginary = 1))",
    "factor(c('a', NA))",
    "as.Date(NA)",
    "as.POSIXct(NA)",
    # NaN and infinities
    "c(NaN, Inf, -Inf, NA, 0)",
    "NaN",
    "-Inf",
    # factors
    "factor(c('lo', 'hi', 'lo'))",
    "factor('x')",
    "factor(c('a', 'b'), ordered = TRUE)",
    "factor(character(0))",
    "addNA(factor(c('a', NA)))",
    # dates and date-times
    "as.Date('2024-02-28') + 0:2",
    "structure(c(-0.5, 19782.9), class = 'Date')",
    "structure(c(-800000, 3e6), class = 'Date')",  # outside Python's years 1-9999
    "as.POSIXct(c('2024-01-02 03:04:05', NA), tz = 'UTC')",
    "as.POSIXct('2024-01-02 03:04:05.5', tz = 'UTC')",
    "as.POSIXct(0, origin = '1970-01-01', tz = 'America/New_York')",
    "as.difftime(5, units = 'mins')",
    # matrices and arrays
    "matrix(1:6, 2)",
    "matrix(c(0.5, NA, NaN, Inf), 2)",
    "matrix(c('a', NA, 'c', 'd'), 2, dimnames = list(c('r1', 'r2'), c('c1', 'c2')))",
    "array(1:24, 2:4)",
    "matrix(numeric(0), 0, 3)",
    "diag(2) == 1",
    "matrix(list(1, 'a', TRUE, NULL), 2)",
    "table(c('a', 'b', 'a'))",
    # data frames
    "data.frame(n = c(1.5, NA), i = 1:2, s = c('a', NA), l = c(TRUE, NA), "
    "f = factor(c('u', NA)), d = as.Date(c('2024-01-01', NA)), stringsAsFactors = FALSE)",
    "data.frame()",
    "data.frame(x = 1)",
    "data.frame(a = 1:2, a = 3:4, check.names = FALSE)",
    "head(mtcars, 3)",
    "{d <- data.frame(id = 1:2); d$l <- list(1:2, 'x'); d}",
    # nested lists
    "list(1, list(2, list(3, list())), x = NULL)",
    "list(a = list(b = list(c = 1:3)))",
    "list()",
    "list(NULL)",
    # raw, NULL and the rest
    "as.raw(c(0, 255))",
    "as.raw(7)",
    "raw(0)",
    "NULL",
    "1:3",
    "2",
    "TRUE",
    "'text'",
    "character(0)",
    "structure(1:4, class = 'myclass')",
    "quote(x)",
    "formals(function(a, b = 2) NULL)",
    "as.pairlist(list(a = 1, 2))",
    "quote(f(a = 1))",
    "expression(1 + 2, x)",
    "function(x) x + 1",
    "globalenv()",
    "{setClass('P', representation(x = 'numeric')); new('P', x = 1)}",
    "seq(0, 1, length.out = 100001)",
]


def same(a: object, b: object) -> bool:
    """Equality where NaN equals NaN and unusual objects (Sexps) compare by type."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, complex) and isinstance(b, complex):
        return same(a.real, b.real) and same(a.imag, b.imag)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, Sexp) and isinstance(b, Sexp):
        return a.xt == b.xt
    return type(a) is type(b) and a == b


@pytest.fixture(scope="module")
def both(rserve: Server, rexec_server: Server):
    with (
        rexec.client.connect(port=rserve.port, timeout=30) as reference,
        rexec.client.connect(port=rexec_server.port, timeout=30) as ours,
    ):
        yield reference, ours


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_rserve_and_rexec_values_are_the_same_python_and_json(both, expression: str) -> None:
    reference, ours = (c.eval(expression, convert="raw") for c in both)
    expected, value = convert.to_python(reference), convert.to_python(ours)
    assert same(value, expected), (value, expected)
    assert same(both[1].eval(expression), value)  # the client's own conversion
    for s, python in ((reference, expected), (ours, value)):
        as_json = rjson.to_json(s)
        assert as_json == convert.jsonable(python)
        json.dumps(as_json, allow_nan=False)
    assert rjson.to_json(ours) == rjson.to_json(reference)
    assert rjson.r_type(ours) == rjson.r_type(reference)


def test_what_the_rules_give_for_some_of_them(both) -> None:
    _, r = both
    assert r.eval("c(a = 1, a = 2)") == [1.0, 2.0]
    assert r.eval("setNames(1, '')") == [1.0]
    assert r.eval("list(a = 1, a = 'x', 3)") == [1.0, "x", 3.0]
    assert r.eval("data.frame(a = 1:2, a = 3:4, check.names = FALSE)") == [[1, 2], [3, 4]]
    assert r.eval("as.pairlist(list(a = 1, b = 2))") == {"a": 1.0, "b": 2.0}
    assert r.eval("structure(c(-0.5, 19782.9), class = 'Date')") == [
        dt.date(1969, 12, 31),
        dt.date(2024, 2, 29),
    ]
    assert r.eval("structure(c(-800000, 3e6), class = 'Date')") == [None, None]
    assert r.eval("addNA(factor(c('a', NA)))") == ["a", None]
    assert r.eval("table(c('a', 'b', 'a'))") == [2, 1]
    assert r.eval("matrix(c(0.5, NA, NaN, Inf), 2)")[1][0] is None
    assert rjson.to_json(r.eval("matrix(c(0.5, NA, NaN, Inf), 2)", convert="raw")) == [
        [0.5, None],
        [None, None],
    ]
    assert rjson.to_json(
        r.eval("as.POSIXct(0, origin = '1970-01-01', tz = 'UTC')", convert="raw")
    ) == ("1970-01-01T00:00:00Z")
    assert isinstance(r.eval("function(x) x + 1"), Sexp)
