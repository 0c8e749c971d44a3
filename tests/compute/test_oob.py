"""Out-of-band messages from R code (self.oobSend, self.oobMessage), as Rserve's `oob enable`."""

from __future__ import annotations

import pyRserve
import pytest

from rexec.protocol import (
    Cmd,
    decode_params,
    from_python,
    message,
    sexp_param,
    string_param,
    to_python,
)
from rexec.protocol.params import encode_params
from tests.qap import RawClient


@pytest.fixture(scope="module")
def oob_server(tmp_path_factory):
    from tests.conftest import start_rexec

    server = start_rexec(tmp_path_factory.mktemp("oob"), **{"session.oob": True})
    yield server
    server.stop()


def _frame(c: RawClient) -> tuple[bytes, bytes]:
    """The next message from the server: its 16 header bytes and its payload."""
    reply = c.reply()
    return c.last_header, reply.payload


def test_oob_send_frame_matches_rserve_bytes(oob_server, rserve_with_oob) -> None:
    code = string_param('Rserve::self.oobSend(list("hi", 1L), 7L)')
    with RawClient(rserve_with_oob.port) as reference, RawClient(oob_server.port) as c:
        reference.send(Cmd.EVAL, code)
        c.send(Cmd.EVAL, code)
        frame = _frame(c)
        assert frame == _frame(reference)  # header and payload, byte for byte
        assert to_python(decode_params(frame[1])[0].value) == ["hi", 1]
        assert _frame(c) == _frame(reference)  # then the eval's own reply
        assert c.eval("1L").value() == 1


def test_oob_message_returns_the_clients_answer(oob_server, rserve_with_oob) -> None:
    code = string_param('paste("got", Rserve::self.oobMessage("q?", 5L))')
    chunks, _ = encode_params([sexp_param(from_python("yes"))])
    answer = b"".join(bytes(x) for x in message(0x00032000, chunks))  # RSclient style
    with RawClient(rserve_with_oob.port) as reference, RawClient(oob_server.port) as c:
        reference.send(Cmd.EVAL, code)
        c.send(Cmd.EVAL, code)
        frame = _frame(c)
        assert frame == _frame(reference)
        assert to_python(decode_params(frame[1])[0].value) == "q?"
        reference.send_raw(answer)
        c.send_raw(answer)
        final = _frame(c)
        assert final == _frame(reference)
        assert to_python(decode_params(final[1])[0].value) == "got yes"


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


def test_oob_is_an_r_error_when_disabled(rexec_server, rserve) -> None:
    with RawClient(rserve.port) as reference, RawClient(rexec_server.port) as c:
        expected, got = reference.eval("Rserve::self.oobSend(1)"), c.eval("Rserve::self.oobSend(1)")
        assert (got.header.cmd, got.payload) == (expected.header.cmd, expected.payload)
        # The texts differ: Rserve's names the call and says "use 'oob enable'", rexec's
        # has no call and names its own setting, session.oob. The reason is the same.
        texts = [client.eval("geterrmessage()").value() for client in (reference, c)]
        shared = "OOB command is disallowed by the current"
        assert all(shared in " ".join(text.split()) for text in texts), texts
        assert "session.oob" in texts[1]


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
