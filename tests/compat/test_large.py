"""Objects over 16 MB (8-byte large headers), up to 200 MB, both ways, against Rserve."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from rexec.protocol import Cmd, decode_params, sexp_param, string_param
from rexec.protocol.constants import XT
from rexec.protocol.sexp import Sexp
from tests.conftest import Server
from tests.qap import RawClient

N = 26_000_000  # 208 MB of doubles


def _digest(port: int, code: str) -> tuple[bytes, str, int]:
    with RawClient(port, timeout=120) as c:
        reply = c.eval(code)
        return c.last_header, hashlib.sha256(reply.payload).hexdigest(), len(reply.payload)


def test_fetch_200_mb_is_byte_identical(rserve: Server, rexec_server: Server) -> None:
    code = f"as.numeric(seq_len({N}))"
    expected = _digest(rserve.port, code)
    assert expected[2] > 200_000_000
    assert _digest(rexec_server.port, code) == expected


def test_large_mixed_list_is_byte_identical(rserve: Server, rexec_server: Server) -> None:
    code = "list(a = 1:5e6, b = as.character(1:3e6), c = list(rep(c(TRUE, NA), 1e7)))"
    assert _digest(rexec_server.port, code) == _digest(rserve.port, code)


def test_assign_200_mb(rserve: Server, rexec_server: Server) -> None:
    data = np.arange(N, dtype="<f8")
    value = Sexp(XT.ARRAY_DOUBLE, memoryview(data).cast("B"))
    answers = []
    for port in (rserve.port, rexec_server.port):
        with RawClient(port, timeout=120) as c:
            c.send(Cmd.SET_SEXP, string_param("big"), sexp_param(value))
            assert c.reply().ok
            reply = c.eval("c(length(big), sum(big), big[12345678])")
            answers.append(bytes(decode_params(reply.payload)[0].value.value))
    assert answers[0] == answers[1]
    assert np.frombuffer(answers[1], "<f8").tolist() == [N, data.sum(), 12345677.0]


@pytest.mark.parametrize(
    "code",
    [
        "rep('a', 2100000)",  # 4.2 MB on the wire, but Rserve's estimate is over 16 MB
        "numeric(2097149)",  # just under 16 MB: Rserve's reply margin makes it large
        "numeric(2097000)",
        "numeric(2096600)",
        "list(numeric(2097149))",
        "c(as.character(1:1500000), NA)",
        "list(a = rep(TRUE, 1.6e7), b = NULL)",
    ],
)
def test_large_header_choice_matches_rserve(rserve: Server, rexec_server: Server, code: str):
    assert _digest(rexec_server.port, code) == _digest(rserve.port, code)
