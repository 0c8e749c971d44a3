"""JSON for R values: what execute's parameters and the workspace's JSON views carry.

Every value travels with a ``type`` so it can come back unchanged (docs/api.md has the
table). Output: a length-one unnamed vector is a JSON scalar, other vectors arrays,
named vectors and named lists objects, matrices arrays of rows, data frames
``{column: [values]}``, factors their labels, dates ISO 8601 strings, NA/NaN/Inf null.
Input: the same shapes; without a ``type`` the R type is inferred from the JSON
(numbers with a fraction or exponent are numeric, without are integer).
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import numpy as np

from rexec.client import convert as conv
from rexec.protocol import NULL, XT, Sexp, from_python
from rexec.protocol.constants import NA_INTEGER

_ATOMIC_TYPES = {
    XT.ARRAY_BOOL: "logical",
    XT.ARRAY_INT: "integer",
    XT.ARRAY_DOUBLE: "numeric",
    XT.ARRAY_STR: "character",
    XT.ARRAY_CPLX: "complex",
}
TYPES = (
    "NULL",
    "logical",
    "integer",
    "numeric",
    "character",
    "factor",
    "ordered",
    "Date",
    "POSIXct",
    "matrix",
    "data.frame",
    "list",
    "raw",
)


class ConversionError(ValueError):
    """A JSON value that cannot become the requested R type (answered with 400)."""


# ============================================================================ R -> JSON


def r_type(s: Sexp) -> str:
    """The ``type`` reported for an R value (one of :data:`TYPES`, or its class)."""
    if s.xt == XT.NULL:
        return "NULL"
    cls = conv.classes(s)
    if conv.is_data_frame(s):
        return "data.frame"
    if conv.is_factor(s):
        return "ordered" if "ordered" in cls else "factor"
    if "Date" in cls or "POSIXct" in cls:
        return "Date" if "Date" in cls else "POSIXct"
    shape = conv.dims(s)
    if shape is not None and len(shape) == 2 and s.xt in _ATOMIC_TYPES:
        return "matrix"
    if s.xt in _ATOMIC_TYPES:
        return _ATOMIC_TYPES[s.xt]
    if s.xt in (XT.VECTOR, XT.LIST_NOTAG, XT.LIST_TAG):
        return "list"
    if s.xt == XT.RAW:
        return "raw"
    return cls[0] if cls else XT(s.xt).name.lower()


def to_json(s: Sexp) -> Any:
    """A JSON-ready Python value for ``s``; unsupported objects become None."""
    if s.xt == XT.NULL:
        return None
    if conv.is_data_frame(s):
        names = conv.attribute_strings(s, "names") or []
        return {str(n): _vector(col) for n, col in zip(names, s.value, strict=False)}
    if s.xt in (XT.VECTOR, XT.LIST_NOTAG):
        items = [to_json(child) for child in s.value]
        return _named(s, items, scalar=False)
    if s.xt == XT.LIST_TAG:
        return {
            (tag.value if tag.xt == XT.SYMNAME else str(i)): to_json(item)
            for i, (item, tag) in enumerate(s.value)
        }
    if s.xt in _ATOMIC_TYPES:
        values = _vector(s)
        shape = conv.dims(s)
        if shape is not None and len(shape) >= 2:
            return np.array(values, dtype=object).reshape(shape, order="F").tolist()
        return _named(s, values, scalar=True)
    if s.xt == XT.RAW:
        return base64.b64encode(bytes(s.value)).decode("ascii")
    if s.xt in (XT.STR, XT.SYMNAME):
        return s.value
    return None


def _named(s: Sexp, items: list[Any], *, scalar: bool) -> Any:
    names = conv.attribute_strings(s, "names")
    if names is not None and len(names) == len(items):
        return {(n if n is not None else "NA"): v for n, v in zip(names, items, strict=True)}
    if scalar and len(items) == 1:
        return items[0]
    return items


def _vector(s: Sexp) -> list[Any]:
    """An atomic vector's elements as JSON scalars (NA, NaN and infinities as None)."""
    if s.xt not in _ATOMIC_TYPES:
        value = to_json(s)
        return value if isinstance(value, list) else [value]
    cls = conv.classes(s)
    if "Date" in cls:
        return [None if v is None else v.isoformat() for v in conv.python_vector(s)]
    if "POSIXct" in cls:
        return [
            None if v is None else v.isoformat().replace("+00:00", "Z")
            for v in conv.python_vector(s)
        ]
    if s.xt == XT.ARRAY_DOUBLE:
        data = conv.numeric_array(s)
        bad = ~np.isfinite(data)
        values = data.tolist()
        for i in np.flatnonzero(bad):
            values[i] = None
        return values
    if s.xt == XT.ARRAY_CPLX:
        return [None if v is None else str(v) for v in conv.python_vector(s)]
    return conv.python_vector(s)


