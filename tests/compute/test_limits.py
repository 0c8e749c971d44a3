"""Per-session limits: each ends in a clean error or a logged close, and the server and
other sessions carry on."""

from __future__ import annotations

import time

import pytest

from rexec.protocol import Err
from tests.qap import RawClient


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    from tests.conftest import start_rexec

    server = start_rexec(
        tmp_path_factory.mktemp("limits"),
        **{
            "limits.maxsendbuf": 100_000,
            "limits.memory": 2 * 1024**3,
            "limits.eval_timeout": 1.0,
            "limits.cpu_seconds": 0,
            "limits.idle_timeout": 3.0,
            "pool.initial": 2,
        },
    )
    yield server
    server.stop()


def test_reply_over_maxsendbuf(limited) -> None:
    with RawClient(limited.port) as c:
        reply = c.eval("numeric(20000)")
        assert reply.status == Err.OBJECT_TOO_BIG
        assert int.from_bytes(reply.payload, "little") > 100_000  # the size it would need
        assert c.eval("1L").value() == 1


def test_memory_limit_is_an_r_error(limited) -> None:
    with RawClient(limited.port) as c:
        assert c.eval("x <- numeric(5e8)").status == 127  # 4 GB
        assert "cannot allocate" in c.eval("geterrmessage()").value()
        assert c.eval("1L").value() == 1


def test_wall_clock_limit_interrupts_the_request(limited) -> None:
    with RawClient(limited.port) as c:
        started = time.monotonic()
        assert c.eval("Sys.sleep(30)").status == 127
        assert time.monotonic() - started < 5
        assert c.eval("Sys.sleep(0.2); 2L").value() == 2  # the session goes on
    assert "wall-clock limit" in limited.log_text()


def test_cpu_limit_ends_the_session(rexec_factory) -> None:
    limited = rexec_factory(
        **{"limits.cpu_seconds": 1, "limits.eval_timeout": 0.0, "pool.initial": 1}
    )
    with RawClient(limited.port) as c:
        started = time.monotonic()
        reply = c.eval("repeat {}")
        assert reply.status == 127
        assert c.closed_by_server()
        assert time.monotonic() - started < 15
    assert "CPU limit" in limited.log_text()
    with RawClient(limited.port) as other:
        assert other.eval("1L").value() == 1


def test_idle_connection_is_closed(limited) -> None:
    with RawClient(limited.port) as c:
        assert c.eval("1L").value() == 1
        time.sleep(3.5)
        assert c.closed_by_server()
    assert "idle for" in limited.log_text()
