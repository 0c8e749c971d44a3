"""``rexec capacity``: how many concurrent calls a published service takes within a
latency limit (as Machine Learning Server's ``az ml admin capacity run``; docs/capacity.md).

The tool calls ``POST /api/{name}/{version}`` from N worker threads at once (each with
its own HTTP connection, so N requests are in flight), for ``--duration`` seconds or
``--requests`` calls per level, growing N from ``--start`` by ``--increment``:

- ``--strategy latency`` stops at the first level whose percentile latency
  (``--percentile``, default p95) is over ``--latency-ms``, or at ``--max-threads``;
- ``--strategy thread`` runs every level up to ``--max-threads``.

Every call's client-observed latency is split with the web node's ``Server-Timing``
header (``inputs``, ``checkout``, ``hop``, ``r``, ``outputs``: ``r`` is R's own time in
the call, ``hop`` the rest of the web node's QAP round trip to the compute node); what
is left is the web node's own share (HTTP, authentication, routing, JSON) plus the
client and the loopback.
Without a service name, a small ``lm`` predict service is published for the run and
deleted afterwards (``--sleep`` adds R time to each call).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import getpass
import json
import math
import os
import platform
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rexec.cli.services import (
    DEFAULT_URL,
    PasswordOption,
    UrlOption,
    UserOption,
    _call_inputs,
    _client,
    _fail,
    console,
)

if TYPE_CHECKING:
    import httpx

    from rexec.client.web import WebClient

#: The stages of a call, bottom to top in the chart: key, label, colour.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("r", "R execution (R's own time)", "tab:blue"),
    ("hop", "web → compute hop (QAP)", "tab:cyan"),
    ("checkout", "shell checkout", "tab:orange"),
    ("inputs", "inputs (JSON → R)", "tab:green"),
    ("outputs", "response (R → JSON)", "tab:red"),
    ("web", "web node, client, HTTP", "tab:gray"),
)
SERVER_STAGES = ("inputs", "checkout", "hop", "r", "outputs")
#: The stages in the table and the CSV, in this order.
TABLE_STAGES = ("web", "checkout", "hop", "r", "inputs", "outputs")

GENERATED_INIT = (
    "set.seed(1)\n"
    "training <- data.frame(x = 1:100)\n"
    "training$y <- 3 + 2 * training$x + rnorm(100)\n"
    "model <- lm(y ~ x, data = training)\n"
)
GENERATED_INPUTS = {"x": [1.5, 2.5, 3.5, 4.5, 5.5]}


def generated_code(sleep: float) -> str:
    """The test service's code: an ``lm`` predict, after ``Sys.sleep(sleep)``."""
    pause = f"Sys.sleep({sleep!r})\n" if sleep > 0 else ""
    return pause + "result <- unname(predict(model, newdata = data.frame(x = x)))\n"


# ================================================================== measuring


@dataclass
class Sample:
    """One call: client-observed milliseconds, the server's stages (ms), the outcome."""

    total: float
    stages: dict[str, float]
    ok: bool
    status: int
    error: str | None = None


@dataclass
class Level:
    """The results of one concurrency level (milliseconds; latencies of successful
    calls only; ``stages['web']`` is the mean total minus the server's stages)."""

    concurrency: int
    requests: int
    errors: int
    elapsed: float
    throughput: float
    latency: dict[str, float | None]
    percentile: float | None
    stages: dict[str, float]
    over_limit: bool
    error_examples: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "errors": self.errors,
            "elapsed_s": self.elapsed,
            "throughput_rps": self.throughput,
            "latency_ms": self.latency,
            "percentile_ms": self.percentile,
            "stages_ms": self.stages,
            "over_limit": self.over_limit,
            "error_examples": self.error_examples,
        }


def quantile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) with linear interpolation between the closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def parse_server_timing(header: str | None) -> dict[str, float]:
    """``inputs;dur=0.1, r;dur=2.5`` → ``{"inputs": 0.1, "r": 2.5}`` (milliseconds)."""
    stages: dict[str, float] = {}
    for metric in (header or "").split(","):
        name, *params = (part.strip() for part in metric.split(";"))
        for param in params:
            key, _, value = param.partition("=")
            if name and key.strip().lower() == "dur":
                with contextlib.suppress(ValueError):
                    stages[name] = float(value.strip().strip('"'))
    return stages


