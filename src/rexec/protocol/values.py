"""R values (the codec's :class:`Sexp`) as Python, JSON, numpy and pandas values, and back.

This module holds the one set of rules by which rexec turns R values into Python: the
Python client (``rexec.client``, ``convert="python"``), the web node's sessions and
services (``rexec.web.rjson``) and the tests all use it. :func:`to_python` gives plain
Python:

* ``NULL`` is None; an unnamed atomic vector of length one is a scalar, any other
  atomic vector a list; ``NA`` (of any type) is None; NaN and infinities stay floats;
* names make a dict only when they are all present (not ``NA``), non-empty and unique,
  and there is one per element; other names are dropped and the value is a list (an
  atomic vector of length one with such names stays a one-element list);
* a matrix or array (a ``dim`` attribute of two or more extents matching the length) is a
  list of rows (nested lists, row-major), its dimnames dropped;
* a data frame is ``{column: [values]}`` (a list of columns when its names do not make a
  dict), row names dropped; each column is a list whatever its length;
* a factor is its labels; ``Date`` is :class:`datetime.date`, ``POSIXct`` an aware UTC
  :class:`datetime.datetime` (dates outside years 1-9999 are None); other classes are
  their underlying vectors;
* generic lists, expression vectors and pairlists follow the names rule (a pairlist's
  names are its tags); raw vectors are :class:`bytes`, symbols :class:`Symbol`;
* anything else (closures, language objects, environments, S4 objects) is returned as
  the :class:`Sexp` itself.

:func:`to_json` applies the same structural rules and then encodes leaves for JSON:
NaN and infinities become None, dates and date-times ISO 8601 strings (``Z`` for UTC),
bytes base64 strings, complex numbers and symbols strings, unusual objects None. It
always equals ``jsonable(to_python(s))``, only faster for long numeric vectors.

:func:`to_numpy` gives numpy arrays (NA as NaN/NaT/None), pandas DataFrames for data
frames and ``pandas.Categorical`` for factors (when pandas is installed), under the same
names rule. :func:`to_sexp` goes the other way, for Python, numpy and pandas values.

Numeric data never goes through a per-element Python loop on the way to numpy: replies
are viewed with ``np.frombuffer`` on the received bytes and outgoing arrays are sent as
byte views. Only character data, dates and ``tolist`` walk elements.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import struct
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from rexec.protocol.codec import Symbol, decode_strings, encode_strings, from_python
from rexec.protocol.constants import NA_INTEGER, XT
from rexec.protocol.sexp import NULL, Sexp

_NA_REAL_BITS = struct.unpack("<Q", bytes.fromhex("a20700000000f07f"))[0]
_NA_LOW_WORD = 1954
_ATOMIC = frozenset({XT.ARRAY_INT, XT.ARRAY_DOUBLE, XT.ARRAY_BOOL, XT.ARRAY_STR, XT.ARRAY_CPLX})
_LISTS = frozenset({XT.VECTOR, XT.VECTOR_EXP, XT.LIST_NOTAG})
# What Python's dates can hold: days and seconds since 1970-01-01 for years 1-9999.
_FIRST_DAY = dt.date.min.toordinal() - dt.date(1970, 1, 1).toordinal()
_LAST_DAY = dt.date.max.toordinal() - dt.date(1970, 1, 1).toordinal()
_FIRST_SECOND = _FIRST_DAY * 86400.0
_LAST_SECOND = (_LAST_DAY + 1) * 86400.0 - 1


def _pandas(*, load: bool = False) -> Any:
    """pandas, or None. Values can only be pandas objects once pandas is imported, so
    Python -> R checks ``sys.modules``; R -> pandas imports it (``load``) when installed."""
    pd = sys.modules.get("pandas")
    if pd is None and load:
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - pandas is installed with the test extras
            return None
    return pd


# =========================================================================== helpers


def attribute_strings(s: Sexp, name: str) -> list[str | None] | None:
    """A character attribute (``names``, ``class``, ``levels``...) as a list, or None."""
    value = s.attribute(name)
    if value is None or value.xt != XT.ARRAY_STR:
        return None
    return decode_strings(value.value)


def classes(s: Sexp) -> list[str]:
    """The object's ``class`` attribute (empty for implicit classes)."""
    return [c for c in attribute_strings(s, "class") or [] if c is not None]


