# Logging in, and the HTTP requests every other function makes.

.state <- new.env(parent = emptyenv())

remoteLogin <- function(endpoint, username, password, session = FALSE, ...) {
  if (!is.character(endpoint) || length(endpoint) != 1L || !nzchar(endpoint)) {
    stop("endpoint must be the web node's URL, e.g. \"http://127.0.0.1:12800\"", call. = FALSE)
  }
  if (missing(username) || missing(password)) {
    stop("remoteLogin needs a username and a password", call. = FALSE)
  }
  if (!isFALSE(session)) {
    warning("rexecclient has no remote sessions: logged in without one (session = FALSE)",
            call. = FALSE)
  }
  conn <- new.env(parent = emptyenv())
  conn$endpoint <- sub("/+$", "", endpoint)
  conn$username <- username
  answer <- request(conn, "POST", "/login",
                    body = list(username = username, password = password), auth = FALSE)
  storeTokens(conn, answer)
  class(conn) <- "rexecConnection"
  .state$last <- conn
  invisible(conn)
}

remoteLogout <- function(conn = NULL) {
  conn <- connection(conn)
  if (!is.null(conn$refreshToken)) {
    try(request(conn, "DELETE", "/login/refreshToken",
                query = list(refreshToken = conn$refreshToken)), silent = TRUE)
  }
  conn$accessToken <- NULL
  conn$refreshToken <- NULL
  if (identical(.state$last, conn)) .state$last <- NULL
  invisible(TRUE)
}

print.rexecConnection <- function(x, ...) {
  cat("<rexec connection to ", x$endpoint, " as ", x$username,
      if (is.null(x$accessToken)) " (logged out)", ">\n", sep = "")
  invisible(x)
}

storeTokens <- function(conn, answer) {
  if (is.null(answer$access_token)) {
    stop("the web node's login answer has no access_token", call. = FALSE)
  }
  conn$accessToken <- answer$access_token
  conn$refreshToken <- answer$refresh_token
  invisible(conn)
}

# The connection to use: the one given, or the last remoteLogin().
connection <- function(conn) {
  if (is.null(conn)) conn <- .state$last
  if (is.null(conn)) {
    stop("not logged in: call remoteLogin(endpoint, username, password) first", call. = FALSE)
  }
  if (!inherits(conn, "rexecConnection")) {
    stop("conn must be a connection returned by remoteLogin()", call. = FALSE)
  }
  if (is.null(conn$accessToken)) stop("this connection is logged out", call. = FALSE)
  conn
}

# A path segment, percent-encoded.
seg <- function(x) {
  if (!is.character(x) && !is.numeric(x)) stop("a name or version must be a string", call. = FALSE)
  x <- as.character(x)
  if (length(x) != 1L || is.na(x) || !nzchar(x)) {
    stop("a name or version must be one non-empty string", call. = FALSE)
  }
  utils::URLencode(x, reserved = TRUE)
}

toJson <- function(x) {
  jsonlite::toJSON(prepareJson(x), auto_unbox = TRUE, null = "null", na = "null",
                   dataframe = "columns", matrix = "rowmajor", POSIXt = "ISO8601",
                   UTC = TRUE, factor = "string", force = TRUE, json_verbatim = TRUE)
}

# Doubles pre-encoded with as many digits as they need to come back unchanged
# (jsonlite writes at most 15 significant digits); data frames as {column: [values]}.
prepareJson <- function(x) {
  if (is.data.frame(x)) {
    x <- lapply(as.list(x), function(col) I(if (is.factor(col)) as.character(col) else col))
  }
  if (is.list(x) && !inherits(x, "json")) {
    out <- lapply(x, prepareJson)
    if (inherits(x, "AsIs")) class(out) <- "AsIs"
    return(out)
  }
  if (is.double(x) && !inherits(x, c("Date", "POSIXt", "difftime"))) return(doublesJson(x))
  x
}

