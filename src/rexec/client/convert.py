"""R values (the codec's :class:`Sexp`) to Python, numpy and pandas values, and back.

Numeric data never goes through a per-element Python loop: replies are viewed with
``np.frombuffer`` on the received bytes and outgoing arrays are sent as byte views.
Only character data is walked element by element (it is variable-length on the wire).

``to_python`` gives plain Python: length-one vectors become scalars, NA becomes None,
named vectors and lists become dicts, data frames ``{column: [values]}``, matrices lists
of rows, factors their labels, dates :class:`datetime.date`/:class:`datetime.datetime`.
``to_numpy`` gives numpy arrays (NA as NaN/NaT/None), pandas DataFrames for data frames
and ``pandas.Categorical`` for factors (when pandas is installed).
"""

from __future__ import annotations

import datetime as dt
import struct
from typing import Any

import numpy as np

from rexec.protocol import NULL, XT, Sexp, decode_strings, encode_strings, from_python
from rexec.protocol.constants import NA_INTEGER

_NA_REAL_BITS = struct.unpack("<Q", bytes.fromhex("a20700000000f07f"))[0]
_NA_LOW_WORD = 1954
_EPOCH_DATE = dt.date(1970, 1, 1)
_ATOMIC = frozenset({XT.ARRAY_INT, XT.ARRAY_DOUBLE, XT.ARRAY_BOOL, XT.ARRAY_STR, XT.ARRAY_CPLX})
_LISTS = frozenset({XT.VECTOR, XT.VECTOR_EXP, XT.LIST_NOTAG})

try:  # pandas is optional: without it data frames come back as dicts of arrays
    import pandas as pd
except ImportError:  # pragma: no cover - pandas is installed with the test extras
    pd = None


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
    return tuple(int(d) for d in numeric_array(value))


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
        return np.isnan(data.real) & (data.real.view("<u4")[::2] == _NA_LOW_WORD)
    return np.zeros(len(data), dtype=bool)


def is_data_frame(s: Sexp) -> bool:
    return s.xt in _LISTS and "data.frame" in classes(s)


def is_factor(s: Sexp) -> bool:
    return s.xt == XT.ARRAY_INT and "factor" in classes(s)


def _with_nones(values: list[Any], mask: np.ndarray) -> list[Any]:
    for i in np.flatnonzero(mask):
        values[i] = None
    return values


def _unique_names(names: list[str | None] | None, n: int) -> bool:
    return (
        names is not None and len(names) == n and all(names) and len(set(names)) == len(names)  # type: ignore[arg-type]
    )


# =========================================================================== R -> Python


def to_python(s: Sexp) -> Any:
    """Plain Python (see the module docs); unusual objects are returned as the Sexp."""
    if s.xt == XT.NULL:
        return None
    if is_data_frame(s):
        names = attribute_strings(s, "names") or []
        return {str(n): python_vector(col) for n, col in zip(names, s.value, strict=False)}
    if s.xt in _LISTS:
        items = [to_python(child) for child in s.value]
        names = attribute_strings(s, "names")
        if _unique_names(names, len(items)):
            return dict(zip(names, items, strict=True))  # type: ignore[arg-type]
        return items
    if s.xt in _ATOMIC:
        values = python_vector(s)
        shape = dims(s)
        if shape is not None and len(shape) >= 2:
            return np.array(values, dtype=object).reshape(shape, order="F").tolist()
        names = attribute_strings(s, "names")
        if _unique_names(names, len(values)):
            return dict(zip(names, values, strict=True))  # type: ignore[arg-type]
        return values[0] if len(values) == 1 and names is None else values
    if s.xt == XT.RAW:
        return bytes(s.value)
    if s.xt == XT.SYMNAME:
        from rexec.protocol import Symbol

        return Symbol(s.value)
    if s.xt == XT.STR:
        return s.value
    return s


def python_vector(s: Sexp) -> list[Any]:
    """An atomic vector as a list, honouring factor, Date and POSIXct classes."""
    if s.xt not in _ATOMIC:
        converted = to_python(s)
        return converted if isinstance(converted, list) else [converted]
    if s.xt == XT.ARRAY_STR:
        return decode_strings(s.value)
    mask = na_mask(s)
    cls = classes(s)
    if is_factor(s):
        levels = np.array(attribute_strings(s, "levels") or [], dtype=object)
        codes = numeric_array(s)
        labels = levels[np.where(mask, 1, codes) - 1].tolist() if len(levels) else []
        return _with_nones(labels, mask) if labels else [None] * len(codes)
    if "Date" in cls:
        days = numeric_array(s).astype("f8")
        bad = mask | ~np.isfinite(days)
        return _with_nones(
            [_EPOCH_DATE + dt.timedelta(days=int(d)) for d in np.where(bad, 0, days)], bad
        )
    if "POSIXct" in cls:
        secs = numeric_array(s).astype("f8")
        bad = mask | ~np.isfinite(secs)
        return _with_nones(
            [dt.datetime.fromtimestamp(v, dt.UTC) for v in np.where(bad, 0, secs)], bad
        )
    data = numeric_array(s)
    if s.xt == XT.ARRAY_BOOL:
        return _with_nones((data == 1).tolist(), mask)
    return _with_nones(data.tolist(), mask)


# =========================================================================== R -> numpy


def to_numpy(s: Sexp) -> Any:
    """numpy arrays and pandas objects (see the module docs)."""
    if s.xt == XT.NULL:
        return None
    if is_data_frame(s):
        return _data_frame(s)
    if s.xt in _LISTS:
        items = [to_numpy(child) for child in s.value]
        names = attribute_strings(s, "names")
        if _unique_names(names, len(items)):
            return dict(zip(names, items, strict=True))  # type: ignore[arg-type]
        return items
    if s.xt in _ATOMIC:
        array = _numpy_vector(s)
        shape = dims(s)
        if shape is not None and len(shape) >= 2 and isinstance(array, np.ndarray):
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
        levels = attribute_strings(s, "levels") or []
        codes = np.where(mask, 0, data) - 1
        if pd is not None:
            return pd.Categorical.from_codes(codes, categories=levels, ordered="ordered" in cls)
        return np.array([*levels, None], dtype=object)[codes]
    if "Date" in cls or "POSIXct" in cls:
        values = data.astype("f8")
        bad = mask | ~np.isfinite(values)
        values = np.where(bad, 0.0, values)
        if "Date" in cls:
            out = np.where(bad, 0, np.floor(values)).astype("i8").astype("datetime64[D]")
        else:
            out = np.where(bad, 0, np.round(values * 1e6)).astype("i8").astype("datetime64[us]")
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
    names = [str(n) for n in attribute_strings(s, "names") or []]
    columns = {
        n: _numpy_vector(c) if c.xt in _ATOMIC else to_numpy(c)
        for n, c in zip(names, s.value, strict=False)
    }
    if pd is None:
        return columns
    row_names = attribute_strings(s, "row.names")
    frame = pd.DataFrame(columns, index=row_names) if row_names else pd.DataFrame(columns)
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
    if (pd is not None and v is pd.NA) or v is getattr(pd, "NaT", None):
        return None
    return str(v)


def to_sexp(value: Any) -> Sexp:
    """The R object for a Python, numpy or pandas value (the reverse of the above).

    Plain numpy NaN stays R's NaN; missing values in pandas objects (NaN, None, NA, NaT)
    become R's NA.
    """
    if isinstance(value, Sexp):
        return value
    if value is None:
        return NULL
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
    columns = [_series_sexp(frame[c]) for c in frame.columns]
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
