"""Sessions through any web node: two web nodes on one PostgreSQL database and one
compute node (the multi-host version is tests/cluster). A session opened on one web
node is used, streamed, cancelled and closed through the other, and survives the web
node that opened it."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.web.conftest import services_settings, start_web, stop_web


@pytest.fixture
def two_webs(services_compute, postgres_url):
    webs = [start_web(services_settings(services_compute, postgres_url)) for _ in range(2)]
    yield webs
    for web in webs:
        if web.thread.is_alive():
            stop_web(web)


def _run(client: httpx.Client, sid: str, code: str) -> httpx.Response:
    return client.post(f"/sessions/{sid}/execute", json={"code": code})


def test_a_session_opened_on_one_web_node_is_used_through_the_other(two_webs) -> None:
    a, b = two_webs
    with a.client() as on_a, b.client() as on_b:
        sid = on_a.post("/sessions", json={"name": "shared"}).json()["id"]
        assert _run(on_a, sid, "x <- 20; pid <- Sys.getpid()").json()["success"]
        reply = _run(on_b, sid, "x + 22")
        assert reply.status_code == 200, reply.text
        assert reply.json()["consoleOutput"] == "[1] 42\n"
        assert reply.json()["executionId"] == 2
        # the same shell, the same workspace, one history
        pid_a = _run(on_a, sid, "cat(pid)").json()["consoleOutput"]
        pid_b = _run(on_b, sid, "cat(Sys.getpid())").json()["consoleOutput"]
        assert pid_a == pid_b
        assert [h["executionId"] for h in on_b.get(f"/sessions/{sid}/history").json()] == [
            1,
            2,
            3,
            4,
        ]
        names = {o["name"] for o in on_a.get(f"/sessions/{sid}/workspace").json()}
        assert {"x", "pid"} <= names
        assert on_b.delete(f"/sessions/{sid}").status_code == 200
        assert on_a.get(f"/sessions/{sid}").status_code == 404


def test_a_session_survives_the_web_node_that_opened_it(two_webs) -> None:
    a, b = two_webs
    with a.client() as on_a:
        sid = on_a.post("/sessions", json={}).json()["id"]
        assert _run(on_a, sid, "kept <- letters[1:3]").json()["success"]
    stop_web(a)  # the web node that opened the session is gone
    with b.client() as on_b:
        reply = _run(on_b, sid, "cat(kept)")
        assert reply.status_code == 200, reply.text
        assert reply.json()["consoleOutput"] == "a b c"
        assert on_b.get(f"/sessions/{sid}").json()["state"] == "active"
        on_b.delete(f"/sessions/{sid}")


def test_console_output_streams_and_cancel_works_through_the_other_web_node(two_webs) -> None:
    a, b = two_webs
    with a.client() as on_a, b.client() as on_b:
        sid = on_a.post("/sessions", json={}).json()["id"]
        answers: list[httpx.Response] = []
        code = 'for (i in 1:3) { cat("tick", i, "\\n"); Sys.sleep(0.4) }; Sys.sleep(30)'
        worker = threading.Thread(target=lambda: answers.append(_run(on_a, sid, code)))
        worker.start()
        deadline = time.monotonic() + 20
        while on_b.get(f"/sessions/{sid}").json()["busy"] is False:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # a second request meanwhile, on the other web node: busy
        assert _run(on_b, sid, "1").status_code == 409
        seen = b""
        started = time.monotonic()
        with on_b.stream("GET", f"/sessions/{sid}/console-output") as stream:
            for chunk in stream.iter_bytes():
                seen += chunk
                if b"tick 3" in seen:
                    break
        assert seen.startswith(b"tick 1 \ntick 2 \ntick 3")
        assert time.monotonic() - started < 10  # live, not when the execution ended
        assert on_b.post(f"/sessions/{sid}/cancel").status_code == 200
        worker.join(30)
        result = answers[0].json()
        assert result["success"] is False and result["errorMessage"] == "execution cancelled"
        assert result["consoleOutput"] == "tick 1 \ntick 2 \ntick 3 \n"
        # and the session goes on, from either web node
        assert _run(on_b, sid, "cat('after')").json()["consoleOutput"] == "after"
        on_a.delete(f"/sessions/{sid}")


def test_a_session_deleted_through_one_web_node_while_the_other_runs_it_ends(
    two_webs, services_compute
) -> None:
    import asyncio

    from rexec.client._async import apool_status
    from tests.web.conftest import COMPUTE_PASSWORD, COMPUTE_USER

    def parked() -> int:
        status = asyncio.run(
            apool_status(port=services_compute.port, user=COMPUTE_USER, password=COMPUTE_PASSWORD)
        )
        return status["pools"][""]["parked"]

    a, b = two_webs
    with a.client() as on_a, b.client() as on_b:
        sid = on_a.post("/sessions", json={}).json()["id"]
        before = parked()
        answers: list[httpx.Response] = []
        worker = threading.Thread(
            target=lambda: answers.append(_run(on_a, sid, "Sys.sleep(1.5); 1"))
        )
        worker.start()
        deadline = time.monotonic() + 20
        while on_b.get(f"/sessions/{sid}").json()["busy"] is False:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert on_b.delete(f"/sessions/{sid}").status_code == 200
        worker.join(30)
        assert answers[0].status_code == 200  # the running execution was not cut short
        assert on_a.get(f"/sessions/{sid}").status_code == 404
        deadline = time.monotonic() + 10
        while parked() != before - 1:  # its shell is not left parked for nobody
            assert time.monotonic() < deadline, parked()
            time.sleep(0.2)


def test_a_reader_on_the_running_web_node_does_not_hold_back_readers_elsewhere(
    two_webs,
) -> None:
    """Console output reaches the other web node's readers while one on the running web
    node streams it too (they once shared one event, and the local reader consumed it)."""
    a, b = two_webs
    with a.client() as on_a, b.client() as on_b:
        sid = on_a.post("/sessions", json={}).json()["id"]
        # the second line comes while the running web node has just written the first
        code = 'Sys.sleep(1.5); cat("one\\n"); Sys.sleep(0.1); cat("two\\n"); Sys.sleep(30)'
        worker = threading.Thread(target=lambda: _run(on_a, sid, code))
        worker.start()
        deadline = time.monotonic() + 20
        while on_b.get(f"/sessions/{sid}").json()["busy"] is False:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        local = threading.Thread(
            target=lambda: on_a.get(f"/sessions/{sid}/console-output", timeout=60)
        )
        local.start()
        seen = b""
        started = time.monotonic()
        with on_b.stream("GET", f"/sessions/{sid}/console-output", timeout=30) as stream:
            for chunk in stream.iter_bytes():
                seen += chunk
                if b"two" in seen or time.monotonic() - started > 8:
                    break
        took = time.monotonic() - started
        on_b.post(f"/sessions/{sid}/cancel")
        worker.join(30)
        local.join(30)
        assert seen == b"one\ntwo\n" and took < 8, (seen, took)
        on_a.delete(f"/sessions/{sid}")
