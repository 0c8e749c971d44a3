"""TLS: a dedicated port and Rserve's in-band CMD_switch, tested with Python's ssl and RSclient."""

from __future__ import annotations

import contextlib
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


# ---------------------------------------------------------------- client certificates


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    from tests.certs import Pki

    return Pki.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def mtls_server(pki, tmp_path_factory):
    """TLS only (no plain port), client certificates of pki.client_ca required."""
    from tests.certs import start_tls_rexec

    server = start_tls_rexec(tmp_path_factory.mktemp("mtls"), **pki.compute_settings("require"))
    yield server
    server.stop()


def _greeting(port: int, context: ssl.SSLContext) -> bytes:
    """The ID string over TLS (b"" when the server closes instead)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with context.wrap_socket(raw, server_hostname="localhost") as secure:
        return secure.recv(32)


def _refused(port: int, context: ssl.SSLContext) -> str:
    """How a TLS connection the server must refuse ends: the handshake fails (TLS 1.2),
    or, with TLS 1.3, whose client finishes before the server checked its certificate,
    the first read gets the server's alert."""
    try:
        data = _greeting(port, context)
    except (ssl.SSLError, ConnectionError) as exc:
        return repr(exc)
    assert data == b"", data  # never the ID string
    return "closed"


def test_require_refuses_without_a_valid_client_certificate(mtls_server, pki) -> None:
    from tests.certs import client_context

    port = mtls_server.port
    # no plain port at all (tls.only), and plain bytes on the TLS port get no greeting
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", mtls_server.plain_port), timeout=5)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.settimeout(12)
        raw.sendall(b"\0" * 16)
        with contextlib.suppress(ConnectionError):
            assert not raw.recv(32).startswith(b"Rsrv")
    # TLS without a client certificate, with one of another CA: refused
    _refused(port, client_context(pki.server_ca))
    _refused(port, client_context(pki.server_ca, pki.forged))
    # the right one is served
    assert _greeting(port, client_context(pki.server_ca, pki.web)).startswith(b"Rsrv0103QAP1")
    log = mtls_server.log_text()
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in log  # the server's reasons, logged
    assert "CERTIFICATE_VERIFY_FAILED" in log or "certificate verify failed" in log


def test_the_clients_connect_with_a_client_certificate(mtls_server, pki) -> None:
    import asyncio

    import rexec.client
    from rexec.client import ConnectionLost
    from tests.certs import client_context

    context = client_context(pki.server_ca, pki.web)
    with rexec.client.connect(
        port=mtls_server.port, tls=context, server_hostname="localhost", timeout=30
    ) as r:
        assert r.eval("6L * 7L") == 42
        assert "tls" in repr(r)
    with pytest.raises((ConnectionLost, ssl.SSLError, ConnectionError)):
        rexec.client.connect(port=mtls_server.port, tls=client_context(pki.server_ca), timeout=10)

    async def run() -> None:
        connection = await rexec.client.aconnect(
            "127.0.0.1", mtls_server.port, tls=context, timeout=30
        )  # the name checked is the host's: the certificate carries 127.0.0.1 too
        async with connection:
            assert await connection.eval("paste(rep('x', 1e5), collapse = '')") == "x" * 100000
            # a cancel's side connection goes the same way (TLS, client certificate)
            running = asyncio.ensure_future(connection.eval("Sys.sleep(30); 1"))
            await asyncio.sleep(1.0)
            assert await connection.cancel() is True
            with pytest.raises(rexec.client.RError):
                await running
            assert await connection.eval("1L") == 1
        with pytest.raises(ConnectionLost):
            await rexec.client.aconnect(
                "127.0.0.1", mtls_server.port, tls=client_context(pki.server_ca), timeout=10
            )

    asyncio.run(run())