# ============================================================================ JSON -> R


def from_json(value: Any, type_: str | None = None) -> Sexp:
    """The R object for a JSON value, of R type ``type_`` (inferred when None)."""
    if type_ is None or type_ == "":
        return _infer(value)
    try:
        return _typed(value, type_)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConversionError(f"cannot convert the value to {type_}: {exc}") from None


def _infer(value: Any) -> Sexp:
    if value is None:
        return NULL
    if isinstance(value, dict):
        names = conv.strings(value.keys())
        return Sexp(XT.VECTOR, [_infer(v) for v in value.values()], conv.attributes(names=names))
    if isinstance(value, list):
        if all(v is None or isinstance(v, bool | int | float | str) for v in value) and any(
            v is not None for v in value
        ):
            kinds = {type(v) for v in value if v is not None}
            if len(kinds) == 1 or kinds == {int, float}:
                return _atomic(value)
        return Sexp(XT.VECTOR, [_infer(v) for v in value])
    if isinstance(value, bool | int | float | str):
        return _atomic([value])
    raise ConversionError(f"unsupported JSON value {value!r}")


def _atomic(values: list[Any]) -> Sexp:
    if any(isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 2**31 for v in values):
        values = [None if v is None else float(v) for v in values]
    return from_python(values)


def _elements(value: Any) -> tuple[list[Any], list[str] | None]:
    """A JSON scalar, array or object as (elements, names)."""
    if isinstance(value, dict):
        return list(value.values()), [str(k) for k in value]
    if isinstance(value, list):
        return value, None
    return [value], None


def _with_names(s: Sexp, names: list[str] | None) -> Sexp:
    if names is not None:
        s.attr = conv.merge_attributes(s.attr, names=conv.strings(names))
    return s


def _typed(value: Any, type_: str) -> Sexp:
    if type_ == "NULL":
        return NULL
    if type_ == "list":
        if isinstance(value, dict | list):
            return _infer_list(value)
        return Sexp(XT.VECTOR, [_infer(value)])
    if type_ == "data.frame":
        return _data_frame(value)
    if type_ == "matrix":
        return _matrix(value)
    if type_ == "raw":
        return Sexp(XT.RAW, base64.b64decode(value, validate=True))
    items, names = _elements(value)
    if any(isinstance(v, dict | list) for v in items):
        raise ConversionError(f"a {type_} vector holds scalars only")
    return _with_names(_vector_of(items, type_), names)


def _infer_list(value: dict[str, Any] | list[Any]) -> Sexp:
    items, names = _elements(value)
    return _with_names(Sexp(XT.VECTOR, [_infer(v) for v in items]), names)


