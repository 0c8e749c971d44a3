"""The web node's Prometheus endpoint against a real web node and compute node: requests
by route template (never the raw path), service calls by outcome (HTTP and batch), live
sessions, the batch queue counted off the event loop, compute nodes as last seen, no
secrets in the text, and one registry per app."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.web.conftest import (
    ADMIN_PASSWORD,
    COMPUTE_PASSWORD,
    Web,
    services_settings,
    start_web,
    stop_web,
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

DOUBLE = {
    "code": 'Sys.sleep(s); if (x < 0) stop("negative"); y <- x * 2',
    "inputParameterDefinitions": [
        {"name": "x", "type": "numeric"},
        {"name": "s", "type": "numeric"},
    ],
    "outputParameterDefinitions": [{"name": "y", "type": "numeric"}],
}


def scrape_text(web: Web) -> str:
    reply = httpx.get(f"{web.url}/metrics", timeout=30)  # no token: Prometheus has none
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain; version=")
    return reply.text


def scrape(web: Web) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(scrape_text(web)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def app_of(web: Web) -> Any:
    return web.server.config.app


@pytest.fixture(scope="module")
def admin(services_web: Web) -> Iterator[httpx.Client]:
    with services_web.client() as client:
        yield client


@pytest.fixture(scope="module")
def double(admin: httpx.Client) -> Iterator[str]:
    reply = admin.post("/services/mdouble/v1", json=DOUBLE)
    assert reply.status_code == 201, reply.text
    yield "mdouble"
    admin.delete("/services/mdouble/v1")


def test_requests_are_counted_by_route_template_method_and_status(services_web, admin) -> None:
    before = scrape(services_web)
    for name in ("nosuch-a", "nosuch-b"):
        assert admin.get(f"/services/{name}/v9").status_code == 404
    assert admin.get("/no/such/path/at-all").status_code == 404
    assert admin.get("/services").status_code == 200
    after = scrape(services_web)
    route = "/services/{name}/{version}"
    counted = "rexec_web_http_requests_total"
    assert moved(before, after, counted, method="GET", route=route, status="404") == 2
    assert moved(before, after, counted, method="GET", route="unmatched", status="404") == 1
    assert moved(before, after, counted, method="GET", route="/services", status="200") == 1
    # the scrape before this one counted too
    assert moved(before, after, counted, method="GET", route="/metrics", status="200") == 1
    timed = "rexec_web_http_request_duration_seconds_count"
    assert moved(before, after, timed, method="GET", route=route) == 2
    assert value(after, "rexec_web_http_requests_in_flight") == 1  # this scrape
    text = scrape_text(services_web)
    secret = services_web.node.auth.secret
    for raw in ("nosuch-a", "/no/such/path", ADMIN_PASSWORD, COMPUTE_PASSWORD, secret, "Bearer"):
        assert raw not in text


def test_service_calls_are_counted_by_outcome_http_and_batch(services_web, admin, double) -> None:
    before = scrape(services_web)
    for x in (1, 2):
        reply = admin.post(f"/api/{double}/v1", json={"x": x, "s": 0})
        assert reply.status_code == 200 and reply.json()["success"] is True, reply.text
    failed = admin.post(f"/api/{double}/v1", json={"x": -1, "s": 0})
    assert failed.status_code == 200 and failed.json()["success"] is False
    assert admin.post(f"/api/{double}/v1", json={"x": "abc", "s": 0}).status_code == 400
    after = scrape(services_web)
    calls = "rexec_web_service_calls_total"
    labels = {"service": double, "version": "v1"}
    assert moved(before, after, calls, **labels, outcome="success") == 2
    assert moved(before, after, calls, **labels, outcome="r_error") == 1
    assert moved(before, after, calls, **labels, outcome="bad_input") == 1
    timed = "rexec_web_service_call_duration_seconds_count"
    assert moved(before, after, timed, **labels) == 4
    route = "/api/{name}/{version}"
    http = "rexec_web_http_requests_total"
    assert moved(before, after, http, method="POST", route=route, status="200") == 3
    assert moved(before, after, http, method="POST", route=route, status="400") == 1

    # A batch: its items are calls too, and the queue's depth shows while it runs.
    records = [{"x": i, "s": 1.0} for i in range(3)]
    reply = admin.post(f"/api/{double}/v1/batch?parallelCount=1", json=records)
    assert reply.status_code == 202, reply.text
    batch = reply.json()["batchExecutionId"]
    during = scrape(services_web)
    queued = value(during, "rexec_web_batch_items", state="queued")
    running = value(during, "rexec_web_batch_items", state="running")
    assert queued + running == 3 and running <= 1, (queued, running)
    assert value(during, "rexec_web_database_up") == 1
    deadline = time.monotonic() + 60
    while admin.get(f"/api/{double}/v1/batch/{batch}").json()["state"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    done = scrape(services_web)
    assert value(done, "rexec_web_batch_items", state="queued") == 0
    assert value(done, "rexec_web_batch_items", state="running") == 0
    assert value(done, "rexec_web_batch_items_running_here") == 0
    assert moved(after, done, calls, **labels, outcome="success") == 3


def test_the_batch_queue_is_counted_in_a_worker_thread(services_web) -> None:
    metrics = app_of(services_web).state.metrics
    original = metrics._batch_counts
    threads: list[int] = []

    def counted() -> dict[str, int]:
        threads.append(threading.get_ident())
        return original()

    metrics._batch_counts = counted
    try:
        scrape(services_web)
    finally:
        metrics._batch_counts = original
    assert threads and threads[0] != services_web.thread.ident  # not uvicorn's event loop


def test_live_sessions_and_compute_nodes_as_last_seen(services_web, admin) -> None:
    compute = services_web.node.compute.status()[0]["name"]
    before = scrape(services_web)
    assert value(before, "rexec_web_sessions_active") == 0
    assert value(before, "rexec_web_compute_node_up", node=compute) == 1
    reply = admin.post("/sessions", json={"name": "metrics"})
    assert reply.status_code == 201, reply.text
    try:
        during = scrape(services_web)
        assert value(during, "rexec_web_sessions_active") == 1
        # parked between requests: no connection held, no request attached
        assert value(during, "rexec_web_sessions_attached") == 0
        assert value(during, "rexec_web_compute_sessions_held", node=compute) == 0
    finally:
        admin.delete(f"/sessions/{reply.json()['id']}")
    assert value(scrape(services_web), "rexec_web_sessions_active") == 0
    if "pools" in services_web.node.compute.status()[0]:  # checked by the web node
        deadline = time.monotonic() + 30
        name = "rexec_web_compute_pool_max_shells"
        while value(samples := scrape(services_web), name, node=compute, pool="") != 8:
            assert time.monotonic() < deadline, samples
            time.sleep(0.5)


def test_each_app_has_a_registry_of_its_own(services_web, services_compute, tmp_path) -> None:
    other = start_web(services_settings(services_compute, f"sqlite:///{tmp_path / 'other.db'}"))
    try:
        first = scrape(services_web)
        assert httpx.get(f"{other.url}/services").status_code == 401
        theirs = scrape(other)
        mine = scrape(services_web)
        counted = "rexec_web_http_requests_total"
        assert value(theirs, counted, method="GET", route="/services", status="401") == 1
        assert moved(first, mine, counted, method="GET", route="/services", status="401") == 0
        assert value(theirs, counted, method="GET", route="/metrics", status="200") == 0
    finally:
        stop_web(other)