doublesJson <- function(x) {
  values <- as.vector(x)
  text <- sprintf("%.15g", values)
  inexact <- is.finite(values)
  inexact[inexact] <- as.numeric(text[inexact]) != values[inexact]
  text[inexact] <- sprintf("%.17g", values[inexact])
  text[!is.finite(values)] <- "null"
  array <- function(items) paste0("[", paste(items, collapse = ","), "]")
  json <- if (is.matrix(x)) {
    if (nrow(x) == 0L) "[]" else array(apply(matrix(text, nrow(x)), 1L, array))
  } else if (length(values) == 1L && !inherits(x, "AsIs")) {
    text
  } else {
    array(text)
  }
  structure(json, class = "json")
}

# One HTTP request; the parsed JSON answer (simplifyVector = FALSE), or an R error
# naming the status and the server's message. A 401 refreshes the token once; a 503
# with Retry-After is retried (`retries` times) when the caller allows it.
request <- function(conn, method, path, body = NULL, query = NULL, auth = TRUE,
                    retries = 0L, raw = FALSE, timeout = getOption("rexecclient.timeout", 600)) {
  url <- paste0(conn$endpoint, path)
  refreshed <- FALSE
  repeat {
    headers <- c(Accept = "application/json")
    if (auth) headers <- c(headers, Authorization = paste("Bearer", conn$accessToken))
    args <- list(url = url, httr::add_headers(.headers = headers), httr::timeout(timeout))
    if (!is.null(query)) args$query <- query
    if (!is.null(body)) {
      args$body <- as.character(toJson(body))
      args <- c(args, list(httr::content_type_json()))
    }
    response <- tryCatch(
      do.call(httr::VERB, c(list(verb = method), args)),
      error = function(e) {
        stop(sprintf("cannot reach the web node at %s: %s", conn$endpoint, conditionMessage(e)),
             call. = FALSE)
      }
    )
    status <- httr::status_code(response)
    if (status == 401L && auth && !refreshed && !is.null(conn$refreshToken)) {
      refreshed <- TRUE
      if (refreshLogin(conn)) next
    }
    if (status == 503L && retries > 0L) {
      wait <- suppressWarnings(as.numeric(httr::headers(response)[["retry-after"]]))
      if (length(wait) == 1L && !is.na(wait) && wait <= 30) {
        retries <- retries - 1L
        Sys.sleep(max(wait, 0.1))
        next
      }
    }
    break
  }
  if (status >= 400L) httpError(method, path, response)
  if (raw) return(httr::content(response, as = "raw"))
  text <- httr::content(response, as = "text", encoding = "UTF-8")
  if (is.null(text) || !nzchar(trimws(text))) return(NULL)
  jsonlite::fromJSON(text, simplifyVector = FALSE)
}

refreshLogin <- function(conn) {
  response <- tryCatch(
    httr::POST(paste0(conn$endpoint, "/login/refreshToken"),
               body = as.character(toJson(list(refreshToken = conn$refreshToken))),
               httr::content_type_json()),
    error = function(e) NULL
  )
  if (is.null(response) || httr::status_code(response) != 200L) return(FALSE)
  answer <- jsonlite::fromJSON(httr::content(response, as = "text", encoding = "UTF-8"),
                               simplifyVector = FALSE)
  storeTokens(conn, answer)
  TRUE
}

httpError <- function(method, path, response) {
  status <- httr::status_code(response)
  text <- tryCatch(httr::content(response, as = "text", encoding = "UTF-8"),
                   error = function(e) "")
  parsed <- tryCatch(jsonlite::fromJSON(text, simplifyVector = FALSE), error = function(e) NULL)
  message <- NULL
  if (is.list(parsed)) {
    message <- parsed$message
    if (is.null(message)) message <- parsed$detail
    if (is.list(message)) message <- paste(vapply(message, function(d) {
      if (is.list(d) && !is.null(d$msg)) paste(c(unlist(d$loc), d$msg), collapse = " ")
      else paste(unlist(d), collapse = " ")
    }, ""), collapse = "; ")
  }
  if (is.null(message) || !nzchar(message)) message <- substr(text %||% "", 1L, 500L)
  reason <- httr::http_status(response)$reason
  condition <- structure(
    class = c("rexecHttpError", "error", "condition"),
    list(message = sprintf("HTTP %d %s on %s %s: %s", status, reason, method, path, message),
         call = NULL, status = status, serverMessage = message, response = response)
  )
  stop(condition)
}

`%||%` <- function(a, b) if (is.null(a)) b else a
