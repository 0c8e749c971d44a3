"""The workloads, each run against one server port and returning raw samples.

Every function gets the port and a :class:`Sizes`; it returns a dict of metric name to
a list of samples (seconds, rates or counts). ``bench.__main__`` interleaves the calls
across servers and aggregates the samples.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.qap import Client, QapError, eval_request, set_doubles_request
from rexec.protocol import decode_params

Samples = dict[str, list[float]]


@dataclass(frozen=True)
class Sizes:
    """How much work one round of each workload does."""

    connects: int = 30  # connect -> first result, per round
    evals: int = 2000  # small evals per round (latency)
    throughput_seconds: float = 2.0
    doubles: int = 10_000_000
    strings: int = 1_000_000
    frame_rows: int = 100_000
    bulk_repeats: int = 3
    sequential: int = 200
    concurrent: int = 50
    rsclient_evals: int = 2000
    rsclient_bulk: int = 3
    client_connects: int = 200  # connect per request through pyRserve and RSclient
    blas_n: int = 2000  # bench.blas's matrix order; 0 skips the BLAS rows
    blas_runs: int = 3  # bench.blas's repetitions


FULL = Sizes()
QUICK = Sizes(
    connects=10,
    evals=500,
    throughput_seconds=0.5,
    doubles=2_000_000,
    strings=200_000,
    frame_rows=20_000,
    bulk_repeats=2,
    sequential=40,
    concurrent=20,
    rsclient_evals=300,
    rsclient_bulk=1,
    client_connects=40,
    blas_n=0,  # the BLAS rows take minutes: full runs only
    blas_runs=0,
)
TINY = Sizes(
    connects=2,
    evals=20,
    throughput_seconds=0.1,
    doubles=10_000,
    strings=1_000,
    frame_rows=1_000,
    bulk_repeats=1,
    sequential=3,
    concurrent=3,
    rsclient_evals=10,
    rsclient_bulk=1,
    client_connects=3,
    blas_n=500,  # the smallest order whose crossprod system.time() does not round to 0
    blas_runs=1,
)

ONE = eval_request("1")
ONE_PLUS_ONE = eval_request("1+1")


def _check_one(payload: memoryview) -> None:
    value = decode_params(payload)[0].value
    if np.frombuffer(value.value, "<f8")[0] != 1.0:
        raise QapError("eval of 1 did not answer 1")


# --------------------------------------------------------------------------- connections


def connect_first(port: int, sizes: Sizes) -> Samples:
    """TCP connect, read the 32-byte ID string, eval ``1``, read the reply."""
    times = []
    for _ in range(sizes.connects):
        started = time.perf_counter()
        with Client(port) as client:
            _check_one(client.call(ONE))
            times.append(time.perf_counter() - started)
        time.sleep(0.01)  # let the server retire the session (both fork per connection)
    return {"connect_first": times}


def _connect_eval_close(port: int) -> float:
    started = time.perf_counter()
    with Client(port) as client:
        _check_one(client.call(ONE))
    return time.perf_counter() - started


def sequential_connections(port: int, sizes: Sizes) -> Samples:
    times, failures = [], 0
    for _ in range(sizes.sequential):
        try:
            times.append(_connect_eval_close(port))
        except (OSError, QapError):
            failures += 1
    return {"sequential": times, "sequential_failures": [failures]}


def concurrent_connections(port: int, sizes: Sizes) -> Samples:
    times: list[float] = []
    failures = [0]
    barrier = threading.Barrier(sizes.concurrent)
    lock = threading.Lock()

    def one() -> None:
        barrier.wait()
        try:
            elapsed = _connect_eval_close(port)
        except (OSError, QapError):
            with lock:
                failures[0] += 1
            return
        with lock:
            times.append(elapsed)

    threads = [threading.Thread(target=one) for _ in range(sizes.concurrent)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"concurrent": times, "concurrent_failures": [float(failures[0])]}


# --------------------------------------------------------------------------- small evals


def eval_latency(port: int, sizes: Sizes) -> Samples:
    """``1+1`` round trips on one open connection (after a short warm-up)."""
    with Client(port) as client:
        for _ in range(20):
            client.call(ONE_PLUS_ONE)
        times = []
        clock = time.perf_counter
        for _ in range(sizes.evals):
            started = clock()
            client.call(ONE_PLUS_ONE)
            times.append(clock() - started)
    return {"eval_latency": times}


def _throughput(port: int, seconds: float, connections: int) -> float:
    clients = [Client(port) for _ in range(connections)]
    counts = [0] * connections
    barrier = threading.Barrier(connections + 1)
    stop = threading.Event()

    def run(i: int) -> None:
        client = clients[i]
        client.call(ONE_PLUS_ONE)
        barrier.wait()
        n = 0
        while not stop.is_set():
            client.call(ONE_PLUS_ONE)
            n += 1
        counts[i] = n

    threads = [threading.Thread(target=run, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    for client in clients:
        client.close()
    return sum(counts) / elapsed


def throughput_2(port: int, sizes: Sizes) -> Samples:
    return {"throughput_2": [_throughput(port, sizes.throughput_seconds, 2)]}


def throughput_8(port: int, sizes: Sizes) -> Samples:
    return {"throughput_8": [_throughput(port, sizes.throughput_seconds, 8)]}


# --------------------------------------------------------------------------- bulk data


def _fetch_rate(client: Client, code: str, repeats: int) -> list[float]:
    request = eval_request(code)
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        payload = client.call(request)
        decode_params(payload)
        rates.append(len(payload) / (time.perf_counter() - started))
    return rates


def bulk(port: int, sizes: Sizes) -> Samples:
    """Fetch doubles, strings and a data frame; assign doubles. Rates in bytes/s."""
    n, m, rows = sizes.doubles, sizes.strings, sizes.frame_rows
    with Client(port) as client:
        client.void(f"x <- as.double(seq_len({n})) + 0.5")
        client.void(f"s <- paste0('s', seq_len({m}))")
        client.void(
            f"set.seed(1); df <- data.frame(num = runif({rows}), "
            f"chr = paste0('row', seq_len({rows})), "
            f"fac = factor(sample(letters, {rows}, TRUE)), stringsAsFactors = FALSE)"
        )
        samples = {
            "fetch_doubles": _fetch_rate(client, "x", sizes.bulk_repeats),
            "fetch_strings": _fetch_rate(client, "s", sizes.bulk_repeats),
            "fetch_frame": _fetch_rate(client, "df", sizes.bulk_repeats),
        }
        data = np.arange(n, dtype="<f8") + 0.25
        message = set_doubles_request("y", data)
        size = data.nbytes
        rates = []
        for _ in range(sizes.bulk_repeats):
            started = time.perf_counter()
            client.call(message)
            rates.append(size / (time.perf_counter() - started))
        check = client.eval("c(length(y), y[2])")
        if list(np.frombuffer(check.value, "<f8")) != [n, 1.25]:
            raise QapError("assigned vector came back wrong")
        samples["assign_doubles"] = rates
    return samples


#: The two forms of making strings in the request itself: ``{n}`` is the count.
STRING_FORMS = {"paste0": "paste0('str', 1:{n})", "sprintf": "sprintf('s%07d', 1:{n})"}


def _timed_call(client: Client, request: bytes) -> tuple[float, Any]:
    """Seconds from sending ``request`` to having decoded the reply's parameter list."""
    started = time.perf_counter()
    value = decode_params(client.call(request))[0].value
    return time.perf_counter() - started, value


