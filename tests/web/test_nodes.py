"""The compute-node registry with real compute nodes: Owner-only management, logins
sealed in the database, health checks, placement by free shells, drain, a node that
dies (410 for its sessions, services served by the others) and comes back, and the
``rexec nodes`` command line."""

from __future__ import annotations

import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rexec.compute.supervisor.users import UsersFile
from tests.conftest import Server, start_rexec
from tests.web.conftest import (
    ADMIN_PASSWORD,
    COMPUTE_PASSWORD,
    COMPUTE_USER,
    Web,
    services_settings,
    start_web,
    stop_web,
)


def _compute(root: Path, name: str) -> Server:
    users = root / "users"
    if not users.exists():
        UsersFile(users).add(COMPUTE_USER, COMPUTE_PASSWORD)
    directory = root / name
    directory.mkdir()
    return start_rexec(
        directory, **{"auth.users_file": str(users), "pool.initial": 1, "pool.max": 6}
    )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Web, list[Server]]]:
    """A web node whose settings name one compute node; two more get registered."""
    nodes = [_compute(tmp_path, f"c{i}") for i in range(3)]
    web = start_web(
        services_settings(nodes[0], f"sqlite:///{tmp_path / 'web.db'}", node_check_interval=0.5)
    )
    try:
        yield web, nodes
    finally:
        stop_web(web)
        for node in nodes:
            node.stop()


def _register(client: httpx.Client, node: Server) -> int:
    body = {
        "host": "127.0.0.1",
        "port": node.port,
        "user": COMPUTE_USER,
        "password": COMPUTE_PASSWORD,
        "poolMax": 6,
    }
    reply = client.post("/computenodes", json=body)
    assert reply.status_code == 201, reply.text
    assert reply.json()["state"] == "healthy"
    return reply.json()["id"]


