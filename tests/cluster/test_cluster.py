"""rexec on several hosts: 3 compute nodes and 2 web nodes, each in a network namespace
of its own on a bridge (tests/cluster/conftest.py), PostgreSQL in the root namespace.

What is checked, with real processes and real networking: sessions spread over the
compute nodes; a compute node killed (down within seconds, its sessions 410, services
served by the others); a compute node partitioned and healed; a drained node; 50
clients calling a service through both web nodes; a web node killed mid-session.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.cluster.conftest import Cluster, Host

pytestmark = pytest.mark.timeout(240)

#: R: the IPv4 address of the host the R process runs on (its namespace's eth0).
HERE = (
    'sub(".* inet ([0-9.]+)/.*", "\\\\1", paste(system2("/usr/sbin/ip", '
    'c("-4", "-o", "addr", "show", "eth0"), stdout = TRUE), collapse = " "))'
)
SERVICE = "clusterwhere"


def address(node_name: str) -> str:
    return node_name.rpartition(":")[0]


class Sessions:
    """Sessions opened through the web nodes, closed at the end of the test."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.clients = {w.name: cluster.client(w) for w in cluster.web}
        self.opened: dict[str, Host] = {}  # session id -> the web node it was opened on

    def client(self, web: Host) -> httpx.Client:
        return self.clients[web.name]

    def open(self, web: Host) -> str:
        reply = self.client(web).post("/sessions", json={})
        assert reply.status_code == 201, reply.text
        session = reply.json()["id"]
        self.opened[session] = web
        return session

    def node(self, session: str, web: Host | None = None) -> str:
        """The session's ``computeNode`` (asked of ``web``, by default its own)."""
        reply = self.client(web or self.opened[session]).get(f"/sessions/{session}")
        assert reply.status_code == 200, reply.text
        return reply.json()["computeNode"]

    def execute(self, session: str, code: str, *outputs: str, web: Host | None = None):
        return self.client(web or self.opened[session]).post(
            f"/sessions/{session}/execute",
            json={"code": code, "outputParameters": list(outputs)},
            timeout=20,
        )

    def value(self, session: str, code: str, web: Host | None = None):
        reply = self.execute(session, f".v <- {{ {code} }}", ".v", web=web)
        assert reply.status_code == 200, reply.text
        assert reply.json()["success"], reply.text
        return reply.json()["outputParameters"][0]["value"]

    def close(self) -> None:
        for session, web in self.opened.items():
            if web.alive:
                with contextlib.suppress(httpx.TransportError):
                    self.client(web).delete(f"/sessions/{session}", timeout=10)
        for client in self.clients.values():
            client.close()


@pytest.fixture
def sessions(healthy: Cluster) -> Iterator[Sessions]:
    opened = Sessions(healthy)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="module")
def service(cluster: Cluster) -> str:
    """A published service whose answer names the compute node that ran it."""
    cluster.restore()
    with cluster.client(cluster.web[0], timeout=120) as admin:
        reply = admin.post(
            f"/services/{SERVICE}/1",
            json={
                "code": "y <- x * 2; node <- here",
                "initCode": f"here <- {HERE}",
                "inputParameterDefinitions": [{"name": "x", "type": "numeric"}],
                "outputParameterDefinitions": [
                    {"name": "y", "type": "numeric"},
                    {"name": "node", "type": "character"},
                ],
                "isDefault": True,
            },
        )
        assert reply.status_code == 201, reply.text
        pools = admin.get(f"/services/{SERVICE}/1/pool").json()
        assert sorted(p["status"] for p in pools) == ["ready"] * 3, pools
    return SERVICE


def call(client: httpx.Client, x: float, timeout: float = 20) -> tuple[int, dict]:
    reply = client.post(f"/api/{SERVICE}/1", json={"x": x}, timeout=timeout)
    return reply.status_code, (reply.json() if reply.status_code == 200 else {"text": reply.text})


def served_by(cluster: Cluster, clients: list[httpx.Client], calls: int) -> Counter:
    """``calls`` service calls alternating over ``clients``: each must be answered 200
    with the right value in bounded time; the compute nodes' addresses that served them."""
    nodes: Counter = Counter()
    for i in range(calls):
        started = time.monotonic()
        status, body = call(clients[i % len(clients)], i)
        assert status == 200 and body["success"], (status, body)
        assert body["outputParameters"]["y"] == 2 * i, body
        assert time.monotonic() - started < 10
        nodes[body["outputParameters"]["node"]] += 1
    return nodes


# ---------------------------------------------------------------------- the tests


def test_sessions_spread_over_the_three_compute_nodes(sessions: Sessions) -> None:
    cluster = sessions.cluster
    web = cluster.web
    opened = [sessions.open(web[i % 2]) for i in range(9)]
    # The records are shared: the other web node names the same compute node.
    where = {s: sessions.node(s) for s in opened}
    assert all(
        sessions.node(s, web=web[1 - web.index(sessions.opened[s])]) == where[s] for s in opened
    )
    counts = Counter(where.values())
    names = {cluster.node_name(h) for h in cluster.compute}
    assert set(counts) == names, counts
    assert min(counts.values()) >= 2, counts
    # Each session's R really runs on the host it is said to be on.
    for session, node in where.items():
        assert sessions.value(session, HERE) == address(node)


