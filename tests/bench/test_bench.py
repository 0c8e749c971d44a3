"""Smoke tests for the benchmark harness: it runs end to end in a tiny mode.

No timing assertions: only that every row is produced and the outputs are written.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from pathlib import Path

import pytest

from bench import blas, report, workloads
from bench.__main__ import run, settings_note

#: The rows of issue 10: connect per request through pyRserve and RSclient, strings made
#: in the request (fetched and evaluated only) and bench.blas's measurement.
CONNECT_ROWS = {
    "pyrserve_connect",
    "pyrserve_connect_failures",
    "rsclient_connect",
    "rsclient_connect_failures",
}
STRING_ROWS = {"strings_paste0", "strings_paste0_eval", "strings_sprintf", "strings_sprintf_eval"}
BLAS_ROWS = {"blas_1", "blas_all", "blas_many", "blas_many_all"}

pytestmark = pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R and Rserve")


def test_verdicts_follow_the_direction_of_each_goal() -> None:
    samples = {
        "rexec": {"eval_latency": [1.0, 1.0], "fetch_doubles": [90.0], "concurrent_failures": [0]},
        "Rserve": {
            "eval_latency": [2.0, 2.0],
            "fetch_doubles": [100.0],
            "concurrent_failures": [3],
        },
    }
    rows = {r["metric"] + r["stat"]: r for r in report.evaluate(samples, {"concurrent": 50})}
    assert rows["eval_latencyp50"]["ok"] is True  # 0.5x, goal <= 1.2x
    assert rows["fetch_doublesmedian"]["ok"] is True  # 0.9x, goal >= 0.9x
    assert rows["concurrent_failuressum"]["ok"] is True  # rexec had none
    assert rows["concurrent_failuressum"]["row"].startswith("50 concurrent")
    assert "throughput_2" not in {r["metric"] for r in rows.values()}  # no samples, no row


def test_rows_take_their_peer_from_its_own_samples() -> None:
    samples = {
        "rexec": {"blas_1": [0.1], "blas_many": [2.0], "strings_paste0": [0.05]},
        "Rserve": {"blas_1": [9.0], "strings_paste0": [0.04]},
        "Rscript": {"blas_1": [0.2]},
        "shell.threads = 1": {"blas_many": [4.0]},
    }
    rows = {r["metric"]: r for r in report.evaluate(samples, {"blas_n": 2000, "strings": 10**6})}
    assert rows["blas_1"]["peer"] == "Rscript" and rows["blas_1"]["ratio"] == pytest.approx(0.5)
    assert rows["blas_1"]["row"].startswith("crossprod 2,000x2,000")
    assert rows["blas_many"]["peer"] == "shell.threads = 1"
    assert rows["blas_many"]["ratio"] == pytest.approx(0.5)
    assert rows["strings_paste0"]["peer"] == "Rserve"
    assert rows["strings_paste0"]["row"].endswith("n = 1e6")
    assert "blas_all" not in rows  # no samples, no row


def test_pyrserve_connect_sleeps_only_outside_the_patch() -> None:
    from pyRserve import rconn

    real_sleep = time.sleep
    with workloads.pyrserve_without_connect_sleep():
        assert rconn.time is not time
        assert rconn.time.sleep(0.2) is None  # returns at once
        assert rconn.time.perf_counter is time.perf_counter  # the rest is the real module
        assert time.sleep is real_sleep  # the process's own time.sleep untouched
    assert rconn.time is time


def test_blas_rows_only_in_full_runs() -> None:
    assert workloads.QUICK.blas_n == 0  # --quick skips them
    assert (workloads.FULL.blas_n, workloads.FULL.blas_runs) == (blas.SIZE, blas.RUNS)


def test_tiny_run_writes_every_row(tmp_path: Path) -> None:
    document = run(workloads.TINY, 1, tmp_path, log=lambda _: None)
    metrics = {r["metric"] for r in document["results"]}
    assert metrics == {row.metric for row in report.ROWS}
    assert metrics >= CONNECT_ROWS | STRING_ROWS | BLAS_ROWS
    for result in document["results"]:
        assert not math.isnan(result["rexec"]) and not math.isnan(result["rserve"])
    results = {(r["metric"], r["stat"]): r for r in document["results"]}
    for client in ("pyrserve", "rsclient"):
        samples = results[(f"{client}_connect", "p50")]["samples"]
        n = workloads.TINY.client_connects
        assert samples == {"rexec": n, "Rserve": n}
        assert results[(f"{client}_connect_failures", "sum")]["ok"] is True
    assert {results[(m, "median")]["peer"] for m in BLAS_ROWS} == {"Rscript", "shell.threads = 1"}
    seen = document["blas"]["threads seen"]
    assert seen["rexec 1"] == seen["Rscript 1"] == seen["many 1"] == ["1"]
    assert document["rexec_settings"]["BLAS"] == {"pool.initial": 8, "pool.max": 8}
    assert "The BLAS rows' three instances had" in settings_note(document)
    assert document["machine"]["nproc"] >= 1
    saved = json.loads((tmp_path / "latest.json").read_text())
    assert len(saved["results"]) == len(report.ROWS)
    assert (tmp_path / "latest.png").stat().st_size > 0
    assert "| workload |" in (tmp_path / "latest.md").read_text()


def test_run_without_blas_size_has_no_blas_rows(tmp_path: Path) -> None:
    sizes = dataclasses.replace(workloads.TINY, blas_n=0)  # as --quick
    document = run(sizes, 1, tmp_path, rsclient=False, log=lambda _: None)
    metrics = {r["metric"] for r in document["results"]}
    assert not metrics & BLAS_ROWS
    assert metrics >= STRING_ROWS | {"pyrserve_connect"}
    assert document["blas"] is None and "BLAS" not in document["rexec_settings"]


def test_spread_gives_the_median_ratio_and_its_range() -> None:
    from bench.spread import combine

    def run(ratio: float, ok: bool) -> dict:
        row = {"row": "eval", "unit": "ms", "rexec": ratio, "rserve": 1.0, "ratio": ratio}
        return {"results": [{**row, "goal": "≤ 1x", "ok": ok}]}

    table = combine([run(0.8, True), run(1.2, False), run(0.9, True)])
    assert "| eval | ms | 0.900 | 1.00 | 0.90x | 0.80 to 1.20x | ≤ 1x | ✗ |" in table
    assert "✓ |" in combine([run(0.8, True), run(0.9, True)])
