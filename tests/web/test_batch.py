"""Batch consumption against real web nodes, a real compute node and a real database:
order and parallelCount, files, cancel, a web node stopped mid-batch (the batch is
finished by another, no item runs twice), timeouts that fail instead of re-running, and
two web nodes sharing one PostgreSQL queue (SKIP LOCKED)."""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from rexec.web.db import BatchItem
from tests.web.conftest import Web, services_settings, start_web, stop_web

#: Each item appends "<index> <start> <end>" to a file the shell account can write.
WORK = """
started <- as.numeric(Sys.time())
Sys.sleep(seconds)
# one short write with O_APPEND: lines of items running at once do not interleave
cat(sprintf("%d %.6f %.6f\\n", index, started, as.numeric(Sys.time())), file = log, append = TRUE)
out <- index * 10L
writeLines(paste("item", index), "note.txt")
"""
INPUTS = [
    {"name": "index", "type": "integer"},
    {"name": "seconds", "type": "numeric"},
    {"name": "log", "type": "character"},
]


@pytest.fixture
def marks() -> Iterator[Path]:
    """A file R shells (another account when the tests run as root) can append to."""
    directory = Path(tempfile.mkdtemp(prefix="rexec-batch-", dir="/tmp"))
    os.chmod(directory, 0o777)
    yield directory / "ran.txt"
    for entry in directory.iterdir():
        entry.unlink()
    directory.rmdir()


def _runs(log: Path) -> list[tuple[int, float, float]]:
    if not log.exists():
        return []
    rows = [line.split() for line in log.read_text().splitlines() if line.strip()]
    return [(int(i), float(a), float(b)) for i, a, b in rows]


def _publish(client: httpx.Client, name: str, **extra: object) -> None:
    body = {
        "code": WORK,
        "inputParameterDefinitions": INPUTS,
        "outputParameterDefinitions": [{"name": "out", "type": "integer"}],
        "outputFileNames": ["note.txt"],
        **extra,
    }
    reply = client.post(f"/services/{name}/1", json=body)
    assert reply.status_code == 201, reply.text


def _records(n: int, seconds: float, log: Path) -> list[dict]:
    return [{"index": i, "seconds": seconds, "log": str(log)} for i in range(n)]


def _wait(client: httpx.Client, path: str, timeout: float = 60, partial: bool = False) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = client.get(path, params={"showPartialResult": partial}).json()
        if status["state"] not in ("queued", "running") or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


@pytest.fixture(scope="module")
def admin(services_web: Web) -> Iterator[httpx.Client]:
    with services_web.client() as client:
        yield client


def test_a_batch_runs_every_record_once_in_order_with_its_parallel_count(admin, marks) -> None:
    _publish(admin, "bwork")
    reply = admin.post("/api/bwork/1/batch?parallelCount=3", json=_records(9, 0.4, marks))
    assert reply.status_code == 202, reply.text
    batch = reply.json()["batchExecutionId"]
    assert batch in admin.get("/api/bwork/1/batch").json()
    status = _wait(admin, f"/api/bwork/1/batch/{batch}")
    assert status["state"] == "complete", status
    assert status["completedItemCount"] == status["totalItemCount"] == 9
    results = status["batchExecutionResults"]
    assert [r["index"] for r in results] == list(range(9))
    assert [r["outputParameters"]["out"] for r in results] == [i * 10 for i in range(9)]
    runs = _runs(marks)
    assert sorted(Counter(i for i, _, _ in runs).items()) == [(i, 1) for i in range(9)]
    # at most parallelCount at once, and more than one: compare every start with the others
    overlap = max(sum(1 for _, a, b in runs if a <= start < b) for _, start, _ in runs)
    assert 2 <= overlap <= 3, runs
    files = admin.get(f"/api/bwork/1/batch/{batch}/4/files").json()
    assert files == ["note.txt"]
    note = admin.get(f"/api/bwork/1/batch/{batch}/4/files/note.txt")
    assert note.status_code == 200 and note.text == "item 4\n"
    assert admin.get(f"/api/bwork/1/batch/{batch}/4/files/other.txt").status_code == 404
    admin.delete("/services/bwork/1")


def test_partial_results_and_bad_records(admin, marks) -> None:
    _publish(admin, "bpart")
    bad = _records(3, 0, marks)
    bad[2]["index"] = "two"
    reply = admin.post("/api/bpart/1/batch", json=bad)
    assert reply.status_code == 400 and "record 2" in reply.json()["message"]
    assert not marks.exists()  # nothing was queued
    batch = admin.post("/api/bpart/1/batch", json=_records(4, 0.5, marks)).json()
    time.sleep(1.2)
    partial = admin.get(f"/api/bpart/1/batch/{batch['batchExecutionId']}?showPartialResult=true")
    assert partial.status_code == 200
    body = partial.json()
    assert body["state"] == "running", body
    assert 0 < len(body["batchExecutionResults"]) == body["completedItemCount"] < 4
    without = admin.get(f"/api/bpart/1/batch/{batch['batchExecutionId']}").json()
    assert without["batchExecutionResults"] == []  # only once the batch is over
    assert _wait(admin, f"/api/bpart/1/batch/{batch['batchExecutionId']}")["state"] == "complete"
    admin.delete("/services/bpart/1")


