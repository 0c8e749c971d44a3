"""rexec.protocol.values: the one set of rules for R values as Python and JSON values.

Without a server: hand-made objects for each rule, and random objects (with the
attributes the rules read: names, dim, class, levels) that every conversion must take
without failing, to_json always giving what jsonable(to_python(...)) gives. The same rules
against a real rexec and a real Rserve: tests/client/test_convert.py.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import struct

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rexec.protocol import NULL, XT, Sexp, Symbol, encode_strings
from rexec.protocol.constants import NA_INTEGER, NA_REAL_BYTES
from rexec.protocol.values import (
    attributes,
    jsonable,
    strings,
    to_json,
    to_numpy,
    to_python,
)
from tests.protocol.test_qap_properties import extend, leaves, text

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def doubles(*values: float | None) -> Sexp:
    return Sexp(
        XT.ARRAY_DOUBLE,
        b"".join(NA_REAL_BYTES if v is None else struct.pack("<d", v) for v in values),
    )


def ints(*values: int | None) -> Sexp:
    return Sexp(
        XT.ARRAY_INT,
        struct.pack(f"<{len(values)}i", *(NA_INTEGER if v is None else v for v in values)),
    )


def with_class(s: Sexp, *cls: str, **more: Sexp) -> Sexp:
    return Sexp(s.xt, s.value, attributes(**{"class": strings(cls)}, **more))


def test_vectors_scalars_and_names() -> None:
    assert to_python(doubles(1.5)) == 1.5
    assert to_python(doubles(1.5, None)) == [1.5, None]
    named = Sexp(XT.ARRAY_DOUBLE, doubles(1, 2).value, attributes(names=strings(["a", "b"])))
    assert to_python(named) == {"a": 1.0, "b": 2.0}
    duplicated = Sexp(XT.ARRAY_DOUBLE, doubles(1, 2).value, attributes(names=strings("aa")))
    assert to_python(duplicated) == [1.0, 2.0]
    assert to_json(duplicated) == [1.0, 2.0]  # rjson collapsed these into {"a": 2.0}


def test_factor_codes_outside_the_levels_are_na() -> None:
    factor = with_class(ints(1, 0, 3, None, 2), "factor", levels=strings(["a", "b"]))
    assert to_python(factor) == ["a", None, None, None, "b"]
    assert to_numpy(factor).tolist()[4] == "b"
    assert to_python(with_class(ints(1), "factor")) is None  # no levels at all


def test_dates_floor_and_out_of_range_dates_are_none() -> None:
    days = with_class(doubles(-0.5, 0, 19782.9, None, math.nan, math.inf, 3e6), "Date")
    assert to_python(days) == [
        dt.date(1969, 12, 31),
        dt.date(1970, 1, 1),
        dt.date(2024, 2, 29),
        None,
        None,
        None,
        None,  # year 10183: beyond datetime.date
    ]
    assert to_json(days) == ["1969-12-31", "1970-01-01", "2024-02-29", None, None, None, None]
    stamps = with_class(doubles(0.5, None, -1e15), "POSIXct", "POSIXt")
    assert to_python(stamps) == [dt.datetime(1970, 1, 1, 0, 0, 0, 500000, dt.UTC), None, None]
    assert to_json(stamps) == ["1970-01-01T00:00:00.500000Z", None, None]
    assert to_python(with_class(ints(1), "Date")) == dt.date(1970, 1, 2)


def test_matrices_and_mismatched_dims() -> None:
    dim = ints(2, 3)
    m = Sexp(XT.ARRAY_INT, ints(*range(6)).value, attributes(dim=dim))
    assert to_python(m) == [[0, 2, 4], [1, 3, 5]]
    bad = Sexp(XT.ARRAY_INT, ints(*range(5)).value, attributes(dim=dim))
    assert to_python(bad) == [0, 1, 2, 3, 4]  # dims that do not fit are ignored
    assert to_python(Sexp(XT.ARRAY_INT, b"", attributes(dim=ints(0, 3)))) == []


def test_data_frames_pairlists_and_unusual_objects() -> None:
    frame = Sexp(
        XT.VECTOR,
        [ints(1), Sexp(XT.ARRAY_STR, encode_strings(["x"]))],
        attributes(
            names=strings(["a", "b"]),
            row_names=ints(NA_INTEGER, -1),
            **{"class": strings(["data.frame"])},
        ),
    )
    assert to_python(frame) == {"a": [1], "b": ["x"]}  # columns are lists at any length
    frame.attr.value[0] = (strings(["a", "a"]), frame.attr.value[0][1])
    assert to_python(frame) == [[1], ["x"]]
    pairs = Sexp(XT.LIST_TAG, [(ints(1), Sexp(XT.SYMNAME, "a")), (NULL, Sexp(XT.SYMNAME, "b"))])
    assert to_python(pairs) == {"a": 1, "b": None}
    closure = Sexp(XT.CLOS, (NULL, Sexp(XT.SYMNAME, "x")))
    assert to_python(closure) is closure
    assert to_json(closure) is None
    assert to_json(Sexp(XT.SYMNAME, "x")) == "x" and type(to_json(Sexp(XT.SYMNAME, "x"))) is str
    assert to_python(Sexp(XT.SYMNAME, "x")) == Symbol("x")


def test_json_leaves() -> None:
    assert jsonable([math.nan, math.inf, -math.inf, 1.5]) == [None, None, None, 1.5]
    assert jsonable(b"\x00\xff") == "AP8="
    assert jsonable(1 + 2j) == "(1+2j)"
    assert jsonable(dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)) == "2024-01-02T03:04:05Z"
    assert jsonable(dt.date(2024, 1, 2)) == "2024-01-02"
    assert jsonable({"a": NULL}) == {"a": None}  # an unusual object (a Sexp)
    assert to_json(Sexp(XT.ARRAY_CPLX, struct.pack("<2d", 1, 2) + NA_REAL_BYTES * 2)) == [
        "(1+2j)",
        None,
    ]


def test_long_numeric_vectors_are_not_walked_in_python() -> None:
    data = np.arange(1_000_000, dtype="<f8")
    data[5] = np.inf
    s = Sexp(XT.ARRAY_DOUBLE, memoryview(data).cast("B"))
    out = to_json(s)
    assert out[5] is None and out[6] == 6.0 and len(out) == 1_000_000


# --------------------------------------------------------------------------- random objects

names_attr = st.lists(st.none() | st.sampled_from(["a", "b", "", "c"]), max_size=4).map(strings)
class_attr = st.lists(
    st.sampled_from(["factor", "ordered", "Date", "POSIXct", "data.frame", "other"]),
    min_size=1,
    max_size=2,
).map(strings)
dim_attr = st.lists(st.integers(-1, 4), min_size=1, max_size=3).map(lambda d: ints(*d))
levels_attr = st.lists(st.none() | text, max_size=3).map(strings)
meaningful = st.lists(
    st.one_of(
        st.tuples(names_attr, st.just("names")),
        st.tuples(class_attr, st.just("class")),
        st.tuples(dim_attr, st.just("dim")),
        st.tuples(levels_attr, st.just("levels")),
    ),
    min_size=1,
    max_size=3,
).map(lambda pairs: Sexp(XT.LIST_TAG, [(v, Sexp(XT.SYMNAME, tag)) for v, tag in pairs]))


def attached(base: st.SearchStrategy[Sexp]) -> st.SearchStrategy[Sexp]:
    return st.builds(lambda s, attr: Sexp(s.xt, s.value, attr), base, meaningful)


objects = st.recursive(
    st.one_of(leaves, attached(leaves)),
    lambda children: st.one_of(extend(children), attached(extend(children))),
    max_leaves=20,
)


@FAST
@given(objects)
def test_any_object_converts_and_to_json_is_jsonable_to_python(s) -> None:
    value = to_json(s)
    json.dumps(value, allow_nan=False)
    assert value == jsonable(to_python(s))
