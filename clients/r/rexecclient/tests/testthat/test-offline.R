# Tests that need no web node.

test_that("inputs and outputs become parameter definitions", {
  expect_equal(parameterDefinitions(list(x = "numeric", df = "data.frame"), "inputs"),
               list(list(name = "x", type = "numeric"), list(name = "df", type = "data.frame")))
  expect_equal(parameterDefinitions(c(y = "integer"), "outputs"),
               list(list(name = "y", type = "integer")))
  expect_equal(parameterDefinitions(list(), "inputs"), list())
  expect_error(parameterDefinitions(list("numeric"), "inputs"), "must be named")
  expect_equal(as.character(toJson(list(d = parameterDefinitions(list(), "inputs")))),
               "{\"d\":[]}")
})

test_that("a function with a model runs where it is published as it does here", {
  carsModel <- lm(mpg ~ wt + hp, data = mtcars)
  predictMpg <- function(wt, hp) predict(carsModel, newdata = data.frame(wt = wt, hp = hp))
  body <- serviceBody(predictMpg, model = carsModel, modelName = "carsModel",
                      inputs = list(wt = "numeric", hp = "numeric"),
                      outputs = list(mpg = "numeric"))
  expect_match(body$code, "mpg <- .rexecFunction(wt = wt, hp = hp)", fixed = TRUE)
  out <- runLocally(body, list(wt = c(2.5, 3.2), hp = c(110, 150)), "mpg")
  expect_equal(out$mpg, predictMpg(c(2.5, 3.2), c(110, 150)))
})

test_that("several outputs are taken from the function's named list", {
  f <- function(x) list(total = sum(x), average = mean(x))
  body <- serviceBody(f, inputs = list(x = "numeric"),
                      outputs = list(total = "numeric", average = "numeric"))
  expect_equal(runLocally(body, list(x = c(1, 2, 6)), c("total", "average")),
               list(total = 9, average = 3))
  wrong <- serviceBody(function(x) x, inputs = list(x = "numeric"),
                       outputs = list(a = "numeric", b = "numeric"))
  expect_error(runLocally(wrong, list(x = 1), c("a", "b")), "failed locally")
})

test_that("models travel in the model field: objects by name, .RData and .rds files", {
  model <- as.raw(1:200)
  body <- serviceBody("y <- length(m)", model = model, modelName = "m",
                      outputs = list(y = "integer"))
  expect_null(body$initCode)
  expect_identical(runLocally(body, list(), "y")$y, 200L)
  file <- tempfile(fileext = ".RData")
  a <- 1:3
  b <- "two"
  save(a, b, file = file)
  body <- serviceBody("y <- paste(b, sum(a))", model = file, outputs = list(y = "character"))
  expect_identical(jsonlite::base64_dec(body$model), readBin(file, "raw", file.size(file)))
  expect_identical(runLocally(body, list(), "y")$y, "two 6")
  rds <- tempfile(fileext = ".rds")
  saveRDS(c(x = 2), rds)
  body <- serviceBody("y <- model[['x']] * 2", model = rds, outputs = list(y = "numeric"))
  expect_identical(runLocally(body, list(), "y")$y, 4)
  expect_error(serviceBody("y <- 1", model = "missing.rds"), "does not exist")
})

test_that("a big model does not go through initCode", {
  big <- stats::rnorm(1e5)
  body <- serviceBody(function(i) big[i], model = big, modelName = "big",
                      inputs = list(i = "integer"), outputs = list(y = "numeric"))
  expect_lt(nchar(body$initCode), 1000)
  expect_gt(nchar(body$model), 8e5)
  expect_identical(runLocally(body, list(i = 7L), "y")$y, big[7])
})

test_that("a model fitted inside a function does not carry the function's frame", {
  fit <- function() {
    token <- "s3cr3t-token-value"
    lm(mpg ~ wt, data = mtcars)
  }
  model <- fit()
  body <- serviceBody("y <- predict(model, data.frame(wt = 3))", model = model,
                      outputs = list(y = "numeric"))
  sent <- detachFormulas(model)
  expect_identical(environment(sent$terms), globalenv())
  expect_identical(environment(attr(sent$model, "terms")), globalenv())
  expect_false(grepl("s3cr3t", rawToChar(serialize(sent, NULL, ascii = TRUE))))
  expect_equal(runLocally(body, list(), "y")$y, predict(model, data.frame(wt = 3)))
  closure <- stats::splinefun(1:5, c(1, 4, 9, 16, 25))
  body <- serviceBody("y <- f(2.5)", model = closure, modelName = "f",
                      outputs = list(y = "numeric"))
  expect_equal(runLocally(body, list(), "y")$y, closure(2.5))
})

