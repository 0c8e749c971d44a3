"""Snapshots round trip (SQLite and PostgreSQL), privacy, and load into a live session."""

from __future__ import annotations

import io
import tarfile

from tests.web.conftest import Web


def execute(client, sid: str, code: str, outputs: list[str] | None = None) -> dict:
    reply = client.post(
        f"/sessions/{sid}/execute", json={"code": code, "outputParameters": outputs or []}
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_snapshot_round_trip(web_db: Web) -> None:
    with web_db.user("sam", "Contributor") as sam, web_db.user("tia", "Contributor") as tia:
        sid = sam.post("/sessions", json={"name": "source"}).json()["id"]
        execute(sam, sid, "model <- lm(dist ~ speed, cars); note <- 'kept'")
        assert sam.put(f"/sessions/{sid}/files/input.txt", content=b"file body").status_code == 201
        created = sam.post(f"/sessions/{sid}/snapshot", json={"name": "cars model"})
        assert created.status_code == 201
        snap = created.json()["id"]
        info = sam.get(f"/snapshots/{snap}").json()
        assert info["name"] == "cars model" and info["size"] > 0 and info["sessionId"] == sid
        assert [s["id"] for s in sam.get("/snapshots").json()] == [snap]
        assert (
            tia.get("/snapshots").json() == [] and tia.get(f"/snapshots/{snap}").status_code == 404
        )
        assert tia.post("/sessions", json={"snapshotId": snap}).status_code == 404

        content = sam.get(f"/snapshots/{snap}/content")
        assert content.headers["content-type"] == "application/gzip"
        with tarfile.open(fileobj=io.BytesIO(content.content)) as tar:
            names = set(tar.getnames())
        assert {"workspace.rds", "files/input.txt"} <= names

        restored = sam.post("/sessions", json={"name": "copy", "snapshotId": snap})
        assert restored.status_code == 201
        rid = restored.json()["id"]
        result = execute(
            sam, rid, "k <- round(coef(model), 3); t <- readLines('input.txt')", ["k", "note", "t"]
        )
        values = {p["name"]: p["value"] for p in result["outputParameters"]}
        assert values == {
            "k": {"(Intercept)": -17.579, "speed": 3.932},
            "note": "kept",
            "t": "file body",
        }

        execute(sam, sid, "rm(list = ls()); note <- 'changed'")
        assert sam.post(f"/sessions/{sid}/loadsnapshot/{snap}").status_code == 200
        assert execute(sam, sid, "x <- c(note, class(model))", ["x"])["outputParameters"][0][
            "value"
        ] == ["kept", "lm"]
        assert sam.post(f"/sessions/{sid}/loadsnapshot/nope").status_code == 404

        with web_db.client() as admin:
            assert snap in [s["id"] for s in admin.get("/snapshots").json()]
        assert tia.delete(f"/snapshots/{snap}").status_code == 404
        assert sam.delete(f"/snapshots/{snap}").status_code == 200
        assert sam.get(f"/snapshots/{snap}").status_code == 404
        for session_id in (sid, rid):
            assert sam.delete(f"/sessions/{session_id}").status_code == 200
