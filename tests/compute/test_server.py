"""The compute node end to end: parallel sessions, isolation, errors, limits, pool behaviour."""

from __future__ import annotations

import os
import threading
import time

import pytest

from rexec.protocol import Cmd, Err, int_param, sexp_param, string_param
from rexec.protocol.codec import from_python
from rexec.protocol.constants import XT
from rexec.protocol.sexp import Sexp
from tests.conftest import Server
from tests.qap import RawClient

POOL_MODES = ["fork", "spawn"]


@pytest.fixture(scope="module", params=POOL_MODES)
def server(request, tmp_path_factory) -> Server:
    from tests.conftest import start_rexec

    directory = tmp_path_factory.mktemp(f"rexec-{request.param}")
    started = start_rexec(
        directory, **{"pool.mode": request.param, "pool.initial": 4, "pool.max": 6}
    )
    yield started
    started.stop()


def test_eval_and_state_persists_within_a_connection(server: Server) -> None:
    with RawClient(server.port) as c:
        assert c.id_string == b"Rsrv0103QAP1\r\n\r\n--------------\r\n"
        assert c.eval("x <- 21").value() == 21.0
        assert c.eval("x * 2").value() == 42.0


def test_connections_are_isolated(server: Server) -> None:
    with RawClient(server.port) as a, RawClient(server.port) as b:
        a.eval("secret <- 'mine'")
        assert b.eval("exists('secret')").value() is False
        assert a.eval("exists('secret')").value() is True
    with RawClient(server.port) as later:
        assert later.eval("exists('secret')").value() is False


