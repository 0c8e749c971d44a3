"""The compute node end to end: parallel sessions, isolation, errors, limits, pool behaviour."""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rexec.protocol import Cmd, Err, int_param, sexp_param, string_param
from rexec.protocol.codec import from_python
from rexec.protocol.constants import XT
from rexec.protocol.sexp import Sexp
from tests.conftest import Server
from tests.qap import RawClient, Reply

POOL_MODES = ["fork", "spawn"]


class Twin:
    """One connection to the reference Rserve and one to rexec: every request goes to
    both, and rexec's reply must be Rserve's (header command and payload bytes)."""

    def __init__(self, rserve_port: int, rexec_port: int) -> None:
        self.rserve = RawClient(rserve_port)
        self.rexec = RawClient(rexec_port)

    def replies(self, cmd: int, *params: Any) -> tuple[Reply, Reply]:
        """Rserve's reply and rexec's to the same request."""
        self.rserve.send(cmd, *params)
        self.rexec.send(cmd, *params)
        return self.rserve.reply(), self.rexec.reply()

    def same(self, cmd: int, *params: Any) -> Reply:
        """rexec's reply, asserted equal to Rserve's."""
        reference, candidate = self.replies(cmd, *params)
        assert (hex(candidate.header.cmd), candidate.payload) == (
            hex(reference.header.cmd),
            reference.payload,
        ), f"rexec answered {candidate.header}, Rserve {reference.header}"
        return candidate

    def eval(self, code: str) -> Reply:
        return self.same(Cmd.EVAL, string_param(code))

    def close(self) -> None:
        self.rserve.close()
        self.rexec.close()

    def __enter__(self) -> Twin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture(scope="module", params=POOL_MODES)
def server(request, tmp_path_factory) -> Server:
    from tests.conftest import start_rexec

    directory = tmp_path_factory.mktemp(f"rexec-{request.param}")
    started = start_rexec(
        directory, **{"pool.mode": request.param, "pool.initial": 4, "pool.max": 6}
    )
    yield started
    started.stop()


def test_eval_and_state_persists_within_a_connection(server: Server, rserve: Server) -> None:
    with RawClient(rserve.port) as reference, RawClient(server.port) as c:
        assert c.id_string == reference.id_string  # Rserve's, for the same configuration
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


def test_connection_survives_r_error_parse_error_and_unknown_command(
    server: Server, rserve: Server
) -> None:
    with Twin(rserve.port, server.port) as twin:
        r = twin.eval("stop('boom')")
        assert not r.ok
        assert twin.eval("geterrmessage()").value() == "Error: boom\n"
        assert not twin.eval("1+").ok
        assert not twin.eval(")").ok
        assert not twin.same(0x99).ok
        assert not twin.same(Cmd.EVAL, int_param(3)).ok
        assert not twin.same(Cmd.EVAL).ok
        twin.eval("geterrmessage()")
        # A text the R lexer rejects with an R error crashes Rserve's child (README,
        # "Decisions"): rexec alone answers PARSE_ERROR and goes on.
        assert twin.rexec.eval("'\\q'").status == 3
        assert twin.rexec.eval("geterrmessage()").value() == "Error: boom\n"
        assert twin.eval("1L + 1L").value() == 2


def test_eval_of_an_r_object_and_assignments(server: Server, rserve: Server) -> None:
    with Twin(rserve.port, server.port) as twin:
        assert twin.same(
            Cmd.SET_SEXP, string_param("my var"), sexp_param(from_python([1, 2, 3]))
        ).ok
        assert twin.eval("`my var`").value() == [1, 2, 3]
        assert twin.same(Cmd.ASSIGN_SEXP, string_param("`other var`"), string_param("text")).ok
        assert twin.eval("`other var`").value() == "text"
        assert not twin.same(Cmd.ASSIGN_SEXP, string_param("1+"), string_param("x")).ok
        assert not twin.same(Cmd.SET_SEXP, string_param("only a name")).ok
    # Assigning to a locked binding crashes Rserve's child (README, "Decisions"): rexec
    # answers the R error.
    with RawClient(server.port) as c:
        c.send(Cmd.SET_SEXP, string_param("my var"), sexp_param(from_python([1, 2, 3])))
        assert c.reply().ok
        c.send(Cmd.VOID_EVAL, string_param("lockBinding('my var', globalenv())"))
        assert c.reply().ok
        c.send(Cmd.SET_SEXP, string_param("my var"), string_param("x"))
        assert c.reply().status == 127  # an R error, not a crash
        assert c.eval("1").value() == 1.0


def test_oversized_request_is_discarded_and_connection_stays_usable(
    rexec_factory, tmp_path
) -> None:
    from bench.servers import start_rserve

    server = rexec_factory(**{"limits.maxinbuf": 64 * 1024, "pool.initial": 1})
    rserve = start_rserve(tmp_path / "rserve-maxinbuf", extra="maxinbuf 64\n")  # in kB
    try:
        with Twin(rserve.port, server.port) as twin:
            assert not twin.eval("x <- '" + "a" * 100_000 + "'").ok
            assert twin.eval("1L").value() == 1
    finally:
        rserve.stop()


def test_pool_refuses_when_all_shells_are_busy(rexec_factory) -> None:
    server = rexec_factory(**{"pool.initial": 1, "pool.max": 1, "pool.wait_timeout": 0.5})
    with RawClient(server.port) as busy:
        busy.eval("1")
        started = time.monotonic()
        # A connection asks for a shell with its first request (until then it holds none).
        refused = RawClient(server.port, timeout=10)
        refused.send(Cmd.EVAL, string_param("1"))
        assert refused.closed_by_server()
        assert 0.5 <= time.monotonic() - started < 5
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


def test_startup_code_is_run_once_and_seen_by_every_session(rexec_factory) -> None:
    # Start-up code runs as the shell account: its files must be readable by it.
    script = Path(tempfile.mkdtemp(prefix="rexec-init-")) / "init.R"
    script.parent.chmod(0o755)
    script.write_text("from_source <- 'sourced'\n")
    script.chmod(0o644)
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


def test_infinite_recursion_is_an_r_error_not_a_crash(server: Server, rserve: Server) -> None:
    with Twin(rserve.port, server.port) as twin:
        assert not twin.eval("f <- function() f(); f()").ok
        # the same text as Rserve's but for the numbers (stack sizes differ by process)
        messages = twin.replies(Cmd.EVAL, string_param("geterrmessage()"))
        rserve_text, rexec_text = (re.sub(r"\d+", "N", r.value()) for r in messages)
        assert rexec_text == rserve_text
        assert "C stack usage" in rexec_text
        assert twin.eval("1L").value() == 1


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
