"""Compute nodes that register themselves (register.* on `rexec serve`, `rexec register`
beside a node) with a real `rexec web` whose web.toml lists no compute node and holds
the registration token: the node shows up healthy and runs sessions, a restart updates
its record (no duplicate, its own drain ends, an Owner's stays), a wrong token gets 401
and registers nothing, a node started before the web tier registers once it answers."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import rexec.client
from rexec.compute.supervisor.users import UsersFile
from tests.conftest import (
    UTF8,
    Server,
    free_port,
    launch_rexec,
    launch_web,
    serve_fails,
    start_rexec,
    write_config,
)
from tests.web.conftest import ADMIN_PASSWORD, COMPUTE_PASSWORD, COMPUTE_USER

TOKEN = "registration-token-0123456789abcdef"


@dataclass
class WebProcess:
    url: str
    process: subprocess.Popen[bytes]
    root: Path
    log: Path

    def client(self) -> httpx.Client:
        reply = httpx.post(
            f"{self.url}/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        assert reply.status_code == 200, reply.text
        headers = {"Authorization": f"Bearer {reply.json()['access_token']}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def rows(self, port: int) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.root / "web.db") as db:
            return db.execute(
                "SELECT id, draining, password_sealed FROM compute_nodes WHERE port = ?", (port,)
            ).fetchall()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(40)


def start_web_process(root: Path, port: int | None = None, nodes: str = "") -> WebProcess:
    """`rexec web --config web.toml`: no [[compute]] tables (`compute = []`), the
    registration token in a file named relative to the TOML file."""
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    (root / "registration-token").write_text(TOKEN + "\n")
    (root / "web.toml").write_text(
        f"""
compute = []

[server]
port = {port}
compute_connect_timeout = 3.0

[database]
url = "sqlite:///{root / "web.db"}"

[nodes]
check_interval = 0.5
secret = "registration-tests-node-secret"
registration_token_file = "registration-token"
{nodes}
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("REXEC_WEB_")}
    env.update(UTF8, REXEC_ADMIN_PASSWORD=ADMIN_PASSWORD, HOME=str(root))
    command = [sys.executable, "-m", "rexec.cli", "web", "--config", str(root / "web.toml")]
    log = root / "web.log"
    process = launch_web(command, port, log, env, root)
    return WebProcess(f"http://127.0.0.1:{port}", process, root, log)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebProcess]:
    started = start_web_process(tmp_path_factory.mktemp("registration-web"))
    yield started
    started.stop()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """The users file (the web nodes' login), its password and the token, as files."""
    users = tmp_path / "users"
    UsersFile(users).add(COMPUTE_USER, COMPUTE_PASSWORD)
    (tmp_path / "password").write_text(COMPUTE_PASSWORD + "\n")
    (tmp_path / "token").write_text(TOKEN + "\n")
    return {"users": users, "password": tmp_path / "password", "token": tmp_path / "token"}


@pytest.fixture
def nodes() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for node in started:
        node.stop()


def compute(nodes: list[Server], files: dict[str, Path], url: str, **settings: object) -> Server:
    """A compute node registering itself with ``url`` (a directory of its own)."""
    values: dict[str, object] = {
        "auth.users_file": str(files["users"]),
        "pool.initial": 1,
        "pool.max": 3,
        "register.url": url,
        "register.token_file": str(files["token"]),
        "register.host": "127.0.0.1",
        "register.user": COMPUTE_USER,
        "register.password_file": str(files["password"]),
        "register.interval": 1.0,
        **settings,
    }
    directory = Path(tempfile.mkdtemp(dir=files["users"].parent))
    if "server.port" in values:  # start_rexec waits on a port of its own choosing
        started = start_rexec_on(directory, **values)
    else:
        started = start_rexec(directory, **values)
    nodes.append(started)
    return started


def start_rexec_on(directory: Path, **settings: object) -> Server:
    """start_rexec with the given server.port (a node restarted where it was)."""
    workdir = Path(tempfile.mkdtemp(prefix="rexec-test-"))
    workdir.chmod(0o755)
    (directory / "work").symlink_to(workdir)
    config = write_config(directory, {"session.workdir": str(workdir), **settings})
    command = [sys.executable, "-m", "rexec.cli", "serve", "--config", str(config)]
    return launch_rexec(int(settings["server.port"]), command, directory / "rexec.log")  # type: ignore[call-overload]


def listed(admin: httpx.Client, port: int) -> list[dict[str, Any]]:
    reply = admin.get("/computenodes")
    assert reply.status_code == 200, reply.text
    return [n for n in reply.json() if n["port"] == port]


