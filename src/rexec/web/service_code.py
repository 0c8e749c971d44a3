"""The R side of a published service: what its pool's template runs once, and the one
function each call is (one QAP round trip per call).

A service version's template (a named pool on each compute node) runs, in order:
:data:`HELPERS` (attached as ``rexec:service``, so the global environment holds only the
service's own objects), the restore of the service's data (its snapshot's workspace and
files, and a published model), the service's ``initCode`` in the global environment,
then ``finish_init()``, which records what every call starts from and locks the
bindings ``initCode`` made. Call shells are forked from that template, so each already
holds the model.

Each call (:func:`rexec_service_call`) is evaluated in a fresh environment whose parent
is the global environment, in a fresh working directory holding the snapshot's files,
with printed output and messages captured in memory (no sink file, no plot device) and
an elapsed-time limit. Afterwards the working directory, ``options()``, the random
number generator's state, the search path and the global environment's set of names are
put back. docs/services.md says exactly what can still leak from one call to the next.
The answer carries ``elapsed``: the seconds R spent in the call, from its first line to
its answer (the web node's ``Server-Timing`` tells this ``r`` from the ``hop``: the rest
of the QAP round trip).
"""

from __future__ import annotations

HELPERS = r"""
local({
  base <- new.env()
  files <- list()

  restore <- function(path) {
    root <- tempfile("service")
    on.exit(unlink(root, recursive = TRUE))
    utils::untar(path, exdir = root, tar = "internal")
    workspace <- file.path(root, "workspace.rds")
    if (file.exists(workspace)) list2env(readRDS(workspace), envir = globalenv())
    model <- file.path(root, "model.rds")
    if (file.exists(model)) assign("model", readRDS(model), envir = globalenv())
    model <- file.path(root, "model.RData")
    if (file.exists(model)) load(model, envir = globalenv())
    saved <- file.path(root, "files")
    names <- list.files(saved, recursive = TRUE, all.files = TRUE)
    files <<- stats::setNames(lapply(names, function(n) {
      path <- file.path(saved, n)
      readBin(path, "raw", file.size(path))
    }), names)
    invisible(length(names))
  }

  finish_init <- function() {
    names <- ls(globalenv(), all.names = TRUE)
    base$names <- names
    base$options <- options()
    base$search <- search()
    base$wd <- getwd()
    for (n in setdiff(names, ".Random.seed")) lockBinding(n, globalenv())
    invisible(NULL)
  }

  restore_state <- function() {
    setwd(base$wd)
    extra <- setdiff(names(options()), names(base$options))
    try(options(base$options), silent = TRUE)
    if (length(extra)) options(stats::setNames(vector("list", length(extra)), extra))
    for (name in setdiff(search(), base$search)) {
      if (name %in% search()) try(detach(name, character.only = TRUE), silent = TRUE)
    }
    if (!is.null(base$seed)) assign(".Random.seed", base$seed, envir = globalenv())
    created <- setdiff(ls(globalenv(), all.names = TRUE), c(base$names, ".Random.seed"))
    if (length(created)) rm(list = created, envir = globalenv())
  }

  rexec_service_call <- function(code, inputs, outputs, output_files, timeout) {
    clock <- Sys.time()  # microseconds (proc.time() counts milliseconds)
    if (is.null(base$started)) {  # this shell's first call: its own seed (set at fork)
      base$started <- TRUE
      if (!exists(".Random.seed", envir = globalenv(), inherits = FALSE)) stats::runif(1)
      base$seed <- get(".Random.seed", envir = globalenv())
    }
    dir <- tempfile("call")
    dir.create(dir)
    for (n in names(files)) {
      path <- file.path(dir, n)
      dir.create(dirname(path), recursive = TRUE, showWarnings = FALSE)
      writeBin(files[[n]], path)
    }
    setwd(dir)
    env <- new.env(parent = globalenv())
    for (n in names(inputs)) assign(n, inputs[[n]], envir = env)
    output <- character(0)
    out <- textConnection("output", "w", local = TRUE)
    sink(out)
    sink(out, type = "message")
    error <- NA_character_
    timed_out <- FALSE
    setTimeLimit(elapsed = timeout, transient = TRUE)
    ok <- tryCatch({
      withCallingHandlers({
        for (expr in parse(text = code, keep.source = FALSE)) {
          shown <- withVisible(eval(expr, envir = env))
          if (shown$visible) print(shown$value)
        }
      }, warning = function(w) {
        cat("Warning message:\n", conditionMessage(w), "\n", sep = "")
        invokeRestart("muffleWarning")
      })
      TRUE
    }, interrupt = function(e) {
      error <<- "the call was interrupted"
      FALSE
    }, error = function(e) {
      message <- conditionMessage(e)
      if (grepl("reached elapsed time limit", message, fixed = TRUE)) timed_out <<- TRUE
      call <- conditionCall(e)
      error <<- if (is.null(call)) message else
        paste0("Error in ", paste(deparse(call, nlines = 1L), collapse = ""), ": ", message)
      FALSE
    })
    setTimeLimit(elapsed = Inf)
    sink(type = "message")
    while (sink.number() > 0) sink()
    try(close(out), silent = TRUE)
    found <- vapply(outputs, exists, logical(1), envir = env, inherits = FALSE)
    values <- lapply(outputs, function(n)
      if (exists(n, envir = env, inherits = FALSE)) get(n, envir = env))
    saved <- lapply(output_files, function(f)
      if (file.exists(f) && !dir.exists(f)) readBin(f, "raw", file.size(f)))
    restore_state()
    unlink(dir, recursive = TRUE)
    console <- paste(output, collapse = "\n")
    Encoding(console) <- "UTF-8"
    list(success = ok, error = error, timedOut = timed_out, console = console,
         found = unname(found), values = values, files = saved,
         elapsed = as.numeric(difftime(Sys.time(), clock, units = "secs")))
  }

  # Byte-compiled here, once, in the template: R's JIT would otherwise compile them in
  # every fresh shell at its second call (~100-300 ms, in copy-on-write pages).
  rexec_service_call <- compiler::cmpfun(rexec_service_call)
  restore_state <- compiler::cmpfun(restore_state)

  environment()
}) -> .rexec_service
attach(.rexec_service, name = "rexec:service")
rm(.rexec_service)
"""

RESTORE = "restore(.rexec_pool_data); rm(.rexec_pool_data)"
FINISH = "finish_init()"


def template_init(init_code: str, has_data: bool) -> str:
    """The R code a service version's template runs once (after the node's start-up)."""
    parts = [HELPERS]
    if has_data:
        parts.append(RESTORE)
    if init_code.strip():
        parts.append(init_code)
    parts.append(FINISH)
    return "\n".join(parts)
