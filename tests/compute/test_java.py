"""The Java client (REngine/Rserve jars shipped by r-cran-rserve) against Rserve and rexec."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Server, r_package_file

JAVA_PROGRAM = r"""
import org.rosuda.REngine.*;
import org.rosuda.REngine.Rserve.*;

public class Probe {
    public static void main(String[] args) throws Exception {
        RConnection c = new RConnection("127.0.0.1", Integer.parseInt(args[0]));
        System.out.println("version " + c.eval("R.version.string").asString());
        System.out.println("sum " + c.eval("sum(1:10)").asInteger());
        double[] d = c.eval("c(1.5, 2.5, NA)").asDoubles();
        System.out.println("doubles " + d[0] + " " + d[1] + " " + REXPDouble.isNA(d[2]));
        c.assign("s", new String[] {"a", "b", null});
        System.out.println("strings " + c.eval("paste(is.na(s), collapse=',')").asString());
        c.assign("v", new REXPInteger(new int[] {4, 5, 6}));
        System.out.println("ints " + c.eval("sum(v)").asInteger());
        RList l = c.eval("list(a = 1L, b = 'x')").asList();
        System.out.println("list " + l.names + " " + l.at("b").asString());
        REXP f = c.eval("factor(c('u', 'v', 'u'))");
        System.out.println("factor " + f.isFactor() + " " + f.asFactor().asStrings()[1]);
        REXP df = c.eval("data.frame(x = 1:2, y = c('p', 'q'))");
        System.out.println("df " + df.getAttribute("class").asString() + " "
            + df.asList().at("y").asStrings()[1]);
        try { c.eval("stop('boom')"); } catch (RserveException e) {
            System.out.println("error " + e.getRequestReturnCode());
        }
        c.voidEval("z <- 3");
        System.out.println("after error " + c.eval("z * 2").asDouble());
        System.out.println("expr " + c.parseAndEval("x <- c(1, 2); mean(x)").asDouble());
        c.close();
    }
}
"""


def _jars() -> list[str]:
    directory = Path(r_package_file("Rserve", "java"))
    return [str(directory / "REngine.jar"), str(directory / "Rserve.jar")]


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> list[str]:
    if shutil.which("javac") is None:
        pytest.fail("javac missing: make test installs openjdk-17-jdk-headless")
    directory = tmp_path_factory.mktemp("java")
    (directory / "Probe.java").write_text(JAVA_PROGRAM)
    classpath = ":".join([*_jars(), str(directory)])
    subprocess.run(
        ["javac", "-cp", classpath, str(directory / "Probe.java")], check=True, capture_output=True
    )
    return ["java", "-cp", classpath, "Probe"]


def test_java_client_gets_the_same_answers(probe, rserve: Server, rexec_server: Server) -> None:
    outputs = []
    for server in (rserve, rexec_server):
        result = subprocess.run(
            [*probe, str(server.port)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1]
    assert "sum 55" in outputs[1] and "error 127" in outputs[1]