def dims(s: Sexp) -> tuple[int, ...] | None:
    """The ``dim`` attribute as a tuple, or None."""
    value = s.attribute("dim")
    if value is None or value.xt not in (XT.ARRAY_INT, XT.ARRAY_DOUBLE):
        return None
    data = numeric_array(value)
    if not np.all(np.isfinite(data)):
        return None
    return tuple(int(d) for d in data)


def numeric_array(s: Sexp) -> np.ndarray:
    """The wire bytes of an int/double/complex/logical vector as a numpy view (no copy)."""
    if s.xt == XT.ARRAY_DOUBLE:
        return np.frombuffer(s.value, dtype="<f8")
    if s.xt == XT.ARRAY_INT:
        return np.frombuffer(s.value, dtype="<i4")
    if s.xt == XT.ARRAY_CPLX:
        return np.frombuffer(s.value, dtype="<c16")
    if s.xt in (XT.ARRAY_BOOL, XT.RAW):
        return np.frombuffer(s.value, dtype=np.uint8)
    raise TypeError(f"{XT(s.xt).name} is not a numeric vector")


def na_mask(s: Sexp) -> np.ndarray:
    """True where an atomic vector holds NA (R's NA_real_, not any NaN, for doubles)."""
    if s.xt == XT.ARRAY_STR:
        return np.array([v is None for v in decode_strings(s.value)], dtype=bool)
    data = numeric_array(s)
    if s.xt == XT.ARRAY_DOUBLE:
        return np.isnan(data) & (data.view("<u4")[::2] == _NA_LOW_WORD)
    if s.xt == XT.ARRAY_INT:
        return data == NA_INTEGER
    if s.xt == XT.ARRAY_BOOL:
        return data > 1
    if s.xt == XT.ARRAY_CPLX:
        real = np.ascontiguousarray(data.real)
        return np.isnan(real) & (real.view("<u4")[::2] == _NA_LOW_WORD)
    return np.zeros(len(data), dtype=bool)


def is_data_frame(s: Sexp) -> bool:
    return s.xt in _LISTS and "data.frame" in classes(s)


def is_factor(s: Sexp) -> bool:
    return s.xt == XT.ARRAY_INT and "factor" in classes(s)


def _dated(s: Sexp) -> str | None:
    """The class of a numeric vector of class Date or POSIXct (R's only kinds), or None."""
    if s.xt in (XT.ARRAY_DOUBLE, XT.ARRAY_INT):
        cls = classes(s)
        for name in ("Date", "POSIXct"):
            if name in cls:
                return name
    return None


def _with_nones(values: list[Any], mask: np.ndarray) -> list[Any]:
    for i in np.flatnonzero(mask):
        values[i] = None
    return values


def _unique_names(names: list[str | None] | None, n: int) -> bool:
    """The names rule: one per element, none NA or empty, no two alike."""
    return (
        names is not None and len(names) == n and all(names) and len(set(names)) == len(names)  # type: ignore[arg-type]
    )


def _names(s: Sexp, n: int) -> list[str] | None:
    """``s``'s names when they make a dict (see the names rule), else None."""
    names = attribute_strings(s, "names")
    return names if _unique_names(names, n) else None  # type: ignore[return-value]


def _matrix_shape(s: Sexp, n: int) -> tuple[int, ...] | None:
    shape = dims(s)
    if shape is None or len(shape) < 2 or math.prod(shape) != n or min(shape) < 0:
        return None
    return shape


def _factor_codes(s: Sexp, mask: np.ndarray) -> tuple[np.ndarray, list[str | None], np.ndarray]:
    """A factor's zero-based codes, its levels, and where it has no label (NA, or a code
    outside its levels)."""
    levels = attribute_strings(s, "levels") or []
    codes = numeric_array(s)
    bad = mask | (codes < 1) | (codes > len(levels))
    return np.where(bad, 0, codes - 1), levels, bad


# =========================================================================== R -> Python


