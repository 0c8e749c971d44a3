"""RSclient's QAP path (RS.eval.qap: a language object sent as QAP, the value sent back as
QAP) against Rserve and rexec: how strings in the request are marked on the server,
deeply nested objects both ways, and the search path R code sees."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import UTF8, Server

SCRIPT = r"""
library(RSclient)
ports <- as.integer(commandArgs(TRUE)[1:2])
deep_list <- function(n) { x <- list(); for (i in seq_len(n)) x <- list(x); x }
deep <- deep_list(1000)
cases <- list(
  marks_in_a_call = quote(Encoding(c("\u00e9t\u00e9", "a", "\u65e5\u672c"))),
  marks_of_an_argument = as.call(list(as.name("Encoding"), c("na\u00efve", "b"))),
  marks_once_stored = list(
    as.call(list(as.name("assign"), "v", c("\u00e0 la", "x"), quote(globalenv()))),
    quote(list(Encoding(v), v == "\u00e0 la"))
  ),
  deep_list_result = quote(local({x <- list(); for (i in 1:1000) x <- list(x); x})),
  deep_call_result = quote(local({x <- 1; for (i in 1:500) x <- call("f", x, a = i); x})),
  deep_list_sent = as.call(list(as.name("identical"), deep,
                                quote(local({x <- list(); for (i in 1:1000) x <- list(x); x})))),
  deep_list_round_trip = as.call(list(as.name("list"), deep)),
  search_path = quote(search())
)
run <- function(port, case) {
  conn <- RS.connect(port = port)
  on.exit(RS.close(conn))
  steps <- if (is.list(case) && !is.call(case)) case else list(case)
  tryCatch({ for (step in steps) value <- RS.eval.qap(conn, step); list(ok = value) },
           error = function(e) list(error = conditionMessage(e)))
}
for (name in names(cases)) {
  a <- run(ports[1], cases[[name]]); b <- run(ports[2], cases[[name]])
  same <- identical(a, b)
  if (!same) message(name, ": ", paste(deparse(a)[1:3], collapse = ""), " <> ",
                     paste(deparse(b)[1:3], collapse = ""))
  cat(name, if (same) "TRUE" else "FALSE", "\n")
}
"""

CASES = [
    "marks_in_a_call",
    "marks_of_an_argument",
    "marks_once_stored",
    "deep_list_result",
    "deep_call_result",
    "deep_list_sent",
    "deep_list_round_trip",
    "search_path",
]


@pytest.fixture(scope="module")
def results(rserve: Server, rexec_server: Server) -> dict[str, tuple[str, str]]:
    run = subprocess.run(
        ["Rscript", "-e", SCRIPT, str(rserve.port), str(rexec_server.port)],
        capture_output=True,
        text=True,
        env=UTF8,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    answers = dict(line.split() for line in run.stdout.splitlines() if line.strip())
    differences = {line.partition(":")[0]: line for line in run.stderr.splitlines()}
    return {name: (answers.get(name, "missing"), differences.get(name, "")) for name in CASES}


@pytest.mark.parametrize("case", CASES)
def test_rs_eval_qap_answers_as_rserve(results: dict[str, tuple[str, str]], case: str) -> None:
    outcome, difference = results[case]
    assert outcome == "TRUE", difference[:2000]
