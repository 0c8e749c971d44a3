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
one_line <- function(x) {
  text <- tryCatch(deparse(x, control = "all"), error = function(e) conditionMessage(e))
  gsub("[\t\n]", " ", paste(text, collapse = " "))
}
connect <- function(port) {
  conn <- RS.connect(port = port)
  RS.eval(conn, parse(text = SETUP_CODE)[[1]], lazy = FALSE)
  conn
}
# A connection that no longer answers a plain request with that request's value: lost,
# or out of step (after a failed serAssign Rserve sends two error replies, so every
# later reply is off by one).
lost <- function(conn) !identical(tryCatch(RS.eval(conn, 424242L), error = function(e) e), 424242L)
# Environments cannot be compared with identical() (it compares addresses): compare
# their names (global, base, empty, namespaces), class, contents and parent instead.
canon <- function(x, depth = 0L) {
  if (is.environment(x)) {
    name <- environmentName(x)
    if (nzchar(name) || depth > 3L) return(list(environment = name, class = class(x)))
    contents <- as.list(x, all.names = TRUE, sorted = TRUE)
    return(list(environment = name, class = class(x), attributes = attributes(x),
                contents = lapply(contents, canon, depth + 1L),
                parent = canon(parent.env(x), depth + 1L)))
  }
  if (is.list(x) && any(vapply(x, is.environment, NA))) x[] <- lapply(x, canon, depth)
  x
}
# An error is its RSclient message (which carries the QAP status code) and, read back
# from the same session, geterrmessage() (the R error text).
outcome <- function(conn, f) tryCatch(list(ok = canon(f())), error = function(e) {
  list(error = conditionMessage(e), class = class(e))
})
with_message <- function(conn, r) {
  if (is.null(r$error)) return(r)
  r$message <- tryCatch(RS.eval(conn, geterrmessage()), error = conditionMessage)
  r
}
local_value <- function(e) {  # one environment for all, as the session's global one
  env <- new.env(parent = globalenv())
  for (expr in e) value <- eval(expr, env)
  value
}
# R's own evaluation, in this process; an error as the text geterrmessage() would give
# on a server, where the expressions run at top level (here: inside eval()).
r_itself <- function(e) {
  tryCatch(list(ok = canon(local_value(e))), error = function(err) {
    call <- conditionCall(err)
    where <- if (is.null(call) || identical(call[[1]], quote(eval))) "" else
      paste0(" in ", deparse(call)[1], " ")
    list(message = sprintf("Error%s: %s\n", where, conditionMessage(err)))
  })
}
# rexec's answer where Rserve's session broke: R's value, or R's error text, with the
# status code Rserve answered before its session broke (if it answered one).
agrees <- function(rb, expected, ra) {
  if ("ok" %in% names(expected)) return(identical(rb, expected))
  rserve_status <- !is.null(ra$error) && startsWith(ra$error, "command failed with status")
  !("ok" %in% names(rb)) && identical(rb$message, expected$message) &&
    (!rserve_status || identical(rb$error, ra$error))
}
by_deparse <- function(port, e) {  # deparse() of the value, computed on the server
  conn <- RS.connect(port = port)
  on.exit(try(RS.close(conn), silent = TRUE))
  for (x in e[-length(e)]) RS.eval.qap(conn, x)
  tryCatch(RS.eval.qap(conn, call("deparse", e[[length(e)]])), error = conditionMessage)
}
compare <- function(e, run, local) {
  a <- connect(ports[1]); b <- connect(ports[2])
  on.exit({ try(RS.close(a), silent = TRUE); try(RS.close(b), silent = TRUE) })
  ra <- outcome(a, function() run(a, e)); rb <- outcome(b, function() run(b, e))
  if (lost(b)) return(paste("REXEC_BROKEN", one_line(rb), sep = "\t"))
  rb <- with_message(b, rb)
  if (lost(a)) {  # Rserve's session died or went out of step: rexec must agree with R
    expected <- local(e)
    if (agrees(rb, expected, ra)) return("RSERVE_BROKEN_REXEC_AGREES")
    details <- list(rexec = rb, R = expected, Rserve = ra)
    if (identical(run, qap)) {  # values RSclient cannot decode: compare their deparse()
      details$deparse <- list(rexec = by_deparse(ports[2], e), R = deparse(local_value(e)))
      if (identical(details$deparse$rexec, details$deparse$R)) {
        return(paste("RSERVE_BROKEN_DEPARSE_AGREES", one_line(details), sep = "\t"))
      }
    }
    return(paste("RSERVE_BROKEN_REXEC_DIFFERS", one_line(details), sep = "\t"))
  }
  ra <- with_message(a, ra)
  if (identical(ra, rb)) return("SAME")
  paste("DIFFERENT", one_line(list(Rserve = ra, rexec = rb)), sep = "\t")
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
  if (length(exprs) == 0) {  # RSclient sends parsed expressions: nothing to send
    cat(sprintf("%d serEval\tUNSENDABLE\n%d qap\tUNSENDABLE\n", i, i))
    next
  }
  cat(sprintf("%d serEval\t%s\n", i, compare(exprs, serEval, r_itself)))
  cat(sprintf("%d qap\t%s\n", i, compare(exprs, qap, r_itself)))
}
values <- list(1:3, "x", list(p = 1, q = "r"), data.frame(k = 1:2), NULL, c(TRUE, NA),
               factor(c("u", "v")), as.Date("2024-01-01"), quote(a + b), 1:1e6,
               as.numeric(1:2e6), as.character(1:2e5))