def _vector_of(items: list[Any], type_: str) -> Sexp:
    if type_ == "logical":
        return Sexp(XT.ARRAY_BOOL, bytes(2 if v is None else int(_bool(v)) for v in items))
    if type_ == "integer":
        ints = [NA_INTEGER if v is None else _int(v) for v in items]
        return Sexp(XT.ARRAY_INT, np.array(ints, dtype="<i4").tobytes())
    if type_ == "numeric":
        floats = np.array([np.nan if v is None else _float(v) for v in items], dtype="<f8")
        return conv.array_sexp(floats, missing_nan=True)
    if type_ == "character":
        return conv.strings(None if v is None else str(v) for v in items)
    if type_ in ("factor", "ordered"):
        labels = [None if v is None else str(v) for v in items]
        levels = sorted({v for v in labels if v is not None})
        index = {v: i + 1 for i, v in enumerate(levels)}
        codes = np.array([NA_INTEGER if v is None else index[v] for v in labels], dtype="<i4")
        cls = ["ordered", "factor"] if type_ == "ordered" else ["factor"]
        return Sexp(
            XT.ARRAY_INT,
            codes.tobytes(),
            conv.attributes(levels=conv.strings(levels), **{"class": conv.strings(cls)}),
        )
    if type_ == "Date":
        days = np.array(
            [np.nan if v is None else _date(v).toordinal() - 719163 for v in items], dtype="<f8"
        )
        s = conv.array_sexp(days, missing_nan=True)
        s.attr = conv.attributes(**{"class": conv.strings(["Date"])})
        return s
    if type_ == "POSIXct":
        secs = np.array([np.nan if v is None else _timestamp(v) for v in items], dtype="<f8")
        return conv.posixct(secs)
    raise ConversionError(f"unknown type {type_!r} (one of {', '.join(TYPES)})")


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ConversionError(f"{v!r} is not a logical")
    return v


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int | float) or v != int(v):
        raise ConversionError(f"{v!r} is not an integer")
    if not -(2**31) < v < 2**31:
        raise ConversionError(f"{v!r} does not fit R's integers")
    return int(v)


def _float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ConversionError(f"{v!r} is not a number")
    return float(v)


def _date(v: Any) -> dt.date:
    if not isinstance(v, str):
        raise ConversionError(f"{v!r} is not an ISO 8601 date")
    return dt.date.fromisoformat(v[:10])


def _timestamp(v: Any) -> float:
    if not isinstance(v, str):
        raise ConversionError(f"{v!r} is not an ISO 8601 date-time")
    stamp = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def _matrix(value: Any) -> Sexp:
    if not isinstance(value, list) or not all(isinstance(row, list) for row in value):
        raise ConversionError("a matrix is an array of rows")
    nrow = len(value)
    ncol = len(value[0]) if value else 0
    if any(len(row) != ncol for row in value):
        raise ConversionError("matrix rows differ in length")
    column_major = [value[i][j] for j in range(ncol) for i in range(nrow)]
    s = _infer(column_major) if column_major else from_python([])
    if s.xt not in _ATOMIC_TYPES:
        raise ConversionError("matrix elements must be scalars of one type")
    dims = Sexp(XT.ARRAY_INT, np.array([nrow, ncol], dtype="<i4").tobytes())
    s.attr = conv.merge_attributes(s.attr, dim=dims)
    return s


def _data_frame(value: Any) -> Sexp:
    if not isinstance(value, dict):
        raise ConversionError("a data.frame is an object of columns")
    columns = []
    lengths = set()
    for name, column in value.items():
        items = column if isinstance(column, list) else [column]
        if any(isinstance(v, dict | list) for v in items):
            raise ConversionError(f"column {name!r} holds non-scalar values")
        lengths.add(len(items))
        s = _infer(items) if any(v is not None for v in items) else _vector_of(items, "logical")
        if s.xt not in _ATOMIC_TYPES:
            raise ConversionError(f"column {name!r} mixes value types")
        columns.append(s)
    if len(lengths) > 1:
        raise ConversionError("data.frame columns differ in length")
    n = lengths.pop() if lengths else 0
    attr = conv.attributes(
        names=conv.strings(str(k) for k in value),
        row_names=Sexp(XT.ARRAY_INT, np.array([NA_INTEGER, -n], dtype="<i4").tobytes()),
        **{"class": conv.strings(["data.frame"])},
    )
    return Sexp(XT.VECTOR, columns, attr)
