"""Per-session limits, enforced inside the shell process: memory and CPU through
rlimits, wall-clock time per request through a timer. Each ends in an R-level
interrupt (a clean status-127 reply); a shell that cannot be interrupted is ended."""

from __future__ import annotations

import logging
import os
import resource
import signal
from typing import Any

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
        if self.timeout:
            signal.signal(signal.SIGALRM, self._too_long)

    def start_request(self) -> None:
        if self.timeout:
            self._expired = False
            signal.setitimer(signal.ITIMER_REAL, self.timeout)

    def end_request(self) -> None:
        if self.timeout:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def _cpu_exhausted(self, signum: int, frame: object) -> None:
        self.shell.interrupt("cpu")

    def _too_long(self, signum: int, frame: object) -> None:
        if not self._expired and self.shell.interrupt("timeout"):
            self._expired = True
            signal.setitimer(signal.ITIMER_REAL, GRACE)
            return
        if self._expired:  # R did not stop: end the shell, the pool replaces it
            log.error("request still running %.0fs after its time limit; ending shell", GRACE)
            os._exit(3)
