"""JSON for R values: what execute's parameters and the workspace's JSON views carry.

Every value travels with a ``type`` so it can come back unchanged (docs/api.md has the
table). Output follows the rules of :mod:`rexec.protocol.values` (the Python client's
too): a length-one unnamed vector is a JSON scalar, other vectors arrays, vectors and
lists with unique non-empty names objects (other names are dropped), matrices arrays of
rows, data frames ``{column: [values]}``, factors their labels, NA null; then for JSON
NaN/Inf are null, dates ISO 8601 strings, raw base64. Input: the same shapes; without a
``type`` the value is what the Python client sends for the same Python value
(:func:`rexec.protocol.values.to_sexp`): numbers with a fraction or exponent are
numeric, without integer (numeric outside 32 bits), null inside an array NA.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import numpy as np

from rexec.protocol import NULL, XT, Sexp, from_python
from rexec.protocol import values as conv
from rexec.protocol.constants import NA_INTEGER, NA_REAL_BYTES

_NA_REAL_BITS = np.frombuffer(NA_REAL_BYTES, dtype="<u8")[0]

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
    """A JSON-ready Python value for ``s``: :func:`rexec.protocol.values.to_python`'s
    rules with JSON leaves (NaN/Inf null, ISO dates, base64 raw); unusual objects None."""
    return conv.to_json(s)


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
    """What the Python client sends for the same value (one rule for both)."""
    if not _is_json(value):
        raise ConversionError(f"unsupported JSON value {value!r}")
    try:
        return conv.to_sexp(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConversionError(f"cannot convert the value: {exc}") from None


def _is_json(value: Any) -> bool:
    """Only JSON's types, nested any depth (to_sexp would also take dates, numpy...)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif not (item is None or isinstance(item, bool | int | float | str)):
            return False
    return True


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
        missing = np.array([v is None for v in items], dtype=bool)
        floats.view("<u8")[missing] = _NA_REAL_BITS  # null is NA; a NaN stays NaN (to_sexp)
        return Sexp(XT.ARRAY_DOUBLE, floats.tobytes())
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
