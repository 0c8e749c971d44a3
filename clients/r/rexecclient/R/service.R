# Services: getting, listing, deleting, consuming (one record or a batch).

getService <- function(name, v = NULL, conn = NULL) {
  conn <- connection(conn)
  if (!is.null(v)) {
    record <- request(conn, "GET", paste0("/services/", seg(name), "/", seg(v)))
    return(serviceObject(conn, record))
  }
  versions <- request(conn, "GET", paste0("/services/", seg(name)))
  if (!is.null(versions$name)) versions <- list(versions)  # one record, not a list
  if (length(versions) == 0L) stop("service ", name, " has no versions", call. = FALSE)
  defaults <- Filter(function(r) isTRUE(r$isDefault), versions)
  if (length(defaults) >= 1L) return(serviceObject(conn, defaults[[1L]], default = TRUE))
  if (length(versions) == 1L) return(serviceObject(conn, versions[[1L]]))
  stop(sprintf("service %s has %d versions and none is the default: give v (one of %s)",
               name, length(versions),
               paste(vapply(versions, function(r) as.character(r$version), ""),
                     collapse = ", ")), call. = FALSE)
}

listServices <- function(name = NULL, v = NULL, conn = NULL) {
  conn <- connection(conn)
  if (is.null(name) && !is.null(v)) stop("v needs a name", call. = FALSE)
  path <- "/services"
  if (!is.null(name)) path <- paste0(path, "/", seg(name))
  if (!is.null(v)) path <- paste0(path, "/", seg(v))
  records <- request(conn, "GET", path)
  if (!is.null(records$name)) records <- list(records)
  structure(records, class = "rexecServiceList")
}

deleteService <- function(name, v, conn = NULL) {
  conn <- connection(conn)
  if (missing(v) || is.null(v)) stop("deleteService needs the version v", call. = FALSE)
  request(conn, "DELETE", paste0("/services/", seg(name), "/", seg(v)))
  invisible(TRUE)
}

as.data.frame.rexecServiceList <- function(x, row.names = NULL, optional = FALSE, ...) {
  field <- function(f, empty) vapply(x, function(r) {
    value <- r[[f]]
    if (is.null(value) || length(value) != 1L) empty else as.vector(value, typeof(empty))
  }, empty)
  data.frame(name = field("name", ""), version = field("version", ""),
             isDefault = field("isDefault", FALSE), operationId = field("operationId", ""),
             owner = field("owner", ""), description = field("description", ""),
             creationTime = field("creationTime", ""), stringsAsFactors = FALSE,
             row.names = row.names)
}

print.rexecServiceList <- function(x, ...) {
  if (length(x) == 0L) {
    cat("<no services>\n")
  } else {
    print(as.data.frame(x)[c("name", "version", "isDefault", "owner", "description")],
          right = FALSE)
  }
  invisible(x)
}

# The object getService() and publishService() return: the record's fields, plus
# functions that call the service.
serviceObject <- function(conn, record, default = FALSE) {
  name <- record$name
  version <- record$version
  inputs <- record$inputParameterDefinitions %||% list()
  outputs <- record$outputParameterDefinitions %||% list()
  apiPath <- if (default) {
    paste0("/api/", seg(name))
  } else {
    paste0("/api/", seg(name), "/", seg(version))
  }
  versionPath <- paste0("/api/", seg(name), "/", seg(version))
  .svc <- list(conn = conn, apiPath = apiPath, inputs = inputs, outputs = outputs)
  consume <- function() NULL
  formals(consume) <- consumeFormals(inputs)
  body(consume) <- consumeBodyExpr(inputs)
  batch <- function(records, parallelCount = 10L, wait = TRUE, timeout = 600,
                    pollInterval = 0.5) {
    startBatch(conn, versionPath, records, inputs, outputs, parallelCount, wait, timeout,
               pollInterval)
  }
  swagger <- function() request(conn, "GET", paste0(versionPath, "/swagger.json"))
  object <- c(record, list(consume = consume, batch = batch, swagger = swagger))
  operationId <- record$operationId
  if (is.character(operationId) && length(operationId) == 1L && nzchar(operationId) &&
      !(operationId %in% names(object))) {
    object[[operationId]] <- consume
  }
  structure(object, class = "rexecService")
}

