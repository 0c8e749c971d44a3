"""A web node reaching its compute node over TLS with a client certificate: a compute
node with ``tls.only`` and ``tls.client = require`` (certificates made in the test),
sessions and published services through it, a web node without the right certificate
kept out, the registry's nodes with ``compute_tls.*``, and the settings."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rexec.web.settings import ComputeNode, ConfigError, load_web_settings
from tests.certs import Pki, start_tls_rexec
from tests.conftest import Server
from tests.web.conftest import (
    COMPUTE_PASSWORD,
    COMPUTE_USER,
    Web,
    settings_for,
    start_web,
    stop_web,
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.create(tmp_path_factory.mktemp("web-pki"))


@pytest.fixture(scope="module")
def tls_compute(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A compute node reachable only over TLS with a certificate of the web nodes' CA,
    with a users file (service pools need the web node's verified login)."""
    from rexec.compute.supervisor.users import UsersFile

    root = tmp_path_factory.mktemp("tls-compute")
    users = root / "users"
    UsersFile(users).add(COMPUTE_USER, COMPUTE_PASSWORD)
    server = start_tls_rexec(
        root,
        **pki.compute_settings("require"),
        **{
            "auth.users_file": str(users),
            "pool.initial": 2,
            "pool.max": 8,
            "pool.wait_timeout": 3.0,
        },
    )
    yield server
    server.stop()


def tls_node(server: Server, pki: Pki, **changes: object) -> ComputeNode:
    values: dict[str, object] = {
        "port": server.port,
        "pool_max": 8,
        "user": COMPUTE_USER,
        "password": COMPUTE_PASSWORD,
        "tls": True,
        "tls_ca": str(pki.server_ca.pem),
        "tls_cert": str(pki.web.cert),
        "tls_key": str(pki.web.key),
        **changes,
    }
    return ComputeNode(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tls_web(tls_compute: Server, pki: Pki, tmp_path_factory) -> Iterator[Web]:
    db = tmp_path_factory.mktemp("tls-web") / "web.db"
    settings = settings_for(
        tls_compute,
        f"sqlite:///{db}",
        compute_nodes=(tls_node(tls_compute, pki),),
        service_reconcile_interval=5.0,
    )
    started = start_web(settings)
    yield started
    stop_web(started)


def test_a_session_runs_on_the_node_over_tls(tls_web: Web, tls_compute: Server) -> None:
    with tls_web.client() as client:
        reply = client.post("/sessions", json={"name": "over-tls"})
        assert reply.status_code == 201, reply.text
        sid = reply.json()["id"]
        try:
            for code, expected in (("x <- 6L * 7L", None), ("x", "[1] 42")):
                result = client.post(f"/sessions/{sid}/execute", json={"code": code}).json()
                assert result["success"] is True, result
                if expected:
                    assert expected in result["consoleOutput"]
            # a cancel's own connection goes over TLS with the client certificate too
            outcome: dict[str, object] = {}

            def long_run() -> None:
                body = {"code": "Sys.sleep(30); 1"}
                outcome["result"] = client.post(f"/sessions/{sid}/execute", json=body).json()

            runner = threading.Thread(target=long_run)
            runner.start()
            deadline = time.monotonic() + 20
            while True:
                cancelled = client.post(f"/sessions/{sid}/cancel")
                if cancelled.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)  # 409 until the execution runs
            runner.join(30)
            assert cancelled.status_code == 200, cancelled.text
            assert outcome["result"]["success"] is False  # type: ignore[index]
        finally:
            client.delete(f"/sessions/{sid}")
    assert "tls=yes" in tls_compute.log_text()
    assert "tls=no" not in tls_compute.log_text()


def test_a_published_service_is_called_on_the_node_over_tls(tls_web: Web) -> None:
    name = f"tls-{uuid.uuid4().hex[:8]}"
    with tls_web.client() as admin:
        body = {
            "code": "z <- x * 2",
            "initCode": "factor <- 2",
            "inputParameterDefinitions": [{"name": "x", "type": "numeric"}],
            "outputParameterDefinitions": [{"name": "z", "type": "numeric"}],
        }
        assert admin.post(f"/services/{name}/1", json=body).status_code == 201
        try:
            reply = admin.post(f"/api/{name}/1", json={"x": 21})
            assert reply.status_code == 200, reply.text
            assert reply.json()["outputParameters"] == {"z": 42}
            pools = admin.get(f"/services/{name}/1/pool").json()
            assert [p["status"] for p in pools] == ["ready"], pools
        finally:
            admin.delete(f"/services/{name}/1")


