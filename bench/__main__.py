"""``python -m bench``: rexec against a real Rserve, same machine, same clients, interleaved.

Both servers run for the whole benchmark. Each round runs every workload against
both, alternating which goes first (AB, then BA), so drift on a shared machine hits
both alike. Statistics pool the samples of all rounds.

Full runs end with the BLAS rows, ``bench.blas``'s measurement (its own three rexec
instances, after the two servers above have stopped); their peers are not Rserve but
plain ``Rscript`` and rexec with ``shell.threads = 1`` (the table's second column).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import blas, report, workloads
from bench.qap import Client
from bench.servers import Server, rexec_settings, start_rexec, start_rserve, wait_for_idle_shells
from bench.workloads import Samples, Sizes

RESULTS = Path(__file__).resolve().parent / "results"
POOL = 8  # rexec's idle shells; Rserve gets as many connected children for the PSS row


def _settle(server: Server) -> None:
    """Let a server recover after a workload: rexec's pool refills, Rserve's children exit."""
    if server.name == "rexec":
        wait_for_idle_shells(server, POOL, timeout=10)
    time.sleep(0.1)


def memory(rserve: Server, directory: Path, rounds: int) -> dict[str, list[float]]:
    """PSS (KiB) of rexec with POOL idle shells vs Rserve's master with POOL connected children.

    rexec runs with ``pool.max = POOL`` here, so exactly POOL shells exist.
    """
    idle = start_rexec(directory / "rexec-memory", initial=POOL, maximum=POOL)
    samples: dict[str, list[float]] = {"rexec": [], "Rserve": []}
    try:
        wait_for_idle_shells(idle, POOL)
        for _ in range(rounds):
            time.sleep(0.5)
            samples["rexec"].append(idle.pss_kib())
            clients = [Client(rserve.port) for _ in range(POOL)]
            try:
                for client in clients:
                    client.call(workloads.ONE)
                time.sleep(0.5)
                samples["Rserve"].append(rserve.pss_kib())
            finally:
                for client in clients:
                    client.close()
            time.sleep(0.2)
    finally:
        idle.stop()
    return samples


def blas_samples(found: blas.Measurement) -> dict[str, dict[str, list[float]]]:
    """bench.blas's measurement as the table's samples: rexec's side, and the peers
    ``Rscript`` (one crossprod) and ``shell.threads = 1`` (8 concurrent requests)."""
    return {
        "rexec": {
            "blas_1": found.single["rexec 1"],
            "blas_all": found.single["rexec all"],
            "blas_many": found.many["default"],
            "blas_many_all": found.many["all"],
        },
        "Rscript": {"blas_1": found.single["Rscript 1"], "blas_all": found.single["Rscript all"]},
        "shell.threads = 1": {"blas_many": found.many["1"], "blas_many_all": found.many["1"]},
    }


def run(
    sizes: Sizes,
    rounds: int,
    out: Path,
    *,
    rsclient: bool = True,
    blas_rows: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the whole benchmark; writes ``latest.json``/``latest.png`` to ``out``.

    The BLAS rows (``bench.blas.measure``, after the other rows, with their own rexec
    instances) run only if ``blas_rows`` and ``sizes.blas_n`` (0 in ``QUICK``)."""
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="rexec-bench-"))
    scratch.chmod(0o755)  # the shells' account must reach session.workdir below it
    started = time.monotonic()
    jobs: list[tuple[str, Callable[[int], Samples]]] = [
        ("connect_first", lambda port: workloads.connect_first(port, sizes)),
        ("eval_latency", lambda port: workloads.eval_latency(port, sizes)),
        ("throughput_2", lambda port: workloads.throughput_2(port, sizes)),
        ("throughput_8", lambda port: workloads.throughput_8(port, sizes)),
        ("bulk", lambda port: workloads.bulk(port, sizes)),
        ("strings_made", lambda port: workloads.strings_made(port, sizes)),
        ("sequential", lambda port: workloads.sequential_connections(port, sizes)),
        ("concurrent", lambda port: workloads.concurrent_connections(port, sizes)),
    ]
    if importlib.util.find_spec("pyRserve") is not None:
        jobs.append(("pyrserve_connect", lambda port: workloads.pyrserve_connections(port, sizes)))
    if rsclient and shutil.which("Rscript"):
        jobs.append(("rsclient", lambda port: workloads.rsclient(port, sizes, scratch)))
        jobs.append(
            ("rsclient_connect", lambda port: workloads.rsclient_connections(port, sizes, scratch))
        )
    # rexec's samples and each peer's: Rserve, and for the BLAS rows Rscript and rexec
    # with shell.threads = 1
    samples: dict[str, dict[str, list[float]]] = {"rexec": {}, "Rserve": {}}
    rserve = start_rserve(scratch / "rserve")
    rexec = start_rexec(scratch / "rexec", initial=POOL, maximum=64)
    try:
        _settle(rexec)
        for round_ in range(rounds):
            order = [rexec, rserve] if round_ % 2 == 0 else [rserve, rexec]
            for _name, job in jobs:
                for server in order:
                    for metric, values in job(server.port).items():
                        samples[server.name].setdefault(metric, []).extend(values)
                    _settle(server)
            log(f"round {round_ + 1}/{rounds} done ({time.monotonic() - started:.0f} s)")
        pss = memory(rserve, scratch, max(1, min(rounds, 3)))
        samples["rexec"]["pss"] = pss["rexec"]
        samples["Rserve"]["pss"] = pss["Rserve"]
    finally:
        rexec.stop()
        rserve.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    settings = {
        "all rows but memory and BLAS": rexec_settings(POOL, 64),
        "memory": rexec_settings(POOL, POOL),
    }
    blas_run: dict[str, Any] | None = None
    if blas_rows and sizes.blas_n > 0 and sizes.blas_runs > 0:
        found = blas.measure(sizes.blas_n, sizes.blas_runs, log=lambda line: log(f"BLAS {line}"))
        for side, metrics in blas_samples(found).items():
            samples.setdefault(side, {}).update(metrics)
        settings["BLAS"] = {"pool.initial": blas.POOL, "pool.max": blas.POOL}
        blas_run = {
            "n": found.n,
            "runs": found.runs,
            "crossprods per measurement": blas.REPEATS,
            "cores": found.cores,
            "shell.threads": {"1": 1, "all cores": found.cores, "default": 0},
            "threads seen": {key: sorted(seen) for key, seen in found.seen.items()},
        }
        log(f"BLAS rows done ({time.monotonic() - started:.0f} s)")
    results = report.evaluate(samples, dataclasses.asdict(sizes))
    document = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": report.machine(),
        "rounds": rounds,
        "sizes": dataclasses.asdict(sizes),
        "seconds": round(time.monotonic() - started, 1),
        "rexec_settings": settings,
        "blas": blas_run,
        "results": results,
    }
    report.write_json(out / "latest.json", document)
    report.write_chart(out / "latest.png", results, _title(document))
    (out / "latest.md").write_text(
        _title(document)
        + "\n\n"
        + report.markdown_table(results)
        + "\n\n"
        + settings_note(document)
        + "\n"
    )
    return document


