"""``rexec capacity`` against a real web node and compute node (typer's CliRunner), with
the test service it publishes itself, small levels, both strategies."""

from __future__ import annotations

import csv
import json
import re
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rexec.cli import capacity as capacity_module
from rexec.cli.main import app
from tests.web.conftest import ADMIN_PASSWORD

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STAGES = ("web", "checkout", "hop", "r", "inputs", "outputs")


@pytest.fixture
def run(services_web):
    """``rexec capacity ARGS`` with the web node's URL and the admin's password in the
    environment; returns click's Result."""
    runner = CliRunner()
    env = {
        "REXEC_URL": services_web.url,
        "REXEC_USER": "admin",
        "REXEC_PASSWORD": ADMIN_PASSWORD,
        "COLUMNS": "250",
    }

    def invoke(*args: str):
        return runner.invoke(app, ["capacity", *args], env=env)

    return invoke


def ok(result) -> str:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result.stdout


def table_rows(stdout: str) -> list[list[str]]:
    """The printed table's data rows (cells), from rich's box drawing."""
    rows = []
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("│┃|").split("│")]
        if len(cells) > 5 and cells[0].isdigit():
            rows.append(cells)
    return rows


def results(out: Path) -> dict:
    report = json.loads((out / "results.json").read_text())
    with (out / "results.csv").open(newline="") as f:
        assert len(list(csv.DictReader(f))) == len(report["levels"])
    assert (out / "capacity.png").read_bytes()[:8] == PNG_SIGNATURE
    return report


def check_level(level: dict, sleep_ms: float = 0.0) -> None:
    """Every call answered; the stages are not negative and add up to the mean; the
    web → compute hop is a stage of its own, R's time is R's (close to its Sys.sleep)."""
    assert level["requests"] > 0 and level["errors"] == 0, level
    stages, latency = level["stages_ms"], level["latency_ms"]
    assert set(stages) == set(STAGES)
    assert all(stages[k] >= 0 for k in STAGES), stages
    assert stages["hop"] > 0, stages  # the wire and QAP both ways take some time
    assert stages["r"] >= sleep_ms, stages  # Sys.sleep runs in R
    if sleep_ms:  # and the hop is not in it: R's time is the sleep and a little
        assert stages["r"] < sleep_ms + 40, stages
    server = sum(stages[k] for k in ("checkout", "hop", "r", "inputs", "outputs"))
    assert server <= latency["mean"] + 1e-9
    assert sum(stages.values()) <= latency["mean"] * (1 + 1e-9)
    assert sum(stages.values()) == pytest.approx(latency["mean"])
    assert latency["min"] <= latency["p50"] <= latency["p95"] <= latency["max"]
    assert level["throughput_rps"] > 0


def no_test_services(services_web) -> None:
    with services_web.client() as admin:
        names = [s["name"] for s in admin.get("/services").json()]
    assert not [n for n in names if n.startswith("capacity-test-")], names


def test_latency_strategy_stops_at_the_first_level_over_the_limit(
    run, services_web, tmp_path: Path
) -> None:
    out = tmp_path / "tiny"
    stdout = ok(
        run(
            "--latency-ms", "0.001", "--max-threads", "3", "--requests", "4",
            "--pool-max", "1", "--out", str(out),
        )
    )  # fmt: skip
    report = results(out)
    assert [level["concurrency"] for level in report["levels"]] == [1]
    (level,) = report["levels"]
    check_level(level)
    assert level["over_limit"] is True and level["requests"] == 4
    assert report["capacity"] is None
    assert "capacity: none" in stdout
    rows = table_rows(stdout)
    assert [r[0] for r in rows] == ["1"] and rows[0][-1] == "no"
    assert report["service"]["generated"] is True
    no_test_services(services_web)


def test_latency_strategy_runs_every_level_within_the_limit(
    run, services_web, tmp_path: Path
) -> None:
    out = tmp_path / "huge"
    result = run(
        "--latency-ms", "1e9", "--max-threads", "3", "--duration", "0.4",
        "--sleep", "0.02", "--out", str(out),
    )  # fmt: skip
    stdout = ok(result)
    report = results(out)
    assert [level["concurrency"] for level in report["levels"]] == [1, 2, 3]
    for level in report["levels"]:
        check_level(level, sleep_ms=20)
        assert level["over_limit"] is False
        assert level["elapsed_s"] >= 0.4
    assert report["capacity"] == 3
    assert "capacity: 3 concurrent requests" in stdout
    assert [r[0] for r in table_rows(stdout)] == ["1", "2", "3"]
    assert report["options"]["strategy"] == "latency"
    no_test_services(services_web)


def test_thread_strategy_runs_every_level_and_calls_run_concurrently(
    run, services_web, tmp_path: Path
) -> None:
    """Over the limit from the first level, the thread strategy still runs them all;
    with 0.15 s of R per call, 3 threads answer close to 3 times as many calls per second
    as 1 (they are in flight at once)."""
    out = tmp_path / "thread"
    stdout = ok(
        run(
            "--strategy", "thread", "--latency-ms", "0.001", "--start", "1",
            "--increment", "2", "--max-threads", "3", "--requests", "6",
            "--sleep", "0.15", "--out", str(out),
        )
    )  # fmt: skip
    report = results(out)
    one, three = report["levels"]
    assert (one["concurrency"], three["concurrency"]) == (1, 3)
    for level in (one, three):
        check_level(level, sleep_ms=150)
        assert level["over_limit"] is True and level["requests"] == 6
    assert three["throughput_rps"] > 1.8 * one["throughput_rps"], (one, three)
    assert one["elapsed_s"] >= 6 * 0.15
    assert report["capacity"] is None
    assert [r[0] for r in table_rows(stdout)] == ["1", "3"]


