"""Capacity: 20 concurrent session executions against a compute node with pool.max 8."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.web.conftest import Web


def test_twenty_concurrent_executions_complete_or_get_503(web: Web) -> None:
    token = web.token()
    headers = {"Authorization": f"Bearer {token}"}

    def one(i: int) -> tuple[str, object]:
        with httpx.Client(base_url=web.url, headers=headers, timeout=60) as client:
            created = client.post("/sessions", json={"name": f"load-{i}"})
            if created.status_code == 503:
                return "busy", created.headers.get("retry-after")
            assert created.status_code == 201, created.text
            sid = created.json()["id"]
            try:
                reply = client.post(
                    f"/sessions/{sid}/execute",
                    json={"code": f"Sys.sleep(0.5); {i}L * 2L", "outputParameters": []},
                )
                assert reply.status_code == 200, reply.text
                return "done", reply.json()["consoleOutput"]
            finally:
                client.delete(f"/sessions/{sid}")

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(one, range(20)))
    done = [value for kind, value in outcomes if kind == "done"]
    busy = [value for kind, value in outcomes if kind == "busy"]
    assert len(done) + len(busy) == 20
    assert 1 <= len(done) <= 7  # capacity: pool.max 8 less one shell kept for cancels
    assert all(retry == "2" for retry in busy)
    assert all(text.startswith("[1] ") for text in done)
    with web.client() as admin:
        status = admin.get("/status").json()
    assert status["computeNodes"][0]["pool"]["busy"] == 0
