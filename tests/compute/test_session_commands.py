"""setEncoding, detached sessions and control commands."""

from __future__ import annotations

import socket
import time

from rexec.protocol import Cmd, Err, decode_params, string_param, unpack_header
from rexec.protocol.constants import DT
from tests.compute.test_server import Twin
from tests.conftest import Server
from tests.qap import RawClient, Reply


def _reattach(port: int, key: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(key)
    return sock


def _read_reply(sock: socket.socket) -> tuple[int, bytes]:
    def read(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "closed"
            data += chunk
        return data

    header = unpack_header(read(16))
    return header.cmd, read(header.length)


def _as_client(sock: socket.socket) -> RawClient:
    client = RawClient.__new__(RawClient)
    client.sock = sock
    return client


def test_set_encoding_latin1_round_trip(rexec_server: Server, rserve: Server) -> None:
    with Twin(rserve.port, rexec_server.port) as twin:
        assert twin.same(Cmd.SET_ENCODING, string_param("latin1")).ok
        reply = twin.same(Cmd.EVAL, string_param("'caf\u00e9'".encode("latin-1")))
        assert bytes(decode_params(reply.payload)[0].value.value) == b"caf\xe9\x00"
        latin1_in = string_param("x <- 'na\u00efve'".encode("latin-1"))
        assert twin.same(Cmd.VOID_EVAL, latin1_in).ok
        assert twin.same(Cmd.SET_ENCODING, string_param("utf8")).ok
        assert twin.eval("x").value() == "na\u00efve"
        assert not twin.same(Cmd.SET_ENCODING, string_param("klingon")).ok


def _reply(reply: Reply) -> tuple[str, list[tuple[str, int | None]]]:
    """A detach reply without what differs by design (port number, key bytes): its
    command, and each parameter's type and (for byte strings) size."""
    params = decode_params(reply.payload) if reply.payload else []
    return hex(reply.header.cmd), [
        (p.dt.name, None if p.dt == DT.INT else len(bytes(p.value))) for p in params
    ]


def _detach_and_reattach(port: int) -> list[object]:
    """What a client sees when it detaches a session and comes back: first with a
    wrong key, then with the right one."""
    seen: list[object] = []
    with RawClient(port) as c:
        c.eval("kept <- 'state'")
        c.send(Cmd.DETACH_SESSION)
        reply = c.reply()
        seen.append(_reply(reply))
        again_port, key = (p.value for p in decode_params(reply.payload))
        seen.append(("closed", c.closed_by_server()))
    wrong = _reattach(again_port, b"x" * 32)  # refused; the session keeps waiting
    seen.append(("wrong key", wrong.recv(1)))
    wrong.close()
    with _as_client(_reattach(again_port, bytes(key))) as again:
        first = again.reply()
        seen.append(("re-attached", hex(first.header.cmd), first.payload))
        seen.append(("kept", again.eval("kept").value()))
    return seen


def test_detach_and_reattach_keeps_the_session(rexec_server: Server, rserve: Server) -> None:
    seen = _detach_and_reattach(rexec_server.port)
    assert seen == _detach_and_reattach(rserve.port)
    assert seen[0] == ("0x10001", [("INT", None), ("BYTESTREAM", 32)])  # port and key
    assert seen[-1] == ("kept", "state")


def _detached_void_eval(port: int) -> list[object]:
    seen: list[object] = []
    with RawClient(port) as c:
        c.send(Cmd.DETACHED_VOID_EVAL, string_param("1+"))
        reply = c.reply()  # parse errors are answered before detaching
        seen.append((hex(reply.header.cmd), reply.payload))
        c.send(Cmd.DETACHED_VOID_EVAL, string_param("Sys.sleep(0.3); result <- 6 * 7"))
        reply = c.reply()
        seen.append(_reply(reply))
        again_port, key = (p.value for p in decode_params(reply.payload))
    with _as_client(_reattach(again_port, bytes(key))) as again:
        first = again.reply()
        seen.append(("re-attached", hex(first.header.cmd), first.payload))
        seen.append(("result", again.eval("result").value()))
    return seen


def test_detached_void_eval_reports_its_status_on_reattach(
    rexec_server: Server, rserve: Server
) -> None:
    seen = _detached_void_eval(rexec_server.port)
    assert seen == _detached_void_eval(rserve.port)
    assert seen[-1] == ("result", 42.0)


def test_unclaimed_detached_session_is_reclaimed(rexec_factory) -> None:
    server = rexec_factory(**{"session.detach_timeout": 0.5, "pool.initial": 1})
    with RawClient(server.port) as c:
        c.send(Cmd.DETACH_SESSION)
        port, _key = (p.value for p in decode_params(c.reply().payload))
    time.sleep(1.5)
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        reachable = True
    except OSError:
        reachable = False
    assert not reachable
    assert "not re-attached" in server.log_text()


def test_control_commands_are_disabled_by_default(rexec_server: Server, rserve: Server) -> None:
    with Twin(rserve.port, rexec_server.port) as twin:  # Rserve 1.8 has none
        for cmd in (Cmd.CTRL_EVAL, Cmd.CTRL_SOURCE):
            assert not twin.same(cmd, string_param("x <- 1")).ok
        assert twin.eval("exists('x')").value() is False


def test_control_eval_needs_an_authenticated_user_and_reaches_new_sessions(
    rexec_factory, tmp_path
) -> None:
    from rexec.compute.supervisor.users import UsersFile

    users = tmp_path / "users"
    UsersFile(users).add("root", "pw")
    server = rexec_factory(
        **{"control.enabled": True, "auth.users_file": str(users), "pool.initial": 2}
    )
    with RawClient(server.port) as anonymous:
        anonymous.send(Cmd.CTRL_EVAL, string_param("x <- 1"))
        assert anonymous.reply().status == Err.ACCESS_DENIED
    with RawClient(server.port) as admin:
        admin.send(Cmd.LOGIN, string_param("root\npw"))
        assert admin.reply().ok
        admin.send(Cmd.CTRL_EVAL, string_param("server_wide <- 'yes'"))
        assert admin.reply().ok
    deadline = time.monotonic() + 20
    while True:
        with RawClient(server.port) as later:
            if later.eval("exists('server_wide')").value() is True:
                assert later.eval("server_wide").value() == "yes"
                break
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_unsupported_rserve_commands_are_invalid_and_harmless(rexec_server: Server) -> None:
    """RSA secure login (keyReq/secLogin) and OCAP calls are not implemented: they get
    ERR_inv_cmd and the connection goes on (see docs/compatibility.md)."""
    from rexec.protocol import bytes_param

    with RawClient(rexec_server.port) as c:
        c.send(Cmd.KEY_REQ, string_param("rsa-authkey"))
        assert c.reply().status == Err.INV_CMD
        c.send(Cmd.SEC_LOGIN, bytes_param(b"\x00" * 256))
        assert c.reply().status == Err.INV_CMD
        c.send(Cmd.OC_CALL, string_param("x"))
        assert c.reply().status == Err.INV_CMD
        assert c.eval("1L").value() == 1
