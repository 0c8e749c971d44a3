"""RSclient (R) against Rserve and rexec: RS.eval (serEval, R serialization both ways),
RS.eval.qap (eval of a language object sent as QAP) and RS.assign (serAssign)."""

from __future__ import annotations

import subprocess

import pytest

from tests.compat.cases import ERRORS, EXPRESSIONS, SETUP
from tests.conftest import UTF8, Server

SCRIPT = r"""
library(RSclient)
args <- commandArgs(TRUE)
ports <- as.integer(args[1:2])
hex <- readLines(args[3])
unhex <- function(h) {
  if (!nzchar(h)) return("")
  x <- rawToChar(as.raw(strtoi(substring(h, seq(1, nchar(h), 2), seq(2, nchar(h), 2)), 16L)))
  Encoding(x) <- "UTF-8"
  x
}
connect <- function(port) {
  conn <- RS.connect(port = port)
  RS.eval(conn, parse(text = SETUP_CODE)[[1]], lazy = FALSE)
  conn
}
lost <- function(conn) inherits(try(RS.eval(conn, 1L), silent = TRUE), "try-error")
outcome <- function(f) tryCatch(list(ok = f()), error = function(e) list(error = TRUE))
same <- function(x, y) {
  if (is.environment(x$ok)) return(is.environment(y$ok))
  identical(x, y)
}
compare <- function(e, run) {
  a <- connect(ports[1]); b <- connect(ports[2])
  on.exit({ try(RS.close(a), silent = TRUE); try(RS.close(b), silent = TRUE) })
  ra <- outcome(function() run(a, e)); rb <- outcome(function() run(b, e))
  # A connection that no longer answers a plain request: lost, or out of step (after a
  # failed serAssign Rserve sends two error replies, so every later reply is off by one).
  if (lost(b)) return("REXEC_BROKEN")
  if (lost(a)) {  # then rexec must agree with R itself
    local <- outcome(function() { for (x in e) value <- eval(x, new.env()); value })
    agrees <- isTRUE(all.equal(local, rb, check.environment = FALSE)) || identical(local, rb)
    return(if (agrees) "RSERVE_BROKEN" else "RSERVE_BROKEN_REXEC_WRONG")
  }
  if (same(ra, rb)) "TRUE" else "FALSE"
}
serEval <- function(conn, exprs) {
  for (x in exprs) value <- RS.eval(conn, x, lazy = FALSE)
  value
}
qap <- function(conn, exprs) {
  for (x in exprs) value <- RS.eval.qap(conn, x)
  value
}
for (i in seq_along(hex)) {
  exprs <- tryCatch(parse(text = unhex(hex[i]), keep.source = FALSE), error = function(e) NULL)
  if (length(exprs) == 0) { cat(sprintf("%d serEval TRUE\n%d qap TRUE\n", i, i)); next }
  cat(sprintf("%d serEval %s\n", i, compare(exprs, serEval)))
  cat(sprintf("%d qap %s\n", i, compare(exprs, qap)))
}
values <- list(1:3, "x", list(p = 1, q = "r"), data.frame(k = 1:2), NULL, c(TRUE, NA),
               factor(c("u", "v")), as.Date("2024-01-01"), quote(a + b), 1:1e6,
               as.numeric(1:2e6), as.character(1:2e5))
assign_and_read <- function(conn, value) { RS.assign(conn, "v", value); RS.eval(conn, v) }
for (i in seq_along(values)) {  # fresh connections: a failed serAssign must not leak
  cat(sprintf("assign%d %s\n", i, compare(values[[i]], assign_and_read)))
}

"""

CODES = EXPRESSIONS + ERRORS


@pytest.fixture(scope="module")
def results(rserve: Server, rexec_server: Server, tmp_path_factory) -> dict[str, str]:
    cases = tmp_path_factory.mktemp("rsclient") / "cases.hex"
    cases.write_text("\n".join(code.encode().hex() for code in CODES) + "\n")
    script = SCRIPT.replace("SETUP_CODE", repr(SETUP))
    run = subprocess.run(
        ["Rscript", "-e", script, str(rserve.port), str(rexec_server.port), str(cases)],
        capture_output=True,
        text=True,
        env=UTF8,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = dict(line.rsplit(" ", 1) for line in run.stdout.splitlines() if line.strip())
    return lines


#: Rserve's child dies decoding these calls, and RSclient cannot decode the value R gives
#: for them (a closure, or a pairlist holding the empty symbol), so neither server can be
#: checked through RSclient here; test_wire.py shows rexec's reply for the same text is
#: byte-identical to Rserve's.
CLIENT_CANNOT_CHECK = {
    "quote(function(a, b = 2) a + b)",
    "formals(function(a, b = 2, ...) NULL)",
    "function(a, b = 2) a + b",
}


def _check(outcome: str) -> None:
    """TRUE: same answer from both. RSERVE_BROKEN: Rserve's session died or went out of
    step (a documented Rserve bug); rexec's answer equals R's own evaluation and its
    session still answers."""
    assert outcome in ("TRUE", "RSERVE_BROKEN")


@pytest.mark.parametrize("index", range(1, len(CODES) + 1), ids=lambda i: CODES[i - 1][:40])
@pytest.mark.parametrize("command", ["serEval", "qap"])
def test_eval(results: dict[str, str], index: int, command: str) -> None:
    outcome = results[f"{index} {command}"]
    if command == "qap" and CODES[index - 1] in CLIENT_CANNOT_CHECK:
        assert outcome in ("TRUE", "RSERVE_BROKEN", "RSERVE_BROKEN_REXEC_WRONG")
        return
    _check(outcome)


@pytest.mark.parametrize("index", range(1, 13))
def test_assign(results: dict[str, str], index: int) -> None:
    _check(results[f"assign{index}"])