def test_a_killed_compute_node_is_down_its_sessions_gone_and_services_served_by_the_others(
    sessions: Sessions, service: str
) -> None:
    cluster = sessions.cluster
    web = cluster.web
    opened = [sessions.open(web[i % 2]) for i in range(6)]
    for session in opened:
        sessions.value(session, "x <- 1")
    victim = cluster.compute[1]
    doomed = [s for s in opened if sessions.node(s) == cluster.node_name(victim)]
    survivors = [s for s in opened if s not in doomed]
    assert doomed and survivors
    clients = [sessions.client(w) for w in web]
    served_by(cluster, clients, 6)  # the service answers before the kill

    victim.kill()  # SIGKILL, its process group first, then every process of its host
    took = cluster.wait_state(victim, "down", timeout=5)
    assert took < 5

    for session in doomed:
        started = time.monotonic()
        reply = sessions.execute(session, "x")
        assert reply.status_code == 410, reply.text
        assert time.monotonic() - started < 10
    for session in survivors:  # the others' sessions keep their workspace
        assert sessions.value(session, "x + 1") == 2
    nodes = served_by(cluster, clients, 12)
    assert address(cluster.node_name(victim)) not in nodes, nodes
    fresh = [sessions.open(web[i % 2]) for i in range(4)]
    assert cluster.node_name(victim) not in {sessions.node(s) for s in fresh}


def test_a_partitioned_compute_node_is_down_then_healthy_and_takes_sessions_again(
    sessions: Sessions, service: str
) -> None:
    cluster = sessions.cluster
    web = cluster.web
    island = cluster.compute[2]
    clients = [sessions.client(w) for w in web]
    # a session on the island, busy in R when the link goes down
    stranded = next(
        s
        for s in (sessions.open(web[i % 2]) for i in range(9))
        if sessions.node(s) == cluster.node_name(island)
    )
    answer: list[int] = []
    busy = threading.Thread(
        target=lambda: answer.append(sessions.execute(stranded, "Sys.sleep(15)").status_code)
    )
    busy.start()
    time.sleep(0.5)
    island.partition()  # its veth link down: nothing reaches it, its processes run on
    try:
        took = cluster.wait_state(island, "down", timeout=10)
        busy.join(10)  # the request in flight ends once the node is found down
        assert answer == [410], answer  # not a hang until the partition heals
        assert island.alive
        placed = [sessions.open(web[i % 2]) for i in range(4)]
        assert cluster.node_name(island) not in {sessions.node(s) for s in placed}
        nodes = served_by(cluster, clients, 8)
        assert island.address not in nodes, nodes
    finally:
        island.heal()
    back = cluster.wait_state(island, "healthy", timeout=10)
    # its sessions were declared gone: their shells, still there, are ended (the one
    # busy in R when the link went down once its Sys.sleep(15) is over)
    deadline = time.monotonic() + 45
    while (parked := island_parked(cluster, island)) != 0:
        assert time.monotonic() < deadline, f"{parked} shells left parked on the healed node"
        time.sleep(0.5)
    fresh = [sessions.open(web[i % 2]) for i in range(6)]
    landed = Counter(sessions.node(s) for s in fresh)
    assert landed[cluster.node_name(island)] >= 1, landed
    for session in fresh:
        assert sessions.value(session, HERE) == address(sessions.node(session))
    print(f"partition: down after {took:.1f} s, healthy {back:.1f} s after the heal; {landed}")


def island_parked(cluster: Cluster, host: Host) -> int | None:
    """The node's resumable sessions, as a web node's last check of it saw them."""
    with cluster.client(cluster.web[0]) as admin:
        nodes = admin.get("/computenodes").json()
    entry = next(n for n in nodes if n["name"] == cluster.node_name(host))
    return entry["pools"].get("", {}).get("parked")


def test_fifty_clients_through_both_web_nodes_every_call_answered(
    healthy: Cluster, service: str
) -> None:
    cluster = healthy
    tokens = {w.name: cluster.token(w) for w in cluster.web}
    clients_count, calls_each = 50, 20

    def client_run(number: int) -> list[tuple[int, float, float, str, str]]:
        pair = [
            httpx.Client(
                base_url=cluster.url(w),
                headers={"Authorization": f"Bearer {tokens[w.name]}"},
                timeout=60,
            )
            for w in cluster.web
        ]
        answers = []
        try:
            for i in range(calls_each):
                web = cluster.web[(number + i) % 2]
                x = number * 1000 + i
                try:
                    status, body = call(pair[(number + i) % 2], x, timeout=60)
                except httpx.HTTPError as exc:
                    answers.append((0, x, 0.0, web.name, repr(exc)))
                    continue
                outputs = body.get("outputParameters") or {}
                answers.append(
                    (status, x, outputs.get("y", 0.0), web.name, outputs.get("node", str(body)))
                )
        finally:
            for client in pair:
                client.close()
        return answers

    started = time.monotonic()
    with ThreadPoolExecutor(clients_count) as pool:
        results = [a for run in pool.map(client_run, range(clients_count)) for a in run]
    took = time.monotonic() - started
    assert len(results) == clients_count * calls_each
    wrong = [r for r in results if r[0] != 200 or r[2] != 2 * r[1]]
    assert not wrong, f"{len(wrong)} of {len(results)} calls failed, e.g. {wrong[:5]}"
    by_web = Counter(r[3] for r in results)
    assert by_web == {"w0": 500, "w1": 500}, by_web
    by_node = Counter(r[4] for r in results)
    assert set(by_node) <= {h.address for h in cluster.compute}, by_node
    print(f"{len(results)} calls in {took:.1f} s; by compute node {dict(by_node)}")


