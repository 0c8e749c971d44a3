# Publishing: turning a function (or code) and a model into a publish body.

publishService <- function(name, code, model = NULL, inputs = list(), outputs = list(),
                           v = NULL, description = NULL, alias = NULL, timeout = NULL,
                           isDefault = FALSE, initCode = NULL, artifacts = character(),
                           snapshot = NULL, isolation = NULL, conn = NULL) {
  conn <- connection(conn)
  modelName <- modelSymbol(substitute(model))
  body <- serviceBody(code = code, model = model, modelName = modelName, inputs = inputs,
                      outputs = outputs, description = description, alias = alias,
                      timeout = timeout, isDefault = isDefault, initCode = initCode,
                      artifacts = artifacts, snapshot = snapshot, isolation = isolation)
  path <- paste0("/services/", seg(name), if (!is.null(v)) paste0("/", seg(v)))
  record <- request(conn, "POST", path, body = body)
  serviceObject(conn, record)
}

updateService <- function(name, v, code = NULL, model = NULL, inputs = NULL, outputs = NULL,
                          description = NULL, alias = NULL, timeout = NULL, isDefault = NULL,
                          initCode = NULL, artifacts = NULL, isolation = NULL, conn = NULL) {
  conn <- connection(conn)
  path <- paste0("/services/", seg(name), "/", seg(v))
  current <- request(conn, "GET", path)
  body <- list()
  if (!is.null(code) || !is.null(model) || !is.null(initCode)) {
    # Code, model and inputs belong together: rebuild them from what is given plus the
    # current definitions.
    if (is.null(code)) stop("updating the model or initCode needs the code too", call. = FALSE)
    inputs <- inputs %||% definitionsAsList(current$inputParameterDefinitions)
    outputs <- outputs %||% definitionsAsList(current$outputParameterDefinitions)
    built <- serviceBody(code = code, model = model, modelName = modelSymbol(substitute(model)),
                         inputs = inputs, outputs = outputs, initCode = initCode)
    body[c("code", "initCode")] <- built[c("code", "initCode")]
  }
  if (!is.null(inputs)) body$inputParameterDefinitions <- parameterDefinitions(inputs, "inputs")
  if (!is.null(outputs)) {
    body$outputParameterDefinitions <- parameterDefinitions(outputs, "outputs")
  }
  body$description <- description
  body$operationId <- alias
  body$timeout <- timeout
  body$isDefault <- isDefault
  body$isolation <- isolation
  if (!is.null(artifacts)) body$outputFileNames <- I(as.character(artifacts))
  if (length(body) == 0L) stop("nothing to update", call. = FALSE)
  record <- request(conn, "PATCH", path, body = body)
  serviceObject(conn, record)
}

modelSymbol <- function(expr) {
  if (is.symbol(expr)) as.character(expr) else "model"
}

# The JSON body of a publish (a list), without contacting the server.
serviceBody <- function(code, model = NULL, modelName = "model", inputs = list(),
                        outputs = list(), description = NULL, alias = NULL, timeout = NULL,
                        isDefault = FALSE, initCode = NULL, artifacts = character(),
                        snapshot = NULL, isolation = NULL) {
  if (missing(code) || is.null(code)) stop("code is required", call. = FALSE)
  inputDefs <- parameterDefinitions(inputs, "inputs")
  outputDefs <- parameterDefinitions(outputs, "outputs")
  inputNames <- vapply(inputDefs, `[[`, "", "name")
  outputNames <- vapply(outputDefs, `[[`, "", "name")
  init <- character()
  if (!is.null(initCode)) {
    if (!is.character(initCode)) stop("initCode must be a string of R code", call. = FALSE)
    init <- c(init, paste(initCode, collapse = "\n"))
  }
  if (!is.null(model)) init <- c(init, modelInitCode(model, modelName))
  if (is.function(code)) {
    wrapped <- functionCode(code, inputNames, outputNames)
    init <- c(init, wrapped$initCode)
    code <- wrapped$code
  } else if (is.character(code)) {
    code <- paste(code, collapse = "\n")
    if (grepl("\\.[rR]$", code) && !grepl("\n", code, fixed = TRUE) && file.exists(code)) {
      code <- paste(readLines(code, warn = FALSE, encoding = "UTF-8"), collapse = "\n")
    }
    if (!nzchar(trimws(code))) stop("code is empty", call. = FALSE)
  } else {
    stop("code must be a function, a string of R code or the path of an .R file", call. = FALSE)
  }
  body <- list(code = code)
  if (length(init)) {
    body$initCode <- paste(init, collapse = "\n")
    checkInitCodeSize(body$initCode, !is.null(model))
  }
  body$snapshotId <- snapshot
  body$description <- description
  body$operationId <- alias
  body$inputParameterDefinitions <- inputDefs
  body$outputParameterDefinitions <- outputDefs
  body$outputFileNames <- I(as.character(artifacts))
  body$runtimeType <- "R"
  if (!is.null(timeout)) body$timeout <- timeout
  if (!is.null(isolation)) body$isolation <- isolation
  body$isDefault <- isTRUE(isDefault)
  body
}

