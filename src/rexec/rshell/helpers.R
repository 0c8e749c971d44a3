# Helpers rexec's shells call from Python. They live in a private environment,
# never in the global one, so a session's ls() is as empty as under Rserve.
# Each does in one vectorised R call what would otherwise be a per-element
# Python loop over a long character vector.
local({
  ff <- rawToChar(as.raw(255L))

  # Wire body of XT_ARRAY_STR: each element UTF-8 and NUL-terminated, NA as a
  # lone 0xFF, an element that itself starts with 0xFF gets one more 0xFF.
  string_body <- function(x) {
    x <- enc2utf8(x)
    na <- is.na(x)
    odd <- which(!na & !validUTF8(x))
    for (i in odd) {
      if (charToRaw(x[i])[1L] == as.raw(255L)) x[i] <- paste0(ff, x[i])
    }
    if (any(na)) x[na] <- ff
    writeBin(x, raw())
  }

  # Inverse of string_body: n NUL-terminated strings in raw vector body, marked with
  # encoding (a cetype_t: 0 native, 1 UTF-8, 2 latin1) as Rserve marks strings it receives.
  marks <- c("unknown", "UTF-8", "latin1")
  string_vector <- function(body, n, encoding) {
    x <- readBin(body, "character", n)
    odd <- which(!validUTF8(x))
    for (i in odd) {
      bytes <- charToRaw(x[i])
      if (bytes[1L] == as.raw(255L)) {
        x[i] <- if (length(bytes) == 1L) NA_character_ else rawToChar(bytes[-1L])
      }
    }
    if (encoding > 0L) Encoding(x) <- marks[encoding + 1L]
    x
  }

  # Rserve's logical coding (0 FALSE, 1 TRUE, anything else NA) from a raw vector.
  logical_vector <- function(codes) {
    x <- as.integer(codes)
    x[x > 1L] <- NA_integer_
    as.logical(x)
  }

  # parse() that reports failure as a message instead of an error, for texts the
  # lexer might reject with error() rather than a parse status. Its string literals are
  # marked as R_ParseVector() (which Rserve calls) marks them: UTF-8 in a UTF-8 locale,
  # whatever the text's own mark (parse() would leave them unmarked for unmarked text).
  literals <- if (isTRUE(l10n_info()[["UTF-8"]])) "UTF-8" else "unknown"
  safe_parse <- function(text) {
    tryCatch(
      parse(text = text, keep.source = FALSE, encoding = literals),
      error = conditionMessage
    )
  }

  # Out-of-band messages, as Rserve's self.oobSend()/self.oobMessage(): `bridge` is
  # set from Python to a function that writes the frame (and, for a message, reads
  # the client's answer into `oob_reply`). It returns TRUE, or an error text.
  bridge <- NULL
  oob_reply <- NULL
  here <- environment()
  self.oobSend <- function(what, code = 0L) {
    outcome <- here$bridge(what, as.integer(code), FALSE)
    if (is.character(outcome)) stop(outcome, call. = FALSE)
    outcome
  }
  self.oobMessage <- function(what, code = 0L) {
    outcome <- here$bridge(what, as.integer(code), TRUE)
    if (is.character(outcome)) stop(outcome, call. = FALSE)
    reply <- here$oob_reply
    here$oob_reply <- NULL
    reply
  }
  # Sessions find them unqualified, from the Autoloads environment every session's
  # search path already has (an attached environment of our own would show in
  # search(), which Rserve's sessions do not have); code written for Rserve that loads
  # the Rserve package gets these versions too.
  assign("self.oobSend", self.oobSend, envir = .AutoloadEnv)
  assign("self.oobMessage", self.oobMessage, envir = .AutoloadEnv)
  setHook(packageEvent("Rserve", "onLoad"), function(...) {
    for (name in c("self.oobSend", "self.oobMessage")) {
      utils::assignInNamespace(name, get(name, envir = here), "Rserve")
    }
  })

  environment()
})
