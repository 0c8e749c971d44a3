"""Out-of-band messages from R code (self.oobSend, self.oobMessage), as Rserve's `oob enable`."""

from __future__ import annotations

import pyRserve
import pytest

from rexec.protocol import Cmd, decode_params, message, sexp_param, string_param
from rexec.protocol.codec import from_python, to_python
from rexec.protocol.params import encode_params
from tests.qap import RawClient


@pytest.fixture(scope="module")
def oob_server(tmp_path_factory):
    from tests.conftest import start_rexec

    server = start_rexec(tmp_path_factory.mktemp("oob"), **{"session.oob": True})
    yield server
    server.stop()


def test_oob_send_frame_matches_rserve_bytes(oob_server) -> None:
    with RawClient(oob_server.port) as c:
        c.send(Cmd.EVAL, string_param('self.oobSend(list("hi", 1L), 7L)'))
        frame = c.reply()
        assert frame.header.cmd == 0x00021007  # wire bytes 07 10 02 00, as Rserve
        assert frame.header.length == 0x18
        assert to_python(decode_params(frame.payload)[0].value) == [["hi"], [1]]
        assert c.reply().value() is True  # then the eval's own reply


def test_oob_message_returns_the_clients_answer(oob_server) -> None:
    with RawClient(oob_server.port) as c:
        c.send(Cmd.EVAL, string_param('paste("got", self.oobMessage("q?", 5L))'))
        frame = c.reply()
        assert frame.header.cmd == 0x00022005
        assert to_python(decode_params(frame.payload)[0].value) == ["q?"]
        chunks, _ = encode_params([sexp_param(from_python("yes"))])
        c.send_raw(b"".join(bytes(x) for x in message(0x00032000, chunks)))  # RSclient style
        assert c.reply().value() == "got yes"


def test_pyrserve_oob_callback(oob_server) -> None:
    seen = []

    def callback(data, code):
        seen.append((data, code))
        return "answer"

    conn = pyRserve.connect(port=oob_server.port, oobCallback=callback)
    try:
        assert conn.eval('self.oobMessage("ask", 3L)') == "answer"
        conn.eval("self.oobSend(42L, 1L)")
    finally:
        conn.close()
    assert seen == [("ask", 3), (42, 1)]


def test_oob_is_an_r_error_when_disabled(rexec_server) -> None:
    with RawClient(rexec_server.port) as c:
        assert c.eval("self.oobSend(1)").status == 127
        assert "OOB command is disallowed" in c.eval("geterrmessage()").value()


RSCLIENT_OOB = r"""
library(RSclient)
port <- as.integer(commandArgs(TRUE)[1])
c <- RS.connect(port = port)
seen <- character(0)
RS.oobCallbacks(c, send = function(code, payload) seen <<- c(seen, paste(code, payload)),
                msg = function(code, payload) paste("re", payload))
answer <- RS.eval(c, { Rserve::self.oobSend("note", 2L); Rserve::self.oobMessage("q", 3L) })
cat(seen, answer, sep = "\n")
"""


@pytest.fixture(scope="module")
def rserve_with_oob(tmp_path_factory):
    """A second real Rserve, started with `oob enable`."""
    from bench.servers import start_rserve

    server = start_rserve(tmp_path_factory.mktemp("rserve-oob"), extra="oob enable\n")
    yield server
    server.stop()


def test_rsclient_oob_callbacks_match_rserve(oob_server, rserve_with_oob) -> None:
    import subprocess

    from tests.conftest import UTF8

    outputs = []
    for server in (rserve_with_oob, oob_server):
        run = subprocess.run(
            ["Rscript", "-e", RSCLIENT_OOB, str(server.port)],
            capture_output=True,
            text=True,
            env=UTF8,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        outputs.append(run.stdout)
    assert outputs[1] == outputs[0]
    assert outputs[1].split() == ["2", "note", "re", "q"]
