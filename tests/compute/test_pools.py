"""Named pools: a template of their own that ran their own start-up code once (a
published service's model), chosen per connection with rexec's ``CMD_usePool``.

Defining, listing and removing pools needs a verified login; a plain QAP client on the
default pool sees no change.
"""

from __future__ import annotations

import json
import time

from rexec.protocol import Cmd, string_param
from rexec.protocol.constants import Err
from rexec.protocol.params import decode_params
from tests.compute.test_auth import login
from tests.compute.test_auth import users as users  # a fixture
from tests.qap import RawClient

MODEL = "model <- lm(mpg ~ wt + hp, data = mtcars); loaded_by <- Sys.getpid()"


def _command(client: RawClient, cmd: int, text: str):
    client.send(cmd, string_param(text))
    return client.reply()


def _message(reply) -> str:
    return bytes(decode_params(reply.payload)[0].value).split(b"\0")[0].decode()


def _define(client: RawClient, name: str, init: str = MODEL, initial: int = 1, most: int = 2):
    spec = {"name": name, "init": init, "initial": initial, "max": most}
    return _command(client, Cmd.DEFINE_POOL, json.dumps(spec))


def _server(rexec_factory, users_file):
    return rexec_factory(**{"auth.users_file": str(users_file), "pool.initial": 1})


def test_a_named_pool_serves_shells_that_already_hold_the_model(rexec_factory, users) -> None:
    server = _server(rexec_factory, users)
    with RawClient(server.port) as admin:
        assert login(admin, "alice", "s3cret").ok
        started = time.monotonic()
        assert _define(admin, "svc/cars@1").ok
        assert time.monotonic() - started < 60
    expected = RawClient(server.port)
    with expected:  # the default pool: no model, same R
        assert expected.eval("exists('model')").value() is False
        direct = expected.eval(f"{{{MODEL}; unname(coef(model))}}").value()
    for _ in range(3):  # each connection a new shell of the pool, forked after init ran
        with RawClient(server.port) as client:
            assert login(client, "alice", "s3cret").ok
            assert _command(client, Cmd.USE_POOL, "svc/cars@1").ok
            assert client.eval("exists('model')").value() is True
            assert list(client.eval("unname(coef(model))").value()) == list(direct)
            pid, loaded_by = client.eval("c(Sys.getpid(), loaded_by)").value()
            assert pid != loaded_by  # init ran once, in the pool's template
    with RawClient(server.port) as admin:
        assert login(admin, "alice", "s3cret").ok
        status = json.loads(_message(_command(admin, Cmd.POOL_STATUS, "")))
    assert set(status["pools"]) == {"", "svc/cars@1"}
    assert status["pools"]["svc/cars@1"]["max"] == 2
    assert "event=pool-defined pool=svc/cars@1" in server.log_text()


def test_pool_commands_need_a_verified_login(rexec_factory, users) -> None:
    server = _server(rexec_factory, users)
    with RawClient(server.port) as anonymous:
        for cmd in (Cmd.DEFINE_POOL, Cmd.REMOVE_POOL, Cmd.POOL_STATUS, Cmd.USE_POOL):
            reply = _command(anonymous, cmd, "{}" if cmd == Cmd.DEFINE_POOL else "x")
            assert reply.status == Err.AUTH_FAILED, hex(cmd)
        assert anonymous.eval("1L").value() == 1  # and the connection still works
    assert "event=pool-refused reason='no login'" in server.log_text()


def test_without_a_users_file_nobody_defines_pools(rexec_factory) -> None:
    server = rexec_factory(**{"pool.initial": 1})
    with RawClient(server.port) as client:
        assert _define(client, "x").status == Err.AUTH_FAILED
        assert _command(client, Cmd.USE_POOL, "x").status == Err.INV_PAR  # no such pool
        assert client.eval("1L").value() == 1


def test_bad_definitions_and_failing_init_code_get_clear_errors(rexec_factory, users) -> None:
    server = _server(rexec_factory, users)
    with RawClient(server.port) as admin:
        assert login(admin, "alice", "s3cret").ok
        for spec in ("not json", '{"name": "../x"}', '{"name": "a", "max": 999}', "[]"):
            reply = _command(admin, Cmd.DEFINE_POOL, spec)
            assert reply.status == Err.INV_PAR, spec
        reply = _define(admin, "broken", init="stop('no model file')")
        assert reply.status == Err.R_ERR
        assert "did not start" in _message(reply)
        assert _command(admin, Cmd.USE_POOL, "broken").status == Err.INV_PAR
        assert admin.eval("1L").value() == 1


def test_a_pool_is_replaced_and_removed(rexec_factory, users) -> None:
    server = _server(rexec_factory, users)
    with RawClient(server.port) as admin:
        assert login(admin, "alice", "s3cret").ok
        assert _define(admin, "svc", init="version <- 1").ok
        assert _define(admin, "svc", init="version <- 2").ok  # a new version, same name
    with RawClient(server.port) as client:
        assert login(client, "alice", "s3cret").ok
        assert _command(client, Cmd.USE_POOL, "svc").ok
        assert client.eval("version").value() == 2
        # usePool is answered by the server before a shell: inside a session it is not
        assert _command(client, Cmd.USE_POOL, "svc").status == Err.INV_CMD
    with RawClient(server.port) as admin:
        assert login(admin, "alice", "s3cret").ok
        assert _command(admin, Cmd.REMOVE_POOL, "svc").ok
        assert _command(admin, Cmd.REMOVE_POOL, "svc").status == Err.INV_PAR
        assert _command(admin, Cmd.USE_POOL, "svc").status == Err.INV_PAR
    assert "event=pool-removed pool=svc" in server.log_text()


