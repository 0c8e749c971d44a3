"""Logins against the users file, and who may shut the server down."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from rexec.compute.supervisor.users import UsersFile
from rexec.protocol import Cmd, Err, string_param
from tests.qap import RawClient


@pytest.fixture
def users(tmp_path):
    path = tmp_path / "users"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "rexec.cli",
            "users",
            "add",
            "alice",
            "--password",
            "s3cret",
            "--file",
            str(path),
        ],
        check=True,
        capture_output=True,
    )
    return path


def test_users_file_stores_argon2_hashes_and_refuses_wildcards(users) -> None:
    text = users.read_text()
    assert text.startswith("alice\t$argon2")
    assert "s3cret" not in text
    store = UsersFile(users)
    assert store.verify("alice", "s3cret")
    assert not store.verify("alice", "wrong")
    assert not store.verify("*", "s3cret")
    with pytest.raises(ValueError):
        store.add("*", "x")
    listing = subprocess.run(
        [sys.executable, "-m", "rexec.cli", "users", "list", "--file", str(users)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "alice" in listing.stdout


def login(client: RawClient, user: str, password: str):
    client.send(Cmd.LOGIN, string_param(f"{user}\n{password}"))
    return client.reply()


def test_required_login(rexec_factory, users) -> None:
    server = rexec_factory(
        **{"auth.required": True, "auth.users_file": str(users), "pool.initial": 1}
    )
    with RawClient(server.port) as c:
        assert c.id_string == b"Rsrv0103QAP1\r\n\r\nARpt----------\r\n"
        r = c.eval("1")  # nothing before login
        assert r.status == Err.AUTH_FAILED
        assert c.closed_by_server()
    with RawClient(server.port) as c:
        assert login(c, "alice", "wrong").status == Err.AUTH_FAILED
        assert c.closed_by_server()
    with RawClient(server.port) as c:
        assert login(c, "alice", "s3cret").ok
        assert c.eval("1L").value() == 1
        assert login(c, "alice", "s3cret").status == Err.INV_CMD  # second login, as Rserve


def test_authenticated_user_may_shut_the_server_down(rexec_factory, users) -> None:
    server = rexec_factory(
        **{"auth.required": True, "auth.users_file": str(users), "pool.initial": 1}
    )
    with RawClient(server.port) as c:
        assert login(c, "alice", "s3cret").ok
        c.send(Cmd.SHUTDOWN)
        assert c.reply().ok
    deadline = time.monotonic() + 20
    while server.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.process.returncode == 0
    assert "asked the server to shut down" in server.log_text()


def test_optional_login_without_users_file_accepts_anyone(rexec_server) -> None:
    with RawClient(rexec_server.port) as c:
        assert login(c, "anyone", "anything").ok
        assert c.eval("1L").value() == 1


def test_clear_text_passwords_in_the_users_file_need_the_compat_switch(rexec_factory, tmp_path):
    users = tmp_path / "users"
    users.write_text("bob secret\n")  # an Rserve-style entry
    users.chmod(0o600)
    strict = rexec_factory(**{"auth.required": True, "auth.users_file": str(users)})
    with RawClient(strict.port) as c:
        assert login(c, "bob", "secret").status == Err.AUTH_FAILED
    assert "stored in clear: refused" in strict.log_text()
    compat = rexec_factory(
        **{"auth.required": True, "auth.users_file": str(users), "auth.plaintext": True}
    )
    with RawClient(compat.port) as c:
        assert login(c, "bob", "secret").ok


def test_session_log_lines_are_structured(rexec_factory) -> None:
    server = rexec_factory(**{"log.commands": True, "pool.initial": 1})
    with RawClient(server.port) as c:
        c.eval("1L")
        c.eval("stop('x')")
    expected = ("outcome=error 0x7f", "event=command cmd=0x3 bytes=16")
    time_limit = time.monotonic() + 10
    while time.monotonic() < time_limit:
        text = server.log_text()
        if all(part in text for part in expected) and text.count("event=ended") >= 2:
            break
        time.sleep(0.1)
    assert "event=accepted shell=" in text and "client=127.0.0.1:" in text
    assert "event=command cmd=0x3 bytes=" in text and "outcome=ok" in text
    assert "outcome=error 0x7f" in text
    assert "event=ended outcome=closed-by-client duration=" in text
