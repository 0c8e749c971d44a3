"""Sessions end to end over HTTP: execute, console, history, cancel, workspace, files, plots."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.web.conftest import Web, settings_for, start_web, stop_web


@pytest.fixture
def session(web: Web):
    with web.client() as client:
        reply = client.post("/sessions", json={"name": "work"})
        assert reply.status_code == 201, reply.text
        session_id = reply.json()["id"]
        yield client, session_id
        client.delete(f"/sessions/{session_id}")


def run(client: httpx.Client, session_id: str, code: str, **body: object) -> dict:
    reply = client.post(f"/sessions/{session_id}/execute", json={"code": code, **body})
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_execute_with_input_and_output_parameters(session) -> None:
    client, sid = session
    result = run(
        client,
        sid,
        "y <- x * 2\nprint(summary(y))\nmessage('hello from R')\nwarning('careful')\nz <- 'done'",
        inputParameters=[{"name": "x", "value": [1, 2, 3]}],
        outputParameters=["y", "z", "missing"],
    )
    assert result["success"] is True and result["errorMessage"] is None
    assert "Min." in result["consoleOutput"] and "hello from R" in result["consoleOutput"]
    assert result["warnings"] == ["careful"]
    outputs = {p["name"]: p for p in result["outputParameters"]}
    assert outputs["y"] == {"name": "y", "value": [2, 4, 6], "type": "numeric"}
    assert outputs["z"]["value"] == "done" and outputs["z"]["type"] == "character"
    assert outputs["missing"]["value"] is None
    failed = run(client, sid, "stop('bad input')")
    assert failed["success"] is False and "bad input" in failed["errorMessage"]
    assert run(client, sid, "x <- ")["success"] is False  # parse error, reported not raised
    history = client.get(f"/sessions/{sid}/history").json()
    assert [h["executionId"] for h in history] == [1, 2, 3]
    assert history[0]["warnings"] == ["careful"] and history[1]["success"] is False


def test_invalid_inputs_are_400_or_422(session) -> None:
    client, sid = session
    bad = client.post(
        f"/sessions/{sid}/execute",
        json={"code": "1", "inputParameters": [{"name": "d", "value": "x", "type": "Date"}]},
    )
    assert bad.status_code == 400 and "d" in bad.json()["message"]
    assert client.post(f"/sessions/{sid}/execute", json={"code": 5}).status_code == 422
    assert client.post(f"/sessions/{sid}/execute", json={}).status_code == 422


def test_plots_come_back_as_png_files(session) -> None:
    client, sid = session
    result = run(client, sid, "plot(1:10); hist(rnorm(50))")
    assert result["plots"] == ["plot-1-001.png", "plot-1-002.png"]
    assert set(result["plots"]) <= set(result["changedFiles"])
    png = client.get(f"/sessions/{sid}/files/plot-1-001.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert png.headers["content-type"] == "image/png"
    assert run(client, sid, "1")["plots"] == []


def test_files_upload_list_download_delete(session) -> None:
    client, sid = session
    up = client.post(f"/sessions/{sid}/files", files={"file": ("data.csv", b"a,b\n1,2\n")})
    assert up.status_code == 201
    assert client.put(f"/sessions/{sid}/files/sub/raw.bin", content=b"\x00\x01").status_code == 201
    names = {f["name"]: f["size"] for f in client.get(f"/sessions/{sid}/files").json()}
    assert names == {"data.csv": 8, "sub/raw.bin": 2}
    result = run(client, sid, "d <- read.csv('data.csv'); write.csv(d * 10, 'out.csv')")
    assert result["changedFiles"] == ["out.csv"]
    assert client.get(f"/sessions/{sid}/files/sub/raw.bin").content == b"\x00\x01"
    assert client.delete(f"/sessions/{sid}/files/data.csv").status_code == 200
    assert client.get(f"/sessions/{sid}/files/data.csv").status_code == 404
    assert client.delete(f"/sessions/{sid}/files/data.csv").status_code == 404
    for name in ("../etc/passwd", "a/../../x", "sub//x"):
        assert client.get(f"/sessions/{sid}/files/{name}").status_code in (400, 404), name
    assert client.put(f"/sessions/{sid}/files/..%2Fescape", content=b"x").status_code in (400, 404)


def test_workspace_json_and_rds(session) -> None:
    client, sid = session
    run(client, sid, "df <- data.frame(a = 1:2, b = c('x', NA)); f <- factor(c('u', 'v'))")
    listing = {o["name"]: o["classes"] for o in client.get(f"/sessions/{sid}/workspace").json()}
    assert listing == {"df": ["data.frame"], "f": ["factor"]}
    obj = client.get(f"/sessions/{sid}/workspace/df").json()
    assert obj == {"name": "df", "value": {"a": [1, 2], "b": ["x", None]}, "type": "data.frame"}
    rds = client.get(f"/sessions/{sid}/workspace/df", headers={"Accept": "application/x-rds"})
    assert rds.status_code == 200 and rds.headers["content-type"] == "application/x-rds"
    assert rds.content[:2] == b"\x1f\x8b"  # saveRDS: gzip
    put = client.put(
        f"/sessions/{sid}/workspace/copy",
        content=rds.content,
        headers={"Content-Type": "application/x-rds"},
    )
    assert put.status_code == 200
    assert (
        run(client, sid, "ok <- identical(df, copy)", outputParameters=["ok"])["outputParameters"][
            0
        ]["value"]
        is True
    )
    put = client.put(f"/sessions/{sid}/workspace/when?type=Date", json=["2024-03-01", None])
    assert put.status_code == 200
    when = client.get(f"/sessions/{sid}/workspace/when").json()
    assert when == {"name": "when", "value": ["2024-03-01", None], "type": "Date"}
    assert client.delete(f"/sessions/{sid}/workspace/when").status_code == 200
    assert client.get(f"/sessions/{sid}/workspace/when").status_code == 404
    bad = client.put(
        f"/sessions/{sid}/workspace/x",
        content=b"not rds",
        headers={"Content-Type": "application/x-rds"},
    )
    assert bad.status_code == 400


def test_console_output_streams_while_running_and_cancel(session, web: Web) -> None:
    client, sid = session
    outcome: dict[str, object] = {}

    def long_run() -> None:
        outcome["result"] = run(
            client, sid, "cat(strrep('x', 20000), '\\n'); Sys.sleep(30); cat('never')"
        )

    thread = threading.Thread(target=long_run)
    thread.start()
    time.sleep(1.0)
    assert client.post(f"/sessions/{sid}/execute", json={"code": "1"}).status_code == 409
    streamed = b""
    with client.stream("GET", f"/sessions/{sid}/console-output") as stream:
        for chunk in stream.iter_bytes():
            streamed += chunk
            if len(streamed) >= 8192 and "cancelled" not in outcome:
                outcome["cancelled"] = client.post(f"/sessions/{sid}/cancel").status_code
    thread.join(20)
    assert outcome["cancelled"] == 200
    result = outcome["result"]
    assert result["success"] is False and result["errorMessage"] == "execution cancelled"
    assert streamed.startswith(b"x" * 8192) and b"never" not in streamed
    assert run(client, sid, "2 + 2")["consoleOutput"] == "[1] 4\n"
    assert client.post(f"/sessions/{sid}/cancel").status_code == 409  # nothing running
    assert client.get(f"/sessions/{sid}/console-output").text == "[1] 4\n"


def test_sessions_are_private_except_to_owners(web: Web) -> None:
    with web.user("alice", "Contributor") as alice, web.user("bob", "Contributor") as bob:
        sid = alice.post("/sessions", json={"name": "alice's"}).json()["id"]
        try:
            assert [s["id"] for s in alice.get("/sessions").json()] == [sid]
            assert bob.get("/sessions").json() == []
            assert bob.get(f"/sessions/{sid}").status_code == 404
            assert bob.post(f"/sessions/{sid}/execute", json={"code": "1"}).status_code == 404
            with web.client() as admin:
                assert sid in [s["id"] for s in admin.get("/sessions").json()]
                assert run(admin, sid, "40 + 2")["consoleOutput"] == "[1] 42\n"
        finally:
            assert alice.delete(f"/sessions/{sid}").status_code == 200
        assert alice.get(f"/sessions/{sid}").status_code == 404


def test_a_session_whose_shell_is_gone_is_410(session) -> None:
    client, sid = session
    reply = client.post(f"/sessions/{sid}/execute", json={"code": "quit(save = 'no')"})
    assert reply.status_code == 410
    assert client.post(f"/sessions/{sid}/execute", json={"code": "1"}).status_code == 410
    assert client.get(f"/sessions/{sid}").json()["state"] == "gone"
    assert client.get(f"/sessions/{sid}/workspace").status_code == 410


def test_idle_sessions_time_out(compute_node, tmp_path) -> None:
    web = start_web(
        settings_for(compute_node, f"sqlite:///{tmp_path / 'idle.db'}", session_idle_timeout=0.4)
    )
    try:
        with web.client() as client:
            sid = client.post("/sessions", json={}).json()["id"]
            deadline = time.monotonic() + 10
            while (
                client.get(f"/sessions/{sid}").json()["state"] == "active"
                and time.monotonic() < deadline
            ):
                time.sleep(0.1)
            assert client.get(f"/sessions/{sid}").json()["state"] == "closed"
            assert client.post(f"/sessions/{sid}/execute", json={"code": "1"}).status_code == 410
    finally:
        stop_web(web)


def test_an_execution_past_its_timeout_is_interrupted_and_the_session_kept(
    compute_node, tmp_path
) -> None:
    web = start_web(
        settings_for(compute_node, f"sqlite:///{tmp_path / 'web.db'}", execution_timeout=1.0)
    )
    try:
        with web.client() as client:
            session = client.post("/sessions", json={}).json()["id"]
            assert client.post(f"/sessions/{session}/execute", json={"code": "kept <- 42"}).json()[
                "success"
            ]
            started = time.monotonic()
            reply = client.post(f"/sessions/{session}/execute", json={"code": "Sys.sleep(30)"})
            assert reply.status_code == 504, reply.text
            assert "interrupted" in reply.json()["message"]
            assert time.monotonic() - started < 10
            after = client.post(
                f"/sessions/{session}/execute",
                json={"code": "k <- kept", "outputParameters": ["k"]},
            ).json()
            assert after["success"] and after["outputParameters"][0]["value"] == 42
            history = client.get(f"/sessions/{session}/history").json()
            assert [h["success"] for h in history] == [True, False, True]
            client.delete(f"/sessions/{session}")
    finally:
        stop_web(web)
