"""Per-session limits, enforced inside the shell process: memory and CPU through
rlimits; time through one interval timer that watches either the wait for the next
request (``limits.idle_timeout``) or the request being served
(``limits.eval_timeout``). A request over its time ends in an R-level interrupt (a
clean status-127 reply); a shell that cannot be interrupted is ended.

One ``setitimer`` per phase keeps the socket blocking: a socket timeout would cost a
``poll`` before every ``recv``.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
from typing import Any

from rexec.compute.shell.wire import IdleTimeout
from rexec.config import Config

log = logging.getLogger("rexec.session")

#: Seconds R gets to honour an interrupt before the shell process is ended.
GRACE = 5.0


class Limits:
    def __init__(self, config: Config, shell: Any) -> None:
        self.shell = shell
        self.memory = config["limits.memory"]
        self.cpu = config["limits.cpu_seconds"]
        self.timeout = config["limits.eval_timeout"]
        self.idle = config["limits.idle_timeout"]
        self._phase = ""  # "idle" while waiting for a request, "eval" while serving one
        self._expired = False

    def apply(self) -> None:
        """Set this process' rlimits and install the handlers (once, before serving)."""
        if self.memory:
            resource.setrlimit(resource.RLIMIT_AS, (self.memory, self.memory))
        if self.cpu:
            used = resource.getrusage(resource.RUSAGE_SELF)
            base = int(used.ru_utime + used.ru_stime) + 1
            hard = base + self.cpu + int(GRACE)
            resource.setrlimit(resource.RLIMIT_CPU, (base + self.cpu, hard))
            signal.signal(signal.SIGXCPU, self._cpu_exhausted)
        if self.timeout or self.idle:
            signal.signal(signal.SIGALRM, self._alarm)

    def waiting(self) -> None:
        """Between requests: the idle clock runs."""
        if self.idle:
            self._phase = "idle"
            signal.setitimer(signal.ITIMER_REAL, self.idle)
        elif self._phase:
            self._phase = ""
            signal.setitimer(signal.ITIMER_REAL, 0)

    def start_request(self) -> None:
        """A request arrived: the evaluation clock replaces the idle one."""
        if self.timeout:
            self._phase, self._expired = "eval", False
            signal.setitimer(signal.ITIMER_REAL, self.timeout)
        elif self.idle:
            self._phase = ""
            signal.setitimer(signal.ITIMER_REAL, 0)

    def pause(self) -> None:
        """No clock (a detached session waiting to be re-attached has its own timeout)."""
        if self._phase:
            self._phase = ""
            signal.setitimer(signal.ITIMER_REAL, 0)

    def _cpu_exhausted(self, signum: int, frame: object) -> None:
        self.shell.interrupt("cpu")

    def _alarm(self, signum: int, frame: object) -> None:
        if self._phase == "idle":
            self._phase = ""
            raise IdleTimeout
        if self._phase != "eval":
            return
        if not self._expired and self.shell.interrupt("timeout"):
            self._expired = True
            signal.setitimer(signal.ITIMER_REAL, GRACE)
            return
        if self._expired:  # R did not stop: end the shell, the pool replaces it
            log.error("request still running %.0fs after its time limit; ending shell", GRACE)
            os._exit(3)