def percentile_key(percentile: float) -> str:
    return f"p{percentile:g}"


def summarise(
    concurrency: int,
    samples: list[Sample],
    elapsed: float,
    percentile: float,
    limit_ms: float,
) -> Level:
    good = [s for s in samples if s.ok]
    totals = [s.total for s in good]
    latency: dict[str, float | None] = {
        "mean": sum(totals) / len(totals) if totals else None,
        "min": min(totals) if totals else None,
        "p50": quantile(totals, 0.5),
        percentile_key(percentile): quantile(totals, percentile / 100),
        "p99": quantile(totals, 0.99),
        "max": max(totals) if totals else None,
    }
    stages = {key: 0.0 for key, _, _ in STAGES}
    if good:
        for key in SERVER_STAGES:
            stages[key] = sum(s.stages.get(key, 0.0) for s in good) / len(good)
        stages["web"] = sum(
            s.total - sum(s.stages.get(k, 0.0) for k in SERVER_STAGES) for s in good
        )
        stages["web"] /= len(good)
    value = latency[percentile_key(percentile)]
    errors = [s for s in samples if not s.ok]
    examples: list[str] = []
    for sample in errors:
        text = f"{sample.status}: {sample.error}" if sample.status else str(sample.error)
        if text not in examples and len(examples) < 3:
            examples.append(text)
    return Level(
        concurrency=concurrency,
        requests=len(samples),
        errors=len(errors),
        elapsed=elapsed,
        throughput=len(good) / elapsed if elapsed > 0 else 0.0,
        latency=latency,
        percentile=value,
        stages=stages,
        over_limit=value is None or value > limit_ms,
        error_examples=examples,
    )


class _Auth:
    """The bearer token the workers share; a 401 logs in again, once for everyone."""

    def __init__(self, web: WebClient, user: str, password: str) -> None:
        self.web, self.user, self.password = web, user, password
        self.lock = threading.Lock()

    def header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.web.token}"}

    def renew(self, stale: dict[str, str]) -> None:
        with self.lock:
            if self.header() == stale:
                self.web.login(self.user, self.password)


class Caller:
    """Calls one service version with a fixed JSON body."""

    def __init__(self, url: str, path: str, body: bytes, auth: _Auth, timeout: float) -> None:
        self.url, self.path, self.body, self.auth, self.timeout = url, path, body, auth, timeout

    def client(self) -> httpx.Client:
        import httpx

        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        return httpx.Client(base_url=self.url, timeout=self.timeout, limits=limits)

    def call(self, http: httpx.Client) -> Sample:
        import httpx

        for attempt in range(2):
            headers = {**self.auth.header(), "Content-Type": "application/json"}
            started = time.perf_counter()
            try:
                reply = http.post(self.path, content=self.body, headers=headers)
            except httpx.HTTPError as exc:
                total = (time.perf_counter() - started) * 1000
                return Sample(total, {}, False, 0, f"{type(exc).__name__}: {exc}")
            total = (time.perf_counter() - started) * 1000
            if reply.status_code == 401 and not attempt:
                self.auth.renew(headers)
                continue
            break
        stages = parse_server_timing(reply.headers.get("server-timing"))
        if reply.status_code != 200:
            return Sample(total, stages, False, reply.status_code, _message(reply))
        try:
            answer = reply.json()
        except ValueError:
            return Sample(total, stages, False, 200, "the answer is not JSON")
        if not answer.get("success", False):
            return Sample(total, stages, False, 200, f"R error: {answer.get('errorMessage')}")
        return Sample(total, stages, True, 200)


def _message(reply: httpx.Response) -> str:
    try:
        body = reply.json()
    except ValueError:
        return reply.text[:200] or reply.reason_phrase
    if isinstance(body, dict):
        return str(body.get("message", body.get("detail", body)))[:200]
    return str(body)[:200]


