"""Parked sessions (rexec): detachSession with a timeout parks a session; attachSession
with its key, on a new connection to the server's own port, resumes it — from another
client, after its login — which is how any web node reaches any session's shell."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from rexec.client import ClientError, SessionGone, _core, aattach, aconnect
from rexec.client._async import apool_status
from rexec.protocol import Cmd, Err, bytes_param, string_param
from tests.compute.test_auth import users as users  # a fixture
from tests.qap import RawClient


def _add_user(path, name: str, password: str) -> None:
    command = [sys.executable, "-m", "rexec.cli", "users", "add", name, "--password"]
    subprocess.run(
        [*command, password, "--file", str(path)],
        check=True,
        capture_output=True,
    )


def _server(rexec_factory, users, **extra):
    _add_user(users, "bob", "b0b")
    settings = {"auth.users_file": str(users), "pool.initial": 1, "pool.max": 3, **extra}
    return rexec_factory(**settings)


def test_a_parked_session_is_resumed_on_a_new_connection_with_its_workspace(
    rexec_factory, users
) -> None:
    server = _server(rexec_factory, users)

    async def scenario() -> None:
        first = await aconnect(port=server.port, user="alice", password="s3cret")
        pid = first.pid
        await first.void_eval("x <- 41; f <- function() x + 1")
        key = await first.park(60)
        assert len(key) == 32 and first.closed
        status = await apool_status(port=server.port, user="alice", password="s3cret")
        default = status["pools"][""]
        assert default["parked"] == 1 and default["busy"] >= 1  # it keeps its place
        again = await aattach("127.0.0.1", server.port, key, user="alice", password="s3cret")
        assert await again.eval("f()") == 42
        assert await again.eval("Sys.getpid()") == pid
        key2 = await again.park(60)  # and again: a new key each time
        assert key2 != key
        with pytest.raises(SessionGone):  # the old key is spent
            await aattach("127.0.0.1", server.port, key, user="alice", password="s3cret")
        third = await aattach("127.0.0.1", server.port, key2, user="alice", password="s3cret")
        assert await third.eval("x") == 41
        await third.close()

    asyncio.run(scenario())


def test_only_the_user_who_parked_a_session_resumes_it(rexec_factory, users) -> None:
    server = _server(rexec_factory, users)

    async def scenario() -> None:
        first = await aconnect(port=server.port, user="alice", password="s3cret")
        await first.void_eval("secret <- 'alice only'")
        key = await first.park(60)
        with pytest.raises(SessionGone):
            await aattach("127.0.0.1", server.port, key, user="bob", password="b0b")
        with pytest.raises(ClientError):  # no login: refused before any key is looked at
            await aattach("127.0.0.1", server.port, key)
        with pytest.raises(SessionGone):  # a wrong key, by the right user
            await aattach("127.0.0.1", server.port, bytes(32), user="alice", password="s3cret")
        mine = await aattach("127.0.0.1", server.port, key, user="alice", password="s3cret")
        assert await mine.eval("secret") == "alice only"
        await mine.close()

    asyncio.run(scenario())


def test_a_parked_session_nobody_resumes_ends_and_frees_its_shell(rexec_factory, users) -> None:
    server = _server(rexec_factory, users, **{"session.park_timeout": 1.0, "pool.max": 1})

    async def scenario() -> None:
        first = await aconnect(port=server.port, user="alice", password="s3cret")
        key = await first.park(3600)  # capped by session.park_timeout
        await asyncio.sleep(2.5)
        with pytest.raises(SessionGone):
            await aattach("127.0.0.1", server.port, key, user="alice", password="s3cret")
        # pool.max is 1: the shell it held is free again for a new session
        other = await aconnect(port=server.port, user="alice", password="s3cret", timeout=20)
        assert await other.eval("1 + 1") == 2
        await other.close()

    asyncio.run(scenario())


def test_an_attach_session_request_that_is_no_key_is_refused_as_rserve_does(
    rexec_factory, users
) -> None:
    server = _server(rexec_factory, users)
    with RawClient(server.port) as client:
        client.send(Cmd.LOGIN, string_param("alice\ns3cret"))
        assert client.reply().ok
        for params in ([], [bytes_param(b"short")]):
            client.send(Cmd.ATTACH_SESSION, *params)
            assert client.reply().status == Err.INV_CMD
        client.send(Cmd.ATTACH_SESSION, bytes_param(bytes(32)))
        assert client.reply().status == Err.INV_PAR
        assert client.eval("1 + 2").value() == 3  # the connection goes on


def test_parking_a_session_of_a_node_without_users_file_needs_only_the_key(
    rexec_factory,
) -> None:
    server = rexec_factory(**{"pool.initial": 1})

    async def scenario() -> None:
        first = await aconnect(port=server.port)
        await first.void_eval("y <- 'kept'")
        started = time.monotonic()
        key = await first.park(60)
        again = await aattach("127.0.0.1", server.port, key)
        assert await again.eval("y") == "kept"
        assert time.monotonic() - started < 5
        await again.close()

    asyncio.run(scenario())


def test_a_resumed_session_is_taken_over_by_another_connection_with_its_key(
    rexec_factory, users
) -> None:
    """Web nodes keep a resumed session's connection; another web node's attachSession
    with the same key takes the session over between requests (the first connection
    is closed), and a connection that dies parks the session again."""
    server = _server(rexec_factory, users)

    async def scenario() -> None:
        login = {"user": "alice", "password": "s3cret"}
        first = await aconnect(port=server.port, **login)
        await first.void_eval("n <- 1")
        key = await first.park(60)
        a = await aattach("127.0.0.1", server.port, key, **login)
        assert await a.eval("n <- n + 1") == 2
        b = await aattach("127.0.0.1", server.port, key, **login)  # takes it over
        assert await b.eval("n <- n + 1") == 3
        with pytest.raises(ClientError):  # the old connection was closed by the shell
            await a.eval("n")
        await b.close()  # the client goes away: the session waits again, same key
        c = await aattach("127.0.0.1", server.port, key, **login)
        assert await c.eval("n") == 3
        status = await apool_status(port=server.port, **login)
        assert status["pools"][""]["parked"] == 1
        await c._run(_core.park_op(0))  # a timeout of 0 ends the session
        await c.close()
        with pytest.raises(SessionGone):
            await aattach("127.0.0.1", server.port, key, **login)

    asyncio.run(scenario())
