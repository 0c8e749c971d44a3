"""Capacity: 20 concurrent session executions against a compute node with pool.max 8."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.web.conftest import Web


def test_twenty_concurrent_executions_complete_or_get_503(web: Web) -> None:
    headers = {"Authorization": f"Bearer {web.token()}"}
    (node,) = web.node.settings.compute_nodes
    retry_after = str(web.node.settings.retry_after)

    def request(method: str, path: str, **kwargs: object) -> httpx.Response:
        with httpx.Client(base_url=web.url, headers=headers, timeout=60) as client:
            return client.request(method, path, **kwargs)  # type: ignore[arg-type]

    # All 20 sessions are asked for at once and none is closed before every answer is in,
    # so the node's capacity is what decides: pool.max less the one shell kept for cancels.
    with ThreadPoolExecutor(20) as pool:
        created = list(
            pool.map(lambda i: request("POST", "/sessions", json={"name": f"load-{i}"}), range(20))
        )
    sessions = {}
    try:
        for i, reply in enumerate(created):
            if reply.status_code == 201:
                sessions[i] = reply.json()["id"]
            else:
                assert reply.status_code == 503, f"{reply.status_code}: {reply.text}"
                assert reply.headers.get("retry-after") == retry_after, reply.headers
        statuses = [reply.status_code for reply in created]
        assert len(sessions) >= node.pool_max - 1, statuses
        assert len(sessions) <= node.pool_max - 1, statuses  # one shell is kept for cancels

        def execute(item: tuple[int, str]) -> httpx.Response:
            i, sid = item
            body = {"code": f"Sys.sleep(0.5); {i}L * 2L", "outputParameters": []}
            return request("POST", f"/sessions/{sid}/execute", json=body)

        with ThreadPoolExecutor(len(sessions)) as pool:
            executed = dict(zip(sessions, pool.map(execute, sessions.items()), strict=True))
        for i, reply in executed.items():
            assert reply.status_code == 200, reply.text
            assert reply.json()["consoleOutput"] == f"[1] {2 * i}\n"
    finally:
        for sid in sessions.values():
            request("DELETE", f"/sessions/{sid}")
    with web.client() as admin:
        status = admin.get("/status").json()
    assert status["computeNodes"][0]["pool"]["busy"] == 0


def test_parked_sessions_count_on_a_node_without_a_login(web: Web) -> None:
    """A node the web node cannot ask for its pools (no login): sessions made one after
    the other still stop at pool.max less the reserve, counted from the database's
    records (a parked session holds no web node's connection; the node's eighth shell
    went to an eighth session before)."""
    (node,) = web.node.settings.compute_nodes
    assert node.user is None
    made = []
    with web.client() as client:
        try:
            for i in range(node.pool_max):
                reply = client.post("/sessions", json={"name": f"one-by-one-{i}"})
                if reply.status_code != 201:
                    break
                made.append(reply.json()["id"])
            assert len(made) == node.capacity, reply.text
            assert reply.status_code == 503 and reply.headers.get("retry-after"), reply.text
        finally:
            for sid in made:
                client.delete(f"/sessions/{sid}")
        again = client.post("/sessions", json={})  # room again
        assert again.status_code == 201, again.text
        client.delete(f"/sessions/{again.json()['id']}")