def run_level(
    caller: Caller,
    concurrency: int,
    *,
    duration: float,
    requests: int | None,
    warmup: int,
    tick: Callable[[float, int], object] | None = None,
) -> tuple[list[Sample], float]:
    """``concurrency`` workers call the service in a closed loop (each starts its next
    call when its last one answers) until ``duration`` seconds passed or ``requests``
    calls were started; the calls of ``warmup`` rounds before that are not counted.
    Returns the samples and the seconds from the start to the last answer."""
    samples: list[Sample] = []
    lock = threading.Lock()
    started: list[float] = []
    finished: list[float] = []
    tickets = iter(range(requests)) if requests is not None else None

    def begin() -> None:
        started.append(time.perf_counter())

    barrier = threading.Barrier(concurrency, action=begin)

    def more() -> bool:
        if tickets is not None:
            with lock:
                return next(tickets, None) is not None
        return time.perf_counter() < started[0] + duration

    def worker() -> None:
        with caller.client() as http:
            try:
                for _ in range(warmup):
                    caller.call(http)
            finally:
                barrier.wait()
            while more():
                sample = caller.call(http)
                with lock:
                    samples.append(sample)
                    finished.append(time.perf_counter())
                if sample.status == 0:  # no answer at all: do not spin on a dead node
                    time.sleep(0.05)

    with ThreadPoolExecutor(concurrency, thread_name_prefix="capacity") as pool:
        futures: list[Future[None]] = [pool.submit(worker) for _ in range(concurrency)]
        pending = set(futures)
        while pending:
            _, pending = wait_futures(pending, timeout=0.1)
            if tick is not None and started:
                with lock:
                    count = len(samples)
                tick(time.perf_counter() - started[0], count)
        for future in futures:
            future.result()
    elapsed = (max(finished) - started[0]) if finished else 0.0
    return samples, elapsed


# ==================================================================== reporting


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def results_table(levels: list[Level], percentile: float, limit_ms: float) -> Table:
    key = percentile_key(percentile)
    table = Table(title=f"capacity ({key} limit {limit_ms:g} ms)")
    columns = [
        "threads",
        "requests",
        "errors",
        "req/s",
        "mean ms",
        "p50 ms",
        f"{key} ms",
        "p99 ms",
        "max ms",
        *TABLE_STAGES,
        "within",
    ]
    if key in ("p50", "p99"):
        columns.remove(f"{key} ms")
    for column in columns:
        table.add_column(column, justify="right")
    for level in levels:
        lat = level.latency
        row = [
            str(level.concurrency),
            str(level.requests),
            str(level.errors),
            f"{level.throughput:,.1f}",
            _ms(lat["mean"]),
            _ms(lat["p50"]),
            _ms(lat[key]),
            _ms(lat["p99"]),
            _ms(lat["max"]),
            *(_ms(level.stages[k]) for k in TABLE_STAGES),
            "[red]no[/red]" if level.over_limit else "yes",
        ]
        if key in ("p50", "p99"):
            del row[6]
        table.add_row(*row)
    return table


CSV_STAGES = TABLE_STAGES


def write_csv(path: Path, levels: list[Level], percentile: float) -> None:
    key = percentile_key(percentile)
    latencies = list(dict.fromkeys(["mean", "min", "p50", key, "p99", "max"]))
    header = [
        "concurrency",
        "requests",
        "errors",
        "elapsed_s",
        "throughput_rps",
        *(f"{k}_ms" for k in latencies),
        *(f"{k}_ms" for k in CSV_STAGES),
        "over_limit",
    ]
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        for level in levels:
            writer.writerow(
                [
                    level.concurrency,
                    level.requests,
                    level.errors,
                    f"{level.elapsed:.4f}",
                    f"{level.throughput:.3f}",
                    *(
                        "" if level.latency[k] is None else f"{level.latency[k]:.4f}"
                        for k in latencies
                    ),
                    *(f"{level.stages[k]:.4f}" for k in CSV_STAGES),
                    level.over_limit,
                ]
            )