def test_a_named_service_with_inputs(run, services_web, tmp_path: Path) -> None:
    name = f"cap-{uuid.uuid4().hex[:8]}"
    with services_web.client() as admin:
        body = {
            "code": "Sys.sleep(0.03); z <- x * y",
            "inputParameterDefinitions": [
                {"name": "x", "type": "numeric"},
                {"name": "y", "type": "numeric"},
            ],
            "outputParameterDefinitions": [{"name": "z", "type": "numeric"}],
        }
        assert admin.post(f"/services/{name}/1", json=body).status_code == 201
        try:
            out = tmp_path / "named"
            stdout = ok(
                run(
                    name, "1", "--input", "x=2", "--json", '{"y": 3}', "--max-threads", "2",
                    "--requests", "3", "--latency-ms", "1e9", "--out", str(out),
                    "--percentile", "90",
                )
            )  # fmt: skip
            report = json.loads((out / "results.json").read_text())
            assert report["service"] == {"name": name, "version": "1", "generated": False}
            assert [level["concurrency"] for level in report["levels"]] == [1, 2]
            for level in report["levels"]:
                assert level["errors"] == 0 and level["stages_ms"]["r"] >= 30
                assert level["percentile_ms"] == level["latency_ms"]["p90"]
            assert "p90 ms" in stdout
            # a service the tool did not publish is left in place
            assert admin.get(f"/services/{name}/1").status_code == 200
            wrong = run(name, "1", "--input", "x=2", "--requests", "1")  # y is missing
            assert wrong.exit_code == 1
            assert "failed: 400" in wrong.stderr and "y" in wrong.stderr
        finally:
            admin.delete(f"/services/{name}/1")


def test_without_matplotlib_no_chart_but_the_results(
    run, services_web, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    out = tmp_path / "nochart"
    result = run("--requests", "2", "--max-threads", "1", "--pool-max", "1", "--out", str(out))
    ok(result)
    assert "matplotlib is not installed" in result.stderr
    assert not (out / "capacity.png").exists()
    assert len(json.loads((out / "results.json").read_text())["levels"]) == 1


def test_bad_options(run) -> None:
    for args in (
        ["--strategy", "fastest"],
        ["--start", "4", "--max-threads", "2"],
        ["--percentile", "100"],
        ["some-service", "1", "--sleep", "1"],
    ):
        result = run(*args)
        assert result.exit_code == 2, (args, result.stdout, result.stderr)


def test_r_is_r_s_own_time_and_the_hop_the_rest_of_the_round_trip(services_web) -> None:
    """A service that sleeps 0.25 s in R and times itself: ``r`` covers that time (the
    R code's own interval lies inside the one R measured for the header), and ``hop``
    (the round trip less R) is what remains, never negative and not zero. No upper
    bound on either: on a loaded machine Sys.sleep itself oversleeps."""
    name = f"cap-{uuid.uuid4().hex[:8]}"
    code = (
        "started <- Sys.time(); Sys.sleep(0.25)\n"
        "z <- as.numeric(difftime(Sys.time(), started, units = 'secs')) * 1000"
    )
    with services_web.client() as admin:
        body = {"code": code, "outputParameterDefinitions": [{"name": "z", "type": "numeric"}]}
        assert admin.post(f"/services/{name}/1", json=body).status_code == 201
        try:
            for _ in range(3):
                reply = admin.post(f"/api/{name}/1", json={})
                assert reply.status_code == 200 and reply.json()["success"], reply.text
                stages = capacity_module.parse_server_timing(reply.headers["server-timing"])
                inside = reply.json()["outputParameters"]["z"]  # ms, as R measured it
                assert 250 <= inside <= stages["r"] + 0.001, (inside, stages)
                assert stages["hop"] > 0, stages
        finally:
            admin.delete(f"/services/{name}/1")


def test_server_timing_parsing_and_quantiles() -> None:
    parse = capacity_module.parse_server_timing
    assert parse('inputs;dur=0.125, checkout;dur=1, r;desc="R";dur=20.5,outputs;dur=0') == {
        "inputs": 0.125,
        "checkout": 1.0,
        "r": 20.5,
        "outputs": 0.0,
    }
    assert parse(None) == {} and parse("cache, db;dur=x") == {}
    quantile = capacity_module.quantile
    assert quantile([], 0.5) is None
    assert quantile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.95) == pytest.approx(3.85)
    assert quantile([5.0], 0.99) == 5.0


def test_the_web_node_answers_server_timing(services_web) -> None:
    """The header the tool splits latency with (the fixture of this module's other
    tests would see every stage as 'web' without it)."""
    name = f"cap-{uuid.uuid4().hex[:8]}"
    with services_web.client() as admin:
        body = {"code": "z <- 1", "outputParameterDefinitions": [{"name": "z", "type": "numeric"}]}
        assert admin.post(f"/services/{name}/1", json=body).status_code == 201
        try:
            reply = admin.post(f"/api/{name}/1", json={})
            assert reply.status_code == 200
            stages = capacity_module.parse_server_timing(reply.headers["server-timing"])
            assert set(stages) == {"inputs", "checkout", "hop", "r", "outputs"}
            assert all(v >= 0 for v in stages.values())
            assert re.fullmatch(
                r"[a-z]+;dur=[0-9.]+(, [a-z]+;dur=[0-9.]+)*", reply.headers["server-timing"]
            )
        finally:
            admin.delete(f"/services/{name}/1")