def settings_note(document: dict[str, Any]) -> str:
    """What rexec ran with, for beside the table: the defaults users get but the pool."""
    rows = document["rexec_settings"]

    def pool(settings: dict[str, int]) -> str:
        return ", ".join(f"`{key} = {value}`" for key, value in settings.items())

    note = (
        'rexec ran with the settings users get by default (`log.level = "info"` included)'
        f" except {pool(rows['all rows but memory and BLAS'])} (Rserve forks a child per"
        f" connection without a limit); the memory row's instance had {pool(rows['memory'])}."
    )
    if "BLAS" in rows:
        note += (
            f" The BLAS rows' three instances had {pool(rows['BLAS'])} and `shell.threads`"
            f" = 1, = all cores ({document['blas']['cores']}) or the default (0: cores ÷"
            " `pool.max`, at least 1); their peers are plain `Rscript` on the same BLAS"
            " (`OPENBLAS_NUM_THREADS` = 1 or all cores) and the `shell.threads = 1` instance."
        )
    return note


def _title(document: dict[str, Any]) -> str:
    m = document["machine"]
    return (
        f"rexec vs Rserve {m['rserve']}, {document['date']}, {m['nproc']} cores ({m['cpu']}), "
        f"{m['r']}, {document['rounds']} interleaved rounds"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, < 1 minute")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds")
    parser.add_argument("--no-rsclient", action="store_true", help="skip the RSclient rows")
    parser.add_argument("--no-blas", action="store_true", help="skip the BLAS rows (full runs)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="output directory")
    args = parser.parse_args(argv)
    sizes = workloads.TINY if args.tiny else workloads.QUICK if args.quick else workloads.FULL
    rounds = args.rounds or (1 if args.tiny else 2 if args.quick else 5)
    document = run(
        sizes, rounds, args.out, rsclient=not args.no_rsclient, blas_rows=not args.no_blas
    )
    report.print_table(document["results"], _title(document))
    print(settings_note(document))
    print(f"wrote {args.out / 'latest.json'}, {args.out / 'latest.png'}, {args.out / 'latest.md'}")


if __name__ == "__main__":
    main()
