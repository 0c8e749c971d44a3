"""The R client package (clients/r/rexecclient): R CMD check, and its tests against a live
web node and compute node."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.web.conftest import ADMIN_PASSWORD

PACKAGE = Path(__file__).resolve().parents[2] / "clients" / "r" / "rexecclient"
R = shutil.which("R")
RSCRIPT = shutil.which("Rscript")
LIVE_VARIABLES = ("REXEC_URL", "REXEC_USER", "REXEC_PASSWORD")

pytestmark = [
    pytest.mark.skipif(R is None or RSCRIPT is None, reason="R is not installed"),
    pytest.mark.slow,
]


def r_environment(**extra: str) -> dict[str, str]:
    """This process's environment without the live-test variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in LIVE_VARIABLES}
    env.update(_R_CHECK_CRAN_INCOMING_="false", LANG="C.UTF-8", **extra)
    return env


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 600):
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.timeout(900)
def test_r_cmd_check(tmp_path: Path) -> None:
    """R CMD build and R CMD check: no ERROR, no WARNING (the live tests skip)."""
    env = r_environment()
    built = run(
        [R, "CMD", "build", "--no-build-vignettes", "--no-manual", str(PACKAGE)], tmp_path, env
    )
    assert built.returncode == 0, built.stdout + built.stderr
    tarball = next(tmp_path.glob("rexecclient_*.tar.gz"))
    checked = run(
        [R, "CMD", "check", "--no-manual", "--no-build-vignettes", tarball.name], tmp_path, env
    )
    output = checked.stdout + checked.stderr
    log = tmp_path / "rexecclient.Rcheck" / "00check.log"
    details = output + (log.read_text(errors="replace") if log.exists() else "")
    status = re.search(r"^Status: (.*)$", output, re.MULTILINE)
    assert checked.returncode == 0 and status is not None, details
    assert "ERROR" not in status.group(1), details
    assert "WARNING" not in status.group(1), details
    tests_log = tmp_path / "rexecclient.Rcheck" / "tests" / "testthat.Rout"
    assert tests_log.exists(), details
    assert "FAIL 0" in tests_log.read_text(errors="replace")


RUN_TESTS = """
result <- testthat::test_dir(commandArgs(TRUE)[1], package = "rexecclient",
                             load_package = "installed", reporter = "summary",
                             stop_on_failure = TRUE)
counts <- as.data.frame(result)
cat(sprintf("\\nrexecclient tests: %d run, %d failed, %d skipped, %d errors\\n",
            nrow(counts), sum(counts$failed), sum(counts$skipped), sum(counts$error)))
"""


@pytest.mark.timeout(900)
def test_r_package_against_live_web_node(services_web, tmp_path: Path) -> None:
    """The testthat suite, live: publish, consume, batch, errors, delete; none skipped."""
    library = tmp_path / "library"
    library.mkdir()
    installed = run(
        [R, "CMD", "INSTALL", "-l", str(library), str(PACKAGE)], tmp_path, r_environment()
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    env = r_environment(
        R_LIBS=str(library),
        REXEC_URL=services_web.url,
        REXEC_USER="admin",
        REXEC_PASSWORD=ADMIN_PASSWORD,
    )
    script = tmp_path / "run-tests.R"
    script.write_text(RUN_TESTS)
    tested = run([RSCRIPT, str(script), str(PACKAGE / "tests" / "testthat")], tmp_path, env)
    output = tested.stdout + tested.stderr
    assert tested.returncode == 0, output
    counts = re.search(
        r"rexecclient tests: (\d+) run, (\d+) failed, (\d+) skipped, (\d+) errors", output
    )
    assert counts is not None, output
    run_, failed, skipped, errors = map(int, counts.groups())
    assert run_ >= 15 and failed == 0 and skipped == 0 and errors == 0, output
