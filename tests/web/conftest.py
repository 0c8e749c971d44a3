"""Web node fixtures: a real compute node, a throwaway PostgreSQL, uvicorn on a free port."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from rexec.web.app import WebNode, bootstrap_admin, create_app
from rexec.web.db import Base
from rexec.web.settings import ComputeNode, WebSettings
from tests.conftest import Server, free_port, start_rexec

ADMIN_PASSWORD = "admin-password-1"
PG_BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass
class Web:
    url: str
    node: WebNode
    server: uvicorn.Server
    thread: threading.Thread

    def token(self, username: str = "admin", password: str = ADMIN_PASSWORD) -> str:
        reply = httpx.post(f"{self.url}/login", json={"username": username, "password": password})
        assert reply.status_code == 200, reply.text
        return reply.json()["access_token"]

    def client(self, username: str = "admin", password: str = ADMIN_PASSWORD) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token(username, password)}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def user(self, username: str, role: str, password: str = "password-123") -> httpx.Client:
        with self.client() as admin:
            reply = admin.post(
                "/users", json={"username": username, "password": password, "role": role}
            )
            assert reply.status_code in (201, 409), reply.text
        return self.client(username, password)


def start_web(settings: WebSettings) -> Web:
    node = WebNode.build(settings)
    bootstrap_admin(node, ADMIN_PASSWORD)
    port = free_port()
    config = uvicorn.Config(
        create_app(node=node), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "web node did not start"
        time.sleep(0.02)
    return Web(f"http://127.0.0.1:{port}", node, server, thread)


def stop_web(web: Web) -> None:
    web.server.should_exit = True
    web.thread.join(15)
    web.node.db.dispose()


@pytest.fixture(scope="session")
def compute_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A compute node for the web tests alone: pool.max 8, shells started ahead."""
    server = start_rexec(
        tmp_path_factory.mktemp("web-compute"),
        **{"pool.initial": 3, "pool.max": 8, "pool.wait_timeout": 3.0},
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL 15 cluster on a free loopback port, run as user postgres."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL binaries not installed in /usr/lib/postgresql/15/bin")
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="rexec-pg-"))
    if as_postgres:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()

    def run(*args: str) -> None:
        subprocess.run([*as_postgres, *args], check=True, capture_output=True, cwd=root)

    run(str(PG_BIN / "initdb"), "-D", str(data), "-U", "rexec", "--auth=trust", "-E", "UTF8", "-N")
    run(
        str(PG_BIN / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(root / "log"),
        "-w",
        "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off",
        "start",
    )
    try:
        run(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "rexec", "rexec")
        yield f"postgresql://rexec@127.0.0.1:{port}/rexec"
    finally:
        run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def settings_for(compute: Server, database_url: str, **overrides: object) -> WebSettings:
    values: dict[str, object] = {
        "database_url": database_url,
        "compute_nodes": (ComputeNode(port=compute.port, pool_max=8),),
        "connect_timeout": 4.0,
        "retry_after": 2,
        "login_delay_base": 0.1,
        **overrides,
    }
    return WebSettings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def web(compute_node: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """A web node on SQLite."""
    db = tmp_path_factory.mktemp("web") / "web.db"
    started = start_web(settings_for(compute_node, f"sqlite:///{db}"))
    yield started
    stop_web(started)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def web_db(request, compute_node: Server, tmp_path_factory) -> Iterator[Web]:
    """A web node on each database: the tests using it run on SQLite and PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('webdb') / 'web.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    started = start_web(settings_for(compute_node, url))
    yield started
    stop_web(started)
    if started.node.db.kind == "postgresql":  # leave PostgreSQL empty for the next module
        Base.metadata.drop_all(started.node.db.engine)
        started.node.db.dispose()


COMPUTE_USER, COMPUTE_PASSWORD = "webnode", "compute-secret-1"


@pytest.fixture(scope="session")
def services_compute(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A compute node with a users file (defining service pools needs a verified
    login): the web node logs in as ``webnode``; a login stays optional for others."""
    from rexec.compute.supervisor.users import UsersFile

    root = tmp_path_factory.mktemp("services-compute")
    users = root / "users"
    UsersFile(users).add(COMPUTE_USER, COMPUTE_PASSWORD)
    server = start_rexec(
        root,
        **{
            "auth.users_file": str(users),
            "pool.initial": 2,
            "pool.max": 8,
            "pool.wait_timeout": 3.0,
        },
    )
    yield server
    server.stop()


def services_settings(compute: Server, database_url: str, **overrides: object) -> WebSettings:
    node = ComputeNode(port=compute.port, pool_max=8, user=COMPUTE_USER, password=COMPUTE_PASSWORD)
    values: dict[str, object] = {"batch_lease": 3.0, "service_reconcile_interval": 5.0}
    values.update(overrides)
    return settings_for(compute, database_url, compute_nodes=(node,), **values)


@pytest.fixture(scope="module")
def services_web(services_compute: Server, tmp_path_factory) -> Iterator[Web]:
    """A web node (SQLite) whose compute node hosts service pools."""
    db = tmp_path_factory.mktemp("services-web") / "web.db"
    started = start_web(services_settings(services_compute, f"sqlite:///{db}"))
    yield started
    stop_web(started)