def test_the_python_client_defines_uses_and_lists_pools(rexec_factory, users) -> None:
    import pytest

    import rexec.client
    from tests.compute.test_operations import _status

    server = _server(rexec_factory, users)
    auth = {"port": server.port, "user": "alice", "password": "s3cret"}
    rexec.client.define_pool("scoring", MODEL, initial=1, max=2, **auth)
    with rexec.client.connect(pool="scoring", **auth) as conn:
        assert conn.eval("exists('model')") is True
        assert conn.pid is not None and conn.pid != conn.eval("loaded_by")
    status = rexec.client.pool_status(**auth)
    assert status["pools"]["scoring"]["max"] == 2
    assert "scoring" in _status(server)  # rexec status lists named pools too
    with pytest.raises(rexec.client.ClientError, match="did not start"):
        rexec.client.define_pool("bad", "stop('no')", **auth)
    rexec.client.remove_pool("scoring", **auth)
    with pytest.raises(rexec.client.ClientError, match="no such pool"):
        rexec.client.connect(pool="scoring", **auth)


def test_a_pool_definition_carries_data_its_template_reads_once(rexec_factory, users) -> None:
    """The data (a service's snapshot) is staged in a file only the shell account can
    read, named by ``.rexec_pool_data`` while ``init`` runs, and removed afterwards."""
    import rexec.client

    server = _server(rexec_factory, users)
    auth = {"port": server.port, "user": "alice", "password": "s3cret"}
    payload = bytes(range(256)) * 4096  # 1 MiB, every byte value
    init = (
        "staged <- .rexec_pool_data; "
        "blob <- readBin(staged, 'raw', file.size(staged)); "
        "mode <- as.character(file.mode(staged)); rm(.rexec_pool_data)"
    )
    rexec.client.define_pool("blob", init, initial=1, max=2, data=payload, **auth)
    with rexec.client.connect(pool="blob", **auth) as conn:
        assert conn.eval("length(blob)") == len(payload)
        assert bytes(conn.eval("blob")) == payload
        assert conn.eval("mode") == "400"
        assert conn.eval("file.exists(staged)") is False  # gone once the template started
        assert conn.eval("exists('.rexec_pool_data')") is False
    with rexec.client.connect(**auth) as plain:  # the default pool never saw it
        assert plain.eval("exists('blob')") is False


def test_a_named_pool_shell_is_cancelled_by_its_own_user_only(rexec_factory, users) -> None:
    """CMD_cancel reaches shells of named pools (a service call past its timeout), and
    only the user the shell serves may send it, even where logins are optional."""
    import threading

    import rexec.client
    from rexec.protocol import int_param

    server = _server(rexec_factory, users)
    auth = {"port": server.port, "user": "alice", "password": "s3cret"}
    rexec.client.define_pool("long", "x <- 1", initial=1, max=2, **auth)
    with rexec.client.connect(pool="long", **auth) as conn:
        outcome: list[object] = []

        def run() -> None:
            try:
                outcome.append(conn.eval("{Sys.sleep(20); 'finished'}"))
            except rexec.client.RError as exc:
                outcome.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        time.sleep(0.5)
        with RawClient(server.port) as anonymous:  # no login: refused
            anonymous.send(Cmd.CANCEL, int_param(conn.pid))
            assert anonymous.reply().status == Err.INV_PAR
        started = time.monotonic()
        assert conn.cancel() is True
        worker.join(10)
        assert time.monotonic() - started < 5
        assert isinstance(outcome[0], rexec.client.RError), outcome  # interrupted


def test_the_node_s_limits_apply_to_named_pool_shells(rexec_factory, users) -> None:
    """A published service's shells are the node's shells: limits.memory and
    limits.eval_timeout hold there as in the default pool."""
    import pytest

    import rexec.client

    server = rexec_factory(
        **{
            "auth.users_file": str(users),
            "pool.initial": 1,
            "limits.memory": 1024 * 1024 * 1024,
            "limits.eval_timeout": 1.0,
        }
    )
    auth = {"port": server.port, "user": "alice", "password": "s3cret"}
    rexec.client.define_pool("limited", "x <- 1", initial=1, max=2, **auth)
    with rexec.client.connect(pool="limited", **auth) as conn:
        with pytest.raises(rexec.client.RError, match="cannot allocate"):
            conn.eval("numeric(4e8)")  # 3.2 GB: past the address-space limit
        assert conn.eval("length(numeric(1e6))") == 1_000_000
    with rexec.client.connect(pool="limited", **auth) as conn:
        started = time.monotonic()
        with pytest.raises(rexec.client.ClientError):
            conn.eval("Sys.sleep(30)")
        assert time.monotonic() - started < 10