assign_and_read <- function(conn, value) { RS.assign(conn, "v", value); RS.eval(conn, v) }
# serAssign assigns with `<-` (on both servers), which evaluates a language value
assign_in_r <- function(value) r_itself(as.expression(list(call("<-", quote(v), value), quote(v))))
for (i in seq_along(values)) {  # fresh connections: a failed serAssign must not leak
  cat(sprintf("assign%d\t%s\n", i, compare(values[[i]], assign_and_read, assign_in_r)))
}
"""

CODES = EXPRESSIONS + ERRORS


@pytest.fixture(scope="module")
def results(rserve: Server, rexec_server: Server, tmp_path_factory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("rsclient")
    cases = directory / "cases.hex"
    cases.write_text("\n".join(code.encode().hex() for code in CODES) + "\n")
    # A file, not `Rscript -e`: given as -e, this script's R process (R 4.2.2) died with
    # a segfault in a later garbage collection, every time; run from a file it does not.
    script = directory / "compare.R"
    script.write_text(SCRIPT.replace("SETUP_CODE", repr(SETUP)))
    run = subprocess.run(
        ["Rscript", str(script), str(rserve.port), str(rexec_server.port), str(cases)],
        capture_output=True,
        text=True,
        env=UTF8,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    # "<case>\t<outcome>[\t<details>]"
    lines = [line.split("\t", 1) for line in run.stdout.splitlines() if line.strip()]
    return dict(lines)


#: Rserve's child dies decoding these calls, and RSclient cannot decode the value R gives
#: for them (a pairlist holding the empty symbol, or a closure: XT_CLOS, read as NULL),
#: so here rexec is checked against R itself by the deparse() of the value, computed on
#: rexec (test_wire.py shows rexec's reply for the same text is byte-identical to Rserve's).
CLIENT_CANNOT_DECODE = {
    "quote(function(a, b = 2) a + b)",
    "formals(function(a, b = 2, ...) NULL)",
    "function(a, b = 2) a + b",
}


def _check(outcome: str, *, by_deparse: bool = False) -> None:
    """SAME: the same value from both, or the same error (RSclient's message with the
    QAP status code, its class, and geterrmessage() read back from the session).
    RSERVE_BROKEN_REXEC_AGREES: Rserve's session died or went out of step (a documented
    Rserve bug); rexec's session still answers and its value is identical to R's own
    evaluation of the same expressions. RSERVE_BROKEN_DEPARSE_AGREES: the same, for
    values RSclient cannot decode, by deparse() (only allowed for those cases)."""
    kind, _, details = outcome.partition("\t")
    if kind == "UNSENDABLE":
        pytest.skip("R cannot parse the text, or it is empty: RSclient has nothing to send")
    allowed = {"SAME", "RSERVE_BROKEN_REXEC_AGREES"}
    if by_deparse:
        allowed = {"SAME", "RSERVE_BROKEN_DEPARSE_AGREES"}
    assert kind in allowed, f"{kind}: {details}"


@pytest.mark.parametrize("index", range(1, len(CODES) + 1), ids=lambda i: CODES[i - 1][:40])
@pytest.mark.parametrize("command", ["serEval", "qap"])
def test_eval(results: dict[str, str], index: int, command: str) -> None:
    by_deparse = command == "qap" and CODES[index - 1] in CLIENT_CANNOT_DECODE
    _check(results[f"{index} {command}"], by_deparse=by_deparse)


@pytest.mark.parametrize("index", range(1, 13))
def test_assign(results: dict[str, str], index: int) -> None:
    _check(results[f"assign{index}"])
