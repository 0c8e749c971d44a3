"""``python -m bench.services``: rexec's published services against plumber, same R code.

Both run for the whole benchmark on the same machine, with the defaults users get:
``rexec up`` (a compute node and a web node on free ports, its own SQLite database; the
services published through the REST API with their default pools) and an R process
running plumber (Debian's r-cran-plumber, ``pr_run`` defaults) on an API file written
here with the same endpoints and R code. The client is httpx, keep-alive unless said.

The rows (``initCode``/plumber's file: ``model <- lm(mpg ~ wt + hp, mtcars)``):

- predict 1 row, 1 client: one client calls ``predict`` (inputs ``wt``, ``hp``) one call
  after the other; p50 and p99 of the calls' latency;
- the same with a new connection per call (``Connection: close``), p50;
- predict 1 row, 8 clients: 8 threads with a client each share the calls; calls per
  second (higher is better) and p50/p99 latency;
- ``Sys.sleep(0.2)``: 32 calls from 8 clients, wall time (rexec runs them in parallel
  on the service's pool, plumber's one R process one after the other);
- a 1,000-row data.frame in, 1,000 predictions out: one client, p50/p99;
- 200 records: rexec's batch API (one POST with ``parallelCount=4``, polled until
  complete) against 200 sequential plumber calls (not the same mechanism), wall time.

A run does every workload on both sides, alternating which goes first (rexec first in
odd runs, plumber in even ones); the servers are started once for all runs. The table
shows, per row, the median over runs of each side's value and of the ratio
rexec / plumber, with the lowest and highest ratio. ``--out DIR`` writes each run as
``DIR/run-N/latest.json`` in ``bench``'s format (``python -m bench.spread DIR/run-*``
makes the README's table from them) and ``DIR/summary.json``/``DIR/summary.md``.

Not timing tests: nothing here asserts a speed. The exit status is 1 if a call failed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import queue
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import report, spread
from bench.report import Row
from bench.servers import UTF8, Server, descendants, free_port, launch

PEER = "plumber"
VERSION = "v1"
#: Between polls of a batch's state (rexec's batch row).
POLL = 0.02
MODEL = "model <- lm(mpg ~ wt + hp, mtcars)"


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much work one run of each workload does."""

    sequential: int = 500  # predict calls from one client
    fresh: int = 200  # predict calls from one client, a new connection each
    clients: int = 8  # concurrent clients (the 8-client and Sys.sleep rows)
    concurrent: int = 50  # predict calls per concurrent client
    slow_calls: int = 32  # Sys.sleep calls, shared by the clients
    slow_seconds: float = 0.2
    frame_rows: int = 1000
    frame_calls: int = 50
    batch: int = 200  # records in rexec's batch, sequential calls to plumber
    parallel: int = 4  # the batch's parallelCount
    warmup: int = 5  # unmeasured calls before each sequential workload


FULL = Sizes()
QUICK = Sizes(
    sequential=40, fresh=20, concurrent=8, slow_calls=16, frame_calls=8, batch=40, warmup=2
)


@dataclasses.dataclass(frozen=True)
class Service:
    """One endpoint, published on rexec and written into plumber's API file."""

    name: str
    code: str  # R code setting ``result`` from the inputs
    inputs: tuple[tuple[str, str], ...]  # (name, rexec type)
    init: str = ""
    # plumber's own conversion of a JSON input before ``code`` (rexec's typed inputs)
    plumber_prelude: str = ""

    def publish_body(self, sizes: Sizes) -> dict[str, Any]:
        return {
            "code": self.r_code(sizes),
            "initCode": self.init or None,
            "description": f"bench.services: {self.name}",
            "inputParameterDefinitions": [{"name": n, "type": t} for n, t in self.inputs],
            "outputParameterDefinitions": [{"name": "result", "type": "numeric"}],
        }

    def r_code(self, sizes: Sizes) -> str:
        return self.code.format(seconds=sizes.slow_seconds)


PREDICT = Service(
    "predict",
    "result <- as.numeric(predict(model, newdata = data.frame(wt = wt, hp = hp)))",
    (("wt", "numeric"), ("hp", "numeric")),
    MODEL,
)
SLOW = Service("slow", "Sys.sleep({seconds})\nresult <- x", (("x", "numeric"),))
FRAME = Service(
    "frame",
    "result <- as.numeric(predict(model, newdata = data))",
    (("data", "data.frame"),),
    MODEL,
    plumber_prelude="data <- as.data.frame(data)",
)

