"""The Java client (REngine/Rserve jars shipped by r-cran-rserve) against Rserve and rexec."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.compat.cases import ERRORS, EXPRESSIONS, SETUP
from tests.conftest import Server, compile_java

JAVA_SOURCE = Path(__file__).parent / "java" / "Compat.java"

CODES = EXPRESSIONS + ERRORS


@pytest.fixture(scope="module")
def results(rserve: Server, rexec_server: Server, tmp_path_factory) -> list[str]:
    directory = tmp_path_factory.mktemp("java")
    classpath = compile_java(JAVA_SOURCE, directory)
    cases = directory / "cases.hex"
    cases.write_text("\n".join(code.encode().hex() for code in CODES) + "\n")
    run = subprocess.run(
        [
            "java",
            "-cp",
            classpath,
            "Compat",
            str(rserve.port),
            str(rexec_server.port),
            str(cases),
            SETUP.encode().hex(),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout.splitlines()


@pytest.mark.parametrize("index", range(1, len(CODES) + 1), ids=lambda i: CODES[i - 1][:40])
def test_eval(results: list[str], index: int) -> None:
    assert f"{index} TRUE" in results, f"Java client saw different answers for {CODES[index - 1]!r}"


def test_assign_through_the_java_api(results: list[str]) -> None:
    assigned = [line for line in results if line.startswith("assign ")]
    assert assigned == ["assign 0 0 1 15 1"] * 2  # the same from Rserve and rexec


ENCODINGS_SOURCE = Path(__file__).parent / "java" / "Encodings.java"
JAVA_CASES = ["marks-native", "marks-utf8", "deep-list", "deep-call"]


@pytest.fixture(scope="module")
def encodings(
    rserve: Server, rexec_server: Server, tmp_path_factory
) -> subprocess.CompletedProcess[str]:
    classpath = compile_java(ENCODINGS_SOURCE, tmp_path_factory.mktemp("java-encodings"))
    ports = (rserve.port, rexec_server.port)
    run = subprocess.run(
        ["java", "-Xss16m", "-cp", classpath, "Encodings", *map(str, ports)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run


@pytest.mark.parametrize("case", JAVA_CASES)
def test_strings_and_deep_results_through_the_java_client(encodings, case: str) -> None:
    """Strings the Java client assigns (String[] as QAP, String as DT_STRING) are marked as
    Rserve marks them, with and without setStringEncoding("utf8"); deep results arrive."""
    assert f"{case} TRUE" in encodings.stdout.splitlines(), encodings.stderr[-2000:]
