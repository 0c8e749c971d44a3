"""Smoke test for ``python -m bench.services``: a quick run ends and prints every row.

No timing assertions: only that it exits 0 and every row has a ratio.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import services

ROOT = Path(__file__).resolve().parents[2]


def _plumber_installed() -> bool:
    if shutil.which("Rscript") is None:
        return False
    found = subprocess.run(["Rscript", "-e", "library(plumber)"], capture_output=True, timeout=60)
    return found.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _plumber_installed(), reason="needs R and plumber")
def test_quick_run_prints_a_ratio_for_every_row() -> None:
    env = {**os.environ, "COLUMNS": "200", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    env.pop("REXEC_ADMIN_PASSWORD", None)
    ran = subprocess.run(
        [sys.executable, "-m", "bench.services", "--quick", "--runs", "1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=150,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    lines = ran.stdout.splitlines()
    for label in services.labels(services.QUICK):
        found = [line for line in lines if label in line]
        assert found, f"no line for {label!r}:\n{ran.stdout}"
        assert re.search(r"\d\.\d\dx", found[0]), f"no ratio for {label!r}: {found[0]}"
