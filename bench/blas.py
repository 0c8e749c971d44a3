"""``python -m bench.blas``: multi-threaded math in rexec shells (``shell.threads``).

Two questions, on OpenBLAS (R's BLAS after ``make setup``):

1. One ``crossprod`` of an N-by-N matrix (2000 by default), with 1 thread and with all
   cores: in a rexec shell (``shell.threads`` = 1, = cores) and in a plain ``Rscript``
   on the same BLAS (``OPENBLAS_NUM_THREADS`` = 1, = cores). Timed inside R
   (``system.time``, after one warm-up call; a run is the median of 5 calls), so both
   sides measure the same thing.
2. 8 such requests at once on 8 connections (``pool.max`` = 8), with each shell at
   all cores (what a shell would inherit without the setting: OpenBLAS's own default
   in the template), at the default (cores ÷ ``pool.max``, at least 1) and at 1 thread.
   Each request runs 5 crossprods; timed by the client, from a barrier to the last reply.

Every measurement is repeated (3 runs, interleaved across configurations); the table
shows the median and the spread (min-max) and ratios of medians, since absolute times
move on a shared machine. Prints a Markdown table and writes ``bench/results/blas.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench import report
from bench.qap import Client
from bench.servers import (
    UTF8,
    Server,
    free_port,
    launch,
    rexec_serve,
    wait_for_id_string,
    wait_for_idle_shells,
)
from rexec.protocol import to_python
from rexec.rshell.blas import cores

RESULTS = Path(__file__).resolve().parent / "results"
POOL = 8
REPEATS = 5  # crossprods per measurement: one alone takes about a tenth of a second
SIZE = 2000  # matrix order N
RUNS = 3  # repetitions of every measurement


def _make(n: int, seed: int = 1) -> str:
    return f"set.seed({seed}); m <- matrix(runif({n} * {n}), {n}); invisible(crossprod(m))"


#: The median of REPEATS timed crossprods and the count the session sees: "seconds threads".
TIMED = (
    f'paste(median(replicate({REPEATS}, system.time(crossprod(m))[["elapsed"]])), '
    'Sys.getenv("OPENBLAS_NUM_THREADS", "unset"))'
)


def _value(client: Client, code: str) -> object:
    return to_python(client.eval(code))  # a length-one vector is a scalar


def start(directory: Path, threads: int | None) -> Server:
    """``rexec serve`` with ``pool.initial = pool.max = POOL`` and ``shell.threads``
    (None: the default)."""
    directory.mkdir(parents=True)
    directory.chmod(0o755)  # R shells may run as the unprivileged `rexec` account
    port = free_port()
    shell = "" if threads is None else f"[shell]\nthreads = {threads}\n"
    config = directory / "rexec.toml"
    config.write_text(
        f"[server]\nport = {port}\n[pool]\ninitial = {POOL}\nmax = {POOL}\n{shell}"
        f'[session]\nworkdir = "{directory / "work"}"\n'
    )
    server = launch("rexec", port, rexec_serve(config), directory / "rexec.log")
    try:
        wait_for_id_string(port)
        wait_for_idle_shells(server, POOL)
    except TimeoutError:
        server.stop()
        raise
    return server


def in_rexec(server: Server, n: int) -> tuple[float, str]:
    """Crossprods in a fresh session (a new shell): median seconds, threads it saw."""
    with Client(server.port) as client:
        client.void(_make(n))
        seconds, threads = str(_value(client, TIMED)).split()
    wait_for_idle_shells(server, POOL, timeout=30)
    return float(seconds), threads


def in_rscript(threads: int, n: int) -> tuple[float, str]:
    env = {**UTF8, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    run = subprocess.run(
        ["Rscript", "--vanilla", "-e", f"{_make(n)}; cat({TIMED})"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    seconds, seen = run.stdout.split()
    return float(seconds), seen


def concurrent(server: Server, n: int, connections: int = POOL) -> tuple[float, float, str]:
    """``connections`` requests of REPEATS crossprods at once: seconds until the last
    reply, the median request's seconds, and the thread count the sessions saw."""
    clients = [Client(server.port) for _ in range(connections)]
    try:
        for i, client in enumerate(clients):  # data and a warm-up, before the barrier
            client.void(f"{_make(n // 4, i)}; m <- matrix(runif({n} * {n}), {n})")
        seen = {str(_value(c, 'Sys.getenv("OPENBLAS_NUM_THREADS")')) for c in clients}
        barrier = threading.Barrier(connections + 1)
        done: list[float] = [0.0] * connections

        def one(i: int) -> None:
            barrier.wait()
            clients[i].void(f"for (i in seq_len({REPEATS})) crossprod(m)")
            done[i] = time.perf_counter()

        workers = [threading.Thread(target=one, args=(i,)) for i in range(connections)]
        for worker in workers:
            worker.start()
        barrier.wait()
        started = time.perf_counter()
        for worker in workers:
            worker.join()
    finally:
        for client in clients:
            client.close()
    wait_for_idle_shells(server, POOL, timeout=30)
    spans = [t - started for t in done]
    return max(spans), statistics.median(spans), ",".join(sorted(seen))


def _spread(samples: list[float]) -> str:
    return f"{statistics.median(samples):.3f} ({min(samples):.3f}-{max(samples):.3f})"


def _ratio(a: list[float], b: list[float]) -> str:
    return f"{statistics.median(a) / statistics.median(b):.2f}x"