@pytest.mark.parametrize("wrong", ["no client certificate", "another CA's certificate"])
def test_a_web_node_without_the_right_certificate_is_kept_out(
    wrong: str, tls_compute: Server, pki: Pki, tmp_path: Path
) -> None:
    if wrong == "no client certificate":
        node = tls_node(tls_compute, pki, tls_cert="", tls_key="")
    else:
        node = tls_node(
            tls_compute, pki, tls_cert=str(pki.forged.cert), tls_key=str(pki.forged.key)
        )
    settings = settings_for(tls_compute, f"sqlite:///{tmp_path / 'web.db'}", compute_nodes=(node,))
    web = start_web(settings)
    try:
        with web.client() as client:
            reply = client.post("/sessions", json={"name": "refused"})
            assert reply.status_code == 503, reply.text
            deadline = time.monotonic() + 20
            while (state := client.get("/computenodes").json()[0]["state"]) != "down":
                assert time.monotonic() < deadline, state
                time.sleep(0.2)
    finally:
        stop_web(web)


def test_registry_nodes_over_tls_with_compute_tls(
    tls_compute: Server, pki: Pki, tmp_path: Path
) -> None:
    settings = settings_for(
        tls_compute,
        f"sqlite:///{tmp_path / 'web.db'}",
        compute_nodes=(),
        compute_tls_registry=True,
        compute_tls_ca=str(pki.server_ca.pem),
        compute_tls_cert=str(pki.web.cert),
        compute_tls_key=str(pki.web.key),
    )
    web = start_web(settings)
    try:
        with web.client() as admin:
            body = {
                "host": "127.0.0.1",
                "port": tls_compute.port,
                "user": COMPUTE_USER,
                "password": COMPUTE_PASSWORD,
                "poolMax": 8,
            }
            added = admin.post("/computenodes", json=body)
            assert added.status_code == 201, added.text
            assert added.json()["state"] == "healthy", added.json()
            reply = admin.post("/sessions", json={"name": "registry-tls"})
            assert reply.status_code == 201, reply.text
            sid = reply.json()["id"]
            result = admin.post(f"/sessions/{sid}/execute", json={"code": "1L + 1L"}).json()
            assert result["success"] is True and "[1] 2" in result["consoleOutput"]
            admin.delete(f"/sessions/{sid}")
    finally:
        stop_web(web)


def test_a_registry_node_marked_tls_is_reached_over_tls_and_others_stay_plain(
    tls_compute: Server, services_compute: Server, pki: Pki, tmp_path: Path
) -> None:
    """POST /computenodes {tls: true}: that node over TLS with [compute_tls]'s files,
    without compute_tls.registry; a node registered without it stays plain QAP."""
    settings = settings_for(
        tls_compute,
        f"sqlite:///{tmp_path / 'web.db'}",
        compute_nodes=(),
        compute_tls_ca=str(pki.server_ca.pem),
        compute_tls_cert=str(pki.web.cert),
        compute_tls_key=str(pki.web.key),
    )
    web = start_web(settings)
    login = {"user": COMPUTE_USER, "password": COMPUTE_PASSWORD, "poolMax": 8}
    try:
        with web.client() as admin:
            plain = admin.post(
                "/computenodes", json={"host": "127.0.0.1", "port": services_compute.port, **login}
            )
            assert plain.json()["state"] == "healthy", plain.text
            unmarked = admin.post(
                "/computenodes", json={"host": "localhost", "port": tls_compute.port, **login}
            )
            assert unmarked.json()["state"] == "down", unmarked.text  # plain QAP to a TLS port
            admin.delete(f"/computenodes/{unmarked.json()['id']}")
            marked = admin.post(
                "/computenodes",
                json={"host": "127.0.0.1", "port": tls_compute.port, "tls": True, **login},
            )
            assert marked.status_code == 201, marked.text
            assert marked.json()["state"] == "healthy", marked.json()
    finally:
        stop_web(web)