def strings_made(port: int, sizes: Sizes) -> Samples:
    """Make and fetch ``sizes.strings`` strings in one eval, in both :data:`STRING_FORMS`,
    and the same expression evaluated only (``{x <- ...; 1L}``, a one-integer reply),
    alternately, ``bulk_repeats`` times each. One untimed eval-only call per form comes
    first, so every timed call finds the previous ``x`` (the same strings) alive."""
    n = sizes.strings
    samples: Samples = {}
    with Client(port) as client:
        for name, form in STRING_FORMS.items():
            code = form.format(n=n)
            fetch, only = eval_request(code), eval_request(f"{{x <- {code}; 1L}}")
            client.call(only)
            for _ in range(sizes.bulk_repeats):
                seconds, value = _timed_call(client, fetch)
                if bytes(value.value).count(0) != n:
                    raise QapError(f"{code} did not return {n} strings")
                samples.setdefault(f"strings_{name}", []).append(seconds)
                seconds, value = _timed_call(client, only)
                if np.frombuffer(value.value, "<i4").tolist() != [1]:
                    raise QapError(f"{{x <- {code}; 1L}} did not answer 1L")
                samples.setdefault(f"strings_{name}_eval", []).append(seconds)
    return samples


# --------------------------------------------------------------------------- pyRserve


class _TimeWithoutSleep:
    """Stands in for the ``time`` module inside ``pyRserve.rconn``: ``sleep`` does nothing,
    everything else is the real module's."""

    @staticmethod
    def sleep(_seconds: float) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@contextlib.contextmanager
def pyrserve_without_connect_sleep() -> Iterator[None]:
    """``pyRserve``'s ``RConnector.connect`` sleeps 0.2 s between the TCP connect and
    reading the ID string (``time.sleep(0.2)`` in ``pyRserve/rconn.py``). Within this
    block the module's ``time`` reference is :class:`_TimeWithoutSleep`, so timings of
    ``pyRserve.connect`` are the server's; nothing outside ``pyRserve.rconn`` changes,
    and the installed package is not edited."""
    from pyRserve import rconn

    if "time" not in rconn.RConnector.connect.__code__.co_names or rconn.time is not time:
        raise RuntimeError("pyRserve's connect() no longer sleeps through rconn.time")
    rconn.time = _TimeWithoutSleep()  # type: ignore[assignment]
    try:
        yield
    finally:
        rconn.time = time