def test_cancel_interrupts_running_items_and_queued_ones_never_start(admin, marks) -> None:
    _publish(admin, "bcancel")
    batch = admin.post("/api/bcancel/1/batch?parallelCount=1", json=_records(5, 2, marks)).json()
    path = f"/api/bcancel/1/batch/{batch['batchExecutionId']}"
    time.sleep(1.0)  # the first item is sleeping in R
    assert admin.delete(path).json()["state"] == "cancelled"
    status = _wait(admin, path)
    time.sleep(3)  # time enough for any item that would (wrongly) still start
    assert status["state"] == "cancelled"
    states = [r["state"] for r in admin.get(path).json()["batchExecutionResults"]]
    assert states == ["cancelled"] * 5, states
    assert _runs(marks) == []  # the running one was interrupted before it logged
    admin.delete("/services/bcancel/1")


def test_a_timed_out_item_fails_and_is_not_run_again(admin, marks) -> None:
    _publish(admin, "btime", timeout=1)
    records = _records(3, 0, marks)
    records[1]["seconds"] = 5
    batch = admin.post("/api/btime/1/batch", json=records).json()
    status = _wait(admin, f"/api/btime/1/batch/{batch['batchExecutionId']}")
    time.sleep(1)
    results = {r["index"]: r for r in status["batchExecutionResults"]}
    assert results[1]["state"] == "failed" and "timeout" in results[1]["errorMessage"]
    assert results[0]["success"] and results[2]["success"]
    assert sorted(i for i, _, _ in _runs(marks)) == [0, 2]  # item 1 never logged, ran once
    admin.delete("/services/btime/1")


def test_a_web_node_stopped_mid_batch_another_finishes_it_and_no_item_runs_twice(
    services_compute, tmp_path, marks
) -> None:
    url = f"sqlite:///{tmp_path / 'web.db'}"
    first = start_web(services_settings(services_compute, url, batch_lease=2.0))
    with first.client() as client:
        _publish(client, "brestart")
        batch = client.post(
            "/api/brestart/1/batch?parallelCount=2", json=_records(6, 1.5, marks)
        ).json()["batchExecutionId"]
        time.sleep(0.8)  # two items running in R
    stop_web(first)
    second = start_web(services_settings(services_compute, url, batch_lease=2.0))
    try:
        with second.client() as client:
            status = _wait(client, f"/api/brestart/1/batch/{batch}", timeout=90)
            assert status["state"] == "complete", status
            results = status["batchExecutionResults"]
            failed = [r for r in results if r["state"] == "failed"]
            assert failed and all(
                "web node running it stopped" in r["errorMessage"] for r in failed
            )
            done = [r["index"] for r in results if r["state"] == "done"]
            assert len(done) + len(failed) == 6
            client.delete("/services/brestart/1")
    finally:
        stop_web(second)
    counts = Counter(i for i, _, _ in _runs(marks))
    assert all(n == 1 for n in counts.values()), counts  # nothing ran twice
    assert set(done) <= set(counts)


def test_two_web_nodes_share_one_postgresql_queue(services_compute, postgres_url, marks) -> None:
    nodes = [
        start_web(
            services_settings(
                services_compute, postgres_url, batch_workers=2, heartbeat_interval=0.3
            )
        )
        for _ in range(2)
    ]
    try:
        time.sleep(1.0)  # each knows the other (heartbeats): they share the pool's shells
        with nodes[0].client() as client:
            _publish(client, "bshared", **{})
            client.post("/services/bshared/1/pool", json={"initialPoolSize": 2, "maxPoolSize": 4})
            batch = client.post(
                "/api/bshared/1/batch?parallelCount=4", json=_records(16, 0.3, marks)
            ).json()["batchExecutionId"]
        with nodes[1].client() as other:  # any web node answers for the batch
            status = _wait(other, f"/api/bshared/1/batch/{batch}", timeout=90)
        assert status["state"] == "complete", status
        assert all(r["success"] for r in status["batchExecutionResults"]), status
        with nodes[0].node.db.session() as db:
            workers = set(db.scalars(select(BatchItem.worker).where(BatchItem.batch_id == batch)))
        assert len(workers) == 2, workers  # each node runs 2 at most: both took items
        counts = Counter(i for i, _, _ in _runs(marks))
        assert sorted(counts.items()) == [(i, 1) for i in range(16)]
        with nodes[0].client() as client:
            client.delete("/services/bshared/1")
    finally:
        for node in nodes:
            stop_web(node)
