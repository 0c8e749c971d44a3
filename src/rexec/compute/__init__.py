"""The compute node: a QAP1 (Rserve-compatible) server on a pool of pre-started R shells.

The layout follows the processes, and the trust between them:

- :mod:`rexec.compute.supervisor` runs in the ``rexec serve`` process (root when started
  as root). It accepts connections, checks logins, terminates TLS and owns every
  worker's life. It never imports R and treats every message a shell sends as hostile.
- :mod:`rexec.compute.shell` runs in the worker processes, as the shell account: the
  warm template (fork mode) and the shells that each serve one connection. R code of a
  session runs here, so nothing here is trusted by the supervisor.
- :mod:`rexec.compute.channel` is the one thing both sides share: the typed, size-limited
  messages on the Unix socket between a worker and the supervisor.
- :mod:`rexec.compute.identity` says which account workers run as.
"""
