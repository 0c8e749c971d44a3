"""Several full ``make bench`` runs as one table: each row's median ratio and its spread.

``python -m bench.spread RUN_DIR [RUN_DIR ...]`` reads each run's ``latest.json`` and
prints a Markdown table (the README's): the median of the runs' values for rexec and its
peer, the ratio of the median run, the lowest and highest ratio, and whether the goal
held in every run.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

from bench.report import _fmt


def combine(runs: list[dict[str, Any]]) -> str:
    rows: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        for result in run["results"]:
            rows.setdefault(result["row"], []).append(result)
    lines = [
        "| workload | unit | rexec | Rserve or peer | ratio (median) | spread of ratios | goal "
        "| held in every run |",
        "|---|---|--:|--:|--:|--:|---|:-:|",
    ]
    for name, results in rows.items():
        ratios = [r["ratio"] for r in results if r.get("ratio") is not None]
        ratios = [x for x in ratios if not math.isnan(x)]
        unit = results[0]["unit"]
        rexec = statistics.median(r["rexec"] for r in results)
        peer = statistics.median(r["rserve"] for r in results)
        ratio = f"{statistics.median(ratios):.2f}x" if ratios else "-"
        spread = f"{min(ratios):.2f} to {max(ratios):.2f}x" if len(ratios) > 1 else "-"
        oks = [r.get("ok") for r in results]
        held = "-" if any(ok is None for ok in oks) else ("✓" if all(oks) else "✗")
        lines.append(
            f"| {name} | {unit} | {_fmt(rexec, unit)} | {_fmt(peer, unit)} | {ratio} | "
            f"{spread} | {results[0].get('goal', '')} | {held} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    runs = [json.loads((Path(d) / "latest.json").read_text()) for d in argv]
    first, last = runs[0], runs[-1]
    print(
        f"{len(runs)} full runs, {first['date']} to {last['date']}, "
        f"{first['machine']['nproc']} cores ({first['machine']['cpu']}), "
        f"{first['machine']['r'].split(' (')[0]}, Rserve {first['machine']['rserve']}, "
        f"{first['rounds']} interleaved rounds each.\n"
    )
    print(combine(runs))


if __name__ == "__main__":
    main(sys.argv[1:])
