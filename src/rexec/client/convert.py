"""R values to Python, numpy and pandas values, and back: :mod:`rexec.protocol.values`.

The rules live in :mod:`rexec.protocol.values` (sessions, services and the codec's
``rexec.protocol.to_python`` use the same ones); this module re-exports them under the
names the client has always used.
"""

from __future__ import annotations

from rexec.protocol.values import (
    array_sexp,
    attribute_strings,
    attributes,
    classes,
    dims,
    is_data_frame,
    is_factor,
    json_vector,
    jsonable,
    merge_attributes,
    na_mask,
    numeric_array,
    posixct,
    python_vector,
    strings,
    to_json,
    to_numpy,
    to_python,
    to_sexp,
)

__all__ = [
    "array_sexp",
    "attribute_strings",
    "attributes",
    "classes",
    "dims",
    "is_data_frame",
    "is_factor",
    "json_vector",
    "jsonable",
    "merge_attributes",
    "na_mask",
    "numeric_array",
    "posixct",
    "python_vector",
    "strings",
    "to_json",
    "to_numpy",
    "to_python",
    "to_sexp",
]
