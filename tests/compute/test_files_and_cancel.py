"""File commands (confined to the session directory) and cancelling a running evaluation."""

from __future__ import annotations

import threading
import time

from rexec.protocol import Cmd, Err, bytes_param, int_param, string_param
from tests.conftest import Server
from tests.qap import RawClient


def test_file_round_trip_inside_the_session_directory(rexec_server: Server) -> None:
    with RawClient(rexec_server.port) as c:
        c.send(Cmd.CREATE_FILE, string_param("data.bin"))
        assert c.reply().ok
        c.send(Cmd.WRITE_FILE, bytes_param(b"\x00\x01abc"))
        assert c.reply().ok
        c.send(Cmd.CLOSE_FILE)
        assert c.reply().ok
        assert c.eval("readBin('data.bin', 'raw', 10)").value() == b"\x00\x01abc"
        c.send(Cmd.OPEN_FILE, string_param("data.bin"))
        assert c.reply().ok
        c.send(Cmd.READ_FILE, int_param(3))
        assert c.reply().payload == b"\x00\x01a"
        c.send(Cmd.READ_FILE)
        assert c.reply().payload == b"bc"
        c.send(Cmd.READ_FILE)
        reply = c.reply()
        assert reply.ok and reply.payload == b""  # end of file
        c.send(Cmd.REMOVE_FILE, string_param("data.bin"))
        assert c.reply().ok
        assert c.eval("file.exists('data.bin')").value() is False


def test_file_errors_match_rserve_statuses(rexec_server: Server) -> None:
    with RawClient(rexec_server.port) as c:
        c.send(Cmd.READ_FILE)
        assert c.reply().status == Err.NOT_OPEN
        c.send(Cmd.WRITE_FILE, bytes_param(b"x"))
        assert c.reply().status == Err.NOT_OPEN
        c.send(Cmd.OPEN_FILE, string_param("missing.txt"))
        assert c.reply().status == Err.IO_ERROR
        c.send(Cmd.REMOVE_FILE, string_param("missing.txt"))
        assert c.reply().status == Err.IO_ERROR
        c.send(Cmd.OPEN_FILE)
        assert c.reply().status == Err.INV_PAR


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
