"""Smoke tests for the benchmark harness: it runs end to end in a tiny mode.

No timing assertions: only that every row is produced and the outputs are written.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from bench import report, workloads
from bench.__main__ import run

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


def test_tiny_run_writes_every_row(tmp_path: Path) -> None:
    document = run(workloads.TINY, 1, tmp_path, log=lambda _: None)
    metrics = {r["metric"] for r in document["results"]}
    assert metrics == {row.metric for row in report.ROWS}
    for result in document["results"]:
        assert not math.isnan(result["rexec"]) and not math.isnan(result["rserve"])
    assert document["machine"]["nproc"] >= 1
    saved = json.loads((tmp_path / "latest.json").read_text())
    assert len(saved["results"]) == len(report.ROWS)
    assert (tmp_path / "latest.png").stat().st_size > 0
    assert "| workload |" in (tmp_path / "latest.md").read_text()