ROWS = (
    Row("predict 1 row, 1 client, p50", "sequential", "p50", "ms", peer=PEER),
    Row("predict 1 row, 1 client, p99", "sequential", "p99", "ms", peer=PEER),
    Row("predict 1 row, 1 client, new connection per call, p50", "fresh", "p50", "ms", peer=PEER),
    Row("predict 1 row, {clients} clients: calls/s", "rate", "median", "1/s", "higher", peer=PEER),
    Row("predict 1 row, {clients} clients, p50", "concurrent", "p50", "ms", peer=PEER),
    Row("predict 1 row, {clients} clients, p99", "concurrent", "p99", "ms", peer=PEER),
    Row(
        "Sys.sleep({slow_seconds}): {slow_calls} calls, {clients} clients, wall",
        "slow",
        "median",
        "s",
        peer=PEER,
    ),
    Row("{frame_rows}-row data.frame in, predictions out, p50", "frame", "p50", "ms", peer=PEER),
    Row("{frame_rows}-row data.frame in, predictions out, p99", "frame", "p99", "ms", peer=PEER),
    Row(
        "{batch} records: batch API (parallelCount={parallel}) vs sequential, wall",
        "batch",
        "median",
        "s",
        peer=PEER,
    ),
)

_SCALE = {"ms": 1e3, "s": 1.0, "1/s": 1.0, "": 1.0}

Samples = dict[str, list[float]]


def labels(sizes: Sizes) -> list[str]:
    """Every row's label as printed for these sizes."""
    fields = dataclasses.asdict(sizes).items()
    values = {k: f"{v:,}" if isinstance(v, int) else v for k, v in fields}
    return [row.label.format(**values) for row in ROWS]


# --------------------------------------------------------------------------- the two sides


class Side:
    """How one server is called and how its answer is read."""

    name: str
    base: str
    headers: dict[str, str]

    def path(self, service: Service) -> str:
        raise NotImplementedError

    def result(self, answer: Any) -> list[float] | None:
        raise NotImplementedError

    def client(self) -> httpx.Client:
        # trust_env=False: loopback, never through a proxy from the environment
        return httpx.Client(base_url=self.base, headers=self.headers, timeout=120, trust_env=False)

    def call(self, client: httpx.Client, service: Service, body: dict[str, Any]) -> list[float]:
        """One call; raises on anything but a successful answer."""
        response = client.post(self.path(service), json=body)
        if response.status_code != 200:
            raise CallFailed(f"{self.name} {service.name}: {response.status_code} {response.text}")
        values = self.result(response.json())
        if values is None:
            raise CallFailed(f"{self.name} {service.name}: {response.text[:500]}")
        return values


class CallFailed(Exception):
    pass


class Plumber(Side):
    name = PEER

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.headers = {}

    def path(self, service: Service) -> str:
        return f"/{service.name}"

    def result(self, answer: Any) -> list[float] | None:
        if not isinstance(answer, dict) or "result" not in answer:
            return None
        return _numbers(answer["result"])


class Rexec(Side):
    name = "rexec"

    def __init__(self, port: int, token: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.headers = {"Authorization": f"Bearer {token}"}

    def path(self, service: Service) -> str:
        return f"/api/{service.name}/{VERSION}"

    def result(self, answer: Any) -> list[float] | None:
        if not isinstance(answer, dict) or answer.get("success") is not True:
            return None
        return _numbers((answer.get("outputParameters") or {}).get("result"))


def _numbers(value: Any) -> list[float] | None:
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, list) and all(isinstance(v, int | float) for v in value):
        return [float(v) for v in value]
    return None


# --------------------------------------------------------------------------- servers


def plumber_api(services: list[Service], sizes: Sizes) -> str:
    """plumber's API file: each service's init code once, then one POST endpoint each."""
    inits = list(dict.fromkeys(s.init for s in services if s.init))
    parts = [*inits, ""]
    for service in services:
        body = [service.plumber_prelude, service.r_code(sizes), "list(result = result)"]
        parts += [
            f"#* @post /{service.name}",
            f"function({', '.join(name for name, _ in service.inputs)}) {{",
            *(f"  {line}" for text in body if text for line in text.splitlines()),
            "}",
            "",
        ]
    return "\n".join(parts)


