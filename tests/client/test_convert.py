"""Value conversion without a server: Python/numpy/pandas -> Sexp -> Python/numpy/pandas."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from rexec.client import convert
from rexec.protocol import XT, decode_sexp, encode_sexp


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
