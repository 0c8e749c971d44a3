"""Fixtures that start real servers: Rserve from r-cran-rserve, and rexec itself."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

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
        workdir = self.log.parent / "work"
        if workdir.is_symlink():
            atexit.register(shutil.rmtree, workdir.resolve(), True)
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="session")
def rserve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real Rserve 1.8 (Debian's r-cran-rserve) on a free loopback port."""
    directory = tmp_path_factory.mktemp("rserve")
    port = free_port()
    conf = directory / "Rserv.conf"
    conf.write_text(f"port {port}\nworkdir {directory / 'work'}\ndaemon disable\n")
    log = directory / "rserve.log"
    binary = r_package_file("Rserve", "libs", "Rserve")
    process = subprocess.Popen(
        ["R", "CMD", binary, "--vanilla", "--RS-conf", str(conf)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=UTF8,
        start_new_session=True,
    )
    server = Server("Rserve", port, process, log)
    try:
        wait_for_id_string(port)
        yield server
    finally:
        server.stop()


def start_rexec(directory: Path, **settings: object) -> Server:
    """Start ``rexec serve`` with a TOML config built from ``settings`` (dotted keys)."""
    port = free_port()
    # The shells' account must reach their directories: not below pytest's 0700 tmp.
    workdir = Path(tempfile.mkdtemp(prefix="rexec-test-"))
    workdir.chmod(0o755)
    (directory / "work").symlink_to(workdir)
    values = {"server.port": port, "session.workdir": str(workdir), **settings}
    tables: dict[str, dict[str, object]] = {}
    for key, value in values.items():
        table, _, name = key.partition(".")
        tables.setdefault(table, {})[name] = value
    lines = []
    for table, entries in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{name} = {_toml(value)}" for name, value in entries.items()]
    config = directory / "rexec.toml"
    config.write_text("\n".join(lines) + "\n")
    log = directory / "rexec.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "rexec.cli", "serve", "--config", str(config)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=UTF8,
        start_new_session=True,
    )
    server = Server("rexec", port, process, log)
    try:
        wait_for_id_string(port)
    except TimeoutError:
        server.stop()
        raise AssertionError("rexec did not start:\n" + server.log_text()) from None
    return server


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


@pytest.fixture
def rexec_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start rexec servers with custom settings; all are stopped after the test."""
    started: list[Server] = []

    def factory(**settings: object) -> Server:
        directory = Path(tempfile.mkdtemp(dir=tmp_path))
        server = start_rexec(directory, **settings)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def rexec_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One rexec compute node (fork mode, pool.max 8) shared by the differential tests."""
    server = start_rexec(tmp_path_factory.mktemp("rexec"), **{"pool.initial": 2, "pool.max": 8})
    yield server
    server.stop()


def have_rsclient() -> bool:
    return shutil.which("Rscript") is not None
