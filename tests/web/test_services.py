"""Published services against a real web node and a real compute node: publishing and
permissions, typed inputs, the call path (isolation, errors, timeouts, dead shells),
pools, per-service OpenAPI and its Swagger UI page in a real browser, snapshots."""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate

import rexec.client
from tests.conftest import headless_dom
from tests.web.conftest import Web

MODEL = "model <- lm(mpg ~ wt + hp, data = mtcars); loaded_by <- Sys.getpid()"
PREDICT = "result <- unname(predict(model, data.frame(wt = wt, hp = hp)))"
CARS = {
    "code": PREDICT,
    "initCode": MODEL,
    "inputParameterDefinitions": [
        {"name": "wt", "type": "numeric"},
        {"name": "hp", "type": "numeric"},
    ],
    "outputParameterDefinitions": [{"name": "result", "type": "numeric"}],
}


def _publish(client: httpx.Client, name: str, version: str, **body: object) -> dict:
    reply = client.post(f"/services/{name}/{version}", json=body)
    assert reply.status_code == 201, reply.text
    return reply.json()


def _call(client: httpx.Client, path: str, body: object) -> httpx.Response:
    return client.post(f"/api/{path}", json=body)


def _r(services_compute, code: str):
    """What R itself computes (the compute node's default pool: no service around it)."""
    with rexec.client.connect(port=services_compute.port) as conn:
        return conn.eval(code)


@pytest.fixture(scope="module")
def admin(services_web: Web):
    with services_web.client() as client:
        yield client


@pytest.fixture(autouse=True)
def _remove_services_afterwards(admin: httpx.Client):
    """Each service version is a template process on the compute node (pools.max of
    them at most): a test removes what it published, the module's ``cars`` aside."""
    yield
    for record in admin.get("/services").json():
        if record["name"] != "cars":
            admin.delete(f"/services/{record['name']}/{record['version']}")


@pytest.fixture(scope="module")
def cars(admin: httpx.Client) -> dict:
    return _publish(admin, "cars", "v1", **CARS, isDefault=True)


def test_a_published_model_answers_as_r_computes_it(cars, admin, services_compute) -> None:
    assert cars["version"] == "v1" and cars["operationId"] == "consumeCars"
    expected = _r(services_compute, f"{{{MODEL}; wt <- c(2.5, 3.1); hp <- c(110, 150); {PREDICT}}}")
    reply = _call(admin, "cars/v1", {"wt": [2.5, 3.1], "hp": [110, 150]})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["success"] is True and body["errorMessage"] is None
    assert body["outputParameters"]["result"] == pytest.approx(expected, rel=1e-12)
    assert set(body) == {
        "success",
        "errorMessage",
        "consoleOutput",
        "outputParameters",
        "outputFiles",
    }
    # the default alias reaches the same version
    again = _call(admin, "cars", {"wt": 2.5, "hp": 110}).json()
    assert again["outputParameters"]["result"] == pytest.approx(expected[0], rel=1e-12)


