"""The compute node's Prometheus endpoint (metrics.port): pool gauges and counters that
move by exactly what clients did, loopback only by default, and a scraper that stalls,
floods or sends garbage costs the supervisor nothing."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import rexec.client
from rexec.client import ClientError
from rexec.compute.supervisor.metrics import MAX_CONNECTIONS, MAX_REQUEST
from rexec.compute.supervisor.users import UsersFile
from tests.conftest import Server, free_port, serve_fails

USER, PASSWORD = "alice", "metrics-secret-1"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    reply = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def wait_for(port: int, name: str, expected: float, timeout: float = 30, **labels: str) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(port)
        if samples.get((name, tuple(sorted(labels.items())))) == expected:
            return samples
        assert time.monotonic() < deadline, f"{name}{labels} is not {expected}: {samples}"
        time.sleep(0.05)


@pytest.fixture
def node(rexec_factory, tmp_path: Path) -> tuple[Server, int]:
    users = tmp_path / "users"
    UsersFile(users).add(USER, PASSWORD)
    port = free_port()
    server = rexec_factory(
        **{
            "metrics.port": port,
            "auth.users_file": str(users),
            "pool.initial": 2,
            "pool.max": 3,
            "pool.wait_timeout": 1.0,
        }
    )
    return server, port


def test_pool_gauges_and_counters_move_by_what_clients_did(node) -> None:
    server, port = node
    before = wait_for(port, "rexec_compute_pool_idle_shells", 2, pool="")
    assert value(before, "rexec_compute_pool_max_shells", pool="") == 3
    assert value(before, "rexec_compute_pool_busy_shells", pool="") == 0
    assert value(before, "rexec_compute_named_pools") == 0

    def delta(samples: Samples, name: str, **labels: str) -> float:
        return value(samples, name, **labels) - value(before, name, **labels)

    # Three sessions fill the pool; a fourth waits pool.wait_timeout and is refused.
    sessions = [rexec.client.connect(port=server.port, timeout=30) for _ in range(3)]
    for session in sessions:
        assert session.eval("1 + 1") == 2
    busy = wait_for(port, "rexec_compute_pool_busy_shells", 3, pool="")
    assert value(busy, "rexec_compute_pool_idle_shells", pool="") == 0
    assert delta(busy, "rexec_compute_pool_sessions_served_total", pool="") == 3
    with pytest.raises((ClientError, OSError)):
        rexec.client.connect(port=server.port, timeout=10).eval("1")
    refused = wait_for(
        port,
        "rexec_compute_connections_refused_total",
        value(before, "rexec_compute_connections_refused_total", reason="no_shell") + 1,
        reason="no_shell",
    )
    assert delta(refused, "rexec_compute_pool_no_shell_total", pool="") == 1
    assert delta(refused, "rexec_compute_connections_refused_total", reason="no_login") == 0
    for session in sessions:
        session.close()
    after = wait_for(port, "rexec_compute_pool_idle_shells", 2, pool="")
    recycled = value(before, "rexec_compute_pool_shells_recycled_total", pool="") + 3
    after = wait_for(port, "rexec_compute_pool_shells_recycled_total", recycled, pool="")
    assert value(after, "rexec_compute_pool_busy_shells", pool="") == 0
    assert delta(after, "rexec_compute_pool_sessions_served_total", pool="") == 3
    assert delta(after, "rexec_compute_pool_shells_failed_total", pool="") == 0
    # Three shells ended; each was replaced. The refused connection never got one.
    assert delta(after, "rexec_compute_pool_shells_started_total", pool="") == 3
    accepted = sum(
        delta(after, "rexec_compute_connections_accepted_total", by=by)
        for by in ("supervisor", "shell")
    )
    assert accepted == 4


def test_logins_and_named_pools(node) -> None:
    server, port = node
    before = scrape(port)
    with pytest.raises(ClientError):
        rexec.client.connect(port=server.port, user=USER, password="wrong", timeout=30)
    with rexec.client.connect(port=server.port, user=USER, password=PASSWORD, timeout=30) as c:
        assert c.eval("2 * 21") == 42
    samples = scrape(port)
    for outcome, expected in (("ok", 1), ("failed", 1)):
        moved = value(samples, "rexec_compute_logins_total", outcome=outcome) - value(
            before, "rexec_compute_logins_total", outcome=outcome
        )
        assert moved == expected, outcome

    rexec.client.define_pool(
        "metrics-pool", "x <- 1", initial=1, max=2, port=server.port, user=USER, password=PASSWORD
    )
    samples = wait_for(port, "rexec_compute_pool_idle_shells", 1, pool="metrics-pool")
    assert value(samples, "rexec_compute_pool_max_shells", pool="metrics-pool") == 2
    assert value(samples, "rexec_compute_named_pools") == 1
    with rexec.client.connect(
        port=server.port, user=USER, password=PASSWORD, pool="metrics-pool", timeout=30
    ) as c:
        assert c.eval("x") == 1
        samples = wait_for(port, "rexec_compute_pool_busy_shells", 1, pool="metrics-pool")
        assert value(samples, "rexec_compute_pool_sessions_served_total", pool="metrics-pool") == 1
    rexec.client.remove_pool("metrics-pool", port=server.port, user=USER, password=PASSWORD)
    samples = wait_for(port, "rexec_compute_named_pools", 0)
    assert not any(dict(labels).get("pool") == "metrics-pool" for _, labels in samples)


def _listening(port: int) -> list[str]:
    """Local addresses of the sockets listening on ``port`` (from /proc/net/tcp*)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.append(address)
    return found