class _Leaves(NamedTuple):
    """What differs between the Python and the JSON rendering: only the leaves."""

    vector: Callable[[Sexp], list[Any]]  # an atomic vector's elements
    raw: Callable[[Any], Any]
    symbol: Callable[[str], Any]
    other: Callable[[Sexp], Any]  # closures, calls, environments, S4...


def _convert(s: Sexp, leaves: _Leaves) -> Any:
    """The structural rules (see the module docs), shared by to_python and to_json."""
    xt = s.xt
    if xt == XT.NULL:
        return None
    if xt in _ATOMIC:
        values = leaves.vector(s)
        n = len(values)
        shape = _matrix_shape(s, n)
        if shape is not None:
            return np.array(values, dtype=object).reshape(shape, order="F").tolist()
        names = attribute_strings(s, "names")
        if _unique_names(names, n):
            return dict(zip(names, values, strict=True))  # type: ignore[arg-type]
        return values[0] if n == 1 and names is None else values
    if xt in _LISTS:
        if is_data_frame(s):
            items = [_column(col, leaves) for col in s.value]
        else:
            items = [_convert(child, leaves) for child in s.value]
        names = _names(s, len(items))
        return dict(zip(names, items, strict=True)) if names is not None else items
    if xt == XT.LIST_TAG:
        items = [_convert(item, leaves) for item, _ in s.value]
        tags = [tag.value if tag.xt == XT.SYMNAME else None for _, tag in s.value]
        if _unique_names(tags, len(items)):
            return dict(zip(tags, items, strict=True))
        return items
    if xt == XT.RAW:
        return leaves.raw(s.value)
    if xt == XT.SYMNAME:
        return leaves.symbol(s.value)
    if xt == XT.STR:
        return s.value
    return leaves.other(s)


def _column(s: Sexp, leaves: _Leaves) -> list[Any]:
    """A data frame column: always a list."""
    if s.xt in _ATOMIC:
        return leaves.vector(s)
    converted = _convert(s, leaves)
    return converted if isinstance(converted, list) else [converted]


def python_vector(s: Sexp) -> list[Any]:
    """An atomic vector's elements as a list (NA as None), honouring factor, Date and
    POSIXct classes; ``to_python`` of anything else, as a list."""
    if s.xt not in _ATOMIC:
        return _column(s, _PYTHON)
    if s.xt == XT.ARRAY_STR:
        return decode_strings(s.value)
    mask = na_mask(s)
    if is_factor(s):
        codes, levels, bad = _factor_codes(s, mask)
        labels = [levels[c] for c in codes.tolist()] if levels else [None] * len(codes)
        return _with_nones(labels, bad)
    dated = _dated(s)
    if dated == "Date":
        days = numeric_array(s).astype("f8")
        bad = mask | ~((days >= _FIRST_DAY) & (days < _LAST_DAY + 1))  # NaN too
        days = np.floor(np.where(bad, 0, days)).astype("i8").astype("datetime64[D]")
        return _with_nones(days.tolist(), bad)
    if dated == "POSIXct":
        secs = numeric_array(s).astype("f8")
        bad = mask | ~((secs >= _FIRST_SECOND) & (secs < _LAST_SECOND))
        return _with_nones(
            [dt.datetime.fromtimestamp(v, dt.UTC) for v in np.where(bad, 0, secs).tolist()], bad
        )
    data = numeric_array(s)
    if s.xt == XT.ARRAY_BOOL:
        return _with_nones((data == 1).tolist(), mask)
    return _with_nones(data.tolist(), mask)


_PYTHON = _Leaves(python_vector, bytes, Symbol, lambda s: s)


def to_python(s: Sexp) -> Any:
    """Plain Python by the rules in the module docs; unusual objects are returned as the
    Sexp."""
    return _convert(s, _PYTHON)


# =========================================================================== R -> JSON


def _iso(value: dt.date) -> str:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return value.isoformat()