def test_a_session_survives_its_web_node_being_killed(sessions: Sessions) -> None:
    cluster = sessions.cluster
    first, second = cluster.web
    session = sessions.open(first)
    assert sessions.value(session, "x <- c(4, 2); sum(x)") == 6
    node = sessions.node(session)
    # a second session is in the middle of an execution when its web node dies
    running = sessions.open(first)
    sessions.value(running, "1")
    outcome: list[object] = []

    def execute() -> None:
        try:
            outcome.append(sessions.execute(running, "Sys.sleep(2); done <- TRUE").status_code)
        except httpx.TransportError as exc:
            outcome.append(type(exc).__name__)

    worker = threading.Thread(target=execute)
    worker.start()
    time.sleep(0.8)
    first.kill()  # SIGKILL: no clean shutdown of its sessions
    started = time.monotonic()
    worker.join(20)
    assert outcome and outcome[0] != 200, outcome  # its answer died with the web node
    info = sessions.client(second).get(f"/sessions/{session}", timeout=20)
    assert info.status_code == 200, info.text
    assert info.json()["computeNode"] == node
    reply = sessions.execute(session, "sum(x) * 10", web=second)
    assert reply.status_code == 200, reply.text
    assert sessions.value(session, "sum(x) * 10", web=second) == 60
    got = sessions.client(second).get(f"/sessions/{session}/workspace/x", timeout=20)
    assert got.status_code == 200, got.text
    assert got.json()["value"] == [4, 2]
    assert time.monotonic() - started < 30
    sessions.opened[session] = second
    # the other one: its lease ends with the dead web node's heartbeat, its shell
    # finished the execution and parked, and it goes on through the second web node
    deadline = time.monotonic() + 45
    while sessions.client(second).get(f"/sessions/{running}").json()["busy"]:
        assert time.monotonic() < deadline, "the dead web node's lease never ended"
        time.sleep(0.5)
    assert sessions.value(running, "exists('done') && done", web=second) is True
    sessions.opened[running] = second


@pytest.fixture
def registered(cluster: Cluster) -> Cluster:
    """The web nodes restarted with c0 alone in their [[compute]] tables, c1 and c2
    registered through POST /computenodes (the registry all web nodes share)."""
    if cluster.web_mode != "registry":
        cluster.start_web_nodes("registry")
    cluster.restore()
    return cluster


def test_registered_nodes_take_sessions_and_a_drained_one_takes_no_new_work(
    registered: Cluster, service: str
) -> None:
    cluster = registered
    web = cluster.web
    sessions = Sessions(cluster)
    try:
        for w in web:  # both web nodes see the registry's nodes
            with cluster.client(w) as admin:
                listed = {n["name"]: n for n in admin.get("/computenodes").json()}
            assert {n: (v["source"], v["state"]) for n, v in listed.items()} == {
                cluster.node_name(h): ("settings" if h.name == "c0" else "registry", "healthy")
                for h in cluster.compute
            }
        opened = [sessions.open(web[i % 2]) for i in range(6)]
        for session in opened:
            sessions.value(session, "x <- 7")
        where = Counter(sessions.node(s) for s in opened)
        assert len(where) == 3, where

        drained = cluster.compute[1]
        name = cluster.node_name(drained)
        on_drained = [s for s in opened if sessions.node(s) == name]
        reply = sessions.client(web[0]).post(f"/computenodes/{cluster.registered['c1']}/drain")
        assert reply.status_code == 200, reply.text
        cluster.wait_state(drained, "draining", timeout=5)  # on both web nodes

        more = [sessions.open(web[i % 2]) for i in range(6)]
        later = Counter(sessions.node(s) for s in more)
        assert name not in later, later
        for session in on_drained:  # running work on the drained node goes on
            assert sessions.value(session, "x * 6") == 42
        nodes = served_by(cluster, [sessions.client(w) for w in web], 8)
        assert drained.address not in nodes, nodes

        reply = sessions.client(web[1]).post(f"/computenodes/{cluster.registered['c1']}/undrain")
        assert reply.status_code == 200, reply.text
        cluster.wait_state(drained, "healthy", timeout=5)
        again = [sessions.open(web[i % 2]) for i in range(3)]
        assert name in {sessions.node(s) for s in again}
    finally:
        sessions.close()
