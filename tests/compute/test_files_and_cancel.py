"""File commands (confined to the session directory) and cancelling a running evaluation."""

from __future__ import annotations

import threading
import time

from rexec.protocol import Cmd, Err, bytes_param, int_param, string_param
from tests.compute.test_server import Twin
from tests.conftest import Server
from tests.qap import RawClient


def test_file_round_trip_inside_the_session_directory(rexec_server: Server, rserve: Server) -> None:
    with Twin(rserve.port, rexec_server.port) as twin:
        assert twin.same(Cmd.CREATE_FILE, string_param("data.bin")).ok
        assert twin.same(Cmd.WRITE_FILE, bytes_param(b"\x00\x01abc")).ok
        assert twin.same(Cmd.CLOSE_FILE).ok
        assert twin.eval("readBin('data.bin', 'raw', 10)").value() == b"\x00\x01abc"
        assert twin.same(Cmd.OPEN_FILE, string_param("data.bin")).ok
        assert twin.same(Cmd.READ_FILE, int_param(3)).payload == b"\x00\x01a"
        assert twin.same(Cmd.READ_FILE).payload == b"bc"
        end = twin.same(Cmd.READ_FILE)
        assert end.ok and end.payload == b""  # end of file
        assert twin.same(Cmd.REMOVE_FILE, string_param("data.bin")).ok
        assert twin.eval("file.exists('data.bin')").value() is False


def test_file_errors_match_rserve_statuses(rexec_server: Server, rserve: Server) -> None:
    with Twin(rserve.port, rexec_server.port) as twin:
        assert not twin.same(Cmd.READ_FILE).ok  # nothing open
        assert not twin.same(Cmd.WRITE_FILE, bytes_param(b"x")).ok
        assert not twin.same(Cmd.OPEN_FILE, string_param("missing.txt")).ok
        assert not twin.same(Cmd.REMOVE_FILE, string_param("missing.txt")).ok
        assert not twin.same(Cmd.OPEN_FILE).ok
        assert twin.eval("1L").value() == 1


def test_paths_leaving_the_session_directory_are_refused(rexec_server: Server) -> None:
    with RawClient(rexec_server.port) as c:
        c.eval("file.symlink('/etc', 'escape')")
        for name in ("/etc/passwd", "../x", "../../etc/passwd", "escape/passwd", "."):
            c.send(Cmd.OPEN_FILE, string_param(name))
            assert c.reply().status == Err.ACCESS_DENIED, name
        c.send(Cmd.CREATE_FILE, string_param("/tmp/rexec-should-not-exist"))
        assert c.reply().status == Err.ACCESS_DENIED
        c.send(Cmd.REMOVE_FILE, string_param("../conn1"))
        assert c.reply().status == Err.ACCESS_DENIED
        assert c.eval("1L").value() == 1


def test_cancel_interrupts_a_running_evaluation_from_another_connection(
    rexec_server: Server,
) -> None:
    with RawClient(rexec_server.port) as worker:
        pid = worker.eval("Sys.getpid()").value()
        outcome = {}

        def run() -> None:
            started = time.monotonic()
            reply = worker.eval("Sys.sleep(30); 'finished'")
            outcome.update(status=reply.status, ok=reply.ok, took=time.monotonic() - started)

        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(0.5)
        with RawClient(rexec_server.port) as control:
            control.send(Cmd.CANCEL, int_param(pid))
            assert control.reply().ok
            control.send(Cmd.CANCEL, int_param(1))  # not a busy shell of this server
            assert control.reply().status == Err.INV_PAR
        thread.join(10)
        assert outcome["ok"] is False and outcome["status"] == 127
        assert outcome["took"] < 5
        assert worker.eval("'still usable'").value() == "still usable"
        assert worker.eval("Sys.sleep(0.2); 2L").value() == 2  # no stale interrupt