def pyrserve_connections(port: int, sizes: Sizes) -> Samples:
    """``client_connects`` sequential ``pyRserve.connect(port=...)``, ``eval('1+1')``,
    ``close()``, each timed whole (connect's 0.2 s sleep patched out)."""
    import pyRserve
    from pyRserve.rexceptions import PyRserveError

    times: list[float] = []
    failures = 0
    with pyrserve_without_connect_sleep():
        for _ in range(sizes.client_connects):
            started = time.perf_counter()
            try:
                conn = pyRserve.connect(port=port)
                try:
                    value = conn.eval("1+1")
                finally:
                    conn.close()
            except (OSError, AssertionError, PyRserveError):
                failures += 1
                continue
            times.append(time.perf_counter() - started)
            if np.asarray(value).ravel().tolist() != [2.0]:
                raise QapError(f"pyRserve: 1+1 answered {value!r}")
    return {"pyrserve_connect": times, "pyrserve_connect_failures": [float(failures)]}


# --------------------------------------------------------------------------- RSclient

_RSCLIENT = r"""
args <- commandArgs(TRUE)
port <- as.integer(args[1]); n <- as.integer(args[2]); reps <- as.integer(args[3])
size <- as.integer(args[4])
suppressMessages(library(RSclient))
c <- RS.connect(port = port)
for (i in 1:20) RS.eval.qap(c, quote(1+1))
lat <- numeric(n)
for (i in seq_len(n)) { t0 <- Sys.time(); RS.eval.qap(c, quote(1+1)); lat[i] <- Sys.time() - t0 }
cat("eval_qap", lat, "\n")
lat <- numeric(n)
for (i in seq_len(n)) { t0 <- Sys.time(); RS.eval(c, 1+1); lat[i] <- Sys.time() - t0 }
cat("eval_ser", lat, "\n")
invisible(RS.eval(c, bquote(x <- as.double(seq_len(.(size))) + 0.5), lazy = FALSE))
x <- as.double(seq_len(size)) + 0.25
bytes <- 8 * size
rates <- function(f) sapply(seq_len(reps), function(i) {
  gc(); t <- system.time(f())[["elapsed"]]; bytes / max(t, 1e-6)
})
cat("fetch_qap", rates(function() RS.eval.qap(c, quote(x))), "\n")
cat("fetch_ser", rates(function() RS.eval(c, x)), "\n")
cat("assign", rates(function() RS.assign(c, "y", x)), "\n")
stopifnot(RS.eval(c, length(y)) == size)
RS.close(c)
"""


_RSCLIENT_METRICS = {"eval_qap", "eval_ser", "fetch_qap", "fetch_ser", "assign"}


def rsclient(port: int, sizes: Sizes, script_dir: Path) -> Samples:
    """The same latency and bulk workloads from R's C-level client, timed inside R."""
    script = script_dir / "rsclient.R"
    if not script.exists():
        script.write_text(_RSCLIENT)
    out = subprocess.run(
        [
            "Rscript",
            "--vanilla",
            str(script),
            str(port),
            str(sizes.rsclient_evals),
            str(sizes.rsclient_bulk),
            str(sizes.doubles),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"RSclient script failed:\n{out.stderr}")
    samples: Samples = {}
    for line in out.stdout.splitlines():
        name, *values = line.split() or [""]
        if name in _RSCLIENT_METRICS and values:
            samples["rsclient_" + name] = [float(v) for v in values]
    missing = _RSCLIENT_METRICS - {k.removeprefix("rsclient_") for k in samples}
    if missing:
        raise RuntimeError(f"RSclient script printed no {sorted(missing)}:\n{out.stdout}")
    return samples


_RSCLIENT_CONNECT = r"""
args <- commandArgs(TRUE)
port <- as.integer(args[1]); n <- as.integer(args[2])
suppressMessages(library(RSclient))
lat <- numeric(0); failures <- 0
for (i in seq_len(n)) {
  t0 <- Sys.time()
  ok <- tryCatch({
    c <- RS.connect(port = port); r <- RS.eval(c, 1+1); RS.close(c); identical(r, 2)
  }, error = function(e) FALSE)
  t <- as.numeric(Sys.time() - t0, units = "secs")
  if (ok) lat <- c(lat, t) else failures <- failures + 1
}
cat("connect", lat, "\n")
cat("failures", failures, "\n")
"""


def rsclient_connections(port: int, sizes: Sizes, script_dir: Path) -> Samples:
    """``client_connects`` sequential ``RS.connect``, ``RS.eval(c, 1+1)``, ``RS.close``
    from one ``Rscript``, each iteration timed inside R."""
    script = script_dir / "rsclient_connect.R"
    if not script.exists():
        script.write_text(_RSCLIENT_CONNECT)
    out = subprocess.run(
        ["Rscript", "--vanilla", str(script), str(port), str(sizes.client_connects)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"RSclient connect script failed:\n{out.stderr}")
    printed = {}
    for line in out.stdout.splitlines():
        name, *values = line.split() or [""]
        printed[name] = [float(v) for v in values]
    if "connect" not in printed or "failures" not in printed:
        raise RuntimeError(f"RSclient connect script printed:\n{out.stdout}")
    return {
        "rsclient_connect": printed["connect"],
        "rsclient_connect_failures": printed["failures"],
    }