# consume(x, y) for inputs x and y (named or in order); a service without declared
# inputs takes any named arguments.
consumeFormals <- function(inputs) {
  names <- vapply(inputs, function(d) d$name, "")
  if (length(names) == 0L) return(alist(... = ))
  args <- rep(list(quote(expr = )), length(names))
  names(args) <- names
  args
}

# The body of consume(): it reads the service from `.svc`, so that inputs named like
# local variables (conn, inputs, ...) do not hide it.
consumeBodyExpr <- function(inputs) {
  if (length(inputs) == 0L) {
    return(quote({
      answer <- request(.svc$conn, "POST", .svc$apiPath, retries = 3L,
                        body = consumeBody(list(...), .svc$inputs))
      finishConsume(answer, .svc$outputs)
    }))
  }
  quote({
    .env <- environment()
    .names <- names(formals(sys.function()))
    .given <- .names[!vapply(.names, function(n) eval(call("missing", as.name(n)), .env), TRUE)]
    answer <- request(.svc$conn, "POST", .svc$apiPath, retries = 3L,
                      body = consumeBody(mget(.given, envir = .env), .svc$inputs))
    finishConsume(answer, .svc$outputs)
  })
}

finishConsume <- function(answer, outputs) {
  response <- serviceResponse(answer, outputs)
  if (!isTRUE(response$success)) {
    stop(structure(
      class = c("rexecServiceError", "error", "condition"),
      list(message = paste("the service failed:", response$errorMessage %||% "(no message)"),
           call = NULL, response = response)
    ))
  }
  response
}

print.rexecService <- function(x, ...) {
  cat("<rexec service ", x$name, " version ", x$version,
      if (isTRUE(x$isDefault)) " (default)", ">\n", sep = "")
  if (!is.null(x$description) && nzchar(x$description)) cat(x$description, "\n", sep = "")
  sig <- function(defs) {
    if (length(defs) == 0L) return("(none)")
    paste(vapply(defs, function(d) paste0(d$name, ": ", d$type), ""), collapse = ", ")
  }
  cat("inputs:  ", sig(x$inputParameterDefinitions), "\n", sep = "")
  cat("outputs: ", sig(x$outputParameterDefinitions), "\n", sep = "")
  cat("call:    $consume(...)",
      if (!is.null(x$operationId)) paste0(" or $", x$operationId, "(...)"), "\n", sep = "")
  invisible(x)
}

# ---------------------------------------------------------------------------- inputs

# The JSON object of one call's inputs, each value shaped for its declared type.
consumeBody <- function(args, inputs) {
  types <- setNames(vapply(inputs, function(d) d$type, ""), vapply(inputs, function(d) d$name, ""))
  names <- names(args) %||% rep("", length(args))
  unnamed <- which(!nzchar(names))
  if (length(unnamed)) {
    free <- setdiff(names(types), names[nzchar(names)])
    if (length(unnamed) > length(free)) stop("too many unnamed inputs", call. = FALSE)
    names[unnamed] <- free[seq_along(unnamed)]
  }
  names(args) <- names
  if (length(types)) {
    unknown <- setdiff(names, names(types))
    if (length(unknown)) {
      stop("unknown input ", paste(unknown, collapse = ", "), "; the service takes ",
           paste(names(types), collapse = ", "), call. = FALSE)
    }
  }
  body <- lapply(names, function(n) inputValue(args[[n]], types[n]))
  if (length(body) == 0L) return(structure(list(), names = character()))
  setNames(body, names)
}

inputValue <- function(value, type) {
  type <- if (is.na(type)) "" else unname(type)
  if (is.null(value)) return(NULL)
  if (type == "data.frame") {
    if (!is.data.frame(value)) value <- as.data.frame(value, stringsAsFactors = FALSE)
    # Columns as arrays even with one row.
    return(lapply(as.list(value), function(col) {
      if (is.factor(col)) col <- as.character(col)
      I(col)
    }))
  }
  if (type == "matrix") {
    if (!is.matrix(value)) value <- as.matrix(value)
    return(value)
  }
  if (type %in% c("vector", "list")) {
    if (is.atomic(value) && is.null(names(value))) return(I(value))
    return(value)
  }
  if (is.factor(value)) value <- as.character(value)
  value
}

# ---------------------------------------------------------------------------- outputs

