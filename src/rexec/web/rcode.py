"""R code the web node runs in each session's shell, sent once over QAP when it opens.

The helpers live in an environment attached to the search path (``rexec:web``), so the
session's global environment (its workspace) holds only what the user created, and
``rm(list = ls())`` cannot remove them. Every helper does its work in one R call so an
HTTP request costs one QAP round trip.
"""

from __future__ import annotations

SETUP = r"""
local({
  # The working directory's regular files with size and modification time.
  file_table <- function() {
    names <- list.files(".", recursive = TRUE, all.files = FALSE, no.. = TRUE)
    info <- file.info(names, extra_cols = FALSE)
    keep <- !info$isdir
    data.frame(name = names[keep], size = info$size[keep],
               mtime = as.numeric(info$mtime[keep]), stringsAsFactors = FALSE)
  }

  rexec_init <- function() {
    list(pid = Sys.getpid(), workdir = normalizePath(getwd()),
         tempdir = normalizePath(tempdir()))
  }

  # Run code as a console would (visible values printed). Its printed output and
  # messages go to R's console, which this session sends to the web node as it is
  # written (OOB messages: options(rexec.console.oob = TRUE), set below); warnings are
  # collected, plots drawn into plot-<n>-<k>.png, changed files reported.
  rexec_execute <- function(code, plot_prefix) {
    before <- file_table()
    warnings <- character(0)
    error <- NA_character_
    devices <- dev.list()
    png(filename = paste0(plot_prefix, "-%03d.png"))
    outcome <- tryCatch({
      exprs <- parse(text = code, keep.source = FALSE)
      for (expr in exprs) {
        withCallingHandlers({
          res <- withVisible(eval(expr, envir = globalenv()))
          if (res$visible) print(res$value)
        }, warning = function(w) {
          warnings <<- c(warnings, conditionMessage(w))
          invokeRestart("muffleWarning")
        }, message = function(m) {
          cat(conditionMessage(m))
          invokeRestart("muffleMessage")
        })
      }
      TRUE
    }, interrupt = function(e) {
      error <<- "execution cancelled"
      FALSE
    }, error = function(e) {
      call <- conditionCall(e)
      error <<- if (is.null(call)) conditionMessage(e) else
        paste0("Error in ", paste(deparse(call, nlines = 1L), collapse = ""), ": ",
               conditionMessage(e))
      FALSE
    })
    for (d in setdiff(dev.list(), devices)) dev.off(d)
    after <- file_table()
    old <- match(after$name, before$name)
    changed <- after$name[is.na(old) | after$size != before$size[old] |
                          after$mtime != before$mtime[old]]
    list(success = outcome, error = error, warnings = warnings, changed = changed)
  }

  rexec_outputs <- function(names) {
    found <- vapply(names, exists, logical(1), envir = globalenv(), inherits = FALSE)
    values <- lapply(names, function(n)
      if (exists(n, envir = globalenv(), inherits = FALSE)) get(n, envir = globalenv()))
    list(found = unname(found), values = values)
  }

  rexec_remove <- function(name) {
    if (!exists(name, envir = globalenv(), inherits = FALSE)) return(FALSE)
    rm(list = name, envir = globalenv())
    TRUE
  }

  rexec_workspace <- function() {
    names <- ls(globalenv())
    list(names = names,
         classes = lapply(names, function(n) class(get(n, envir = globalenv()))))
  }

  rexec_get_rds <- function(name) {
    path <- tempfile(fileext = ".rds")
    on.exit(unlink(path))
    saveRDS(get(name, envir = globalenv(), inherits = FALSE), path)
    readBin(path, "raw", file.size(path))
  }

  rexec_put_rds <- function(name, data) {
    path <- tempfile(fileext = ".rds")
    on.exit(unlink(path))
    writeBin(data, path)
    assign(name, readRDS(path), envir = globalenv())
    invisible(NULL)
  }

  rexec_files <- function() file_table()

  is_file <- function(name) file.exists(name) && !dir.exists(name)

  rexec_read_file <- function(name) {
    if (!is_file(name)) return(NULL)
    readBin(name, "raw", file.size(name))
  }

  rexec_write_file <- function(name, data) {
    dir <- dirname(name)
    if (dir != ".") dir.create(dir, recursive = TRUE, showWarnings = FALSE)
    writeBin(data, name)
    invisible(NULL)
  }

  rexec_remove_file <- function(name) is_file(name) && file.remove(name)

  # A snapshot: workspace.rds (every object of the global environment, as a named
  # list) and the working directory's files under files/, in one gzip-ed tar.
  rexec_snapshot <- function() {
    root <- tempfile("snapshot")
    dir.create(file.path(root, "files"), recursive = TRUE)
    on.exit(unlink(root, recursive = TRUE))
    saveRDS(as.list(globalenv(), all.names = TRUE), file.path(root, "workspace.rds"))
    names <- file_table()$name
    for (n in names) {
      target <- file.path(root, "files", n)
      dir.create(dirname(target), recursive = TRUE, showWarnings = FALSE)
      file.copy(n, target, copy.date = TRUE)
    }
    tarball <- tempfile(fileext = ".tar.gz")
    on.exit(unlink(tarball), add = TRUE)
    owd <- setwd(root)
    on.exit(setwd(owd), add = TRUE, after = FALSE)
    utils::tar(tarball, files = c("workspace.rds", "files"), compression = "gzip",
               tar = "internal")
    readBin(tarball, "raw", file.size(tarball))
  }

  rexec_restore <- function(data) {
    tarball <- tempfile(fileext = ".tar.gz")
    root <- tempfile("restore")
    on.exit(unlink(c(tarball, root), recursive = TRUE))
    writeBin(data, tarball)
    utils::untar(tarball, exdir = root, tar = "internal")
    objects <- readRDS(file.path(root, "workspace.rds"))
    list2env(objects, envir = globalenv())
    files <- list.files(file.path(root, "files"), recursive = TRUE, all.files = TRUE)
    for (n in files) {
      dir.create(dirname(n), recursive = TRUE, showWarnings = FALSE)
      file.copy(file.path(root, "files", n), n, overwrite = TRUE, copy.date = TRUE)
    }
    invisible(length(objects))
  }

  environment()
}) -> .rexec_helpers
attach(.rexec_helpers, name = "rexec:web")
rm(.rexec_helpers)
options(rexec.console.oob = TRUE)
rexec_init()
"""
