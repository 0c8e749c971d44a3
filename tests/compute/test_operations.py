"""Running a compute node: status, signals (TERM drains, HUP reloads), template death,
network and login rules. Nothing may be left behind: no R processes, no directories."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from rexec.compute.supervisor.users import UsersFile
from rexec.protocol import Cmd, Err, string_param
from tests.conftest import UTF8, Server
from tests.qap import RawClient


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (shells are grandchildren: template -> shell)."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True)
    children: dict[int, list[int]] = {}
    for line in out.stdout.split("\n"):
        if line.strip():
            child, parent = map(int, line.split())
            children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _r_processes_for(workdir: Path) -> list[str]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,args="], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if str(workdir) in line]


def _wait(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def _status(server: Server) -> dict:
    config = server.log.parent / "rexec.toml"
    out = subprocess.run(
        [sys.executable, "-m", "rexec.cli", "status", "--config", str(config)],
        capture_output=True,
        text=True,
        env={**UTF8, "COLUMNS": "160"},
        timeout=30,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_status_prints_the_pool(rexec_factory) -> None:
    server = rexec_factory(**{"pool.initial": 2, "pool.max": 5})
    with RawClient(server.port) as c:
        c.eval("1")
        text = _status(server)
    for column in ("idle", "busy", "starting", "waiting", "max", "served", "recycled", "failed"):
        assert column in text
    assert " 5 " in text  # max


def test_sigterm_lets_the_running_request_finish_then_exits_clean(rexec_factory) -> None:
    server = rexec_factory(**{"pool.initial": 2, "server.shutdown_grace": 20.0})
    workdir = server.log.parent / "work"
    result = {}

    def long_request() -> None:
        with RawClient(server.port) as c:
            result["value"] = c.eval("Sys.sleep(2); 'finished'").value()

    thread = threading.Thread(target=long_request)
    thread.start()
    time.sleep(0.7)
    assert _descendants(server.process.pid)
    os.kill(server.process.pid, signal.SIGTERM)
    thread.join(30)
    assert result == {"value": "finished"}
    assert server.process.wait(30) == 0
    assert not _descendants(server.process.pid)
    assert _wait(lambda: not any(p.name.startswith("conn") for p in workdir.iterdir()))


def test_sighup_reloads_without_dropping_connections(rexec_factory) -> None:
    server = rexec_factory(**{"pool.initial": 1, "startup.eval": ["generation <- 1"]})
    config = server.log.parent / "rexec.toml"
    with RawClient(server.port) as kept:
        kept.eval("mine <- 'still here'")
        config.write_text(config.read_text().replace("generation <- 1", "generation <- 2"))
        os.kill(server.process.pid, signal.SIGHUP)
        assert _wait(lambda: "configuration reloaded" in server.log_text())

        def second_generation() -> bool:
            with RawClient(server.port) as fresh:
                return fresh.eval("generation").value() == 2.0

        assert _wait(second_generation)
        time.sleep(1.0)  # the old template has had time to go: its shells must not go with it
        assert kept.eval("mine").value() == "still here"  # the old session is untouched
        assert kept.eval("generation").value() == 1.0


def test_template_death_is_repaired(rexec_factory) -> None:
    server = rexec_factory(**{"pool.initial": 1})
    line = next(x for x in server.log_text().splitlines() if "R template" in x)
    template = int(line.split("R template ")[1].split()[0])
    os.kill(template, signal.SIGKILL)
    assert _wait(lambda: "starting a new one" in server.log_text())
    for _ in range(3):  # more sessions than the one idle shell forked before the death
        with RawClient(server.port) as c:
            assert c.eval("1L").value() == 1


def test_remote_requires_authentication_by_default() -> None:
    from tests.conftest import free_port, serve_fails

    output = serve_fails(f"[server]\nport = {free_port()}\nremote = true\n")
    assert "auth.required needs auth.users_file" in output


def test_remote_without_auth_is_a_loud_warning(rexec_factory) -> None:
    server = rexec_factory(**{"server.remote": True, "auth.required": False, "pool.initial": 1})
    assert "ANYONE who can reach this machine" in server.log_text()


def test_repeated_failed_logins_are_slowed_down(rexec_factory, tmp_path) -> None:
    users = tmp_path / "users"
    UsersFile(users).add("alice", "right")
    server = rexec_factory(**{"auth.users_file": str(users), "pool.initial": 2, "pool.max": 8})
    took = []
    for _ in range(6):
        with RawClient(server.port) as c:
            started = time.monotonic()
            c.send(Cmd.LOGIN, string_param("alice\nwrong"))
            assert c.reply().status == Err.INV_CMD  # optional auth: Rserve's answer
            took.append(time.monotonic() - started)
    assert took[-1] > took[0] + 0.4


def test_a_shutdown_leaves_nothing_behind(rexec_factory) -> None:
    server = rexec_factory(**{"pool.initial": 3})
    workdir = server.log.parent / "work"
    with RawClient(server.port) as c:
        c.eval("writeLines('x', file.path(tempdir(), 'f'))")
    shells = _descendants(server.process.pid)
    assert shells
    server.stop()
    assert _wait(lambda: not [p for p in shells if Path(f"/proc/{p}").exists()])
    assert not [p for p in workdir.iterdir() if p.name.startswith("conn")]
