# Live tests need a web node: REXEC_URL, REXEC_USER and REXEC_PASSWORD.
liveLogin <- function() {
  url <- Sys.getenv("REXEC_URL")
  user <- Sys.getenv("REXEC_USER")
  password <- Sys.getenv("REXEC_PASSWORD")
  if (!nzchar(url) || !nzchar(user) || !nzchar(password)) {
    testthat::skip("REXEC_URL, REXEC_USER and REXEC_PASSWORD are not all set")
  }
  remoteLogin(url, user, password)
}

# A service name no other run uses.
uniqueName <- function(prefix) {
  paste0(prefix, "-", format(Sys.time(), "%H%M%S"), "-", Sys.getpid(), "-",
         paste(sample(c(letters, 0:9), 6, TRUE), collapse = ""))
}

# What a publish body does, run in a fresh R process the way a compute node runs it: the
# model restored (an .RData's objects by name, an .rds as `model`), initCode, then the
# inputs assigned, then code; the outputs are returned.
runLocally <- function(body, inputs, outputNames) {
  dir <- tempfile("rexec-local-")
  dir.create(dir)
  on.exit(unlink(dir, recursive = TRUE))
  saveRDS(inputs, file.path(dir, "inputs.rds"))
  restore <- NULL
  if (!is.null(body$model)) {
    model <- file.path(dir, "model")
    writeBin(jsonlite::base64_dec(body$model), model)
    restore <- sprintf(paste0(
      "con <- gzfile(%1$s, 'rb'); magic <- rawToChar(readBin(con, 'raw', 3L)); close(con)\n",
      "if (magic == 'RDX') load(%1$s, globalenv()) else ",
      "assign('model', readRDS(%1$s), globalenv())"), deparse(model))
  }
  script <- c(
    restore,
    if (!is.null(body$initCode)) body$initCode,
    sprintf("list2env(readRDS(%s), globalenv())", deparse(file.path(dir, "inputs.rds"))),
    body$code,
    sprintf("saveRDS(mget(%s, globalenv()), %s)",
            paste(deparse(outputNames), collapse = ""),
            deparse(file.path(dir, "outputs.rds")))
  )
  writeLines(script, file.path(dir, "script.R"))
  rscript <- file.path(R.home("bin"), "Rscript")
  status <- system2(rscript, c("--vanilla", shQuote(file.path(dir, "script.R"))),
                    stdout = FALSE, stderr = FALSE)
  if (status != 0L) stop("the service code failed locally")
  readRDS(file.path(dir, "outputs.rds"))
}
