library(testthat)
library(rexecclient)

test_check("rexecclient")
