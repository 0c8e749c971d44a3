"""``rexec services`` against a real web node and compute node (typer's CliRunner)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rexec.cli.main import app
from tests.web.conftest import ADMIN_PASSWORD


@pytest.fixture
def run(services_web):
    """``rexec services ARGS`` with the web node's URL and the admin's password in the
    environment; returns click's Result (``stdout``, ``stderr``, ``exit_code``)."""
    runner = CliRunner()
    env = {
        "REXEC_URL": services_web.url,
        "REXEC_USER": "admin",
        "REXEC_PASSWORD": ADMIN_PASSWORD,
        "COLUMNS": "250",
    }

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, ["services", *args], env=env, input=input)

    return invoke


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def ok(result) -> str:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result.stdout


def test_publish_list_show_call_delete(run, tmp_path: Path) -> None:
    name = unique("cli")
    (tmp_path / "score.R").write_text(
        "cat('scoring', nrow(newdata <- data.frame(wt = wt)), 'rows\\n')\n"
        "mpg <- unname(predict(model, newdata))\n"
    )
    (tmp_path / "init.R").write_text("model <- lm(mpg ~ wt, data = mtcars)\n")
    published = run(
        "publish", name, "--version", "1", "--code", str(tmp_path / "score.R"),
        "--init", str(tmp_path / "init.R"), "--input", "wt:numeric", "--output", "mpg:numeric",
        "--description", "mpg from weight", "--timeout", "30", "--default",
    )  # fmt: skip
    assert ok(published) == "1\n"
    assert f"published {name} version 1" in published.stderr

    listed = ok(run("list"))
    assert name in listed and "mpg from weight" in listed and "wt: numeric" in listed
    assert [s["version"] for s in json.loads(ok(run("list", name, "--json")))] == ["1"]

    record = json.loads(ok(run("show", name, "1")))
    assert record["name"] == name and record["timeout"] == 30 and record["isDefault"] is True
    assert record["initCode"] == "model <- lm(mpg ~ wt, data = mtcars)\n"
    assert json.loads(ok(run("show", name)))["version"] == "1"

    expected = subprocess.run(
        ["Rscript", "--vanilla", "-e",
         "cat(sprintf('%.17g', predict(lm(mpg ~ wt, mtcars), data.frame(wt = c(3, 4)))))"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    called = run("call", name, "1", "--input", "wt=3")
    assert json.loads(ok(called))["mpg"] == pytest.approx(float(expected[0]), rel=1e-12)
    assert "scoring 1 rows" in called.stderr
    by_json = json.loads(ok(run("call", name, "--json", '{"wt": [3, 4]}')))
    assert by_json["mpg"] == pytest.approx([float(v) for v in expected], rel=1e-12)
    (tmp_path / "in.json").write_text('{"wt": 4}')
    from_file = json.loads(ok(run("call", name, "1", "--json-file", str(tmp_path / "in.json"))))
    assert from_file["mpg"] == pytest.approx(float(expected[1]), rel=1e-12)

    wrong = run("call", name, "1", "--input", "wt=heavy")
    assert wrong.exit_code == 1 and "400" in wrong.stderr and "wt" in wrong.stderr

    assert "deleted" in run("delete", name, "1").stderr
    gone = run("show", name, "1")
    assert gone.exit_code == 1 and "404" in gone.stderr


def test_inline_code_r_error_and_output_files(run, tmp_path: Path) -> None:
    name = unique("cli-err")
    code = "if (x < 0) stop('negative input') \nwriteLines(as.character(x), 'x.txt')\ny <- -x"
    ok(run(
        "publish", name, "-v", "1", "-c", code, "-i", "x:numeric", "-o", "y:numeric",
        "--output-file", "x.txt",
    ))  # fmt: skip
    saved = run("call", name, "1", "-i", "x=2", "--files-dir", str(tmp_path / "files"))
    assert json.loads(ok(saved)) == {"y": -2}
    assert (tmp_path / "files" / "x.txt").read_text() == "2\n"
    failed = run("call", name, "1", "-i", "x=-2")
    assert failed.exit_code == 1 and "negative input" in failed.stderr
    both = run("publish", name, "-v", "2", "-c", "y <- 1", "--code", str(tmp_path / "none.R"))
    assert both.exit_code == 2
    assert run("publish", name, "-v", "1", "-c", "y <- 1").exit_code == 1  # 409
    ok(run("delete", name, "1"))

    rds = tmp_path / "model.rds"
    subprocess.run(
        ["Rscript", "--vanilla", "-e", f"saveRDS(lm(dist ~ speed, cars), '{rds}')"], check=True
    )
    code = "d <- unname(predict(model, data.frame(speed = speed)))"
    ok(run("publish", name, "-v", "m", "-c", code, "-i", "speed:numeric", "-o", "d:numeric",
           "--model", str(rds)))  # fmt: skip
    fitted = json.loads(ok(run("call", name, "m", "-i", "speed=10")))["d"]
    assert fitted == pytest.approx(-17.579094890510948 + 3.932408759124088 * 10)
    ok(run("delete", name, "m"))


def test_pool_and_batch(run, tmp_path: Path) -> None:
    name = unique("cli-batch")
    code = "if (isTRUE(x < 0)) stop('negative')\ny <- x * 2\nz <- paste(label, flag)"
    ok(run(
        "publish", name, "-v", "1", "-c", code,
        "-i", "x:numeric", "-i", "label:character", "-i", "flag:logical",
        "-o", "y:numeric", "-o", "z:character",
    ))  # fmt: skip
    shown = ok(run("pool", name, "1"))
    assert "node" in shown and "idle" in shown
    assert "initial 1, max 3" in run("pool", name, "1", "--initial", "1", "--max", "3").stderr
    assert json.loads(ok(run("show", name, "1")))["pool"]["maxPoolSize"] == 3
    ok(run("pool", name, "1", "--max", "2"))
    assert json.loads(ok(run("show", name, "1")))["pool"] == {
        "initialPoolSize": 1,
        "maxPoolSize": 2,
    }
    ok(run("pool", name, "1", "--delete"))
    assert json.loads(ok(run("show", name, "1")))["pool"]["maxPoolSize"] == 4

    records = [{"x": i, "label": f"r{i}", "flag": i % 2 == 0} for i in range(20)]
    (tmp_path / "records.json").write_text(json.dumps(records))
    out = tmp_path / "results.json"
    batch = run(
        "batch", name, "1", "--file", str(tmp_path / "records.json"), "--parallel", "4",
        "--out", str(out),
    )  # fmt: skip
    ok(batch)
    assert "20 records, 20 succeeded" in batch.stderr
    assert "20/20" in batch.stderr and "complete" in batch.stderr  # the progress bar
    results = json.loads(out.read_text())
    assert [r["index"] for r in results] == list(range(20))
    assert [r["outputParameters"]["y"] for r in results] == [2.0 * i for i in range(20)]
    assert results[3]["outputParameters"]["z"] == "r3 FALSE"

    (tmp_path / "records.csv").write_text("x,label,flag\n1.5,a,true\n,b,false\n-1,c,true\n")
    from_csv = run("batch", name, "1", "--file", str(tmp_path / "records.csv"), "--no-progress")
    assert from_csv.exit_code == 1 and "failed records: 2" in from_csv.stderr
    assert "━" not in from_csv.stderr  # no progress bar
    rows = json.loads(from_csv.stdout)
    assert [r["outputParameters"].get("y") for r in rows] == [3.0, None, None]
    assert [r["outputParameters"].get("z") for r in rows] == ["a TRUE", "b FALSE", None]
    assert not rows[2]["success"] and "negative" in rows[2]["errorMessage"]
    ok(run("delete", name, "1"))


def test_prompts_for_the_password_and_reports_a_failed_login(services_web) -> None:
    env = {"REXEC_URL": services_web.url, "REXEC_PASSWORD": "wrong password"}
    failed = CliRunner().invoke(app, ["services", "list"], env=env)
    assert failed.exit_code == 1 and "401" in failed.stderr
    # a real terminal-less process: getpass reads the password from standard input
    done = subprocess.run(
        [sys.executable, "-m", "rexec.cli", "services", "list", "--url", services_web.url],
        input=ADMIN_PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    assert "name" in done.stdout and "version" in done.stdout