def test_match_rule_checks_the_common_name(pki, tmp_path) -> None:
    from tests.certs import client_context, start_tls_rexec

    server = start_tls_rexec(tmp_path, **pki.compute_settings("match:web-node,other-web"))
    try:
        assert _greeting(server.port, client_context(pki.server_ca, pki.web)).startswith(b"Rsrv")
        # signed by the right CA, but a name the rule does not list
        _refused(server.port, client_context(pki.server_ca, pki.intruder))
        _refused(server.port, client_context(pki.server_ca, pki.forged))
        refusal = next(line for line in server.log_text().splitlines() if "ClientRefused" in line)
        assert "intruder" in refusal and "fails tls.client" in refusal
    finally:
        server.stop()


def test_client_rules() -> None:
    from rexec.compute.supervisor.tls import client_rule_problem, common_name, rule_allows

    assert [client_rule_problem(v) for v in ("none", "request", "require", "match:a")] == [None] * 4
    assert client_rule_problem("prefix:") and client_rule_problem("yes")
    assert rule_allows("", None) and rule_allows("match:a, b", "b")
    assert not rule_allows("match:ab", "a") and not rule_allows("match:a", None)
    assert rule_allows("prefix:web-", "web-1") and not rule_allows("prefix:web-", "xweb-1")
    assert rule_allows("suffix:.example", "a.example") and not rule_allows("suffix:.ex", "a")
    assert common_name({"subject": ((("organizationName", "x"),), (("commonName", "n"),))}) == "n"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('client = "require"', "need tls.cert"),
        ('cert = "{cert}"\nkey = "{key}"\nclient = "require"', "needs tls.ca"),
        ('cert = "{cert}"\nkey = "{key}"\nclient = "sometimes"', "is none of"),
        ('cert = "{cert}"\nkey = "{key}"\nonly = true', "tls.only needs tls.port"),
    ],
)
def test_misconfigured_tls_stops_the_start(table, message, certificate) -> None:
    from tests.conftest import serve_fails

    cert, key = certificate
    output = serve_fails("[tls]\n" + table.format(cert=cert, key=key) + "\n")
    assert message in output, output