def test_the_contexts_are_made_once_per_set_of_files(tls_compute: Server, pki: Pki) -> None:
    from rexec.web.compute import Compute, NodeState
    from rexec.web.settings import WebSettings

    first = tls_node(tls_compute, pki)
    second = tls_node(tls_compute, pki, host="localhost", tls_server_name="localhost")
    plain = ComputeNode(port=6311)
    compute = Compute(WebSettings(compute_nodes=(first, second, plain)))
    a, b, c = compute.nodes
    assert compute.qap(a)["tls"] is compute.qap(b)["tls"] is compute.qap(a)["tls"]
    assert compute.qap(b)["server_hostname"] == "localhost"
    assert compute.qap(a)["server_hostname"] == "127.0.0.1"
    assert "tls" not in compute.qap(c)
    assert len(compute._contexts) == 1
    registered = NodeState(plain, id=7)
    assert "tls" not in compute.qap(registered)  # compute_tls.registry is off


def test_tls_settings_from_web_toml(tmp_path: Path, pki: Pki) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    for source, name in ((pki.server_ca.pem, "ca.pem"), (pki.web.cert, "web.pem")):
        (certs / name).write_bytes(source.read_bytes())
    (certs / "web.key").write_bytes(pki.web.key.read_bytes())
    path = tmp_path / "web.toml"
    path.write_text(
        "[compute_tls]\nca = 'certs/ca.pem'\ncert = 'certs/web.pem'\nkey = 'certs/web.key'\n"
        "registry = true\n\n[[compute]]\nhost = 'compute-1'\nport = 6312\ntls = true\n"
        "tls_ca = 'certs/ca.pem'\ntls_server_name = 'compute-1.example'\n"
    )
    settings = load_web_settings(path)
    (node,) = settings.compute_nodes
    assert node.tls and node.tls_ca == str(certs / "ca.pem")
    assert node.tls_server_name == "compute-1.example"
    assert settings.compute_tls_cert == str(certs / "web.pem")
    assert settings.compute_tls_key == str(certs / "web.key") and settings.compute_tls_registry
    for table, message in (
        ("tls_ca = 'certs/ca.pem'", "tls_ca without tls = true"),
        ("tls = true\ntls_key = 'certs/web.key'", "tls_key without tls_cert"),
        ("tls = true\ntls_ca = 'certs/missing.pem'", "cannot read"),
    ):
        path.write_text(f"[[compute]]\nport = 6312\n{table}\n")
        with pytest.raises(ConfigError, match=message):
            load_web_settings(path)


def test_unusable_certificate_files_stop_the_web_node(tmp_path: Path) -> None:
    from rexec.web.compute import Compute
    from rexec.web.settings import WebSettings

    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="TLS files"):
        Compute(WebSettings(compute_nodes=(ComputeNode(tls=True, tls_ca=str(bad)),)))
    with pytest.raises(ConfigError, match="compute_tls"):
        Compute(WebSettings(compute_nodes=(), compute_tls_registry=True, compute_tls_cert=str(bad)))


def test_the_compute_node_is_unreachable_in_plain_qap(tls_compute: Server) -> None:
    """What a web node without ``tls = true`` meets: no greeting on the TLS port."""
    import rexec.client

    with pytest.raises((rexec.client.ConnectionLost, TimeoutError, OSError)):
        rexec.client.connect(port=tls_compute.port, timeout=3)
    with pytest.raises(httpx.HTTPError):  # nor is it an HTTP server
        httpx.get(f"http://127.0.0.1:{tls_compute.port}/", timeout=3)


def session_status(client: httpx.Client) -> int:
    """A new session's status code (the session, if made, deleted again)."""
    reply = client.post("/sessions", json={})
    if reply.status_code == 201:
        client.delete(f"/sessions/{reply.json()['id']}")
    return reply.status_code