def test_loopback_only_by_default_and_a_hostile_scraper_costs_nothing(node) -> None:
    server, port = node
    assert _listening(port) == ["0100007F"]  # 127.0.0.1, nothing on IPv6 or other addresses
    assert "metrics on http://127.0.0.1:" in server.log_text()

    # Silent connections up to the limit, and beyond: a scrape still answers at once.
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(MAX_CONNECTIONS + 2)]
    try:
        time.sleep(0.2)
        # The extra ones were closed at once.
        closed = 0
        for sock in silent:
            sock.settimeout(0.05)
            try:
                closed += sock.recv(1) == b""
            except TimeoutError:
                pass
            except ConnectionResetError:
                closed += 1
        assert closed == 2
        started = time.monotonic()
        with rexec.client.connect(port=server.port, timeout=10) as c:
            assert c.eval("3") == 3  # the supervisor itself is not held up
        assert time.monotonic() - started < 3
    finally:
        for sock in silent:
            sock.close()
    samples = scrape(port)  # their slots are free again
    assert value(samples, "rexec_compute_pool_max_shells", pool="") == 3

    base = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{base}/other").status_code == 404
    assert httpx.post(f"{base}/metrics", content=b"x").status_code == 405
    assert httpx.head(f"{base}/metrics").status_code == 200
    huge = httpx.get(f"{base}/metrics", headers={"X-Big": "a" * (MAX_REQUEST * 2)})
    assert huge.status_code == 431
    # A request head that never ends is dropped after the deadline; scrapes go on.
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(15)
        assert sock.recv(100) == b""
    scrape(port)


def test_an_explicit_metrics_port_that_is_taken_stops_the_node() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        output = serve_fails(f"[server]\nport = {free_port()}\n[metrics]\nport = {port}\n")
    assert f"metrics endpoint on 127.0.0.1:{port}" in output


def test_a_default_metrics_port_that_is_taken_is_skipped(rexec_factory) -> None:
    """Several compute nodes on one machine: the default port goes to the first."""
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 9311))
        holder.listen()
    except OSError:
        pass  # held already (another node of this test run, say): taken either way
    try:
        server = rexec_factory()
        with rexec.client.connect(port=server.port, timeout=30) as c:
            assert c.eval("1") == 1
        assert "event=metrics-off" in server.log_text()
    finally:
        holder.close()
