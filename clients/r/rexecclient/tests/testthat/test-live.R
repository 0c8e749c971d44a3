# Tests against a live web node (REXEC_URL, REXEC_USER, REXEC_PASSWORD); skipped without.

test_that("a wrong password is an HTTP 401 error", {
  liveLogin()
  err <- tryCatch(remoteLogin(Sys.getenv("REXEC_URL"), Sys.getenv("REXEC_USER"), "wrong-pw"),
                  error = identity)
  expect_s3_class(err, "rexecHttpError")
  expect_identical(err$status, 401L)
  expect_match(conditionMessage(err), "HTTP 401")
})

test_that("a rejected access token is refreshed once; a logged-out connection is refused", {
  conn <- liveLogin()
  expect_output(print(conn), Sys.getenv("REXEC_USER"))
  conn$accessToken <- "not-a-token"
  expect_s3_class(listServices(conn = conn), "rexecServiceList")
  expect_false(identical(conn$accessToken, "not-a-token"))
  remoteLogout(conn)
  expect_error(listServices(conn = conn), "logged out")
})

test_that("a function with an lm model predicts what R predicts here", {
  conn <- liveLogin()
  name <- uniqueName("mpg")
  carsModel <- lm(mpg ~ wt + hp, data = mtcars)
  predictMpg <- function(wt, hp) predict(carsModel, newdata = data.frame(wt = wt, hp = hp))
  svc <- publishService(name, code = predictMpg, model = carsModel,
                        inputs = list(wt = "numeric", hp = "numeric"),
                        outputs = list(mpg = "numeric"), v = "1.0",
                        description = "mtcars mpg", alias = "predictMpg")
  on.exit(deleteService(name, "1.0"), add = TRUE)
  expect_s3_class(svc, "rexecService")
  expect_identical(svc$version, "1.0")
  expect_identical(svc$description, "mtcars mpg")

  answer <- svc$consume(wt = 3.1, hp = 120)
  expect_true(answer$success)
  expected <- predict(carsModel, data.frame(wt = 3.1, hp = 120))  # named "1", as here
  expect_equal(answer$outputParameters$mpg, expected, tolerance = 1e-12)
  expect_equal(answer$output("mpg"), expected, tolerance = 1e-12)

  # Vectors, by position, through a fresh getService and the operationId function.
  again <- getService(name, "1.0", conn = conn)
  wt <- c(2.2, 3.5, 4.1)
  hp <- c(95, 180, 230)
  expect_equal(again$predictMpg(wt, hp)$outputParameters$mpg,
               predict(carsModel, data.frame(wt = wt, hp = hp)), tolerance = 1e-12)

  listed <- as.data.frame(listServices(name))
  expect_identical(listed$version, "1.0")
  expect_true(name %in% as.data.frame(listServices())$name)
  expect_output(print(again), "wt: numeric, hp: numeric")
})

test_that("a model far bigger than initCode's limit, fitted inside a function", {
  liveLogin()
  name <- uniqueName("big")
  fit <- function() {
    n <- 20000
    data <- data.frame(x1 = stats::rnorm(n), x2 = stats::runif(n))
    data$y <- 3 * data$x1 - 2 * data$x2 + stats::rnorm(n)
    lm(y ~ x1 + x2, data = data)
  }
  bigModel <- fit()
  expect_gt(length(serialize(bigModel, NULL)), 1e6)
  svc <- publishService(name, code = function(x1, x2) {
    unname(predict(bigModel, data.frame(x1 = x1, x2 = x2)))
  }, model = bigModel, inputs = list(x1 = "numeric", x2 = "numeric"),
  outputs = list(y = "numeric"), v = "1")
  on.exit(deleteService(name, "1"), add = TRUE)
  expect_equal(svc$consume(x1 = c(0.5, -1), x2 = c(0.2, 0.9))$outputParameters$y,
               unname(predict(bigModel, data.frame(x1 = c(0.5, -1), x2 = c(0.2, 0.9)))),
               tolerance = 1e-12)
  # A model from an .rds file is `model` there.
  rds <- tempfile(fileext = ".rds")
  saveRDS(c(a = 10, b = 20), rds)
  svc <- publishService(name, code = "y <- model[[key]]", model = rds,
                        inputs = c(key = "character"), outputs = c(y = "numeric"), v = "rds")
  on.exit(deleteService(name, "rds"), add = TRUE)
  expect_identical(svc$consume(key = "b")$outputParameters$y, 20)
})

test_that("data frames go in and come out, with NA", {
  liveLogin()
  name <- uniqueName("frame")
  addColumn <- function(df, k) {
    df$z <- df$x * k
    df$label <- toupper(df$label)
    df
  }
  svc <- publishService(name, code = addColumn, inputs = list(df = "data.frame", k = "numeric"),
                        outputs = list(df = "data.frame"), v = "v1")
  on.exit(deleteService(name, "v1"), add = TRUE)
  df <- data.frame(x = c(1.5, NA, -2), label = c("a", "b", NA), stringsAsFactors = FALSE)
  out <- svc$consume(df = df, k = 2)$outputParameters$df
  expect_s3_class(out, "data.frame")
  expect_equal(out, addColumn(df, 2))
  one <- svc$consume(df = df[1, ], k = 10)$outputParameters$df
  expect_equal(one, addColumn(df[1, ], 10), ignore_attr = "row.names")
})