def jsonable(value: Any) -> Any:
    """A JSON-ready version of a :func:`to_python` value (the JSON leaf rules: NaN and
    infinities None, dates ISO 8601 strings, bytes base64, complex numbers and symbols
    strings, anything else None)."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return str(value)  # a Symbol becomes a plain string
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, dt.date):
        return _iso(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return _base64(value)
    if isinstance(value, complex):
        return str(value)
    return None


def json_vector(s: Sexp) -> list[Any]:
    """``jsonable(python_vector(s))``, without a Python loop over numbers."""
    if s.xt == XT.ARRAY_STR or is_factor(s):
        return python_vector(s)  # strings and None
    if _dated(s) is not None or s.xt == XT.ARRAY_CPLX:
        return [jsonable(v) for v in python_vector(s)]
    if s.xt == XT.ARRAY_DOUBLE:
        data = numeric_array(s)
        return _with_nones(data.tolist(), ~np.isfinite(data))  # NA, NaN and infinities
    return python_vector(s)  # integers, logicals: JSON already


def _base64(data: Any) -> str:
    return base64.b64encode(bytes(data)).decode("ascii")


_JSON = _Leaves(json_vector, _base64, str, lambda s: None)


def to_json(s: Sexp) -> Any:
    """A value ``json.dumps`` accepts: :func:`to_python`'s structure with JSON leaves
    (equal to ``jsonable(to_python(s))``)."""
    return _convert(s, _JSON)


# =========================================================================== R -> numpy


def to_numpy(s: Sexp) -> Any:
    """numpy arrays and pandas objects (see the module docs)."""
    if s.xt == XT.NULL:
        return None
    if is_data_frame(s):
        return _data_frame(s)
    if s.xt in _LISTS:
        items = [to_numpy(child) for child in s.value]
        names = _names(s, len(items))
        return dict(zip(names, items, strict=True)) if names is not None else items
    if s.xt in _ATOMIC:
        array = _numpy_vector(s)
        if isinstance(array, np.ndarray):
            shape = _matrix_shape(s, len(array))
            if shape is not None:
                return array.reshape(shape, order="F")
        return array
    return to_python(s)


def _numpy_vector(s: Sexp) -> Any:
    if s.xt == XT.ARRAY_STR:
        return np.array(decode_strings(s.value), dtype=object)
    mask = na_mask(s)
    cls = classes(s)
    data = numeric_array(s)
    if is_factor(s):
        codes, levels, bad = _factor_codes(s, mask)
        codes = np.where(bad, -1, codes)
        pd = _pandas(load=True)
        if pd is not None:
            return pd.Categorical.from_codes(codes, categories=levels, ordered="ordered" in cls)
        return np.array([*levels, None], dtype=object)[codes]
    dated = _dated(s)
    if dated is not None:
        values = data.astype("f8")
        bad = mask | ~np.isfinite(values)
        values = np.where(bad, 0.0, values)
        if dated == "Date":
            out = np.floor(values).astype("i8").astype("datetime64[D]")
        else:
            out = np.round(values * 1e6).astype("i8").astype("datetime64[us]")
        out[bad] = np.datetime64("NaT")
        return out
    if s.xt == XT.ARRAY_INT:
        return np.where(mask, np.nan, data) if mask.any() else data
    if s.xt == XT.ARRAY_BOOL:
        if mask.any():
            return np.where(mask, None, data == 1).astype(object)
        return data == 1
    return data  # doubles (NA and NaN both NaN) and complex: zero-copy views


def _data_frame(s: Sexp) -> Any:
    names = attribute_strings(s, "names") or []
    columns = [_numpy_vector(c) if c.xt in _ATOMIC else to_numpy(c) for c in s.value]
    pd = _pandas(load=True)
    if pd is None:
        keys = _names(s, len(columns))
        return dict(zip(keys, columns, strict=True)) if keys is not None else columns
    row_names = attribute_strings(s, "row.names")
    frame = pd.DataFrame(dict(enumerate(columns)), index=row_names or None)
    frame.columns = [str(n) for n in names[: len(columns)]] + [
        str(i) for i in range(len(names), len(columns))
    ]
    return frame


# =========================================================================== Python -> R


def attributes(**values: Sexp) -> Sexp:
    """An attribute pairlist; ``row_names`` is spelled ``row.names`` in R."""
    return Sexp(
        XT.LIST_TAG,
        [(v, Sexp(XT.SYMNAME, k.replace("_", "."))) for k, v in values.items()],
    )


def strings(items: Any) -> Sexp:
    """A character vector (None, and float NaN from pandas, become NA)."""
    return Sexp(XT.ARRAY_STR, encode_strings(_string_or_none(v) for v in items))


def _string_or_none(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and v != v):
        return None
    pd = _pandas()
    if pd is not None and (v is pd.NA or v is pd.NaT):
        return None
    return str(v)


def to_sexp(value: Any) -> Sexp:
    """The R object for a Python, numpy or pandas value (the reverse of the above).

    Plain numpy NaN stays R's NaN; missing values in pandas objects (NaN, None, NA, NaT)
    become R's NA. For JSON values this is what ``rexec.web.rjson.from_json`` does
    without a type: None is NULL (NA inside a vector), a list of one scalar kind an
    atomic vector, integers outside R's 32 bits make the vector double.
    """
    if isinstance(value, Sexp):
        return value
    if value is None:
        return NULL
    pd = _pandas()
    if pd is not None:
        if isinstance(value, pd.DataFrame):
            return _frame_sexp(value)
        if isinstance(value, pd.Series):
            s = _series_sexp(value)
            if not isinstance(value.index, pd.RangeIndex) or value.index.start != 0:
                s.attr = merge_attributes(s.attr, names=strings(value.index))
            return s
        if isinstance(value, pd.Categorical):
            return _factor(value)
    if isinstance(value, np.ndarray):
        return array_sexp(value)
    if isinstance(value, np.generic):
        if isinstance(value, np.datetime64):
            return array_sexp(np.array([value]))
        return from_python(value.item())
    if isinstance(value, dt.datetime | dt.date):
        return _dates([value])
    if isinstance(value, dict):
        names = strings(str(k) for k in value)
        return Sexp(XT.VECTOR, [to_sexp(v) for v in value.values()], attributes(names=names))
    if isinstance(value, list | tuple):
        if any(isinstance(v, dt.date) for v in value) and all(
            isinstance(v, dt.date) or v is None for v in value
        ):
            return _dates(value)
        try:
            atomic = from_python(list(value))
        except TypeError:
            atomic = None
        if atomic is not None and atomic.xt != XT.VECTOR:
            return atomic
        return Sexp(XT.VECTOR, [to_sexp(v) for v in value])
    return from_python(value)


def merge_attributes(attr: Sexp | None, **values: Sexp) -> Sexp:
    pairs = list(attr.value) if attr is not None else []
    pairs += attributes(**values).value
    return Sexp(XT.LIST_TAG, pairs)


def array_sexp(a: np.ndarray, *, missing_nan: bool = False) -> Sexp:
    """An R vector (or matrix/array, for ``ndim > 1``) for a numpy array.

    ``missing_nan`` sends NaN as NA (pandas' convention for missing numbers).
    """
    if a.ndim > 1:
        s = array_sexp(a.ravel(order="F"), missing_nan=missing_nan)
        shape = np.array(a.shape, dtype="<i4")
        s.attr = merge_attributes(s.attr, dim=Sexp(XT.ARRAY_INT, shape.tobytes()))
        return s
    kind = a.dtype.kind
    if kind == "f":
        data = np.ascontiguousarray(a, dtype="<f8")
        if missing_nan:
            nan = np.isnan(data)
            if nan.any():
                data = data.copy()
                data.view("<u8")[nan] = _NA_REAL_BITS
        return Sexp(XT.ARRAY_DOUBLE, data.data.cast("B"))
    if kind in "iu":
        if a.size == 0 or (a.min() > NA_INTEGER and a.max() <= 2**31 - 1):
            return Sexp(XT.ARRAY_INT, np.ascontiguousarray(a, dtype="<i4").data.cast("B"))
        return array_sexp(a.astype("<f8"))
    if kind == "b":
        return Sexp(XT.ARRAY_BOOL, np.ascontiguousarray(a, dtype=np.uint8).tobytes())
    if kind == "c":
        return Sexp(XT.ARRAY_CPLX, np.ascontiguousarray(a, dtype="<c16").data.cast("B"))
    if kind == "M":
        return _datetime64(a)
    if kind == "m":
        return array_sexp(a.astype("timedelta64[ns]").astype("i8") / 1e9)
    if kind in "US":
        return strings(a.tolist())
    if kind == "O":
        items = a.tolist()
        present = [v for v in items if _string_or_none(v) is not None]
        if all(isinstance(v, str) for v in present):
            return strings(items)
        return to_sexp(items)
    raise TypeError(f"cannot send a numpy array of dtype {a.dtype}")


def _datetime64(a: np.ndarray) -> Sexp:
    unit = np.datetime_data(a.dtype)[0]
    nat = np.isnat(a)
    if unit in ("D", "W", "M", "Y"):
        days = a.astype("datetime64[D]").astype("i8").astype("<f8")
        days[nat] = np.nan
        s = array_sexp(days, missing_nan=True)
        s.attr = attributes(**{"class": strings(["Date"])})
        return s
    secs = a.astype("datetime64[us]").astype("i8") / 1e6
    secs[nat] = np.nan
    return posixct(secs)


def _dates(values: list[Any] | tuple[Any, ...]) -> Sexp:
    if any(isinstance(v, dt.datetime) for v in values):
        secs = np.array([np.nan if v is None else _timestamp(v) for v in values], dtype="<f8")
        return posixct(secs)
    days = np.array(["NaT" if v is None else v.isoformat() for v in values], dtype="datetime64[D]")
    return _datetime64(days)


def _timestamp(value: dt.date) -> float:
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()


def posixct(secs: np.ndarray) -> Sexp:
    s = array_sexp(secs, missing_nan=True)
    s.attr = attributes(**{"class": strings(["POSIXct", "POSIXt"]), "tzone": strings(["UTC"])})
    return s


def _factor(values: Any) -> Sexp:
    codes = np.asarray(values.codes, dtype="<i4") + 1
    codes[codes == 0] = NA_INTEGER
    cls = ["ordered", "factor"] if values.ordered else ["factor"]
    return Sexp(
        XT.ARRAY_INT,
        codes.tobytes(),
        attributes(levels=strings(values.categories), **{"class": strings(cls)}),
    )


def _series_sexp(series: Any) -> Sexp:
    pd = sys.modules["pandas"]
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return _factor(series.array)
    mask = series.isna().to_numpy()
    if pd.api.types.is_bool_dtype(dtype):
        data = np.where(mask, 2, series.fillna(False).to_numpy(dtype=bool)).astype(np.uint8)
        return Sexp(XT.ARRAY_BOOL, data.tobytes())
    if pd.api.types.is_integer_dtype(dtype):
        if mask.any() or isinstance(dtype, pd.api.extensions.ExtensionDtype):
            values = series.to_numpy(dtype="f8", na_value=np.nan)
            if np.all(np.abs(values[~mask]) < 2**31 - 1):
                ints = np.where(mask, NA_INTEGER, np.nan_to_num(values)).astype("<i4")
                return Sexp(XT.ARRAY_INT, ints.tobytes())
            return array_sexp(values, missing_nan=True)
        return array_sexp(series.to_numpy())
    if pd.api.types.is_float_dtype(dtype):
        return array_sexp(series.to_numpy(dtype="f8", na_value=np.nan), missing_nan=True)
    if pd.api.types.is_datetime64_any_dtype(dtype):
        values = series
        if getattr(dtype, "tz", None) is not None:
            values = series.dt.tz_convert("UTC").dt.tz_localize(None)
        return _datetime64(values.to_numpy(dtype="datetime64[us]"))
    return array_sexp(series.to_numpy(dtype=object))


def _frame_sexp(frame: Any) -> Sexp:
    pd = sys.modules["pandas"]
    columns = [_series_sexp(frame.iloc[:, i]) for i in range(frame.shape[1])]
    n = len(frame)
    index = frame.index
    if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1:
        row_names = Sexp(XT.ARRAY_INT, np.array([NA_INTEGER, -n], dtype="<i4").tobytes())
    else:
        row_names = strings(index)
    attr = attributes(
        names=strings(str(c) for c in frame.columns),
        row_names=row_names,
        **{"class": strings(["data.frame"])},
    )
    return Sexp(XT.VECTOR, columns, attr)
