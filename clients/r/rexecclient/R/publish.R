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
  if (!is.null(code)) {
    # The function's call is built from the inputs and outputs: the current ones unless
    # new ones are given.
    built <- serviceBody(code = code, initCode = initCode,
                         inputs = inputs %||% definitionsAsList(current$inputParameterDefinitions),
                         outputs = outputs %||%
                           definitionsAsList(current$outputParameterDefinitions))
    body$code <- built$code
    body$initCode <- built$initCode
  } else if (!is.null(initCode)) {
    if (grepl(".rexecFunction <- ", current$initCode %||% "", fixed = TRUE)) {
      stop("this version was published from a function, which its initCode defines: ",
           "give the function (code) with the new initCode", call. = FALSE)
    }
    body$initCode <- paste(initCode, collapse = "\n")
  }
  if (!is.null(model)) body$model <- modelPayload(model, modelSymbol(substitute(model)))
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
  if (length(init)) body$initCode <- paste(init, collapse = "\n")
  if (!is.null(model)) body$model <- modelPayload(model, modelName)
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

# The publish body's `model`: base64 of an .RData file (save() output) holding the model's
# objects under their names, or of the .rds / .RData file given. The web node restores it
# in the service's template before initCode (an .rds as `model`, an .RData's objects
# under their names); its size limit is the web node's (256 MiB by default).
modelPayload <- function(model, modelName = "model") {
  if (isModelFile(model)) {
    if (!file.exists(model)) stop("model file ", model, " does not exist", call. = FALSE)
    bytes <- readBin(model, "raw", file.size(model))
  } else {
    objects <- setNames(list(detachFormulas(model)), modelName)
    env <- new.env(parent = emptyenv())
    list2env(objects, envir = env)
    file <- tempfile(fileext = ".RData")
    on.exit(unlink(file))
    save(list = names(objects), envir = env, file = file)
    bytes <- readBin(file, "raw", file.size(file))
  }
  gsub("[\r\n]", "", jsonlite::base64_enc(bytes))
}

isModelFile <- function(model) {
  is.character(model) && length(model) == 1L && !is.na(model) &&
    grepl("\\.(rdata|rda|rds)$", tolower(model))
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