# list(x = "numeric") or c(x = "numeric") -> list(list(name = "x", type = "numeric")).
parameterDefinitions <- function(x, what) {
  if (is.null(x) || length(x) == 0L) return(list())
  names <- names(x)
  if (is.null(names) || any(is.na(names) | !nzchar(names))) {
    stop(what, " must be named, e.g. list(x = \"numeric\")", call. = FALSE)
  }
  if (anyDuplicated(names)) stop(what, " has a name twice", call. = FALSE)
  lapply(seq_along(x), function(i) {
    type <- x[[i]]
    if (!is.character(type) || length(type) != 1L || is.na(type)) {
      stop(what, ": the type of ", names[i], " must be one string such as \"numeric\"",
           call. = FALSE)
    }
    list(name = names[i], type = type)
  })
}

definitionsAsList <- function(defs) {
  if (length(defs) == 0L) return(list())
  setNames(lapply(defs, function(d) d$type), vapply(defs, function(d) d$name, ""))
}

# A function as initCode (its definition) and code (a call binding the inputs by name and
# assigning the outputs).
functionCode <- function(f, inputNames, outputNames) {
  formalNames <- names(formals(f))
  if (!("..." %in% formalNames)) {
    unknown <- setdiff(inputNames, formalNames)
    if (length(unknown)) {
      stop("the function has no argument ", paste(unknown, collapse = ", "),
           " (inputs must be the function's arguments)", call. = FALSE)
    }
  }
  missingArgs <- setdiff(formalNames[vapply(formals(f), isMissingArg, TRUE)],
                         c(inputNames, "..."))
  if (length(missingArgs)) {
    stop("the function's argument ", paste(missingArgs, collapse = ", "),
         " has no default and is not an input", call. = FALSE)
  }
  attr(f, "srcref") <- NULL
  definition <- paste(deparse(f, width.cutoff = 500L,
                              control = c("keepNA", "keepInteger", "niceNames",
                                          "showAttributes", "digits17")),
                      collapse = "\n")
  initCode <- paste0(".rexecFunction <- ", definition)
  call <- sprintf(".rexecFunction(%s)",
                  paste(sprintf("%s = %s", backquote(inputNames), backquote(inputNames)),
                        collapse = ", "))
  code <- if (length(outputNames) == 0L) {
    call
  } else if (length(outputNames) == 1L) {
    paste(backquote(outputNames), "<-", call)
  } else {
    wanted <- paste(deparse(outputNames), collapse = "")
    problem <- deparse(paste("the service's function must return a named list with",
                             paste(outputNames, collapse = ", ")))
    c(paste(".rexecOutputs <-", call),
      sprintf("if (!is.list(.rexecOutputs) || !all(%s %%in%% names(.rexecOutputs))) stop(%s)",
              wanted, problem),
      sprintf("%s <- .rexecOutputs[[%s]]", backquote(outputNames),
              vapply(outputNames, function(n) deparse(n), "")))
  }
  list(initCode = initCode, code = paste(code, collapse = "\n"))
}

isMissingArg <- function(x) is.symbol(x) && identical(as.character(x), "")

