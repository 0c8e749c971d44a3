"""Cross-check against pyRserve's own serializer and parser (skipped when not installed)."""

from __future__ import annotations

import io

import pytest

from rexec.protocol import (
    DT,
    Cmd,
    decode_params,
    encode_params,
    from_python,
    ok,
    sexp_param,
    to_python,
    unpack_header,
)

pyrserve = pytest.importorskip("pyRserve")
np = pytest.importorskip("numpy")
from pyRserve import rparser  # noqa: E402
from pyRserve.rserializer import rAssign, rEval  # noqa: E402


def test_pyrserve_eval_request():
    message = rEval("1L")
    assert unpack_header(message).cmd == Cmd.EVAL
    (param,) = decode_params(memoryview(message)[16:])
    assert (param.dt, param.value) == (DT.STRING, b"1L")


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (None, None),
        (1, 1),
        (1.5, 1.5),
        ("x", "x"),
        (True, True),
        (1 + 2j, 1 + 2j),
        (np.array([1.0, 2.0]), [1.0, 2.0]),
        # column-major data and a dim attribute: rows again
        (np.arange(6, dtype=np.int32).reshape(2, 3), [[0, 1, 2], [3, 4, 5]]),
        ([1, "a"], [1, "a"]),
    ],
)
def test_pyrserve_assignments_decode(obj, expected):
    message = rAssign("v", obj)
    name, value = decode_params(memoryview(message)[16:])
    assert name.value == b"v"
    assert value.dt == DT.SEXP
    assert to_python(value.value) == expected


@pytest.mark.parametrize("obj", [None, [1, 2], [1.5, 2.0], ["a", None], 1j, {"x": [1], "y": "b"}])
def test_pyrserve_parses_our_replies(obj):
    data = b"".join(ok(encode_params([sexp_param(from_python(obj))])[0]))
    rparser.rparse(io.BytesIO(data))