serviceResponse <- function(answer, outputs) {
  types <- setNames(vapply(outputs, function(d) d$type, ""),
                    vapply(outputs, function(d) d$name, ""))
  params <- answer$outputParameters %||% list()
  converted <- lapply(names(params), function(n) {
    outputValue(params[[n]], if (n %in% names(types)) types[[n]] else "")
  })
  names(converted) <- names(params)
  files <- lapply(answer$outputFiles %||% list(), function(f) {
    if (is.character(f)) jsonlite::base64_dec(f) else f
  })
  response <- list(
    success = isTRUE(answer$success),
    errorMessage = answer$errorMessage,
    consoleOutput = answer$consoleOutput %||% "",
    outputParameters = converted,
    outputFiles = files
  )
  if (!is.null(answer$index)) response$index <- answer$index
  response$output <- function(name) {
    if (!(name %in% names(converted))) stop("no output ", name, call. = FALSE)
    converted[[name]]
  }
  structure(response, class = "rexecServiceResponse")
}

print.rexecServiceResponse <- function(x, ...) {
  cat("<rexec service response: ", if (x$success) "success" else "failure", ">\n", sep = "")
  if (!x$success) cat("error: ", x$errorMessage, "\n", sep = "")
  if (nzchar(x$consoleOutput)) cat("console output:\n", x$consoleOutput, "\n", sep = "")
  for (n in names(x$outputParameters)) {
    cat("$outputParameters$", n, "\n", sep = "")
    print(x$outputParameters[[n]])
  }
  if (length(x$outputFiles)) cat("output files: ", paste(names(x$outputFiles), collapse = ", "),
                                 "\n", sep = "")
  invisible(x)
}

# A JSON value parsed with simplifyVector = FALSE, as the R value of the declared type.
outputValue <- function(value, type) {
  switch(type,
    numeric = atomicValue(value, as.numeric, NA_real_),
    integer = atomicValue(value, function(x) as.integer(round(as.numeric(x))), NA_integer_),
    logical = atomicValue(value, as.logical, NA),
    character = atomicValue(value, as.character, NA_character_),
    vector = simpleValue(value),
    matrix = matrixValue(value),
    data.frame = dataFrameValue(value),
    simpleValue(value)
  )
}

isScalarList <- function(x) {
  is.list(x) && all(vapply(x, function(e) is.null(e) || (is.atomic(e) && length(e) == 1L), TRUE))
}

atomicValue <- function(value, cast, na) {
  if (is.null(value)) return(na)
  if (is.atomic(value)) return(cast(value))
  if (isScalarList(value)) {
    out <- cast(vapply(value, function(e) if (is.null(e)) NA_character_ else as.character(e), ""))
    if (identical(cast, as.logical)) {
      out <- vapply(value, function(e) if (is.null(e)) NA else as.logical(e), NA)
    } else if (!identical(cast, as.character)) {
      out <- cast(vapply(value, function(e) if (is.null(e)) NA_real_ else as.numeric(e), 0))
    }
    names(out) <- names(value)
    return(out)
  }
  simpleValue(value)
}

# No declared type: arrays of scalars become vectors (null -> NA), arrays of rows
# matrices, objects of equal-length arrays data frames are left as named lists.
simpleValue <- function(value) {
  if (is.null(value) || is.atomic(value)) return(value)
  if (length(value) > 0L && isScalarList(value)) {
    kinds <- unique(vapply(value, function(e) if (is.null(e)) "null" else typeof(e), ""))
    kinds <- setdiff(kinds, "null")
    if (length(kinds) == 0L) return(setNames(rep(NA, length(value)), names(value)))
    cast <- if (all(kinds %in% c("integer", "double"))) {
      function(e) as.numeric(e)
    } else if (identical(kinds, "logical")) {
      as.logical
    } else {
      as.character
    }
    na <- if (all(kinds %in% c("integer", "double"))) NA_real_ else if (
      identical(kinds, "logical")) NA else NA_character_
    out <- vapply(value, function(e) if (is.null(e)) na else cast(e), na)
    names(out) <- names(value)
    return(out)
  }
  lapply(value, simpleValue)
}