def write_chart(
    path: Path, levels: list[Level], percentile: float, limit_ms: float, title: str
) -> None:
    """A stacked bar per level (mean milliseconds per stage), the percentile latency,
    the limit and the throughput. Raises ImportError without matplotlib."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 6.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    xs = list(range(len(levels)))
    bottom = [0.0] * len(levels)
    for key, label, colour in STAGES:
        values = [level.stages[key] for level in levels]
        axes.bar(xs, values, bottom=bottom, label=label, color=colour, width=0.7)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    key = percentile_key(percentile)
    marks = [(x, level.percentile) for x, level in zip(xs, levels, strict=True)]
    shown = [(x, v) for x, v in marks if v is not None]
    if shown:
        axes.plot(
            [x for x, _ in shown],
            [v for _, v in shown],
            "D--",
            color="black",
            label=f"{key} latency",
            markersize=6,
        )
    top = max([*bottom, *(v for _, v in shown), 1e-9])
    if limit_ms <= top * 1.5:
        axes.axhline(limit_ms, color="crimson", linestyle=":", label=f"limit {limit_ms:g} ms")
        top = max(top, limit_ms)
    axes.set_ylim(0, top * 1.15)
    axes.set_xticks(xs, [str(level.concurrency) for level in levels])
    axes.set_xlabel("concurrent requests (threads)")
    axes.set_ylabel("latency, ms (bars: mean per stage)")
    axes.set_title(title)
    throughput = axes.twinx()
    throughput.plot(
        xs, [level.throughput for level in levels], "o-", color="tab:purple", label="throughput"
    )
    throughput.set_ylabel("throughput, requests/s")
    throughput.set_ylim(0, max([level.throughput for level in levels] + [1e-9]) * 1.15)
    handles, labels = axes.get_legend_handles_labels()
    more_handles, more_labels = throughput.get_legend_handles_labels()
    axes.legend(
        handles + more_handles,
        labels + more_labels,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.12),
        ncol=3,
        fontsize="small",
        frameon=False,
    )
    figure.tight_layout()
    figure.savefig(path, format="png")


# ====================================================================== command


def _levels(start: int, increment: int, most: int) -> list[int]:
    return list(range(start, most + 1, increment))


def capacity(
    name: Annotated[
        str | None,
        typer.Argument(help="Service name (default: publish a test service for the run)."),
    ] = None,
    version: Annotated[
        str | None, typer.Argument(help="Version (default: the default version).")
    ] = None,
    input_: Annotated[
        list[str] | None,
        typer.Option(
            "--input", "-i", help="NAME=VALUE input of each call (repeatable); VALUE is JSON."
        ),
    ] = None,
    json_text: Annotated[
        str | None, typer.Option("--json", help="The inputs of each call as a JSON object.")
    ] = None,
    sleep: Annotated[
        float,
        typer.Option(help="Test service only: seconds of Sys.sleep() in each call."),
    ] = 0.0,
    strategy: Annotated[
        str,
        typer.Option(
            help="'latency': stop at the first level over the limit; 'thread': run every level."
        ),
    ] = "latency",
    latency_ms: Annotated[
        float, typer.Option("--latency-ms", help="Latency limit on the percentile (ms).")
    ] = 500.0,
    percentile: Annotated[
        float, typer.Option(help="The percentile held to the limit (0-100).")
    ] = 95.0,
    start: Annotated[int, typer.Option(help="Concurrent requests of the first level.")] = 1,
    increment: Annotated[int, typer.Option(help="Concurrent requests added per level.")] = 1,
    max_threads: Annotated[
        int, typer.Option("--max-threads", help="Concurrent requests of the last level.")
    ] = 16,
    duration: Annotated[float, typer.Option(help="Seconds per level.")] = 10.0,
    requests: Annotated[
        int | None,
        typer.Option(help="Calls per level, instead of --duration."),
    ] = None,
    warmup: Annotated[int, typer.Option(help="Uncounted calls per thread before each level.")] = 2,
    pool_max: Annotated[
        int | None,
        typer.Option(help="Test service only: its pool size (default: --max-threads, ≤ 16)."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds a call may take.")] = 120.0,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Directory for results.json, results.csv and capacity.png."),
    ] = None,
    chart: Annotated[
        Path | None, typer.Option(help="Write the chart here (default: OUT/capacity.png).")
    ] = None,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show progress bars.")
    ] = True,
    url: UrlOption = DEFAULT_URL,
    user: UserOption = "admin",
    password: PasswordOption = None,
) -> None:
    """Find how many concurrent calls a service takes within a latency limit: runs
    levels of concurrent requests, prints a table of latency (split into stages) and
    throughput per level, and writes results.json, results.csv and a chart (--out)."""
    if strategy not in ("latency", "thread"):
        raise _fail(f"--strategy is 'latency' or 'thread', not {strategy!r}", 2)
    if start < 1 or increment < 1 or max_threads < start:
        raise _fail("need 1 ≤ --start ≤ --max-threads and --increment ≥ 1", 2)
    if not 0 < percentile < 100:
        raise _fail("--percentile is between 0 and 100", 2)
    if requests is not None and requests < 1:
        raise _fail("--requests is at least 1", 2)
    if duration <= 0 or warmup < 0 or latency_ms < 0 or sleep < 0:
        raise _fail("--duration must be positive; --warmup, --latency-ms, --sleep not negative", 2)
    if name is not None and (sleep or pool_max is not None):
        raise _fail("--sleep and --pool-max are for the test service (no service name)", 2)
    if name is None and (input_ or json_text):
        raise _fail("--input and --json need a service name", 2)
    if out is not None and out.exists() and not out.is_dir():
        raise _fail(f"--out {out} is not a directory", 2)
    body = GENERATED_INPUTS if name is None else _call_inputs(input_ or [], json_text, None)
    if password is None:
        password = getpass.getpass(f"password for {user} at {url}: ")
    web = _client(url, user, password)
    generated = name is None
    try:
        if generated:
            name, version = _publish_test_service(web, sleep, pool_max or min(max_threads, 16))
        else:
            version = _resolve_version(web, name, version)  # type: ignore[arg-type]
        levels = _measure(
            web,
            user,
            password,
            name,  # type: ignore[arg-type]
            version,  # type: ignore[arg-type]
            body,
            strategy=strategy,
            limit_ms=latency_ms,
            percentile=percentile,
            counts=_levels(start, increment, max_threads),
            duration=duration,
            requests=requests,
            warmup=warmup,
            timeout=timeout,
            progress=progress,
        )
    finally:
        if generated and name is not None:
            _delete_quietly(web, name, version)
        web.close()
    Console().print(results_table(levels, percentile, latency_ms))
    key = percentile_key(percentile)
    best: Level | None = None
    for level in levels:  # the last level of the run of levels within the limit
        if level.over_limit:
            break
        best = level
    if best is not None:
        summary = (
            f"capacity: {best.concurrency} concurrent requests with {key} ≤ {latency_ms:g} ms "
            f"({best.throughput:,.1f} requests/s)"
        )
    else:
        summary = f"capacity: none: the first level's {key} is over {latency_ms:g} ms"
    print(summary)
    failed = sum(level.errors for level in levels)
    if failed:
        console.print(f"[yellow]{failed} calls failed[/yellow]; e.g. {escape(_examples(levels))}")
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "url": url,
        "service": {"name": name, "version": version, "generated": generated},
        "host": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "options": {
            "strategy": strategy,
            "latency_ms": latency_ms,
            "percentile": percentile,
            "start": start,
            "increment": increment,
            "max_threads": max_threads,
            "duration_s": None if requests is not None else duration,
            "requests": requests,
            "warmup": warmup,
            "sleep_s": sleep if generated else None,
        },
        "capacity": None if best is None else best.concurrency,
        "summary": summary,
        "levels": [level.record() for level in levels],
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        write_csv(out / "results.csv", levels, percentile)
        console.print(f"wrote {escape(str(out / 'results.json'))} and results.csv")
    chart_path = chart if chart is not None else (out / "capacity.png" if out else None)
    if chart_path is not None:
        title = f"{name} {version}: latency per stage, throughput ({key} limit {latency_ms:g} ms)"
        try:
            write_chart(chart_path, levels, percentile, latency_ms, title)
        except ImportError:
            console.print(
                "[yellow]no chart: matplotlib is not installed[/yellow] "
                "(pip install matplotlib, or pip install -e '.[test]')",
                soft_wrap=True,
            )
        else:
            console.print(f"wrote {escape(str(chart_path))}")


def _examples(levels: list[Level]) -> str:
    seen: list[str] = []
    for level in levels:
        seen.extend(e for e in level.error_examples if e not in seen)
    return "; ".join(seen[:3])


def _publish_test_service(web: WebClient, sleep: float, pool_size: int) -> tuple[str, str]:
    from rexec.client.web import WebError

    name, version = f"capacity-test-{uuid.uuid4().hex[:8]}", "1"
    try:
        web.publish_service(
            name,
            generated_code(sleep),
            version=version,
            init_code=GENERATED_INIT,
            inputs={"x": "numeric"},
            outputs={"result": "numeric"},
            description="rexec capacity: a generated test service (lm predict)",
            timeout=max(60.0, sleep * 4 + 30),
        )
    except WebError as exc:
        raise _fail(f"cannot publish the test service: {exc}") from None
    console.print(f"published the test service [bold]{name}[/bold] {version}")
    size = pool_size
    while True:  # the compute nodes' pool.max may be smaller: halve until it fits
        try:
            web.set_pool(name, version, size, size)
        except WebError as exc:
            if size <= 1:
                console.print(f"[yellow]no pool size accepted ({escape(str(exc))})[/yellow]")
                break
            size = max(1, size // 2)
        else:
            note = "" if size == pool_size else f" ({pool_size} refused by the nodes)"
            console.print(f"its pool: {size} shells per compute node{note}")
            break
    return name, version


def _resolve_version(web: WebClient, name: str, version: str | None) -> str:
    import httpx

    from rexec.client.web import WebError

    try:
        return web.service_info(name, version).version
    except WebError as exc:
        raise _fail(f"service {name} {version or '(default)'}: {exc}") from None
    except httpx.HTTPError as exc:
        raise _fail(f"request failed: {exc}") from None


def _delete_quietly(web: WebClient, name: str, version: str | None) -> None:
    if version is None:
        return
    try:
        web.delete_service(name, version)
    except Exception as exc:  # the run's results matter more than the clean-up
        console.print(f"[yellow]could not delete the test service {name}: {exc}[/yellow]")
    else:
        console.print(f"deleted the test service {name}")


def _measure(
    web: WebClient,
    user: str,
    password: str,
    name: str,
    version: str,
    body: dict[str, Any],
    *,
    strategy: str,
    limit_ms: float,
    percentile: float,
    counts: list[int],
    duration: float,
    requests: int | None,
    warmup: int,
    timeout: float,
    progress: bool,
) -> list[Level]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from rexec.client.web import to_json_value

    content = json.dumps(to_json_value(body), allow_nan=False).encode()
    path = f"/api/{quote(name, safe='')}/{quote(version, safe='')}"
    caller = Caller(web.url, path, content, _Auth(web, user, password), timeout)
    with caller.client() as http:  # one call first: a service that fails is no test
        first = caller.call(http)
    if not first.ok:
        raise _fail(f"a call to {name} {version} failed: {first.status}: {first.error}")
    if not {"inputs", "checkout", "r", "outputs"} <= set(first.stages):
        console.print(
            "[yellow]the web node sends no Server-Timing stages: "
            "the whole latency counts as 'web'[/yellow]"
        )
    elif "hop" not in first.stages:
        console.print(
            "[yellow]no 'hop' stage (a web node, or a service pool, from before R timed "
            "its own calls): 'r' is the whole QAP round trip[/yellow]"
        )
    key = percentile_key(percentile)
    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not progress,
    )
    levels: list[Level] = []
    with bars:
        overall = bars.add_task("levels", total=len(counts), note="")
        for count in counts:
            total = requests if requests is not None else duration
            task = bars.add_task(f"{count} threads", total=total, note="")

            def tick(seconds: float, done: int, task: Any = task) -> None:
                bars.update(
                    task, completed=done if requests is not None else min(seconds, duration)
                )

            samples, elapsed = run_level(
                caller, count, duration=duration, requests=requests, warmup=warmup, tick=tick
            )
            level = summarise(count, samples, elapsed, percentile, limit_ms)
            levels.append(level)
            bars.remove_task(task)
            note = f"{count} threads: {key} {_ms(level.percentile)} ms, {level.throughput:,.1f}/s"
            bars.update(overall, advance=1, note=note)
            if strategy == "latency" and level.over_limit:
                break
    return levels
