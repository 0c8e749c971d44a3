"""Fixtures that start real servers: Rserve from r-cran-rserve, and rexec itself."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench import servers
from bench.servers import UTF8, free_port, r_package_file, wait_for_id_string

__all__ = ["UTF8", "Server", "free_port", "r_package_file", "start_rexec", "wait_for_id_string"]

#: The environment's LD_LIBRARY_PATH before any test embeds R in this process: R's start-up
#: sets it (R's lib directory, then /usr/lib/<arch>), and child processes started from
#: os.environ after that loaded the system's older libpython instead of the virtualenv
#: interpreter's own (ImportError: undefined symbol in _ssl).
_LIBRARY_PATH = os.environ.get("LD_LIBRARY_PATH")


@pytest.fixture(autouse=True)
def _no_library_path_from_embedded_r() -> Iterator[None]:
    yield
    if os.environ.get("LD_LIBRARY_PATH") != _LIBRARY_PATH:
        if _LIBRARY_PATH is None:
            del os.environ["LD_LIBRARY_PATH"]
        else:
            os.environ["LD_LIBRARY_PATH"] = _LIBRARY_PATH


@dataclass
class Server(servers.Server):
    """A server started by a fixture; its log is kept for assertions."""

    def stop(self) -> None:
        workdir = self.log.parent / "work"
        if workdir.is_symlink():
            atexit.register(shutil.rmtree, workdir.resolve(), True)
        super().stop()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="session")
def rserve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real Rserve 1.8 (Debian's r-cran-rserve) on a free loopback port."""
    started = servers.start_rserve(tmp_path_factory.mktemp("rserve"))
    server = Server(started.name, started.port, started.process, started.log)
    yield server
    server.stop()


def start_rexec(directory: Path, **settings: object) -> Server:
    """Start ``rexec serve`` with a TOML config built from ``settings`` (dotted keys)."""
    port = free_port()
    # The shells' account must reach their directories: not below pytest's 0700 tmp.
    workdir = Path(tempfile.mkdtemp(prefix="rexec-test-"))
    workdir.chmod(0o755)
    (directory / "work").symlink_to(workdir)
    values = {"server.port": port, "session.workdir": str(workdir), **settings}
    config = write_config(directory, values)
    return launch_rexec(port, servers.rexec_serve(config), directory / "rexec.log")


def launch_rexec(port: int, command: list[str], log: Path) -> Server:
    """Run ``command`` (a ``rexec serve``) and wait until it greets on ``port``."""
    started = servers.launch("rexec", port, command, log)
    server = Server(started.name, started.port, started.process, started.log)
    try:
        wait_for_id_string(port)
    except TimeoutError:
        server.stop()
        raise AssertionError("rexec did not start:\n" + server.log_text()) from None
    return server


def write_config(directory: Path, values: dict[str, object]) -> Path:
    """``directory``/rexec.toml holding ``values`` (dotted keys: ``table.name``)."""
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
    return config


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


def serve_fails(config_text: str) -> str:
    """Run ``rexec serve`` with a TOML config that must stop it at start-up; its output."""
    directory = Path(tempfile.mkdtemp())
    config = directory / "rexec.toml"
    config.write_text(config_text)
    run = subprocess.run(
        servers.rexec_serve(config),
        capture_output=True,
        text=True,
        env=UTF8,
        timeout=60,
    )
    shutil.rmtree(directory, ignore_errors=True)
    assert run.returncode != 0, "rexec serve started"
    return run.stdout + run.stderr


def compile_java(source: Path, directory: Path) -> str:
    """Compile a Java test client against the REngine/Rserve jars shipped by
    r-cran-rserve, in ``directory``; the class path to run it with."""
    if shutil.which("javac") is None:
        pytest.fail("javac missing: make test installs openjdk-17-jdk-headless")
    jars = Path(r_package_file("Rserve", "java"))
    classpath = ":".join([str(jars / "REngine.jar"), str(jars / "Rserve.jar"), str(directory)])
    target = directory / source.name
    shutil.copy(source, target)
    command = ["javac", "-encoding", "UTF-8", "-cp", classpath, str(target)]
    subprocess.run(command, check=True, capture_output=True)
    return classpath


def launch_web(
    command: list[str], port: int, log: Path, env: dict[str, str], cwd: Path, timeout: float = 90
) -> subprocess.Popen[bytes]:
    """Run ``command`` (``rexec web`` or ``rexec up``) in a session of its own and wait
    until the web node on ``port`` serves its OpenAPI document. Stop it with
    ``os.killpg(process.pid, signal.SIGTERM)``."""
    import time

    import httpx

    process = servers.launch("web", port, command, log, env=env, cwd=cwd).process
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, log.read_text()
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the web node did not start:\n" + log.read_text())
        try:
            if httpx.get(f"http://127.0.0.1:{port}/openapi.json").status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)


def headless_dom(url: str, profile: Path, *extra: str) -> str:
    """The DOM Debian's headless Chromium renders for ``url`` with every host name but
    127.0.0.1 unresolvable (so nothing can come from a CDN); skips without chromium."""
    browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("no chromium binary: `make deps` installs Debian's chromium package")
    command = [
        browser,
        "--headless=new",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        *extra,
        "--virtual-time-budget=10000",
        "--dump-dom",
        url,
    ]
    if os.geteuid() == 0:
        command.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    ran = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert ran.returncode == 0, ran.stderr[-4000:]
    return ran.stdout