def test_sighup_reads_the_certificates_again_and_keeps_the_old_ones_when_broken(
    pki, tmp_path
) -> None:
    """Rotation without a restart: after SIGHUP new connections get the new server
    certificate and are checked against the new client CA; a connection made before
    goes on; files that cannot be loaded leave the TLS settings as they were."""
    import os
    import shutil
    import signal
    import time

    import rexec.client
    from tests.certs import CA, client_context, start_tls_rexec

    cert, key, clients = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "clients.pem"
    shutil.copy(pki.server.cert, cert)
    shutil.copy(pki.server.key, key)
    shutil.copy(pki.client_ca.pem, clients)
    settings = {"tls.cert": str(cert), "tls.key": str(key), "tls.ca": str(clients)}
    (tmp_path / "node").mkdir()
    server = start_tls_rexec(tmp_path / "node", **{**pki.compute_settings(), **settings})

    def reload(expected: str, count: int) -> None:
        os.kill(server.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 30
        while server.log_text().count(expected) < count:
            assert time.monotonic() < deadline, server.log_text()
            time.sleep(0.1)

    old = client_context(pki.server_ca, pki.web)
    try:
        with rexec.client.connect(port=server.port, tls=old, timeout=30) as before:
            assert before.eval("x <- 1L; x") == 1
            rotated = CA.create(tmp_path / "rotated", "compute-ca-2")
            issued = rotated.issue("localhost", server=True)
            shutil.copy(issued.cert, cert)
            shutil.copy(issued.key, key)
            shutil.copy(pki.other_ca.pem, clients)  # the web nodes' new CA
            reload("configuration reloaded", 1)
            # the old server certificate is gone: a client trusting only its CA refuses
            with pytest.raises(ssl.SSLCertVerificationError):
                _greeting(server.port, old)
            new = client_context(rotated, pki.forged)  # "web-node" of the new client CA
            assert _greeting(server.port, new).startswith(b"Rsrv0103QAP1")
            _refused(server.port, client_context(rotated, pki.web))  # the old client CA's
            assert before.eval("x + 1L") == 2  # made before the rotation: it goes on

            cert.write_text("not a certificate\n")
            reload("configuration not reloaded", 1)
            assert "tls.cert" in server.log_text().rsplit("configuration not reloaded", 1)[1]
            assert _greeting(server.port, new).startswith(b"Rsrv0103QAP1")  # as it was
    finally:
        server.stop()


def test_a_revoked_client_certificate_is_refused_and_a_new_crl_is_read_on_sighup(
    pki, tmp_path
) -> None:
    """``tls.crl``: a certificate of ``tls.ca`` that the CRL revokes fails the handshake,
    the others are served; a CRL revoking another one takes effect on SIGHUP; a file
    that is not only CRLs (OpenSSL would trust certificates in it as CAs) is refused."""
    import os
    import shutil
    import signal
    import time

    from tests.certs import client_context, start_tls_rexec, write_crl
    from tests.conftest import free_port, serve_fails, write_config

    crl = write_crl(pki.client_ca, tmp_path / "web-ca.crl", revoked=(pki.intruder,))
    (tmp_path / "node").mkdir()
    server = start_tls_rexec(tmp_path / "node", **pki.compute_settings(), **{"tls.crl": str(crl)})

    def reload(expected: str) -> None:
        count = server.log_text().count(expected)
        os.kill(server.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 30
        while server.log_text().count(expected) <= count:
            assert time.monotonic() < deadline, server.log_text()
            time.sleep(0.1)

    web, intruder = (client_context(pki.server_ca, c) for c in (pki.web, pki.intruder))
    try:
        assert _greeting(server.port, web).startswith(b"Rsrv0103QAP1")
        _refused(server.port, intruder)
        assert "certificate revoked" in server.log_text()

        write_crl(pki.client_ca, crl, revoked=(pki.web,))  # the CA's next CRL
        reload("configuration reloaded")
        _refused(server.port, web)
        assert _greeting(server.port, intruder).startswith(b"Rsrv0103QAP1")

        shutil.copy(pki.other_ca.pem, crl)  # a certificate, not a CRL
        reload("configuration not reloaded")
        assert "X509 CRL blocks only" in server.log_text()
        assert _greeting(server.port, intruder).startswith(b"Rsrv0103QAP1")  # as it was
        _refused(server.port, web)
    finally:
        server.stop()
    # at start the same file stops the node; a CRL without client certificates is a mistake
    settings = {**pki.compute_settings(), "tls.crl": str(crl), "tls.port": free_port()}
    assert "X509 CRL blocks only" in serve_fails(write_config(tmp_path, settings).read_text())
    settings["tls.client"] = "none"
    message = serve_fails(write_config(tmp_path, settings).read_text())
    assert "tls.crl needs tls.client" in message


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> str:
    """A TLS 1.2 handshake between the two contexts in memory: "ok" or the error."""
    server.maximum_version = ssl.TLSVersion.TLSv1_2  # the client's verdict comes in it
    incoming, outgoing, back, forth = (ssl.MemoryBIO() for _ in range(4))
    ends = (
        client.wrap_bio(back, forth, server_hostname="localhost"),
        server.wrap_bio(incoming, outgoing, server_side=True),
    )
    for _ in range(10):
        for end in ends:
            try:
                end.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                return str(exc)
        incoming.write(forth.read())
        back.write(outgoing.read())
    return "ok"


def test_a_client_ca_without_a_current_crl_is_refused(pki, tmp_path) -> None:
    """What docs/security.md says of ``tls.crl``: each CA of the clients needs its
    current CRL in the file; a CRL past its nextUpdate refuses every client too."""
    import datetime as dt

    from rexec.compute.supervisor.tls import make_context
    from rexec.config import Config
    from tests.certs import client_context, write_crl

    def server(crl) -> ssl.SSLContext:
        return make_context(Config({**pki.compute_settings(), "tls.crl": str(crl)}))

    web = client_context(pki.server_ca, pki.web)
    assert _handshake(server(write_crl(pki.client_ca, tmp_path / "a.crl")), web) == "ok"
    other = write_crl(pki.other_ca, tmp_path / "b.crl")
    assert "unable to get certificate CRL" in _handshake(server(other), web)
    expired = write_crl(pki.client_ca, tmp_path / "c.crl", next_update=dt.timedelta(days=-1))
    assert "CRL has expired" in _handshake(server(expired), web)
