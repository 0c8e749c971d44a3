"""Least privilege: started as root, rexec runs R as the unprivileged `rexec` account."""

from __future__ import annotations

import os

import pytest

from rexec.compute.supervisor.users import UsersFile
from tests.qap import RawClient

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs a server started as root")


def test_r_runs_unprivileged_and_cannot_write_outside_its_directories(
    rexec_factory, tmp_path
) -> None:
    users = tmp_path / "users"
    UsersFile(users).add("alice", "pw")
    key = tmp_path / "tls.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    key.chmod(0o600)
    os.chmod(tmp_path, 0o755)  # the secrets themselves stay 0600 root
    server = rexec_factory(**{"auth.users_file": str(users), "pool.initial": 1})
    with RawClient(server.port) as c:
        assert c.eval("Sys.info()[['effective_user']]").value() == "rexec"
        assert c.eval("system('id -u', intern = TRUE)").value() != "0"
        for path in ("/etc/rexec-probe", "/root/rexec-probe", "/usr/lib/R/rexec-probe"):
            assert c.eval(f"suppressWarnings(file.create('{path}'))").value() is False, path
        for secret in (users, key):  # the users file, a TLS key
            readable = f"!inherits(try(readLines('{secret}'), silent = TRUE), 'try-error')"
            assert c.eval(readable).value() is False, secret
        assert c.eval("file.create('mine.txt')").value() is True  # its working directory
        assert c.eval("file.create(file.path(tempdir(), 'x'))").value() is True
        assert c.eval("file.create(tempfile())").value() is True
    assert not os.path.exists("/etc/rexec-probe")


def test_allow_root_is_explicit(rexec_factory) -> None:
    server = rexec_factory(**{"shell.allow_root": True, "pool.initial": 1})
    with RawClient(server.port) as c:
        assert c.eval("system('id -u', intern = TRUE)").value() == "0"


def test_missing_account_stops_the_start() -> None:
    from tests.conftest import free_port, serve_fails

    output = serve_fails(f'[server]\nport = {free_port()}\n[shell]\nuser = "no-such-user"\n')
    assert "no account 'no-such-user'" in output
