"""Idle shells accept plain-port connections themselves (``pool.direct_accept``).

A shell that accepted a connection serves it once its first request has arrived whole;
one that stays silent goes back to the server process, which waits for it holding no
shell. Session code never holds a listening socket. With a required login the server
process admits every connection (it alone reads the users file).
"""

from __future__ import annotations

import os
import re
import socket
import struct
import time
from pathlib import Path

import pytest

from rexec.protocol import Cmd, request, string_param
from tests.compute.test_auth import login
from tests.compute.test_auth import users as users
from tests.qap import RawClient


def _listening_inodes() -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                inodes.add(fields[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for entry in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if match := re.fullmatch(r"socket:\[(\d+)\]", target):
            inodes.add(match.group(1))
    return inodes


@pytest.mark.skipif(os.geteuid() != 0, reason="reads another account's /proc/<pid>/fd")
def test_a_shell_serves_the_connection_it_accepted_and_holds_no_listener(
    rexec_factory,
) -> None:
    server = rexec_factory(**{"pool.initial": 2})
    with RawClient(server.port) as client:
        pid = client.eval("Sys.getpid()").value()
        held = _socket_inodes(pid)
        assert held, "the shell holds no socket at all?"
        assert not held & _listening_inodes(), "session code could accept connections"
        assert client.eval("1 + 1").value() == 2
    log = server.log_text()
    assert f"session=p{pid} client=127.0.0.1:" in log and "event=accepted" in log
    assert "event=handback" not in log


def test_a_silent_connection_goes_back_to_the_server_and_is_served(rexec_factory) -> None:
    server = rexec_factory(**{"pool.initial": 2, "server.first_request_wait": 0.2})
    with RawClient(server.port) as client:  # greeted by a shell
        time.sleep(0.8)  # longer than first_request_wait: handed back, shell ended
        assert client.eval("1 + 1").value() == 2
    log = server.log_text()
    assert "event=handback" in log
    assert re.search(r"session=s\d+ client=127\.0\.0\.1:\d+ event=accepted shell=", log), log


def test_a_request_sent_in_parts_is_served_by_the_shell_that_accepted_it(
    rexec_factory,
) -> None:
    server = rexec_factory(**{"pool.initial": 2, "server.first_request_wait": 2.0})
    frame = b"".join(bytes(c) for c in request(Cmd.EVAL, [string_param("6L * 7L")]))
    header, payload = frame[:16], frame[16:]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        assert sock.recv(32, socket.MSG_WAITALL)[:4] == b"Rsrv"
        sock.sendall(header)
        time.sleep(0.3)  # the shell must not start the session on half a request
        sock.sendall(payload[:3])
        time.sleep(0.3)
        sock.sendall(payload[3:])
        header = sock.recv(16, socket.MSG_WAITALL)
        assert struct.unpack("<I", header[:4])[0] == 0x10001
        body = sock.recv(struct.unpack("<I", header[4:8])[0], socket.MSG_WAITALL)
        assert struct.unpack("<i", body[-4:])[0] == 42
    assert "event=handback" not in server.log_text()


def test_a_client_that_leaves_before_its_request_costs_one_shell_only(rexec_factory) -> None:
    server = rexec_factory(**{"pool.initial": 2, "pool.max": 4})
    for _ in range(20):  # connect, read the greeting, leave (port scanners, probes)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.recv(32, socket.MSG_WAITALL)
    with RawClient(server.port) as client:
        assert client.eval("1L").value() == 1


def test_with_a_required_login_the_server_process_admits_every_connection(
    rexec_factory, users
) -> None:
    server = rexec_factory(**{"auth.required": True, "auth.users_file": str(users)})
    with RawClient(server.port) as client:
        assert login(client, "alice", "s3cret").ok
        assert client.eval("1L").value() == 1
    deadline = time.monotonic() + 10
    while not re.search(r"session=s\d+ client=\S+ event=accepted", server.log_text()):
        assert time.monotonic() < deadline, server.log_text()  # logged after the hand-over
        time.sleep(0.05)
    assert not re.search(r"session=p\d+ client=\S+ event=accepted", server.log_text())


def test_with_an_optional_login_shells_accept_and_hand_back_logins(rexec_factory, users) -> None:
    """A users file without auth.required: anonymous clients are served by the shell
    that accepted them; a client that logs in first is handed back (only the server
    process reads the users file), and a wrong password is still refused there."""
    server = rexec_factory(**{"auth.users_file": str(users), "pool.initial": 2})
    with RawClient(server.port) as anonymous:
        assert anonymous.eval("1L").value() == 1
    with RawClient(server.port) as client:
        assert login(client, "alice", "s3cret").ok
        assert client.eval("2L").value() == 2
    with RawClient(server.port) as client:
        assert not login(client, "alice", "wrong").ok
    deadline = time.monotonic() + 10
    while "ok=False" not in server.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)  # the refusal is logged after it was answered
    log = server.log_text()
    assert re.search(r"session=p\d+ client=\S+ event=accepted", log), log
    assert "event=handback" in log, log
    assert re.search(r"event=login user=alice ok=True", log), log
    assert re.search(r"event=login user=- ok=False", log), log