def wait_state(admin: httpx.Client, port: int, state: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = listed(admin, port)
        if found and found[0]["state"] == state and found[0]["checkedAgo"] is not None:
            assert len(found) == 1, found
            return found[0]
        assert time.monotonic() < deadline, f"node :{port} is not {state}: {found}"
        time.sleep(0.2)


def wait_log(node: Server, text: str, count: int = 1, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while node.log_text().count(text) < count:
        assert time.monotonic() < deadline, f"{text!r} not logged {count}x:\n{node.log_text()}"
        time.sleep(0.1)


def run_r(admin: httpx.Client, code: str) -> tuple[str, str]:
    """(consoleOutput, the session's compute node) of ``code`` in a new session."""
    opened = admin.post("/sessions", json={})
    assert opened.status_code == 201, opened.text
    session = opened.json()["id"]
    try:
        ran = admin.post(f"/sessions/{session}/execute", json={"code": code})
        assert ran.status_code == 200 and ran.json()["success"], ran.text
        where = admin.get(f"/sessions/{session}").json()["computeNode"]
        return ran.json()["consoleOutput"], where
    finally:
        admin.delete(f"/sessions/{session}")


def test_a_node_registers_itself_runs_sessions_and_a_restart_updates_it(
    web: WebProcess, files, nodes
) -> None:
    node = compute(nodes, files, web.url)
    with web.client() as admin:
        entry = wait_state(admin, node.port, "healthy")
        assert (entry["source"], entry["host"]) == ("registry", "127.0.0.1")
        assert entry["pools"][""]["max"] == 3  # checked over the login it registered
        assert run_r(admin, "cat(6 * 7)") == ("42", f"127.0.0.1:{node.port}")
        ((row_id, draining, sealed),) = web.rows(node.port)
        assert row_id == entry["id"] and not draining
        assert COMPUTE_PASSWORD not in sealed and TOKEN not in web.log.read_text()
        wait_log(node, "event=registered", 1)
        assert "event=register-failed" not in node.log_text()

        # SIGTERM: the node drains itself, then stops
        port, first_log = node.port, node.log_text
        node.stop()
        assert "event=drained" in first_log(), first_log()
        ((_, draining, _),) = web.rows(port)
        assert draining
        assert wait_state(admin, port, "down")["id"] == entry["id"]

        # the same node again: its record, undrained, not a second one
        again = compute(nodes, files, web.url, **{"server.port": port})
        assert wait_state(admin, port, "healthy")["id"] == entry["id"]
        wait_log(again, "event=registered")
        time.sleep(2.5)  # re-registered every register.interval (1 s)
        assert len(listed(admin, port)) == 1 and len(web.rows(port)) == 1
        assert run_r(admin, "cat(Sys.getpid() > 0)") == ("TRUE", f"127.0.0.1:{port}")
        removed_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        assert admin.delete(f"/computenodes/{entry['id']}").status_code == 200
        # an Owner's removal is made good by the next registration (a new record)
        wait_state(admin, port, "healthy")
        with sqlite3.connect(web.root / "web.db") as db:
            ((created,),) = db.execute(
                "SELECT created_at FROM compute_nodes WHERE port = ?", (port,)
            ).fetchall()
        assert dt.datetime.fromisoformat(created) > removed_at


def test_an_owners_drain_outlasts_the_nodes_restart(web: WebProcess, files, nodes) -> None:
    node = compute(nodes, files, web.url)
    with web.client() as admin:
        node_id = wait_state(admin, node.port, "healthy")["id"]
        assert admin.post(f"/computenodes/{node_id}/drain").status_code == 200
        port = node.port
        node.stop()  # its own drain leaves the Owner's as it was
        again = compute(nodes, files, web.url, **{"server.port": port})
        wait_log(again, "event=registered")
        time.sleep(2.5)  # registered again, twice or more
        assert wait_state(admin, port, "draining")["id"] == node_id
        assert admin.post(f"/computenodes/{node_id}/undrain").status_code == 200
        time.sleep(2.5)
        assert wait_state(admin, port, "healthy")["id"] == node_id
        admin.delete(f"/computenodes/{node_id}")


def test_a_wrong_token_gets_401_and_registers_nothing(
    web: WebProcess, files, nodes, tmp_path
) -> None:
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-registration-token-at-all\n")
    node = compute(nodes, files, web.url, **{"register.token_file": str(wrong)})
    wait_log(node, "status=401", 2)  # refused, and tried again later: the node serves
    assert "the web node refused the registration token" in node.log_text()
    with rexec.client.connect(
        port=node.port, user=COMPUTE_USER, password=COMPUTE_PASSWORD, timeout=30
    ) as c:
        assert c.eval("1 + 1") == 2
    body = {"host": "127.0.0.1", "port": node.port, "poolMax": 3}
    with web.client() as admin:
        user_token = admin.headers["Authorization"]  # an Owner's access token is no key
        for headers in (
            {},
            {"Authorization": "Bearer not-the-registration-token-at-all"},
            {"Authorization": f"Bearer {TOKEN}x"},
            {"Authorization": user_token},
            {"Authorization": f"Basic {TOKEN}"},
        ):
            for path, payload in (
                ("/computenodes/register", body),
                ("/computenodes/register/drain", {"host": "127.0.0.1", "port": node.port}),
            ):
                reply = httpx.post(f"{web.url}{path}", json=payload, headers=headers)
                assert reply.status_code == 401, (path, headers, reply.text)
        assert listed(admin, node.port) == [] and web.rows(node.port) == []
    assert "event=registration-refused" in web.log.read_text()


def test_a_node_started_before_the_web_tier_registers_once_it_answers(
    files, nodes, tmp_path
) -> None:
    port = free_port()
    node = compute(nodes, files, f"http://127.0.0.1:{port}")
    wait_log(node, "event=register-failed", 2)  # backing off; the node serves meanwhile
    with rexec.client.connect(port=node.port, timeout=30) as c:
        assert c.eval("2 * 21") == 42
    late = start_web_process(tmp_path / "late-web", port)
    try:
        with late.client() as admin:
            wait_state(admin, node.port, "healthy", timeout=60)
            assert run_r(admin, "cat(1)")[1] == f"127.0.0.1:{node.port}"
    finally:
        late.stop()


def test_rexec_register_beside_a_node_keeps_it_registered_and_drains_it(
    web: WebProcess, files, nodes, tmp_path
) -> None:
    """The Kubernetes sidecar: the node itself has no register.* settings (and no
    token); `rexec register` reads its pool.max from the node's /readyz."""
    metrics = free_port()
    node = start_rexec(
        Path(tempfile.mkdtemp(dir=tmp_path)),
        **{
            "auth.users_file": str(files["users"]),
            "pool.initial": 1,
            "pool.max": 3,  # with the web node's reserve of 1: room for a session and a check
            "metrics.port": metrics,
        },
    )
    nodes.append(node)
    ready = httpx.get(f"http://127.0.0.1:{metrics}/readyz")
    assert ready.status_code == 200 and ready.json()["pool"]["max"] == 3
    config = node.log.parent / "rexec.toml"
    command = [
        *(sys.executable, "-m", "rexec.cli", "register", "--config", str(config)),
        *("--url", f"http://127.0.0.1:1 {web.url}"),  # the first answers nothing: the next
        *("--token-file", str(files["token"]), "--host", "127.0.0.1"),
        *("--user", COMPUTE_USER, "--password-file", str(files["password"])),
        *("--interval", "1"),
    ]

    def beside(log: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)

    sidecar = beside(tmp_path / "register.log")
    try:
        with web.client() as admin:
            entry = wait_state(admin, node.port, "healthy")
            assert entry["pools"][""]["max"] == 3
            assert run_r(admin, "cat('beside')") == ("beside", f"127.0.0.1:{node.port}")
            sidecar.send_signal(signal.SIGTERM)
            assert sidecar.wait(30) == 0, (tmp_path / "register.log").read_text()
            assert "event=drained" in (tmp_path / "register.log").read_text()
            assert wait_state(admin, node.port, "draining")["id"] == entry["id"]

            sidecar = beside(tmp_path / "register-again.log")
            assert wait_state(admin, node.port, "healthy")["id"] == entry["id"]
            once = subprocess.run([*command, "--drain"], capture_output=True, text=True, timeout=60)
            assert once.returncode == 0, once.stdout + once.stderr
            assert wait_state(admin, node.port, "draining")["id"] == entry["id"]
            admin.delete(f"/computenodes/{entry['id']}")
    finally:
        if sidecar.poll() is None:
            sidecar.kill()
            sidecar.wait()


# ---------------------------------------------------------------- settings


def test_register_settings_that_cannot_work_stop_the_node(tmp_path: Path) -> None:
    base = f"[server]\nport = {free_port()}\n[metrics]\nport = 0\n"
    missing = tmp_path / "missing"
    assert "register.url needs register.token_file" in serve_fails(
        base + '[register]\nurl = "http://127.0.0.1:1"\n'
    )
    assert f"register.token_file '{missing}'" in serve_fails(
        base + f'[register]\nurl = "http://127.0.0.1:1"\ntoken_file = "{missing}"\n'
    )
    token = tmp_path / "token"
    token.write_text(TOKEN)
    assert "is not an http(s) URL" in serve_fails(
        base + f'[register]\nurl = "127.0.0.1:12800"\ntoken_file = "{token}"\n'
    )
    assert "register.user and register.password_file go together" in serve_fails(
        base + f'[register]\nurl = "http://x:1"\ntoken_file = "{token}"\nuser = "web"\n'
    )


def test_web_registration_token_settings(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from rexec.web.app import create_app
    from rexec.web.settings import ConfigError, WebSettings, load_web_settings

    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "web.toml").write_text('compute = []\n[nodes]\nregistration_token_file = "token"\n')
    settings = load_web_settings(tmp_path / "web.toml", environ={})
    assert settings.registration_token == TOKEN and settings.compute_nodes == ()
    assert TOKEN not in repr(settings)
    with pytest.raises(ConfigError, match="at least 16 characters"):
        load_web_settings(environ={"REXEC_WEB_REGISTRATION_TOKEN": "short"})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_web_settings(environ={"REXEC_WEB_REGISTRATION_TOKEN_FILE": str(tmp_path / "empty")})
    # no token: compute nodes cannot register themselves here at all
    app = TestClient(create_app(WebSettings(database_url="sqlite://", compute_nodes=())))
    body = {"host": "127.0.0.1", "port": 6311}
    reply = app.post(
        "/computenodes/register", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert reply.status_code == 404, reply.text
    assert json.loads(reply.text)["message"].startswith("compute nodes do not register")


def test_a_tls_only_node_registers_its_tls_port(tmp_path: Path) -> None:
    """With tls.only the plain server.port is not listened on: the web nodes are given
    tls.port (which [compute_tls] registry = true then reaches over TLS)."""
    from rexec.compute.supervisor.register import Registration
    from rexec.config import Config

    token = tmp_path / "token"
    token.write_text("a-registration-token-of-some-length\n")
    base = {"register.url": "http://127.0.0.1:9", "register.token_file": str(token)}
    plain = Registration(Config({**base, "server.port": 6311}), _no_pool_max)
    assert plain.port == 6311
    only = Registration(
        Config({**base, "server.port": 6311, "tls.port": 6312, "tls.only": True}), _no_pool_max
    )
    assert only.port == 6312


async def _no_pool_max() -> int | None:
    return None


def test_a_node_that_drained_itself_and_stays_down_is_forgotten(
    tmp_path: Path, files, nodes
) -> None:
    """nodes.forget_after: a self-registered node that drained itself when it stopped
    (a pod scaled away) leaves the registry once it has been down that long; a node that
    was killed (no drain: it may come back) and one an Owner drained stay."""
    forgetful = start_web_process(tmp_path / "web", nodes="forget_after = 3.0")
    try:
        with forgetful.client() as admin:
            stopped, killed, drained = (compute(nodes, files, forgetful.url) for _ in range(3))
            ids = {n.port: wait_state(admin, n.port, "healthy")["id"] for n in nodes}
            assert admin.post(f"/computenodes/{ids[drained.port]}/drain").status_code == 200
            stopped.stop()  # SIGTERM: it drains itself, then stops
            drained.stop()  # the Owner's drain stays the Owner's
            os.killpg(killed.process.pid, signal.SIGKILL)
            for node in (stopped, killed, drained):
                wait_state(admin, node.port, "down")
            deadline = time.monotonic() + 30
            while listed(admin, stopped.port):
                assert time.monotonic() < deadline, forgetful.log.read_text()
                time.sleep(0.2)
            forgotten = f"event=node-forgotten node=127.0.0.1:{stopped.port}"
            assert forgotten in forgetful.log.read_text()
            assert forgetful.rows(stopped.port) == []
            time.sleep(3.5)  # forget_after again: the other two were down as long
            assert wait_state(admin, killed.port, "down")["id"] == ids[killed.port]
            assert wait_state(admin, drained.port, "down")["id"] == ids[drained.port]
            # a node forgotten that comes back registers as new
            again = compute(nodes, files, forgetful.url, **{"server.port": stopped.port})
            assert wait_state(admin, again.port, "healthy")["id"] not in ids.values()
    finally:
        forgetful.stop()
