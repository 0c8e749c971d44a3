"""TLS: a dedicated port and Rserve's in-band CMD_switch, tested with Python's ssl and RSclient."""

from __future__ import annotations

import socket
import ssl
import subprocess

import pytest

from rexec.protocol import Cmd, Err, string_param
from tests.conftest import UTF8
from tests.qap import RawClient


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def tls_server(certificate, tmp_path_factory):
    from tests.conftest import free_port, start_rexec

    cert, key = certificate
    server = start_rexec(
        tmp_path_factory.mktemp("tls-server"),
        **{"tls.cert": str(cert), "tls.key": str(key), "tls.port": free_port(), "tls.switch": True},
    )
    server.tls_port = int(
        next(line for line in server.log_text().splitlines() if "TLS on" in line).rsplit(":", 1)[1]
    )
    yield server
    server.stop()


def _client_context(cert) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert))
    return context


def _tls_client(sock: socket.socket, cert) -> RawClient:
    client = RawClient.__new__(RawClient)
    client.sock = _client_context(cert).wrap_socket(sock, server_hostname="localhost")
    return client


def test_tls_port(tls_server, certificate) -> None:
    cert, _ = certificate
    raw = socket.create_connection(("127.0.0.1", tls_server.tls_port), timeout=30)
    with _tls_client(raw, cert) as c:
        c.id_string = c._read(32)
        assert c.id_string.startswith(b"Rsrv0103QAP1")
        assert c.eval("R.version$major").value() == "4"
        assert c.eval("paste(rep('x', 1e5), collapse = '')").value() == "x" * 100000


def test_in_band_switch(tls_server, certificate) -> None:
    cert, _ = certificate
    c = RawClient(tls_server.port)
    assert b"TLS\n" in c.id_string
    c.send(Cmd.SWITCH, string_param("TLS"))
    assert c.reply().ok  # in clear text, then the handshake
    with _tls_client(c.sock, cert) as secure:
        assert secure.eval("1L + 1L").value() == 2


def test_switch_refused_when_disabled(rexec_server) -> None:
    with RawClient(rexec_server.port) as c:
        c.send(Cmd.SWITCH, string_param("TLS"))
        assert c.reply().status == Err.DISABLED
        c.send(Cmd.SWITCH, string_param("SSH"))
        assert c.reply().status == Err.UNSUPPORTED_CMD
        assert c.eval("1L").value() == 1


def test_rsclient_over_tls(tls_server, certificate) -> None:
    script = (
        "library(RSclient); "
        f"c <- RS.connect(port = {tls_server.tls_port}, tls = TRUE, verify = FALSE); "
        "cat(RS.eval(c, 6L * 7L))"
    )
    result = subprocess.run(
        ["Rscript", "-e", script], capture_output=True, text=True, env=UTF8, timeout=60
    )
    assert result.stdout.strip() == "42", result.stderr
