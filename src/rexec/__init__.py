"""rexec: run R code on a server, many sessions at once, over Rserve's QAP1 protocol."""

__version__ = "0.1.0"
