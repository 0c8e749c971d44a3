"""Start a real Rserve and rexec side by side, and measure their memory (PSS).

Kept independent of the test suite: the bench must run without pytest installed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

UTF8 = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_id_string(port: int, timeout: float = 60.0) -> None:
    """Block until a QAP server on ``port`` greets with its 32-byte ID string."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if s.recv(32).startswith(b"Rsrv"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"no QAP server on port {port}")


@cache
def r_package_file(package: str, *parts: str) -> str:
    """``system.file(...)`` of an installed R package, asked of R itself."""
    args = ", ".join(repr(p) for p in parts)
    return subprocess.run(
        ["Rscript", "-e", f"cat(system.file({args}, package = {package!r}))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # rexec's template and shells run in sessions of their own: stop any left over.
        for pid in descendants(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def root_pids(self) -> list[int]:
        """The server's own processes: the Rserve binary (not R CMD's shell wrappers),
        or rexec's supervisor."""
        if self.name == "rexec":
            return [self.process.pid]
        tree = [self.process.pid, *descendants(self.process.pid)]
        return [p for p in tree if _is_rserve(p)][:1]

    def pids(self) -> list[int]:
        roots = self.root_pids()
        return [*roots, *(d for r in roots for d in descendants(r))]

    def pss_kib(self) -> int:
        return sum(pss_kib(pid) for pid in self.pids())


def _is_rserve(pid: int) -> bool:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe")) == "Rserve"
    except OSError:
        return False


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid: int) -> list[int]:
    children = _children_map()
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def pss_kib(pid: int) -> int:
    """Proportional set size of one process from /proc/<pid>/smaps_rollup (0 if gone)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def start_rserve(directory: Path, extra: str = "") -> Server:
    """A real Rserve (Debian's r-cran-rserve) on a free loopback port; ``extra`` lines
    are added to its configuration file."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = directory / "Rserv.conf"
    conf.write_text(f"port {port}\nworkdir {directory / 'work'}\ndaemon disable\n{extra}")
    log = directory / "rserve.log"
    binary = r_package_file("Rserve", "libs", "Rserve")
    server = launch("Rserve", port, ["R", "CMD", binary, "--vanilla", "--RS-conf", str(conf)], log)
    _wait(server)
    return server


def rexec_settings(initial: int = 8, maximum: int = 64) -> dict[str, int]:
    """The settings the bench's rexec runs with beyond the defaults users get (besides
    its port and working directory); everything else, ``log.level`` (``info``) included,
    is the default. The pool is larger than the default (2 ready, 8 at most): Rserve
    forks a child for every connection with no limit, so the 50 concurrent connections
    must not queue for shells, and the 8-connection rows find their shells started."""
    return {"pool.initial": initial, "pool.max": maximum}


def start_rexec(directory: Path, initial: int = 8, maximum: int = 64) -> Server:
    """``rexec serve`` (fork pool) on a free loopback port, waiting until it answers."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)  # R shells may run as the unprivileged `rexec` account
    port = free_port()
    config = directory / "rexec.toml"
    pool = rexec_settings(initial, maximum)
    config.write_text(
        f"[server]\nport = {port}\n\n"
        f"[pool]\ninitial = {pool['pool.initial']}\nmax = {pool['pool.max']}\n\n"
        f'[session]\nworkdir = "{directory / "work"}"\n'
    )
    server = launch("rexec", port, rexec_serve(config), directory / "rexec.log")
    _wait(server)
    return server


def rexec_serve(config: Path) -> list[str]:
    return [sys.executable, "-m", "rexec.cli", "serve", "--config", str(config)]


def launch(
    name: str,
    port: int,
    command: list[str],
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Server:
    """Start a server process in a session of its own, its output going to ``log``."""
    process = subprocess.Popen(
        command,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=UTF8 if env is None else env,
        cwd=cwd,
        start_new_session=True,
    )
    return Server(name, port, process, log)


def _wait(server: Server) -> None:
    try:
        wait_for_id_string(server.port)
    except TimeoutError:
        server.stop()
        text = server.log.read_text(errors="replace")
        raise RuntimeError(f"{server.name} did not start:\n{text}") from None


def wait_for_idle_shells(server: Server, count: int, timeout: float = 30.0) -> None:
    """rexec: wait until the template has ``count`` forked shells (pool refilled)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tree = descendants(server.process.pid)
        # supervisor -> template -> shells: the shells are the grandchildren
        direct = set(_children_map().get(server.process.pid, []))
        if len([p for p in tree if p not in direct]) >= count:
            return
        time.sleep(0.05)