def test_init_code_ran_once_in_the_template_not_per_call(admin) -> None:
    _publish(
        admin,
        "pids",
        "1",
        code="shell <- Sys.getpid(); template <- loaded_by",
        initCode="loaded_by <- Sys.getpid(); Sys.sleep(1)",
        outputParameterDefinitions=[
            {"name": "shell", "type": "integer"},
            {"name": "template", "type": "integer"},
        ],
    )
    started = time.monotonic()
    answers = [_call(admin, "pids/1", {}).json()["outputParameters"] for _ in range(3)]
    assert time.monotonic() - started < 3  # no call paid initCode's second
    templates = {a["template"] for a in answers}
    assert len(templates) == 1 and templates.pop() not in {a["shell"] for a in answers}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"wt": 3.0}, "missing input parameter 'hp'"),
        ({"wt": 3.0, "hp": 100, "extra": 1}, "unknown input parameter 'extra'"),
        ({"wt": "heavy", "hp": 100}, "input parameter 'wt'"),
        ({"wt": True, "hp": 100}, "input parameter 'wt'"),
        ({"wt": [3.0, {"a": 1}], "hp": 100}, "input parameter 'wt'"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_inputs_are_400_naming_the_field_before_any_r_runs(cars, admin, body, field) -> None:
    reply = _call(admin, "cars/v1", body)
    assert reply.status_code == 400, reply.text
    assert field in reply.json()["message"]


def test_a_body_that_is_not_json_is_400(cars, admin) -> None:
    reply = admin.post(
        "/api/cars/v1", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert reply.status_code == 400 and "not JSON" in reply.json()["message"]


def test_types_round_trip_with_na_as_null(admin, services_compute) -> None:
    types = ["logical", "numeric", "integer", "character", "vector", "matrix", "data.frame"]
    _publish(
        admin,
        "echo",
        "1",
        code="\n".join(f"o_{t.replace('.', '_')} <- i_{t.replace('.', '_')}" for t in types)
        + "\nclasses <- vapply(mget(ls(pattern = '^i_')), function(v) class(v)[1], '')",
        inputParameterDefinitions=[{"name": f"i_{t.replace('.', '_')}", "type": t} for t in types],
        outputParameterDefinitions=[
            *({"name": f"o_{t.replace('.', '_')}", "type": t} for t in types),
            {"name": "classes", "type": "character"},
        ],
    )
    inputs = {
        "i_logical": [True, None, False],
        "i_numeric": [1.5, None],
        "i_integer": [1, None, 3],
        "i_character": ["a", None],
        "i_vector": [1, 2, 3],
        "i_matrix": [[1, 2], [3, 4], [5, 6]],
        "i_data_frame": {"x": [1.5, None], "s": ["a", "b"]},
    }
    body = _call(admin, "echo/1", inputs).json()
    assert body["success"], body
    out = body["outputParameters"]
    for t in types:
        key = t.replace(".", "_")
        assert out[f"o_{key}"] == inputs[f"i_{key}"], t
    assert out["classes"] == {
        "i_character": "character",
        "i_data_frame": "data.frame",
        "i_integer": "integer",
        "i_logical": "logical",
        "i_matrix": "matrix",
        "i_numeric": "numeric",
        "i_vector": "integer",
    }
    # a data.frame as rows (what jsonlite and most clients send) is the same data.frame
    rows = {**inputs, "i_data_frame": [{"x": 1.5, "s": "a"}, {"s": "b"}]}
    assert _call(admin, "echo/1", rows).json()["outputParameters"]["o_data_frame"] == {
        "x": [1.5, None],
        "s": ["a", "b"],
    }
    # and R agrees on what it got: the matrix is 3 x 2, by rows
    expected = _r(services_compute, "matrix(c(1L, 3L, 5L, 2L, 4L, 6L), 3)")
    assert out["o_matrix"] == expected


def test_an_r_error_is_success_false_with_r_s_message_and_the_shell_is_replaced(admin) -> None:
    _publish(
        admin,
        "fails",
        "1",
        code="pid <- Sys.getpid(); if (boom) stop('the model refused: ', x, ' in ', pid)",
        inputParameterDefinitions=[
            {"name": "boom", "type": "logical"},
            {"name": "x", "type": "character"},
        ],
        outputParameterDefinitions=[{"name": "pid", "type": "integer"}],
    )
    # One shell at most, so which shell a call lands on is not up to the spare the pool
    # opens ahead of demand (with two, the failing call could take the spare).
    pool = {"initialPoolSize": 1, "maxPoolSize": 1}
    assert admin.post("/services/fails/1/pool", json=pool).status_code == 200
    good = _call(admin, "fails/1", {"boom": False, "x": ""}).json()
    same = _call(admin, "fails/1", {"boom": False, "x": ""}).json()
    assert good["outputParameters"]["pid"] == same["outputParameters"]["pid"]  # one shell
    reply = _call(admin, "fails/1", {"boom": True, "x": "no cars"})
    assert reply.status_code == 200
    body = reply.json()
    assert body["success"] is False and "the model refused: no cars" in body["errorMessage"]
    assert body["outputParameters"] == {}
    failed = int(body["errorMessage"].rsplit(" in ", 1)[1].split()[0])
    assert failed == good["outputParameters"]["pid"]  # the error came from that shell
    after = [_call(admin, "fails/1", {"boom": False, "x": ""}).json() for _ in range(3)]
    assert all(a["outputParameters"]["pid"] != failed for a in after)  # recycled
    deadline = time.monotonic() + 10
    while Path(f"/proc/{failed}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{failed}").exists()  # and the failed shell ended


def test_an_output_of_the_wrong_type_or_missing_fails_the_call(admin) -> None:
    _publish(
        admin,
        "badout",
        "1",
        code="if (which == 'text') y <- 'text'",
        inputParameterDefinitions=[{"name": "which", "type": "character"}],
        outputParameterDefinitions=[{"name": "y", "type": "numeric"}],
    )
    text = _call(admin, "badout/1", {"which": "text"}).json()
    assert "success" in text, text
    assert text["success"] is False and "'y' is character, declared numeric" in text["errorMessage"]
    missing = _call(admin, "badout/1", {"which": "none"}).json()
    assert missing["success"] is False and "'y' was not set" in missing["errorMessage"]


def test_calls_are_isolated_from_each_other(admin) -> None:
    """Same shell (isolation "shell"): a fresh environment per call, the model's binding
    locked, options, working directory, random state, search path and new globals put
    back. Documented leaks (docs/services.md) are not tested as absent."""
    _publish(
        admin,
        "iso",
        "1",
        initCode="model <- 42",
        code="""
pid <- Sys.getpid()
seen <- c(leaked = exists("leaked"), global = exists("made_global"),
          digits = getOption("digits"), opt = !is.null(getOption("rexec.test")),
          attached = "package:tools" %in% search(), files = length(list.files()))
wd <- basename(getwd())
draw <- runif(1)
if (mutate) {
  leaked <- TRUE
  assign("made_global", TRUE, envir = globalenv())
  options(digits = 3, rexec.test = TRUE)
  library(tools)
  writeLines("x", "left-behind.txt")
  setwd(tempdir())
  replaced <- tryCatch({ model <<- 0; "replaced" }, error = function(e) "locked")
} else replaced <- "untouched"
model_now <- model
""",
        inputParameterDefinitions=[{"name": "mutate", "type": "logical"}],
        outputParameterDefinitions=[
            {"name": n, "type": t}
            for n, t in (
                ("pid", "integer"),
                ("seen", "numeric"),
                ("wd", "character"),
                ("draw", "numeric"),
                ("replaced", "character"),
                ("model_now", "numeric"),
            )
        ],
    )
    # One shell at most: both calls land on it, not on the spare opened ahead of demand.
    pool = {"initialPoolSize": 1, "maxPoolSize": 1}
    assert admin.post("/services/iso/1/pool", json=pool).status_code == 200
    first = _call(admin, "iso/1", {"mutate": True}).json()["outputParameters"]
    second = _call(admin, "iso/1", {"mutate": False}).json()["outputParameters"]
    assert first["pid"] == second["pid"]
    assert first["replaced"] == "locked" and second["model_now"] == 42
    assert second["seen"] == {
        "leaked": 0,
        "global": 0,
        "digits": 7,
        "opt": 0,
        "attached": 0,
        "files": 0,
    }
    assert first["wd"] != second["wd"]  # a fresh working directory per call
    assert first["draw"] == second["draw"]  # the random state is put back


def test_process_isolation_gives_every_call_a_fresh_shell(admin) -> None:
    _publish(
        admin,
        "fresh",
        "1",
        code="pid <- Sys.getpid()",
        isolation="process",
        outputParameterDefinitions=[{"name": "pid", "type": "integer"}],
    )
    pids = [_call(admin, "fresh/1", {}).json()["outputParameters"]["pid"] for _ in range(3)]
    assert len(set(pids)) == 3


def test_a_call_past_its_timeout_is_504_and_the_service_keeps_working(admin) -> None:
    _publish(
        admin,
        "slow",
        "1",
        code="if (escape) setTimeLimit(elapsed = Inf); Sys.sleep(seconds); done <- TRUE",
        timeout=1,
        inputParameterDefinitions=[
            {"name": "seconds", "type": "numeric"},
            {"name": "escape", "type": "logical"},
        ],
        outputParameterDefinitions=[{"name": "done", "type": "logical"}],
    )
    for escape in (False, True):  # R's own limit; code that lifts it is interrupted
        started = time.monotonic()
        reply = _call(admin, "slow/1", {"seconds": 30, "escape": escape})
        assert reply.status_code == 504, reply.text
        assert time.monotonic() - started < 10
    assert _call(admin, "slow/1", {"seconds": 0, "escape": False}).json()["success"] is True


def test_a_shell_that_dies_mid_call_is_502_and_replaced(admin) -> None:
    _publish(
        admin,
        "crash",
        "1",
        code="if (die) tools::pskill(Sys.getpid(), tools::SIGKILL); ok <- TRUE",
        inputParameterDefinitions=[{"name": "die", "type": "logical"}],
        outputParameterDefinitions=[{"name": "ok", "type": "logical"}],
    )
    reply = _call(admin, "crash/1", {"die": True})
    assert reply.status_code == 502, reply.text
    assert _call(admin, "crash/1", {"die": False}).json()["outputParameters"]["ok"] is True


def test_output_files_come_back_base64(admin) -> None:
    _publish(
        admin,
        "files",
        "1",
        code="png('plot.png'); plot(1:10); dev.off(); writeLines(text, 'note.txt')",
        inputParameterDefinitions=[{"name": "text", "type": "character"}],
        outputFileNames=["plot.png", "note.txt", "absent.csv"],
    )
    body = _call(admin, "files/1", {"text": "héllo"}).json()
    assert body["success"], body
    assert base64.b64decode(body["outputFiles"]["note.txt"]) == "héllo\n".encode()
    assert base64.b64decode(body["outputFiles"]["plot.png"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "absent.csv" not in body["outputFiles"]


def test_console_output_is_captured_in_memory(admin) -> None:
    _publish(
        admin,
        "talk",
        "1",
        code="print(1:3); message('note'); warning('careful'); cat('done\\n')",
    )
    console = _call(admin, "talk/1", {}).json()["consoleOutput"]
    assert "[1] 1 2 3" in console and "note" in console and "careful" in console
    assert "done" in console


def test_publishing_rules_and_permissions(services_web: Web, admin, cars) -> None:
    alice = services_web.user("alice-svc", "Contributor")
    bob = services_web.user("bob-svc", "Contributor")
    reader = services_web.user("rita-svc", "Reader")
    with alice, bob, reader:
        assert reader.post("/services/r1/1", json={"code": "1"}).status_code == 403
        assert alice.post("/services/mine/1", json={"code": "x <- 1"}).status_code == 201
        assert alice.post("/services/mine/1", json={"code": "x <- 1"}).status_code == 409
        assert bob.post("/services/mine/2", json={"code": "x <- 1"}).status_code == 403
        assert bob.patch("/services/mine/1", json={"description": "b"}).status_code == 403
        assert bob.delete("/services/mine/1").status_code == 403
        assert reader.get("/services/mine/1").status_code == 200  # everyone lists
        assert _call(reader, "mine/1", {}).json()["success"] is True  # and consumes
        assert (
            alice.patch("/services/mine/1", json={"description": "a"}).json()["description"] == "a"
        )
        assert admin.patch("/services/mine/1", json={"description": "o"}).status_code == 200
        dev = alice.post("/services/mine", json={"code": "x <- 1"})
        assert dev.status_code == 201
        assert re.fullmatch(r"[0-9a-f-]{36}", dev.json()["version"])
        assert alice.delete(f"/services/mine/{dev.json()['version']}").status_code == 200
        assert alice.delete("/services/mine/1").status_code == 200
        assert alice.get("/services/mine/1").status_code == 404
        assert _call(alice, "mine/1", {}).status_code == 404
    for bad in (
        {},
        {"code": ""},
        {"code": "1", "isolation": "thread"},
        {"code": "1", "timeout": -1},
        {"code": "1", "inputParameterDefinitions": [{"name": "x", "type": "list"}]},
        {"code": "1", "inputParameterDefinitions": [{"name": "1x", "type": "numeric"}]},
        {"code": "1", "runtimeType": "Python"},
        {"code": "1", "surprise": True},
    ):
        assert admin.post("/services/bad/1", json=bad).status_code == 400, bad
    assert admin.post("/services/bad name/1", json={"code": "1"}).status_code in (400, 404)
    failing = admin.post("/services/badinit/1", json={"code": "1", "initCode": "stop('no model')"})
    assert failing.status_code == 400 and "no model" in failing.json()["message"]
    assert admin.get("/services/badinit/1").status_code == 404  # nothing left behind


def test_the_default_version_moves_with_one_patch(admin) -> None:
    _publish(
        admin,
        "roll",
        "1",
        code="v <- 1",
        outputParameterDefinitions=[{"name": "v", "type": "numeric"}],
        isDefault=True,
    )
    _publish(
        admin,
        "roll",
        "2",
        code="v <- 2",
        outputParameterDefinitions=[{"name": "v", "type": "numeric"}],
        isDefault=True,
    )
    assert _call(admin, "roll", {}).json()["outputParameters"]["v"] == 2
    assert admin.get("/services/roll/1").json()["isDefault"] is False  # one default per name
    assert admin.patch("/services/roll/1", json={"isDefault": True}).status_code == 200
    assert _call(admin, "roll", {}).json()["outputParameters"]["v"] == 1  # rolled back
    assert [s["isDefault"] for s in admin.get("/services/roll").json()] == [True, False]


def test_a_patched_init_code_starts_new_pools_and_calls_see_it(admin) -> None:
    _publish(
        admin,
        "model",
        "1",
        code="k <- K",
        initCode="K <- 1",
        outputParameterDefinitions=[{"name": "k", "type": "numeric"}],
    )
    assert _call(admin, "model/1", {}).json()["outputParameters"]["k"] == 1
    assert admin.patch("/services/model/1", json={"initCode": "K <- 2"}).status_code == 200
    assert _call(admin, "model/1", {}).json()["outputParameters"]["k"] == 2
    assert admin.patch("/services/model/1", json={"code": "k <- K * 10"}).status_code == 200
    assert _call(admin, "model/1", {}).json()["outputParameters"]["k"] == 20


def test_pool_endpoints_size_and_report_the_service_pool(cars, admin) -> None:
    reply = admin.post("/services/cars/v1/pool", json={"initialPoolSize": 2, "maxPoolSize": 6})
    assert reply.status_code == 200, reply.text
    status = admin.get("/services/cars/v1/pool").json()
    assert len(status) == 1 and status[0]["status"] == "ready" and status[0]["max"] == 6
    assert _call(admin, "cars/v1", {"wt": 3, "hp": 100}).json()["success"]  # calls go on
    assert (
        admin.post(
            "/services/cars/v1/pool", json={"initialPoolSize": 9, "maxPoolSize": 2}
        ).status_code
        == 400
    )
    assert admin.delete("/services/cars/v1/pool").json() == {"initialPoolSize": 1, "maxPoolSize": 4}
    assert admin.get("/services/cars/v1/pool").json()[0]["max"] == 4


def test_slow_calls_run_in_parallel_on_the_warm_pool(admin) -> None:
    import concurrent.futures

    _publish(
        admin,
        "nap",
        "1",
        code="Sys.sleep(1); pid <- Sys.getpid()",
        outputParameterDefinitions=[{"name": "pid", "type": "integer"}],
    )
    token = admin.headers["Authorization"]
    url = str(admin.base_url)

    def one(_: int) -> int:
        reply = httpx.post(
            f"{url}/api/nap/1", json={}, headers={"Authorization": token}, timeout=30
        )
        return reply.json()["outputParameters"]["pid"]

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        pids = list(pool.map(one, range(4)))
    assert len(set(pids)) == 4  # four shells at once (pool max 4), not one queue
    assert time.monotonic() - started < 3.5


def test_swagger_json_is_valid_openapi_with_the_typed_operation(cars, admin) -> None:
    reply = admin.get("/api/cars/v1/swagger.json")
    assert reply.status_code == 200
    document = reply.json()
    validate(document)
    operation = document["paths"]["/api/cars/v1"]["post"]
    assert operation["operationId"] == "consumeCars"
    inputs = document["components"]["schemas"]["InputParameters"]
    assert inputs["required"] == ["wt", "hp"] and inputs["additionalProperties"] is False
    assert "result" in document["components"]["schemas"]["OutputParameters"]["properties"]
    assert httpx.get(admin.base_url.join("/api/cars/v1/swagger.json")).status_code == 401


def test_swagger_ui_renders_the_service_operation_offline(
    cars, services_web: Web, tmp_path: Path
) -> None:
    token = services_web.token()
    dom = headless_dom(f"{services_web.url}/docs/services/cars/v1#token={token}", tmp_path)
    assert "Failed to load API definition" not in dom, dom[:4000]
    assert 'data-path="/api/cars/v1"' in dom, dom[:4000]
    assert "consumeCars" in dom  # displayOperationId: the service's operation by name


def test_a_snapshot_is_copied_into_the_service_at_publish_time(services_web: Web, admin) -> None:
    session = admin.post("/sessions", json={"name": "train"}).json()["id"]
    executed = admin.post(
        f"/sessions/{session}/execute",
        json={"code": "fit <- lm(mpg ~ wt, mtcars); writeLines('lookup', 'table.txt')"},
    )
    assert executed.json()["success"], executed.text
    snapshot = admin.post(f"/sessions/{session}/snapshot", json={"name": "fit"}).json()["id"]
    admin.delete(f"/sessions/{session}")
    _publish(
        admin,
        "snap",
        "1",
        snapshotId=snapshot,
        code="slope <- unname(coef(fit)[2]); text <- readLines('table.txt')",
        outputParameterDefinitions=[
            {"name": "slope", "type": "numeric"},
            {"name": "text", "type": "character"},
        ],
    )
    assert admin.delete(f"/snapshots/{snapshot}").status_code == 200  # the service has a copy
    body = _call(admin, "snap/1", {}).json()
    assert body["success"], body
    assert body["outputParameters"]["slope"] == pytest.approx(-5.344472, rel=1e-6)
    assert body["outputParameters"]["text"] == "lookup"


def test_a_published_model_object_is_restored_as_model(admin, services_compute) -> None:
    with rexec.client.connect(port=services_compute.port) as conn:
        rds = conn.eval(
            "{f <- tempfile(); saveRDS(glm(am ~ wt, binomial, mtcars), f); "
            "readBin(f, 'raw', file.size(f))}"
        )
        expected = conn.eval(
            "unname(predict(glm(am ~ wt, binomial, mtcars), data.frame(wt = 3), type = 'response'))"
        )
    _publish(
        admin,
        "glm",
        "1",
        model=base64.b64encode(bytes(rds)).decode(),
        code="p <- unname(predict(model, data.frame(wt = wt), type = 'response'))",
        inputParameterDefinitions=[{"name": "wt", "type": "numeric"}],
        outputParameterDefinitions=[{"name": "p", "type": "numeric"}],
    )
    assert _call(admin, "glm/1", {"wt": 3}).json()["outputParameters"]["p"] == pytest.approx(
        expected
    )


def test_a_compute_node_restart_loses_no_service(admin, services_web: Web) -> None:
    """Pools live on compute nodes; the web node starts them again where they are missing
    (the reconciler), and a call that finds its pool gone starts it itself."""
    _publish(
        admin,
        "again",
        "1",
        code="x <- 1",
        outputParameterDefinitions=[{"name": "x", "type": "numeric"}],
    )
    node = services_web.node.compute.nodes[0].config
    rexec.client.remove_pool(
        services_web.node.services._cache[("again", "1")][0].pool_name,
        port=node.port,
        user=node.user,
        password=node.password,
    )
    services_web.node.services._lanes.clear()  # as after a restart: no connection held
    assert _call(admin, "again/1", {}).json()["outputParameters"]["x"] == 1


def test_a_call_writes_nothing_and_waits_for_no_database_writer(services_web: Web, admin, cars):
    """While another process holds SQLite's write lock, a session request (it records
    its execution) waits in a worker thread; service calls, which write nothing, keep
    being answered: neither the call path nor the event loop waits for the database."""
    import sqlite3
    import threading

    assert _call(admin, "cars/v1", {"wt": 3, "hp": 100}).json()["success"]
    session = admin.post("/sessions", json={}).json()["id"]
    database = services_web.node.db.url.removeprefix("sqlite:///")
    blocker = sqlite3.connect(database, timeout=0, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the writer lock, held
    outcome: list[int] = []
    writer = threading.Thread(
        target=lambda: outcome.append(
            admin.post(f"/sessions/{session}/execute", json={"code": "1"}).status_code
        )
    )
    try:
        writer.start()
        time.sleep(0.3)
        for _ in range(5):
            started = time.monotonic()
            assert _call(admin, "cars/v1", {"wt": 3, "hp": 100}).json()["success"]
            assert time.monotonic() - started < 1.0
        assert writer.is_alive() and not outcome  # the execution still waits for the lock
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        writer.join(30)
    assert outcome == [200]
    admin.delete(f"/sessions/{session}")


def test_a_call_says_where_its_time_went(cars, admin) -> None:
    reply = _call(admin, "cars/v1", {"wt": 3, "hp": 100})
    stages = dict(
        (part.split(";dur=")[0].strip(), float(part.split(";dur=")[1]))
        for part in reply.headers["server-timing"].split(",")
    )
    assert set(stages) == {"inputs", "checkout", "hop", "r", "outputs"}
    assert all(v >= 0 for v in stages.values()) and stages["r"] > 0


def test_web_nodes_of_another_database_leave_this_one_s_pools_alone(
    services_web: Web, services_compute, admin, cars, tmp_path
) -> None:
    """Two web clusters (two databases) sharing a compute node: each reconciles only its
    own pools (they are named by the database's own id)."""
    from tests.web.conftest import services_settings, start_web, stop_web

    other = start_web(
        services_settings(
            services_compute, f"sqlite:///{tmp_path / 'other.db'}", service_reconcile_interval=0.3
        )
    )
    try:
        with other.client() as theirs:
            body = {
                "code": "x <- 2",
                "outputParameterDefinitions": [{"name": "x", "type": "numeric"}],
            }
            assert theirs.post("/services/cars/v1", json=body).status_code == 201  # same name
            time.sleep(1.5)  # several of its reconciliations
            node = services_web.node.compute.nodes[0].config
            pools = rexec.client.pool_status(port=node.port, user=node.user, password=node.password)
            ours = services_web.node.services.prefix
            assert any(name.startswith(ours) for name in pools["pools"])  # still there
            assert theirs.post("/api/cars/v1", json={}).json()["outputParameters"]["x"] == 2
            services_web.node.services._lanes.clear()  # new connections: to the pool as is
            assert _call(admin, "cars/v1", {"wt": 3, "hp": 100}).json()["success"]  # our model
            theirs.delete("/services/cars/v1")
        assert _call(admin, "cars/v1", {"wt": 3, "hp": 100}).json()["success"]
    finally:
        stop_web(other)