def wait_state(client: httpx.Client, state: str) -> None:
    """Until the web node's one compute node is in ``state`` (30 s at most)."""
    deadline = time.monotonic() + 30
    while (now := client.get("/computenodes").json()[0]["state"]) != state:
        assert time.monotonic() < deadline, now
        time.sleep(0.2)


def start_checking_web(compute: Server, node: ComputeNode, tmp_path: Path) -> Web:
    """A web node of its own for ``node``, checking it every 0.5 s."""
    database = f"sqlite:///{tmp_path / 'web.db'}"
    return start_web(
        settings_for(compute, database, compute_nodes=(node,), node_check_interval=0.5)
    )


def test_a_rotated_client_certificate_is_used_from_the_next_connection(
    tls_compute: Server, pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The web node's client certificate files are loaded again when they change (no
    restart); files that cannot be loaded leave the last good certificate in use."""
    import logging
    import shutil

    cert, key = tmp_path / "web.pem", tmp_path / "web.key"

    def install(issued) -> None:
        shutil.copy(issued.cert, cert)
        shutil.copy(issued.key, key)

    install(pki.web)
    node = tls_node(tls_compute, pki, tls_cert=str(cert), tls_key=str(key))
    web = start_checking_web(tls_compute, node, tmp_path)
    caplog.set_level(logging.INFO, logger="rexec.web.compute")
    try:
        with web.client() as client:
            assert session_status(client) == 201
            cert.write_text("not a certificate\n")  # a rotation gone wrong
            assert session_status(client) == 201  # the certificate loaded before
            assert "the certificates loaded before stay in use" in caplog.text
            install(pki.forged)  # of a CA the compute node does not trust
            wait_state(client, "down")
            assert session_status(client) == 503
            install(pki.web)  # rotated back: in again, without a restart
            wait_state(client, "healthy")
            assert session_status(client) == 201
            assert "TLS files changed, loaded again" in caplog.text
    finally:
        stop_web(web)


def test_a_revoked_compute_node_certificate_is_refused_from_the_next_connection(
    tls_compute: Server, pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``tls_crl`` (else ``compute_tls.crl``): a compute node whose certificate the CRL
    revokes is down for this web node; the CA's next CRL, without it, lets it in again
    without a restart; a file that is not only CRLs is refused at start and, changed
    into one later, leaves the last good context in use."""
    import logging
    import shutil
    import ssl

    from rexec.web.compute import Compute
    from rexec.web.settings import WebSettings
    from tests.certs import write_crl

    crl = write_crl(pki.server_ca, tmp_path / "compute-ca.crl")
    node = tls_node(tls_compute, pki, tls_crl=str(crl))
    web = start_checking_web(tls_compute, node, tmp_path)
    caplog.set_level(logging.INFO, logger="rexec.web.compute")
    try:
        with web.client() as client:
            assert session_status(client) == 201
            write_crl(pki.server_ca, crl, revoked=(pki.server,))
            wait_state(client, "down")
            assert session_status(client) == 503
            shutil.copy(pki.other_ca.pem, crl)  # a certificate: it would be trusted as a CA
            deadline = time.monotonic() + 30  # the next check reads it
            while "X509 CRL blocks only" not in caplog.text:
                assert time.monotonic() < deadline, caplog.text
                time.sleep(0.2)
            assert session_status(client) == 503  # the revoking CRL stays in use
            write_crl(pki.server_ca, crl)  # the CA's next CRL, nothing revoked
            wait_state(client, "healthy")
            assert session_status(client) == 201
    finally:
        stop_web(web)

    # compute_tls.crl is the default of every node over TLS; a bad file stops the start
    plain = tls_node(tls_compute, pki)
    compute = Compute(WebSettings(compute_nodes=(plain,), compute_tls_crl=str(crl)))
    context = compute.qap(compute.nodes[0])["tls"]
    assert context.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF
    shutil.copy(pki.other_ca.pem, crl)
    with pytest.raises(ConfigError, match="X509 CRL blocks only"):
        Compute(WebSettings(compute_nodes=(tls_node(tls_compute, pki, tls_crl=str(crl)),)))
    with pytest.raises(ConfigError, match="tls_crl without tls = true"):
        ComputeNode(port=6312, tls_crl=str(crl))
