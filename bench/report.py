"""Rows, goals and output: the rich table, JSON and the PNG chart."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Row:
    """One line of the table: a statistic of one metric, compared against a goal.

    ``stat`` is ``p50``/``p99`` (of all samples pooled), ``median``, ``sum`` or ``max``.
    ``better`` says which direction wins; ``goal`` bounds ``rexec / Rserve`` (``<=`` when
    lower is better, ``>=`` when higher is better); ``zero`` rows need rexec's value to be 0.
    ``peer`` is what rexec is compared with: the samples' key (``Rserve``, or for the
    BLAS rows ``Rscript`` or ``shell.threads = 1``); its value goes in the Rserve column.
    """

    label: str
    metric: str
    stat: str
    unit: str
    better: str = "lower"
    goal: float | None = None
    zero: bool = False
    peer: str = "Rserve"


ROWS = (
    Row("connect → first result, p50", "connect_first", "p50", "ms", goal=0.5),
    Row("eval 1+1 round trip, p50", "eval_latency", "p50", "ms", goal=1.2),
    Row("eval 1+1 round trip, p99", "eval_latency", "p99", "ms", goal=1.2),
    Row("small evals/s, 2 connections", "throughput_2", "median", "1/s", "higher", 1.0),
    Row("small evals/s, 8 connections", "throughput_8", "median", "1/s", "higher", 1.0),
    Row("fetch {doubles} doubles", "fetch_doubles", "median", "MB/s", "higher", 0.9),
    Row("assign {doubles} doubles", "assign_doubles", "median", "MB/s", "higher", 0.9),
    Row("fetch {strings} strings", "fetch_strings", "median", "MB/s", "higher", 0.8),
    Row("fetch {frame_rows}-row data.frame", "fetch_frame", "median", "MB/s", "higher", 0.8),
    Row("{sequential} sequential connect+eval+close, p50", "sequential", "p50", "ms"),
    Row("{sequential} sequential connect+eval+close, p99", "sequential", "p99", "ms"),
    Row("{sequential} sequential: failures", "sequential_failures", "sum", "", zero=True),
    Row("{concurrent} concurrent connect+eval+close, p50", "concurrent", "p50", "ms"),
    Row("{concurrent} concurrent connect+eval+close, p99", "concurrent", "p99", "ms"),
    Row("{concurrent} concurrent: failures", "concurrent_failures", "sum", "", zero=True),
    Row("memory (PSS), 8 sessions ready/connected", "pss", "median", "MiB", goal=1.2),
    Row("RSclient RS.eval.qap(1+1), p50", "rsclient_eval_qap", "p50", "ms", goal=1.2),
    Row("RSclient RS.eval(1+1) (serEval), p50", "rsclient_eval_ser", "p50", "ms", goal=1.2),
    Row("RSclient fetch doubles (QAP)", "rsclient_fetch_qap", "median", "MB/s", "higher", 0.9),
    Row("RSclient fetch doubles (serEval)", "rsclient_fetch_ser", "median", "MB/s", "higher", 0.9),
    Row("RSclient RS.assign doubles", "rsclient_assign", "median", "MB/s", "higher", 0.9),
    Row("connect per request, pyRserve ({client_connects}), p50", "pyrserve_connect", "p50", "ms"),
    Row("connect per request, pyRserve ({client_connects}), p99", "pyrserve_connect", "p99", "ms"),
    Row(
        "connect per request, pyRserve: failures", "pyrserve_connect_failures", "sum", "", zero=True
    ),
    Row("connect per request, RSclient ({client_connects}), p50", "rsclient_connect", "p50", "ms"),
    Row("connect per request, RSclient ({client_connects}), p99", "rsclient_connect", "p99", "ms"),
    Row(
        "connect per request, RSclient: failures", "rsclient_connect_failures", "sum", "", zero=True
    ),
    Row("fetch paste0('str', 1:n), n = {strings}", "strings_paste0", "median", "ms"),
    Row(
        "eval only: {{x <- paste0('str', 1:n); 1L}}",
        "strings_paste0_eval",
        "median",
        "ms",
    ),
    Row("fetch sprintf('s%07d', 1:n), n = {strings}", "strings_sprintf", "median", "ms"),
    Row(
        "eval only: {{x <- sprintf('s%07d', 1:n); 1L}}",
        "strings_sprintf_eval",
        "median",
        "ms",
    ),
    Row(
        "crossprod {blas_n}x{blas_n}, 1 thread, vs Rscript",
        "blas_1",
        "median",
        "ms",
        peer="Rscript",
    ),
    Row(
        "crossprod {blas_n}x{blas_n}, all cores, vs Rscript",
        "blas_all",
        "median",
        "ms",
        peer="Rscript",
    ),
    Row(
        "8 concurrent crossprod requests, default vs 1 thread",
        "blas_many",
        "median",
        "ms",
        peer="shell.threads = 1",
    ),
    Row(
        "8 concurrent crossprod requests, all cores vs 1 thread",
        "blas_many_all",
        "median",
        "ms",
        peer="shell.threads = 1",
    ),
)

_SCALE = {"ms": 1e3, "MB/s": 1e-6, "1/s": 1.0, "MiB": 1 / 1024, "": 1.0}


def statistic(samples: list[float], stat: str) -> float:
    if not samples:
        return math.nan
    if stat == "p50":
        return float(np.percentile(samples, 50))
    if stat == "p99":
        return float(np.percentile(samples, 99))
    if stat == "sum":
        return float(sum(samples))
    if stat == "max":
        return float(max(samples))
    return float(np.median(samples))


class _Labels(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "N"


def _si(n: int) -> str:
    exponent = int(math.log10(n)) if n > 0 else 0
    return f"1e{exponent}" if n == 10**exponent else f"{n:,}"


def evaluate(
    samples: dict[str, dict[str, list[float]]], sizes: dict[str, Any]
) -> list[dict[str, Any]]:
    """One result dict per row: values in display units, ratio, goal, verdict."""
    labels = _Labels({k: _si(v) if isinstance(v, int) else v for k, v in sizes.items()})
    results = []
    for row in ROWS:
        a = samples["rexec"].get(row.metric)
        b = samples.get(row.peer, {}).get(row.metric)
        if a is None or b is None:
            continue
        scale = _SCALE[row.unit]
        rexec = statistic(a, row.stat) * scale
        rserve = statistic(b, row.stat) * scale
        ratio = rexec / rserve if rserve else math.nan
        if row.zero:
            ok: bool | None = rexec == 0
            goal = "rexec = 0"
        elif row.goal is None:
            ok, goal = None, "reported"
        else:
            ok = ratio <= row.goal if row.better == "lower" else ratio >= row.goal
            goal = f"{'≤' if row.better == 'lower' else '≥'} {row.goal:g}x"
        results.append(
            {
                "row": row.label.format_map(labels),
                "metric": row.metric,
                "stat": row.stat,
                "unit": row.unit,
                "better": row.better,
                "peer": row.peer,
                "rexec": rexec,
                "rserve": rserve,
                "ratio": ratio,
                "goal": goal,
                "goal_value": row.goal,
                "ok": ok,
                "samples": {"rexec": len(a), row.peer: len(b)},
            }
        )
    return results


# --------------------------------------------------------------------------- machine


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    r_version = subprocess.run(
        ["Rscript", "-e", "cat(R.version.string, '|', format(packageVersion('Rserve')))"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    r, _, rserve = r_version.partition("|")
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "r": r.strip(),
        "rserve": rserve.strip(),
    }


# --------------------------------------------------------------------------- output


def _fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "-"
    if unit in ("", "1/s", "MB/s", "MiB") and abs(value) >= 100:
        return f"{value:,.0f}"
    if unit == "ms" and value < 1:
        return f"{value:.3f}"
    return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else "✓" if ok else "✗"


def print_table(results: list[dict[str, Any]], header: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=header, title_justify="left")
    for name, justify in (
        ("workload", "left"),
        ("unit", "left"),
        ("rexec", "right"),
        ("Rserve or peer", "right"),
        ("ratio", "right"),
        ("goal", "left"),
        ("", "center"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in results:
        mark = verdict(r["ok"])
        style = "green" if r["ok"] else "red" if r["ok"] is False else ""
        table.add_row(
            r["row"],
            r["unit"],
            _fmt(r["rexec"], r["unit"]),
            _fmt(r["rserve"], r["unit"]),
            "-" if math.isnan(r["ratio"]) else f"{r['ratio']:.2f}x",
            r["goal"],
            f"[{style}]{mark}[/]" if style else mark,
        )
    Console(width=max(Console().width, 130)).print(table)


def markdown_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| workload | unit | rexec | Rserve or peer | ratio | goal | |",
        "|---|---|--:|--:|--:|---|:-:|",
    ]
    for r in results:
        ratio = "-" if math.isnan(r["ratio"]) else f"{r['ratio']:.2f}x"
        lines.append(
            f"| {r['row']} | {r['unit']} | {_fmt(r['rexec'], r['unit'])} | "
            f"{_fmt(r['rserve'], r['unit'])} | {ratio} | {r['goal']} | {verdict(r['ok'])} |"
        )
    return "\n".join(lines)


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=_plain) + "\n")


def _plain(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    return str(value)


def write_chart(path: Path, results: list[dict[str, Any]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("lower", "time or memory: rexec / Rserve or peer (lower is better)"),
        ("higher", "rate: rexec / Rserve (higher is better)"),
    ]
    counts = [sum(1 for r in results if r["better"] == better) for better, _ in panels]
    fig, axes = plt.subplots(1, 2, figsize=(14, max(6.5, 1.5 + 0.26 * max(counts))))
    for ax, (better, xlabel) in zip(axes, panels, strict=True):
        rows = [
            r
            for r in results
            if r["better"] == better and not r["metric"].endswith("failures")
            if not math.isnan(r["ratio"])
        ]
        labels = [r["row"] for r in rows][::-1]
        ratios = [r["ratio"] for r in rows][::-1]
        colours = [
            "#4c72b0" if r["ok"] is None else "#55a868" if r["ok"] else "#c44e52"
            for r in rows[::-1]
        ]
        ax.barh(labels, ratios, color=colours)
        for i, r in enumerate(rows[::-1]):
            if r["goal_value"] is not None:
                ax.plot([r["goal_value"]] * 2, [i - 0.4, i + 0.4], color="black", lw=2)
            ax.text(r["ratio"], i, f" {r['ratio']:.2f}x", va="center", fontsize=8)
        ax.axvline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_xlabel(xlabel)
        ax.tick_params(axis="y", labelsize=8)
    legend = "black tick: goal; green met, red missed, blue reported only"
    fig.suptitle(f"{title}\n{legend}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