backquote <- function(x) {
  ifelse(make.names(x) == x, x, paste0("`", gsub("`", "\\\\`", x), "`"))
}

# R code that defines the model's objects in the service's global environment: the
# objects are serialize()d, gzip-compressed and base64-encoded, and decoded with base R
# alone (no package needed on the compute node).
modelInitCode <- function(model, modelName = "model") {
  objects <- lapply(modelObjects(model, modelName), detachFormulas)
  blob <- memCompress(serialize(objects, NULL, xdr = TRUE, version = 2L), type = "gzip")
  encoded <- jsonlite::base64_enc(blob)
  encoded <- gsub("[\r\n]", "", encoded)
  paste0(
    "local({\n",
    "  .b64 <- \"", encoded, "\"\n",
    "  x <- match(strsplit(.b64, \"\")[[1L]], c(LETTERS, letters, 0:9, \"+\", \"/\")) - 1L\n",
    "  x <- x[!is.na(x)]; n <- length(x); x <- c(x, integer((4L - n %% 4L) %% 4L))\n",
    "  m <- matrix(x, 4L)\n",
    "  b <- rbind(m[1L, ] * 4L + m[2L, ] %/% 16L, (m[2L, ] %% 16L) * 16L + m[3L, ] %/% 4L,\n",
    "             (m[3L, ] %% 4L) * 64L + m[4L, ])\n",
    "  b <- as.raw(b)[seq_len((n * 3L) %/% 4L)]\n",
    "  list2env(unserialize(memDecompress(b, type = \"gzip\")), envir = globalenv())\n",
    "})"
  )
}

# The named list of objects a model stands for: an object (named after the argument), or
# the objects of an .RData file, or the object of an .rds file.
modelObjects <- function(model, modelName) {
  if (is.character(model) && length(model) == 1L && !is.na(model) &&
      grepl("\\.(rdata|rda|rds)$", tolower(model))) {
    if (!file.exists(model)) stop("model file ", model, " does not exist", call. = FALSE)
    if (grepl("\\.rds$", tolower(model))) return(list(model = readRDS(model)))
    env <- new.env(parent = emptyenv())
    load(model, envir = env)
    return(as.list(env, all.names = TRUE))
  }
  setNames(list(model), modelName)
}

# The object with every formula's (and terms') environment replaced by the global
# environment: a model fitted inside a function would otherwise carry that function's
# whole frame (its local variables, perhaps a token or a big data set) to the server.
# Other environments (closures such as splinefun()'s) are kept: the object needs them.
detachFormulas <- function(x, depth = 0L) {
  if (depth > 50L || is.environment(x) || is.function(x)) return(x)
  if (inherits(x, "formula") && is.environment(attr(x, ".Environment"))) {
    attr(x, ".Environment") <- globalenv()
  }
  if (is.list(x) && !is.data.frame(x) && length(x)) {
    attrs <- attributes(x)
    x <- lapply(x, detachFormulas, depth = depth + 1L)
    attributes(x) <- attrs
  }
  attrs <- attributes(x)
  for (a in setdiff(names(attrs), c("names", "dim", "dimnames", "class", "row.names",
                                    ".Environment"))) {
    attr(x, a) <- detachFormulas(attrs[[a]], depth + 1L)
  }
  x
}

initCodeLimit <- function() getOption("rexecclient.initCodeLimit", 51200)

checkInitCodeSize <- function(initCode, hasModel) {
  size <- nchar(initCode, type = "bytes")
  limit <- initCodeLimit()
  if (size > limit) {
    stop(sprintf(paste0(
      "the service's initCode would take %d bytes, more than the web node's limit of %d ",
      "(about %d KiB)%s. Publish a smaller model (for lm/glm: lm(..., model = FALSE), ",
      "or strip $model, $qr$qr, $residuals, $fitted.values, $effects when predict() does ",
      "not need them), or put the model in a snapshot and publish with snapshot = <id>."),
      size, limit, limit %/% 1024,
      if (hasModel) ": the model, serialized, compressed and base64-encoded, is too big" else ""),
      call. = FALSE)
  }
  invisible(size)
}
