"""Logins, tokens, roles and users, on SQLite and PostgreSQL."""

from __future__ import annotations

import time

import httpx

from tests.web.conftest import ADMIN_PASSWORD, Web


def test_login_returns_token_pair(web_db: Web) -> None:
    reply = httpx.post(
        f"{web_db.url}/login", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert reply.status_code == 200
    body = reply.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert abs(body["expires_on"] - (time.time() + 3600)) < 60
    assert body["access_token"] and body["refresh_token"]


def test_login_failures_are_401_and_slowed_down(web_db: Web) -> None:
    took = []
    for _ in range(4):
        started = time.monotonic()
        reply = httpx.post(
            f"{web_db.url}/login", json={"username": "admin", "password": "wrong"}, timeout=30
        )
        took.append(time.monotonic() - started)
        assert reply.status_code == 401 and "message" in reply.json()
    assert took[3] > took[0] and took[3] >= 0.8  # 0.1, 0.2, 0.4, 0.8 s
    unknown = httpx.post(f"{web_db.url}/login", json={"username": "nobody", "password": "x"})
    assert unknown.status_code == 401
    assert httpx.post(f"{web_db.url}/login", json={"username": "admin"}).status_code == 422
    malformed = httpx.post(
        f"{web_db.url}/login", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400 and malformed.json()["message"] == "malformed JSON"
    web_db.token()  # a success resets the delay


def test_refresh_rotates_and_revocation_sticks(web_db: Web) -> None:
    tokens = httpx.post(
        f"{web_db.url}/login", json={"username": "admin", "password": ADMIN_PASSWORD}
    ).json()
    refreshed = httpx.post(
        f"{web_db.url}/login/refreshToken", json={"refreshToken": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200
    new = refreshed.json()
    again = httpx.post(
        f"{web_db.url}/login/refreshToken", json={"refreshToken": tokens["refresh_token"]}
    )
    assert again.status_code == 401  # rotated: the old one is spent
    revoked = httpx.delete(
        f"{web_db.url}/login/refreshToken", params={"refreshToken": new["refresh_token"]}
    )
    assert revoked.status_code == 200
    after = httpx.post(
        f"{web_db.url}/login/refreshToken", json={"refreshToken": new["refresh_token"]}
    )
    assert after.status_code == 401
    status = httpx.get(
        f"{web_db.url}/status", headers={"Authorization": f"Bearer {new['access_token']}"}
    )
    assert status.status_code == 200


def test_401_without_token_and_403_for_roles(web_db: Web) -> None:
    assert httpx.get(f"{web_db.url}/sessions").status_code == 401
    bad = httpx.get(f"{web_db.url}/sessions", headers={"Authorization": "Bearer nonsense"})
    assert bad.status_code == 401 and bad.json()["message"]
    with web_db.user("rita", "Reader") as reader, web_db.user("carl", "Contributor") as contrib:
        assert reader.get("/sessions").status_code == 200
        assert reader.post("/sessions", json={}).status_code == 403
        assert reader.get("/status").status_code == 200
        assert contrib.get("/users").status_code == 403
        assert (
            contrib.post(
                "/users", json={"username": "x", "password": "password-1", "role": "Owner"}
            ).status_code
            == 403
        )
    with web_db.client() as admin:
        users = {u["username"]: u["role"] for u in admin.get("/users").json()}
        assert users["rita"] == "Reader" and users["admin"] == "Owner"
        assert admin.delete("/users/admin").status_code == 409


def test_status_reports_database_and_pools(web_db: Web) -> None:
    with web_db.client() as admin:
        body = admin.get("/status").json()
    assert body["database"] == {"type": web_db.node.db.kind, "state": "pass"}
    (node,) = body["computeNodes"]
    assert node["pool"]["size"] == 7 and node["pool"]["max"] == 8
    assert node["pool"]["busy"] + node["pool"]["free"] == 7


def test_failed_logins_are_counted_across_web_nodes(compute_node, postgres_url) -> None:
    """Guesses spread over two web nodes on one database meet one growing delay."""
    from tests.web.conftest import settings_for, start_web, stop_web

    nodes = [start_web(settings_for(compute_node, postgres_url)) for _ in range(2)]
    try:
        wrong = {"username": "admin", "password": "wrong"}
        for i in range(3):
            assert httpx.post(f"{nodes[i % 2].url}/login", json=wrong).status_code == 401
        started = time.monotonic()
        assert httpx.post(f"{nodes[1].url}/login", json=wrong, timeout=30).status_code == 401
        assert time.monotonic() - started >= 0.75  # the 4th failure: 0.1 * 2 ** 3 s
        from sqlalchemy import select

        from rexec.web.db import LoginFailure

        def failures() -> int | None:
            with nodes[1].node.db.session() as db:
                return db.scalar(select(LoginFailure.count).where(LoginFailure.username == "admin"))

        assert failures() == 4  # counted in the database both web nodes share
        nodes[0].token()  # a success anywhere resets it everywhere
        assert failures() is None
    finally:
        for node in nodes:
            stop_web(node)