def start_plumber(directory: Path, services: list[Service], sizes: Sizes) -> Server:
    """An R process running plumber on the API file, with ``pr_run``'s defaults."""
    directory.mkdir(parents=True, exist_ok=True)
    api = directory / "plumber.R"
    api.write_text(plumber_api(services, sizes))
    port = free_port()
    script = f"plumber::pr_run(plumber::pr({str(api)!r}), host = '127.0.0.1', port = {port})"
    server = launch(PEER, port, ["Rscript", "-e", script], directory / "plumber.log")
    _wait_http(server, f"http://127.0.0.1:{port}/openapi.json", timeout=60)
    return server


def rexec_up_command(directory: Path, web_port: int, compute_port: int) -> list[str]:
    """``rexec up`` with its defaults but the ports, the database and the shells'
    working directory (a temp dir of this run, not the shared ``/tmp/rexec``)."""
    config = directory / "rexec.toml"
    config.write_text(f'[session]\nworkdir = "{directory / "work"}"\n')
    return [
        *(sys.executable, "-m", "rexec.cli", "up", "--config", str(config)),
        *("--port", str(web_port), "--compute-port", str(compute_port)),
        *("--database-url", f"sqlite:///{directory / 'web.db'}"),
    ]


def start_rexec(directory: Path) -> tuple[Server, str]:
    """``rexec up`` on free ports; returns it and the admin's password."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)  # R shells may run as the unprivileged `rexec` account
    web_port, compute_port = free_port(), free_port()
    password = secrets.token_urlsafe(18)
    env = {**UTF8, "REXEC_ADMIN_PASSWORD": password, "COLUMNS": "200"}
    command = rexec_up_command(directory, web_port, compute_port)
    server = launch("rexec", web_port, command, directory / "rexec-up.log", env=env, cwd=directory)
    _wait_http(server, f"http://127.0.0.1:{web_port}/openapi.json", timeout=120)
    return server, password


def _wait_http(server: Server, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None or time.monotonic() > deadline:
            stop(server)
            text = server.log.read_text(errors="replace")
            raise RuntimeError(f"{server.name} did not start:\n{text}")
        try:
            if httpx.get(url, timeout=5, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)


def stop(server: Server) -> None:
    """Stop a server and whatever it started (rexec's shells run in sessions of their
    own, so they are looked up before the server goes)."""
    started = descendants(server.process.pid)
    server.stop()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in started):
        time.sleep(0.1)
    for pid in started:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def publish(port: int, password: str, services: list[Service], sizes: Sizes) -> Rexec:
    """Log in as admin and publish every service (version ``VERSION``) through the API."""
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=120, trust_env=False) as client:
        answer = client.post("/login", json={"username": "admin", "password": password})
        answer.raise_for_status()
        token = answer.json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        for service in services:
            body = service.publish_body(sizes)
            answer = client.post(f"/services/{service.name}/{VERSION}", json=body, headers=headers)
            if answer.status_code != 201:
                raise RuntimeError(f"publishing {service.name}: {answer.status_code} {answer.text}")
    return Rexec(port, token)


def service_pool(side: Rexec, service: Service) -> Any:
    """The published service's pool as its record states it."""
    with side.client() as client:
        answer = client.get(f"/services/{service.name}/{VERSION}")
        return answer.json().get("pool") if answer.status_code == 200 else None


# --------------------------------------------------------------------------- workloads


def predict_inputs(count: int, seed: int = 1) -> list[dict[str, float]]:
    """Cars that could be in mtcars: the same inputs on both sides."""
    rng = random.Random(seed)
    return [
        {"wt": round(rng.uniform(1.5, 5.5), 3), "hp": float(rng.randint(50, 330))}
        for _ in range(count)
    ]


def frame_input(rows: int) -> dict[str, Any]:
    records = predict_inputs(rows, seed=2)
    return {"data": {"wt": [r["wt"] for r in records], "hp": [r["hp"] for r in records]}}


def sequential(
    side: Side,
    service: Service,
    bodies: list[dict[str, Any]],
    warmup: int,
    expect: int = 1,
    fresh: bool = False,
) -> tuple[list[float], int]:
    """One client, one call after the other: each call's seconds, failures. The client
    keeps its connection alive unless ``fresh`` (``Connection: close``: a new TCP
    connection per call, from the same client)."""
    times: list[float] = []
    failures = 0
    with side.client() as client:
        if fresh:
            client.headers["Connection"] = "close"
        for body in bodies[:warmup]:
            with contextlib.suppress(CallFailed, httpx.HTTPError):
                side.call(client, service, body)
        for body in bodies:
            started = time.perf_counter()
            try:
                ok = len(side.call(client, service, body)) == expect
            except (CallFailed, httpx.HTTPError):
                ok = False
            times.append(time.perf_counter() - started)
            failures += not ok
    return times, failures