test_that("the function's arguments must match the inputs", {
  expect_error(serviceBody(function(a) a, inputs = list(x = "numeric")), "no argument x")
  expect_error(serviceBody(function(a, b) a, inputs = list(a = "numeric")),
               "b has no default")
  expect_silent(serviceBody(function(a, b = 2) a + b, inputs = list(a = "numeric")))
})

test_that("inputs are shaped for their declared types", {
  inputs <- parameterDefinitions(list(x = "numeric", df = "data.frame", m = "matrix",
                                      v = "vector"), "inputs")
  body <- consumeBody(list(x = 1.5, df = data.frame(a = 1, b = "u", f = factor("k")),
                           m = matrix(1:4, 2), v = 3), inputs)
  expect_identical(as.character(toJson(body)),
                   "{\"x\":1.5,\"df\":{\"a\":[1],\"b\":[\"u\"],\"f\":[\"k\"]},\"m\":[[1,3],[2,4]],\"v\":[3]}")
  expect_identical(as.character(toJson(consumeBody(list(2, df = NULL), inputs))),
                   "{\"x\":2,\"df\":null}")
  expect_error(consumeBody(list(z = 1), inputs), "unknown input z")
  expect_identical(as.character(toJson(list(x = c(0.1, NA, 1 / 3)))),
                   "{\"x\":[0.1,null,0.33333333333333331]}")
})

test_that("outputs are converted back to R by their declared types", {
  answer <- jsonlite::fromJSON(paste0(
    "{\"success\": true, \"errorMessage\": null, \"consoleOutput\": \"hi\",",
    " \"outputParameters\": {\"n\": [1.5, null], \"s\": 2, \"i\": [1, 2],",
    " \"df\": {\"a\": [1, null], \"b\": [\"x\", null], \"c\": [true, false]},",
    " \"rows\": [{\"a\": 1, \"b\": \"x\"}, {\"a\": 2}],",
    " \"m\": [[1, 2], [3, 4]], \"e\": {\"a\": []}, \"u\": [\"p\", null]},",
    " \"outputFiles\": {\"f.txt\": \"aGk=\"}}"), simplifyVector = FALSE)
  outputs <- parameterDefinitions(list(n = "numeric", s = "numeric", i = "integer",
                                       df = "data.frame", rows = "data.frame", m = "matrix",
                                       e = "data.frame", u = "character"), "outputs")
  r <- serviceResponse(answer, outputs)
  expect_true(r$success)
  expect_identical(r$consoleOutput, "hi")
  expect_identical(r$output("n"), c(1.5, NA))
  expect_identical(r$outputParameters$s, 2)
  expect_identical(r$outputParameters$i, 1:2)
  expect_identical(r$outputParameters$df,
                   data.frame(a = c(1, NA), b = c("x", NA), c = c(TRUE, FALSE)))
  expect_identical(r$outputParameters$rows, data.frame(a = c(1, 2), b = c("x", NA)))
  expect_identical(r$outputParameters$m, matrix(c(1, 3, 2, 4), 2))
  expect_identical(nrow(r$outputParameters$e), 0L)
  expect_identical(r$outputParameters$u, c("p", NA))
  expect_identical(r$outputFiles[["f.txt"]], charToRaw("hi"))
  expect_output(print(r), "success")
})

test_that("consume's arguments are the service's inputs", {
  record <- list(name = "s", version = "1", operationId = "consumeS",
                 inputParameterDefinitions = parameterDefinitions(
                   list(x = "numeric", y = "numeric"), "inputs"),
                 outputParameterDefinitions = list())
  conn <- structure(new.env(), class = "rexecConnection")
  svc <- serviceObject(conn, record)
  expect_identical(names(formals(svc$consume)), c("x", "y"))
  expect_identical(svc$consumeS, svc$consume)
  expect_output(print(svc), "x: numeric, y: numeric")
})

test_that("every call needs a login", {
  last <- .state$last
  .state$last <- NULL
  on.exit(.state$last <- last)
  expect_error(listServices(), "not logged in: call remoteLogin")
  expect_error(listServices(conn = structure(new.env(), class = "rexecConnection")),
               "logged out")
})