matrixValue <- function(value) {
  if (is.null(value)) return(NULL)
  if (is.atomic(value)) return(matrix(value, nrow = 1L))
  if (length(value) == 0L) return(matrix(numeric(), 0L, 0L))
  rows <- lapply(value, simpleValue)
  if (!all(vapply(rows, is.atomic, TRUE))) return(rows)
  width <- unique(lengths(rows))
  if (length(width) != 1L) return(rows)
  do.call(rbind, lapply(rows, unname))
}

dataFrameValue <- function(value) {
  if (is.null(value)) return(NULL)
  if (is.list(value) && is.null(names(value)) && length(value) > 0L) {
    # An array of row objects.
    columns <- unique(unlist(lapply(value, names)))
    value <- setNames(lapply(columns, function(col) lapply(value, function(r) r[[col]])), columns)
  }
  if (length(value) == 0L) return(data.frame())
  columns <- lapply(value, function(col) {
    if (is.list(col) && length(col) == 0L) return(logical())
    out <- simpleValue(col)
    if (is.list(out)) I(out) else unname(out)
  })
  as.data.frame(columns, stringsAsFactors = FALSE, optional = TRUE)
}

# ---------------------------------------------------------------------------- batch

batchRecords <- function(records, inputs) {
  if (is.data.frame(records)) {
    records <- lapply(seq_len(nrow(records)), function(i) {
      lapply(as.list(records[i, , drop = FALSE]), function(col) {
        if (is.factor(col)) as.character(col) else col
      })
    })
  }
  if (!is.list(records)) stop("records must be a data frame or a list of named lists",
                              call. = FALSE)
  lapply(records, function(r) consumeBody(as.list(r), inputs))
}

startBatch <- function(conn, versionPath, records, inputs, outputs, parallelCount, wait,
                       timeout, pollInterval) {
  body <- batchRecords(records, inputs)
  answer <- request(conn, "POST", paste0(versionPath, "/batch"), body = body,
                    query = list(parallelCount = as.integer(parallelCount)), retries = 3L)
  id <- answer$batchExecutionId
  if (is.null(id)) stop("the web node did not return a batchExecutionId", call. = FALSE)
  batch <- batchObject(conn, versionPath, id, outputs)
  if (wait) batch$wait(timeout = timeout, pollInterval = pollInterval) else batch
}

batchObject <- function(conn, versionPath, id, outputs) {
  path <- paste0(versionPath, "/batch/", seg(id))
  self <- new.env(parent = emptyenv())
  self$id <- id
  self$state <- "queued"
  self$status <- function(showPartialResult = TRUE) {
    answer <- request(conn, "GET", path,
                      query = list(showPartialResult = tolower(as.character(showPartialResult))))
    self$state <- answer$state
    self$completedItemCount <- answer$completedItemCount
    self$totalItemCount <- answer$totalItemCount
    results <- lapply(answer$batchExecutionResults %||% list(), serviceResponse, outputs)
    if (length(results)) {
      order <- order(vapply(results, function(r) as.numeric(r$index %||% NA), 0))
      results <- results[order]
    }
    self$results <- results
    invisible(self)
  }
  self$wait <- function(timeout = 600, pollInterval = 0.5) {
    deadline <- Sys.time() + timeout
    repeat {
      self$status(showPartialResult = FALSE)
      if (self$state %in% c("complete", "failed", "cancelled")) break
      if (Sys.time() > deadline) {
        stop(sprintf("batch %s still %s after %s seconds", id, self$state, timeout),
             call. = FALSE)
      }
      Sys.sleep(pollInterval)
    }
    invisible(self)
  }
  self$cancel <- function() {
    request(conn, "DELETE", path)
    invisible(self)
  }
  self$files <- function(index) {
    unlist(request(conn, "GET", paste0(path, "/", as.integer(index), "/files")))
  }
  self$file <- function(index, fileName) {
    request(conn, "GET", paste0(path, "/", as.integer(index), "/files/", seg(fileName)),
            raw = TRUE)
  }
  self$outputs <- function(name) {
    lapply(self$results, function(r) if (r$success) r$outputParameters[[name]] else NULL)
  }
  class(self) <- "rexecBatch"
  self
}

print.rexecBatch <- function(x, ...) {
  cat("<rexec batch ", x$id, ": ", x$state, if (!is.null(x$totalItemCount))
    sprintf(", %s of %s items done", x$completedItemCount, x$totalItemCount), ">\n", sep = "")
  invisible(x)
}