def concurrent(
    side: Side, service: Service, bodies: list[dict[str, Any]], clients: int
) -> tuple[list[float], float, int]:
    """``clients`` threads with a keep-alive client each take the calls from one queue.

    Each client first makes one unmeasured call at the same time as the others (rexec's
    service pool grows to its size); then all start together. Returns each call's
    seconds, the wall time from the start to the last answer, and failures."""
    work: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
    for body in bodies:
        work.put(body)
    ready = threading.Barrier(clients + 1)
    times: list[float] = []
    failures = [0]
    lock = threading.Lock()

    def client_thread() -> None:
        with side.client() as client:
            with contextlib.suppress(CallFailed, httpx.HTTPError):
                side.call(client, service, bodies[0])
            ready.wait()
            mine: list[float] = []
            failed = 0
            while True:
                try:
                    body = work.get_nowait()
                except queue.Empty:
                    break
                started = time.perf_counter()
                try:
                    side.call(client, service, body)
                except (CallFailed, httpx.HTTPError):
                    failed += 1
                mine.append(time.perf_counter() - started)
            with lock:
                times.extend(mine)
                failures[0] += failed

    threads = [threading.Thread(target=client_thread, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return times, time.perf_counter() - started, failures[0]


def rexec_batch(
    side: Rexec, service: Service, bodies: list[dict[str, Any]], parallel: int
) -> tuple[float, int]:
    """rexec's batch API: one POST, then polls until the batch is over. Returns the wall
    time from the POST to the answer saying it is over, and the items that failed."""
    path = side.path(service) + "/batch"
    with side.client() as client:
        started = time.perf_counter()
        answer = client.post(path, params={"parallelCount": parallel}, json=bodies)
        if answer.status_code != 202:
            raise CallFailed(f"rexec batch: {answer.status_code} {answer.text}")
        batch = answer.json()["batchExecutionId"]
        deadline = time.monotonic() + 600
        while True:
            state = client.get(f"{path}/{batch}")
            state.raise_for_status()
            found = state.json()
            if found["state"] in ("complete", "failed", "cancelled"):
                break
            if time.monotonic() > deadline:
                raise CallFailed(f"rexec batch {batch} still {found['state']}")
            time.sleep(POLL)
        wall = time.perf_counter() - started
    done = [r for r in found.get("batchExecutionResults") or [] if side.result(r) is not None]
    return wall, len(bodies) - len(done)


def run_side(side: Side, sizes: Sizes) -> Samples:
    """Every workload once against one side: the samples of every metric."""
    samples: Samples = {}
    failures = 0
    inputs = predict_inputs(max(sizes.sequential, sizes.clients * sizes.concurrent, sizes.batch))

    times, failed = sequential(side, PREDICT, inputs[: sizes.sequential], sizes.warmup)
    samples["sequential"], failures = times, failures + failed

    times, failed = sequential(side, PREDICT, inputs[: sizes.fresh], sizes.warmup, fresh=True)
    samples["fresh"], failures = times, failures + failed

    calls = inputs[: sizes.clients * sizes.concurrent]
    times, wall, failed = concurrent(side, PREDICT, calls, sizes.clients)
    samples["concurrent"], samples["rate"] = times, [len(calls) / wall]
    failures += failed

    slow = [{"x": float(i)} for i in range(sizes.slow_calls)]
    _, wall, failed = concurrent(side, SLOW, slow, sizes.clients)
    samples["slow"], failures = [wall], failures + failed

    frame = [frame_input(sizes.frame_rows)] * sizes.frame_calls
    times, failed = sequential(side, FRAME, frame, sizes.warmup, expect=sizes.frame_rows)
    samples["frame"], failures = times, failures + failed

    records = inputs[: sizes.batch]
    if isinstance(side, Rexec):
        wall, failed = rexec_batch(side, PREDICT, records, sizes.parallel)
    else:
        started = time.perf_counter()
        _, failed = sequential(side, PREDICT, records, warmup=0)
        wall = time.perf_counter() - started
    samples["batch"], failures = [wall], failures + failed

    samples["failures"] = [failures]
    return samples


def check_same_answers(sides: list[Side]) -> float:
    """Both sides predict the same (plumber's JSON keeps 4 significant digits): the
    largest relative difference seen over a few records and a data.frame."""
    answers = []
    for side in sides:
        with side.client() as client:
            one = [side.call(client, PREDICT, body)[0] for body in predict_inputs(5, seed=3)]
            answers.append(one + side.call(client, FRAME, frame_input(20)))
    worst = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(*answers, strict=True))
    if worst > 1e-3:
        raise RuntimeError(f"rexec and plumber answer differently: {answers}")
    return worst


# --------------------------------------------------------------------------- results


def evaluate(samples: dict[str, Samples], sizes: Sizes) -> list[dict[str, Any]]:
    """One result per row, in ``bench.report.evaluate``'s format (the peer's value under
    ``rserve``, as ``bench.spread`` reads it)."""
    results = []
    for row, label in zip(ROWS, labels(sizes), strict=True):
        a = samples.get("rexec", {}).get(row.metric)
        b = samples.get(PEER, {}).get(row.metric)
        if a is None and b is None:
            continue
        scale = _SCALE[row.unit]
        rexec = report.statistic(a, row.stat) * scale if a is not None else math.nan
        peer = report.statistic(b, row.stat) * scale if b is not None else math.nan
        ratio = rexec / peer if peer and not math.isnan(peer) else math.nan
        ok = None
        results.append(
            {
                "row": label,
                "metric": row.metric,
                "stat": row.stat,
                "unit": row.unit,
                "better": row.better,
                "peer": PEER,
                "rexec": rexec,
                "rserve": peer,
                "ratio": ratio,
                "goal": "reported",
                "goal_value": None,
                "ok": ok,
                "samples": {"rexec": len(a or []), PEER: len(b or [])},
            }
        )
    return results


def combine(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per row: the median over runs of each side and of the ratio, and its spread."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for results in runs:
        for result in results:
            rows.setdefault(result["row"], []).append(result)
    combined = []
    for name, results in rows.items():
        ratios = [r["ratio"] for r in results if not math.isnan(r["ratio"])]
        combined.append(
            {
                "row": name,
                "unit": results[0]["unit"],
                "better": results[0]["better"],
                "rexec": _median([r["rexec"] for r in results]),
                PEER: _median([r["rserve"] for r in results]),
                "ratio": statistics.median(ratios) if ratios else math.nan,
                "ratio_min": min(ratios) if ratios else math.nan,
                "ratio_max": max(ratios) if ratios else math.nan,
                "ratios": ratios,
            }
        )
    return combined


def _median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for name, justify in (
        ("workload", "left"),
        ("unit", "left"),
        ("rexec", "right"),
        (PEER, "right"),
        ("ratio rexec/plumber (median)", "right"),
        ("spread of ratios", "right"),
        ("better", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        spread_text = (
            f"{r['ratio_min']:.2f} to {r['ratio_max']:.2f}x" if len(r["ratios"]) > 1 else "-"
        )
        better = "lower" if r["better"] == "lower" else "higher"
        table.add_row(
            r["row"],
            r["unit"],
            report._fmt(r["rexec"], r["unit"]),
            report._fmt(r[PEER], r["unit"]),
            "-" if math.isnan(r["ratio"]) else f"{r['ratio']:.2f}x",
            spread_text,
            better,
        )
    Console(width=max(Console().width, 150)).print(table)


def machine() -> dict[str, Any]:
    found = report.machine()
    version = subprocess.run(
        ["Rscript", "-e", "cat(format(packageVersion('plumber')))"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {**found, PEER: version}


def notes(document: dict[str, Any]) -> list[str]:
    sizes = document["sizes"]
    pools = document.get("rexec_pools") or {}
    pool = next(iter(pools.values()), None)
    return [
        "ratio = rexec / plumber: below 1x rexec is faster for ms and s rows; for calls/s"
        " above 1x rexec is faster.",
        f"Batch row: not the same mechanism. rexec: one POST of {sizes['batch']} records to"
        f" its batch API (parallelCount={sizes['parallel']}), polled every {POLL * 1000:.0f}"
        f" ms until complete; plumber has no batch API: {sizes['batch']} sequential calls"
        " from one keep-alive client.",
        "rexec: `rexec up` defaults (log level info, compute pool.max 8) but ports, database"
        " and session.workdir; services published with their default pools"
        + (f" ({json.dumps(pool)})" if pool else "")
        + f". plumber {document['machine'][PEER]}: `pr_run` defaults, one R process (calls"
        " queue in it); its default JSON serializer keeps 4 significant digits (jsonlite),"
        " rexec sends full precision.",
        "plumber's keep-alive rows include a stall of about 40 ms per call: httpuv writes"
        " each answer in several small segments on a socket without TCP_NODELAY, and Linux"
        " holds the last one until the client's delayed ACK (Nagle). That is what a"
        " keep-alive client gets from plumber's defaults; the new-connection row is free"
        " of it.",
        f"Same inputs and R code on both sides; concurrent rows: {sizes['clients']} threads,"
        " httpx keep-alive, one unmeasured call each first; the client runs on the same"
        f" {document['machine']['nproc']} cores.",
    ]


def title(document: dict[str, Any]) -> str:
    m = document["machine"]
    return (
        f"rexec services vs plumber {m[PEER]}, {document['date']}, {m['nproc']} cores"
        f" ({m['cpu']}), {m['r']}, {document['runs']} runs"
    )


# --------------------------------------------------------------------------- main


def run(
    sizes: Sizes,
    runs: int,
    out: Path | None,
    only: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Start both servers, run every workload ``runs`` times on each, stop them."""
    scratch = Path(tempfile.mkdtemp(prefix="rexec-bench-services-"))
    scratch.chmod(0o755)
    started = time.monotonic()
    servers: list[Server] = []
    sides: list[Side] = []
    pools: dict[str, Any] = {}
    services = [PREDICT, SLOW, FRAME]
    per_run: list[list[dict[str, Any]]] = []
    documents = []
    failures: dict[str, int] = {}
    try:
        if only in (None, PEER):
            plumber = start_plumber(scratch / PEER, services, sizes)
            servers.append(plumber)
            sides.append(Plumber(plumber.port))
        if only in (None, "rexec"):
            rexec, password = start_rexec(scratch / "rexec")
            servers.append(rexec)
            sides.insert(0, publish(rexec.port, password, services, sizes))
            pools = {s.name: service_pool(sides[0], s) for s in services}  # type: ignore[arg-type]
        log(f"servers up, services published ({time.monotonic() - started:.0f} s)")
        if len(sides) == 2:
            worst = check_same_answers(sides)
            log(f"same predictions on both sides (largest relative difference {worst:.1e})")
        for index in range(runs):
            order = sides if index % 2 == 0 else sides[::-1]
            samples = {side.name: run_side(side, sizes) for side in order}
            results = evaluate(samples, sizes)
            per_run.append(results)
            failed = {name: int(sum(found["failures"])) for name, found in samples.items()}
            for name, count in failed.items():
                failures[name] = failures.get(name, 0) + count
            documents.append(
                {
                    "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                    "run": index + 1,
                    "order": [side.name for side in order],
                    "failures": failed,
                    "results": results,
                }
            )
            log(f"run {index + 1}/{runs} done ({time.monotonic() - started:.0f} s)")
    finally:
        for server in servers:
            stop(server)
        shutil.rmtree(scratch, ignore_errors=True)
    common = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "runs": runs,
        "rounds": 1,  # bench.spread's header: each run is one round per side
        "sizes": dataclasses.asdict(sizes),
        "seconds": round(time.monotonic() - started, 1),
        "rexec_pools": pools,
        "peer": PEER,
    }
    document = {**common, "failures": failures, "results": combine(per_run)}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for each in documents:
            directory = out / f"run-{each['run']}"
            directory.mkdir(exist_ok=True)
            report.write_json(directory / "latest.json", {**common, **each})
        report.write_json(out / "summary.json", document)
        runs_for_spread = [{**common, **each} for each in documents]
        (out / "summary.md").write_text(
            title(document)
            + "\n\n"
            + spread.combine(runs_for_spread)
            + "\n\n"
            + "\n".join(f"- {note}" for note in notes(document))
            + "\n"
        )
    return document


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.services", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, < 1 minute")
    parser.add_argument("--runs", type=int, default=3, help="runs (default 3)")
    parser.add_argument("--out", type=Path, default=None, help="write JSON results here")
    parser.add_argument("--only", choices=("rexec", PEER), help="one side only (no ratios)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    sizes = QUICK if args.quick else FULL
    document = run(sizes, args.runs, args.out, args.only)
    print_table(document["results"], title(document))
    for note in notes(document):
        print(f"- {note}")
    failures = document["failures"]
    print("failed calls: " + ", ".join(f"{name} {count}" for name, count in failures.items()))
    if args.out is not None:
        print(f"wrote {args.out}/run-*/latest.json, summary.json, summary.md")
    if any(failures.values()):
        sys.exit(1)  # the numbers above include failed calls


if __name__ == "__main__":
    main()