@dataclass
class Measurement:
    """What :func:`measure` found: seconds per run, keyed as the tables are.

    ``single``: ``"rexec 1"``, ``"Rscript 1"``, ``"rexec all"``, ``"Rscript all"`` (the
    median of REPEATS crossprods, one per run); ``many`` and ``many_p50``: ``"all"``,
    ``"default"``, ``"1"`` (the POOL concurrent requests: all done, median request);
    ``seen``: the thread counts each configuration's sessions reported.
    """

    n: int
    runs: int
    cores: int
    single: dict[str, list[float]] = field(default_factory=dict)
    many: dict[str, list[float]] = field(default_factory=dict)
    many_p50: dict[str, list[float]] = field(default_factory=dict)
    seen: dict[str, set[str]] = field(default_factory=dict)

    def threads_of(self, key: str) -> str:
        return ",".join(sorted(self.seen[key]))


def measure(n: int, runs: int, log: Callable[[str], None] = print) -> Measurement:
    """Start the three rexec instances (``shell.threads`` 1, all cores, default), run
    every measurement ``runs`` times, interleaved, and stop them."""
    every = cores()
    found = Measurement(n, runs, every)
    scratch = Path(tempfile.mkdtemp(prefix="rexec-bench-blas-"))
    scratch.chmod(0o755)
    servers: dict[str, Server] = {}
    try:
        servers["1"] = start(scratch / "one", 1)
        servers["all"] = start(scratch / "all", every)
        servers["default"] = start(scratch / "default", None)
        for r in range(runs):
            log(f"run {r + 1}/{runs}")
            for label, threads in (("1", 1), ("all", every)):
                for where in ("rexec", "Rscript"):
                    if where == "rexec":
                        seconds, threads_seen = in_rexec(servers[label], n)
                    else:
                        seconds, threads_seen = in_rscript(threads, n)
                    found.single.setdefault(f"{where} {label}", []).append(seconds)
                    found.seen.setdefault(f"{where} {label}", set()).add(threads_seen)
            for label in ("all", "default", "1"):
                last, p50, threads_seen = concurrent(servers[label], n)
                found.many.setdefault(label, []).append(last)
                found.many_p50.setdefault(label, []).append(p50)
                found.seen.setdefault(f"many {label}", set()).add(threads_seen)
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return found


def markdown(found: Measurement) -> str:
    """The Markdown report of a :class:`Measurement` (``bench/results/blas.md``)."""
    n, runs, every = found.n, found.runs, found.cores
    single, many, many_p50 = found.single, found.many, found.many_p50
    threads_of = found.threads_of
    host = report.machine()
    blas = subprocess.run(
        ["Rscript", "--vanilla", "-e", "cat(La_library())"], capture_output=True, text=True
    ).stdout.strip()
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Measured {now}: `nproc` = {os.cpu_count()} ({every} usable), {host['cpu']}, "
        f"{host['r']}, BLAS `{blas}`; {runs} run(s), median (min-max); N = {n}.",
        "",
        f"| one `crossprod` of {n}x{n}, seconds (median of {REPEATS}) | threads "
        "| rexec shell | Rscript "
        "| rexec/Rscript |",
        "|---|--:|--:|--:|--:|",
    ]
    for label, name in (("1", "1 thread"), ("all", f"all cores ({every})")):
        rexec, rscript = single[f"rexec {label}"], single[f"Rscript {label}"]
        lines.append(
            f"| {name} | {threads_of(f'rexec {label}')} / {threads_of(f'Rscript {label}')} "
            f"| {_spread(rexec)} | {_spread(rscript)} | {_ratio(rexec, rscript)} |"
        )
    lines.append(
        f"| speed-up, all cores over 1 thread | | "
        f"{_ratio(single['rexec 1'], single['rexec all'])} "
        f"| {_ratio(single['Rscript 1'], single['Rscript all'])} | |"
    )
    lines += [
        "",
        f"| {POOL} concurrent requests of {REPEATS} `crossprod`s, `pool.max` = {POOL} "
        "| threads per shell "
        "| all done, s | median request, s | all done vs 1 thread |",
        "|---|--:|--:|--:|--:|",
    ]
    for label, name in (
        ("all", f"`shell.threads = {every}` (all cores, as without the setting)"),
        ("default", "default (cores ÷ `pool.max`, at least 1)"),
        ("1", "`shell.threads = 1`"),
    ):
        lines.append(
            f"| {name} | {threads_of(f'many {label}')} | {_spread(many[label])} "
            f"| {_spread(many_p50[label])} | {_ratio(many[label], many['1'])} |"
        )
    return "\n".join(lines) + "\n"


def run(n: int, runs: int, log: Callable[[str], None] = print) -> str:
    """Measure; return the Markdown report."""
    return markdown(measure(n, runs, log))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.blas", description=__doc__)
    parser.add_argument("--size", type=int, default=SIZE, help=f"matrix order N ({SIZE})")
    parser.add_argument("--runs", type=int, default=RUNS, help=f"repetitions ({RUNS})")
    parser.add_argument("--out", type=Path, default=RESULTS / "blas.md")
    args = parser.parse_args(argv)
    text = run(args.size, args.runs)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("# Multi-threaded math (`python -m bench.blas`)\n\n" + text)


if __name__ == "__main__":
    main()