def _wait_state(client: httpx.Client, port: int, state: str, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        nodes = {n["port"]: n for n in client.get("/computenodes").json()}
        if nodes[port]["state"] == state or time.monotonic() > deadline:
            return nodes[port]
        time.sleep(0.2)


def test_owners_register_nodes_whose_logins_are_sealed(cluster, tmp_path) -> None:
    web, nodes = cluster
    contributor = web.user("carl-nodes", "Contributor")
    with web.client() as admin, contributor:
        body = {"host": "127.0.0.1", "port": nodes[1].port}
        assert contributor.post("/computenodes", json=body).status_code == 403
        assert contributor.get("/computenodes").status_code == 403
        first = _register(admin, nodes[1])
        assert admin.post("/computenodes", json={**body, "poolMax": 6}).status_code == 409
        listed = {n["port"]: n for n in admin.get("/computenodes").json()}
        assert listed[nodes[1].port]["id"] == first and listed[nodes[0].port]["id"] is None
        assert listed[nodes[1].port]["pools"][""]["max"] == 6  # seen over the node's login
        status = admin.get("/status").json()
        assert {n["state"] for n in status["computeNodes"]} == {"healthy"}
        assert admin.delete(f"/computenodes/{first}").status_code == 200
        assert admin.delete(f"/computenodes/{first}").status_code == 404
        assert nodes[1].port not in {n["port"] for n in admin.get("/computenodes").json()}
        _register(admin, nodes[1])
    raw = sqlite3.connect(tmp_path / "web.db").execute("SELECT * FROM compute_nodes").fetchall()
    assert raw and COMPUTE_PASSWORD not in repr(raw)  # sealed, never in clear
    key = (tmp_path / "web.db.node-key").stat()
    assert key.st_mode & 0o077 == 0  # the key file is the web node's alone


def test_sessions_go_where_shells_are_free_and_never_to_a_draining_node(cluster) -> None:
    web, nodes = cluster
    with web.client() as admin:
        ids = [_register(admin, node) for node in nodes[1:]]
        opened = [admin.post("/sessions", json={}).json()["id"] for _ in range(6)]
        where = Counter(admin.get(f"/sessions/{s}").json()["computeNode"] for s in opened)
        # the most free shells first: every node used, none given most of them
        assert len(where) == 3 and max(where.values()) - min(where.values()) <= 2, where
        assert admin.post(f"/computenodes/{ids[0]}/drain").status_code == 200
        assert _wait_state(admin, nodes[1].port, "draining")["state"] == "draining"
        more = [admin.post("/sessions", json={}).json()["id"] for _ in range(4)]
        later = Counter(admin.get(f"/sessions/{s}").json()["computeNode"] for s in more)
        assert f"127.0.0.1:{nodes[1].port}" not in later, later
        # running work on the draining node finishes: its sessions still execute
        on_drained = [
            s
            for s in opened
            if admin.get(f"/sessions/{s}").json()["computeNode"] == f"127.0.0.1:{nodes[1].port}"
        ]
        for session in on_drained:
            reply = admin.post(f"/sessions/{session}/execute", json={"code": "1 + 1"})
            assert reply.json()["success"] is True
        assert admin.post(f"/computenodes/{ids[0]}/undrain").status_code == 200
        for session in opened + more:
            admin.delete(f"/sessions/{session}")


def test_a_node_that_dies_is_down_its_sessions_are_gone_and_services_move(cluster) -> None:
    web, nodes = cluster
    with web.client() as admin:
        _register(admin, nodes[1])
        published = admin.post(
            "/services/where/1",
            json={
                "code": "pid <- Sys.getpid()",
                "outputParameterDefinitions": [{"name": "pid", "type": "integer"}],
            },
        )
        assert published.status_code == 201, published.text
        pools = admin.get("/services/where/1/pool").json()
        assert len(pools) == 2 and {p["status"] for p in pools} == {"ready"}  # on both
        sessions = [admin.post("/sessions", json={}).json()["id"] for _ in range(4)]
        victim = f"127.0.0.1:{nodes[1].port}"
        doomed = [
            s for s in sessions if admin.get(f"/sessions/{s}").json()["computeNode"] == victim
        ]
        assert doomed
        nodes[1].process.kill()
        nodes[1].process.wait(10)
        assert _wait_state(admin, nodes[1].port, "down")["state"] == "down"
        for session in doomed:
            reply = admin.post(f"/sessions/{session}/execute", json={"code": "1"})
            assert reply.status_code == 410, reply.text
        for _ in range(6):  # every call answered, by the node that is left
            reply = admin.post("/api/where/1", json={})
            assert reply.status_code == 200 and reply.json()["success"], reply.text
        fresh = admin.post("/sessions", json={})
        assert fresh.status_code == 201
        assert admin.get(f"/sessions/{fresh.json()['id']}").json()["computeNode"] != victim
        status = admin.get("/status").json()
        assert status["statusCode"] == "warn"
        assert {n["name"]: n["state"] for n in status["computeNodes"]}[victim] == "down"


def test_the_nodes_command_line(cluster) -> None:
    import subprocess

    web, nodes = cluster
    env = {"REXEC_URL": web.url, "REXEC_USER": "admin", "REXEC_PASSWORD": ADMIN_PASSWORD}
    rexec = [sys.executable, "-m", "rexec.cli", "nodes"]

    def run(*args: str) -> str:
        import os

        done = subprocess.run(
            [*rexec, *args],
            env={**os.environ, **env, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout

    added = run(
        "add",
        f"127.0.0.1:{nodes[2].port}",
        "--node-user",
        COMPUTE_USER,
        "--node-password",
        COMPUTE_PASSWORD,
        "--pool-max",
        "6",
    )
    assert "healthy" in added
    node_id = int(added.split()[2])
    listing = run("list")
    assert f"127.0.0.1:{nodes[2].port}" in listing and "registry" in listing
    assert "draining" in run("drain", str(node_id))
    assert "removed" in run("remove", str(node_id))
    assert f"127.0.0.1:{nodes[2].port}" not in run("list")


def test_health_endpoints_and_the_web_nodes_in_status(cluster) -> None:
    web, nodes = cluster
    assert httpx.get(f"{web.url}/healthz").json() == {"status": "alive"}
    ready = httpx.get(f"{web.url}/readyz")
    assert ready.status_code == 200 and ready.json()["compute"] == "pass"
    with web.client() as admin:
        listed = admin.get("/status").json()["webNodes"]
        assert [n["self"] for n in listed] == [True] and listed[0]["alive"]
        nodes[0].process.kill()  # the only compute node it knows
        nodes[0].process.wait(10)
        deadline = time.monotonic() + 15
        while httpx.get(f"{web.url}/readyz").status_code == 200:
            assert time.monotonic() < deadline, "never unready without compute nodes"
            time.sleep(0.2)
        assert httpx.get(f"{web.url}/readyz").json()["compute"] == "fail"
        assert httpx.get(f"{web.url}/healthz").status_code == 200  # alive all the same


def test_sqlite_serves_one_web_node_only(tmp_path) -> None:
    import os
    import signal
    import subprocess

    from tests.conftest import UTF8, free_port, launch_web

    database = f"sqlite:///{tmp_path / 'one.db'}"
    port = free_port()
    command = [sys.executable, "-m", "rexec.cli", "web", "--host", "127.0.0.1"]
    options = ["--compute", f"127.0.0.1:{free_port()}", "--database-url", database]
    env = {**UTF8, "REXEC_ADMIN_PASSWORD": ADMIN_PASSWORD}
    first = launch_web(
        [*command, "--port", str(port), *options], port, tmp_path / "a.log", env, tmp_path
    )
    try:
        second = subprocess.run(
            [*command, "--port", str(free_port()), *options],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode != 0
        assert "serves one web node only" in second.stdout + second.stderr
    finally:
        os.killpg(first.pid, signal.SIGTERM)
        first.wait(30)
    # once the first has stopped (its heartbeat removed), a web node starts again
    again_port = free_port()
    again = launch_web(
        [*command, "--port", str(again_port), *options],
        again_port,
        tmp_path / "b.log",
        env,
        tmp_path,
    )
    os.killpg(again.pid, signal.SIGTERM)
    again.wait(30)


def test_a_session_opened_while_a_check_is_under_way_stays_counted(tmp_path) -> None:
    """A check's numbers may predate a session opened while it was asked: that session
    is still counted against the node's free shells when the answer comes (CI once saw
    4, 1 and 1 of 6 sessions on three equal nodes when such opens were forgotten)."""
    import asyncio

    from rexec.web.compute import Compute
    from rexec.web.settings import ComputeNode, WebSettings

    server = _compute(tmp_path, "c")
    node = ComputeNode(
        port=server.port, user=COMPUTE_USER, password=COMPUTE_PASSWORD, pool_max=6, reserve=1
    )
    compute = Compute(WebSettings(compute_nodes=(node,)))
    (state,) = compute.nodes

    async def run() -> tuple[int, int, int]:
        await compute.check(state)
        assert state.free == 5 and state.opened_since_check == 0
        checking = asyncio.ensure_future(compute.check(state))
        await asyncio.sleep(0)  # the check has asked; its answer is on its way
        connection, _ = await compute.open()  # counted before the answer is read
        await checking
        during = state.opened_since_check
        free_after_answer = state.free
        await compute.check(state)  # a check that began after the open: exact again
        exact = state.free
        await connection.close()
        compute.release(state)
        return during, free_after_answer, exact

    try:
        during, free_after_answer, exact = asyncio.run(run())
    finally:
        server.stop()
    assert exact == 4
    assert during == 1  # forgotten (0) before the fix
    assert free_after_answer <= exact  # never more free shells than there are