test_that("several outputs, a matrix, and output values that are NA", {
  liveLogin()
  name <- uniqueName("stats")
  summarise <- function(x, m) {
    list(total = sum(x, na.rm = TRUE), missing = sum(is.na(x)), first = x[1],
         doubled = m * 2)
  }
  svc <- publishService(name, code = summarise, inputs = list(x = "numeric", m = "matrix"),
                        outputs = list(total = "numeric", missing = "integer", first = "numeric",
                                       doubled = "matrix"), v = "1")
  on.exit(deleteService(name, "1"), add = TRUE)
  m <- matrix(c(1, 2, 3, 4, 5, 6), 2)
  out <- svc$consume(x = c(NA, 1, 2.5), m = m)$outputParameters
  expect_identical(out$total, 3.5)
  expect_identical(out$missing, 1L)
  expect_identical(out$first, NA_real_)
  expect_equal(out$doubled, m * 2)
})

test_that("an R error in the service is an R error carrying R's message", {
  liveLogin()
  name <- uniqueName("fails")
  svc <- publishService(name, code = function(x) {
    if (x < 0) stop("negative input: ", x)
    sqrt(x)
  }, inputs = list(x = "numeric"), outputs = list(y = "numeric"), v = "1")
  on.exit(deleteService(name, "1"), add = TRUE)
  expect_identical(svc$consume(x = 16)$outputParameters$y, 4)
  err <- tryCatch(svc$consume(x = -3), error = identity)
  expect_s3_class(err, "rexecServiceError")
  expect_match(conditionMessage(err), "negative input: -3")
  expect_false(err$response$success)
  # An input of the wrong type never reaches R: HTTP 400 naming it.
  err <- tryCatch(svc$consume(x = "text"), error = identity)
  expect_s3_class(err, "rexecHttpError")
  expect_identical(err$status, 400L)
  expect_match(conditionMessage(err), "x")
})

test_that("code as a string, a generated version and the default version", {
  liveLogin()
  name <- uniqueName("code")
  first <- publishService(name, code = "y <- x + offset", initCode = "offset <- 100",
                          inputs = c(x = "numeric"), outputs = c(y = "numeric"),
                          isDefault = TRUE)
  on.exit(deleteService(name, first$version), add = TRUE)
  expect_match(first$version, "^[0-9a-fA-F-]{32,36}$")
  second <- publishService(name, code = "y <- x - offset", initCode = "offset <- 100",
                           inputs = c(x = "numeric"), outputs = c(y = "numeric"), v = "2")
  on.exit(deleteService(name, "2"), add = TRUE)
  default <- getService(name)
  expect_identical(default$version, first$version)
  expect_identical(default$consume(x = 1)$outputParameters$y, 101)
  expect_identical(getService(name, "2")$consume(x = 1)$outputParameters$y, -99)
  expect_length(listServices(name), 2L)
  updated <- updateService(name, "2", description = "minus", isDefault = TRUE)
  expect_identical(updated$description, "minus")
  expect_identical(getService(name)$version, "2")
  expect_identical(getService(name)$consume(x = 1)$outputParameters$y, -99)
  updated <- updateService(name, "2", code = function(x) x * 1000, inputs = c(x = "numeric"))
  expect_identical(updated$consume(x = 2)$outputParameters$y, 2000)
})

test_that("printed output, output files and the service's OpenAPI document", {
  liveLogin()
  name <- uniqueName("files")
  svc <- publishService(name, code = function(text) {
    print(paste("got", text))
    writeLines(text, "out.txt")
    nchar(text)
  }, inputs = list(text = "character"), outputs = list(n = "integer"),
  artifacts = "out.txt", v = "1")
  on.exit(deleteService(name, "1"), add = TRUE)
  answer <- svc$consume(text = "hello")
  expect_identical(answer$outputParameters$n, 5L)
  expect_match(answer$consoleOutput, "got hello")
  expect_identical(answer$outputFiles[["out.txt"]], charToRaw("hello\n"))
  expect_output(print(answer), "got hello")
  doc <- svc$swagger()
  expect_identical(doc$info$version, "1")
  expect_true(paste0("/api/", name, "/1") %in% names(doc$paths))
})

test_that("a batch runs every record", {
  liveLogin()
  name <- uniqueName("batch")
  svc <- publishService(name, code = function(a, b) {
    if (a == 0) stop("a is zero")
    a / b
  }, inputs = list(a = "numeric", b = "numeric"), outputs = list(q = "numeric"), v = "1")
  on.exit(deleteService(name, "1"), add = TRUE)
  records <- data.frame(a = c(1, 2, 0, 9), b = c(4, 8, 1, 3))
  batch <- svc$batch(records, parallelCount = 2, timeout = 120)
  expect_identical(batch$state, "complete")
  expect_length(batch$results, 4L)
  expect_identical(vapply(batch$results, function(r) r$success, TRUE),
                   c(TRUE, TRUE, FALSE, TRUE))
  expect_identical(unlist(batch$outputs("q")), c(0.25, 0.25, 3))
  expect_match(batch$results[[3]]$errorMessage, "a is zero")
})

test_that("a deleted service is gone: HTTP 404 with the server's message", {
  liveLogin()
  name <- uniqueName("gone")
  svc <- publishService(name, code = "y <- 1", outputs = c(y = "numeric"), v = "1")
  expect_identical(svc$consume()$outputParameters$y, 1)
  expect_true(deleteService(name, "1"))
  err <- tryCatch(getService(name, "1"), error = identity)
  expect_s3_class(err, "rexecHttpError")
  expect_identical(err$status, 404L)
  expect_match(conditionMessage(err), "HTTP 404")
  expect_error(deleteService(name, "1"), "HTTP 404")
})