@pytest.mark.parametrize("mode", POOL_MODES)
def test_sessions_run_in_parallel(rexec_factory, mode: str) -> None:
    # A server of its own: start-up waits until pool.initial shells are ready.
    server = rexec_factory(**{"pool.mode": mode, "pool.initial": 4, "pool.max": 4})

    def sleeper() -> None:
        with RawClient(server.port) as c:
            assert c.eval("Sys.sleep(1); 1L").value() == 1

    threads = [threading.Thread(target=sleeper) for _ in range(4)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - started < 1.9


def test_each_shell_has_its_own_pid_tempdir_workdir_and_seed(server: Server) -> None:
    seen = []
    for _ in range(3):
        with RawClient(server.port) as c:
            pid = c.eval("Sys.getpid()").value()
            tmp = c.eval("tempdir()").value()
            wd = c.eval("getwd()").value()
            draw = c.eval("runif(1)").value()
            assert c.eval("file.exists(tempdir())").value() is True
            seen.append((pid, tmp, wd, draw))
    for column in zip(*seen, strict=True):
        assert len(set(column)) == 3, column
    time.sleep(0.5)
    for _pid, tmp, wd, _draw in seen:  # removed when the session ended
        assert not os.path.exists(tmp)
        assert not os.path.exists(wd)


def test_connection_survives_r_error_parse_error_and_unknown_command(server: Server) -> None:
    with RawClient(server.port) as c:
        r = c.eval("stop('boom')")
        assert (r.ok, r.status) == (False, 127)
        assert c.eval("geterrmessage()").value() == "Error: boom\n"
        assert c.eval("1+").status == 2
        assert c.eval(")").status == 3
        assert c.eval("'\\q'").status == 3  # a lexer error() must not take R down
        c.send(0x99)
        assert c.reply().status == Err.INV_CMD
        c.send(Cmd.EVAL, int_param(3))
        assert c.reply().status == Err.INV_PAR
        c.send(Cmd.EVAL)
        assert c.reply().status == Err.INV_PAR
        assert c.eval("geterrmessage()").value() == "Error: boom\n"
        assert c.eval("1L + 1L").value() == 2


def test_eval_of_an_r_object_and_assignments(server: Server) -> None:
    with RawClient(server.port) as c:
        c.send(Cmd.SET_SEXP, string_param("my var"), sexp_param(from_python([1, 2, 3])))
        assert c.reply().ok
        assert c.eval("`my var`").value() == [1, 2, 3]
        c.send(Cmd.ASSIGN_SEXP, string_param("`other var`"), string_param("text"))
        assert c.reply().ok
        assert c.eval("`other var`").value() == "text"
        c.send(Cmd.ASSIGN_SEXP, string_param("1+"), string_param("x"))
        assert c.reply().status == 2
        c.send(Cmd.SET_SEXP, string_param("only a name"))
        assert c.reply().status == Err.INV_PAR
        c.send(Cmd.VOID_EVAL, string_param("lockBinding('my var', globalenv())"))
        assert c.reply().ok
        c.send(Cmd.SET_SEXP, string_param("my var"), string_param("x"))
        assert c.reply().status == 127  # an R error, not a crash
        assert c.eval("1").value() == 1.0


def test_oversized_request_is_discarded_and_connection_stays_usable(rexec_factory) -> None:
    server = rexec_factory(**{"limits.maxinbuf": 1024, "pool.initial": 1})
    with RawClient(server.port) as c:
        r = c.eval("x <- '" + "a" * 5000 + "'")
        assert r.status == Err.DATA_OVERFLOW
        assert c.eval("1L").value() == 1


def test_pool_refuses_when_all_shells_are_busy(rexec_factory) -> None:
    server = rexec_factory(**{"pool.initial": 1, "pool.max": 1, "pool.wait_timeout": 0.5})
    with RawClient(server.port) as busy:
        busy.eval("1")
        started = time.monotonic()
        refused = RawClient.__new__(RawClient)
        import socket

        refused.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        assert refused.closed_by_server()
        assert time.monotonic() - started < 5
        refused.close()
    assert "no R shell free" in server.log_text()
    with RawClient(server.port) as again:  # the shell was replaced once the first one left
        assert again.eval("1L").value() == 1


def test_a_waiting_connection_gets_the_next_free_shell(rexec_factory) -> None:
    server = rexec_factory(**{"pool.initial": 1, "pool.max": 1, "pool.wait_timeout": 30})
    first = RawClient(server.port)
    first.eval("1")
    result = {}

    def second() -> None:
        with RawClient(server.port) as c:
            result["value"] = c.eval("2L").value()

    t = threading.Thread(target=second)
    t.start()
    time.sleep(0.5)
    first.close()
    t.join(30)
    assert result == {"value": 2}


def test_a_shell_that_dies_mid_eval_is_replaced(server: Server) -> None:
    with RawClient(server.port) as c:
        c.send(Cmd.EVAL, string_param("tools::pskill(Sys.getpid(), 9)"))
        with pytest.raises(ConnectionError):
            c.reply()
    with RawClient(server.port) as c:
        assert c.eval("1L").value() == 1


def test_shutdown_is_refused_without_authentication(server: Server) -> None:
    with RawClient(server.port) as c:
        c.send(Cmd.SHUTDOWN)
        assert c.reply().status == Err.DISABLED
        assert c.eval("1L").value() == 1


def test_startup_code_is_run_once_and_seen_by_every_session(rexec_factory, tmp_path) -> None:
    script = tmp_path / "init.R"
    script.write_text("from_source <- 'sourced'\n")
    server = rexec_factory(
        **{
            "startup.eval": ["preloaded <- 40 + 2"],
            "startup.source": [str(script)],
            "startup.packages": ["tools"],
        }
    )
    with RawClient(server.port) as c:
        assert c.eval("preloaded").value() == 42.0
        assert c.eval("from_source").value() == "sourced"
        assert c.eval("'package:tools' %in% search()").value() is True


def test_infinite_recursion_is_an_r_error_not_a_crash(server: Server) -> None:
    with RawClient(server.port) as c:
        assert c.eval("f <- function() f(); f()").status == 127
        assert "C stack usage" in c.eval("geterrmessage()").value()  # same text as Rserve
        assert c.eval("1L").value() == 1


@pytest.mark.parametrize(
    ("value", "check", "expected"),
    [
        (Sexp(XT.ARRAY_INT, bytes(range(256)) * 20000), "length(v)", 1280000),
        (Sexp(XT.ARRAY_CPLX, bytes(16) * 100000), "sum(Mod(v))", 0.0),
        (  # with attributes: not the direct path, decoded as usual
            Sexp(
                XT.ARRAY_DOUBLE,
                bytes(8) * 200000,
                Sexp(XT.LIST_TAG, [(from_python([1000, 200]), Sexp(XT.SYMNAME, "dim"))]),
            ),
            "dim(v)",
            [1000, 200],
        ),
    ],
    ids=["int", "complex", "matrix"],
)
def test_large_assignments_arrive_intact(server: Server, value, check, expected) -> None:
    with RawClient(server.port) as c:
        c.send(Cmd.SET_SEXP, string_param("v"), sexp_param(value))
        assert c.reply().ok
        assert c.eval(check).value() == expected
        assert c.eval("1L").value() == 1
