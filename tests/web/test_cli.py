"""``rexec up`` (first start prints the admin password once) and ``rexec remote``."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import UTF8, free_port, launch_web


def test_up_then_remote_login_execute_put_get_snapshot(tmp_path: Path) -> None:
    web_port, compute_port = free_port(), free_port()
    env = {**UTF8, "REXEC_REMOTE_FILE": str(tmp_path / "remote.json")}
    env.pop("REXEC_ADMIN_PASSWORD", None)
    log = tmp_path / "up.log"
    up = launch_web(
        [
            *(sys.executable, "-m", "rexec.cli", "up", "--port", str(web_port)),
            *("--compute-port", str(compute_port), "--pool-max", "3", "--log-level", "warning"),
            *("--database-url", f"sqlite:///{tmp_path / 'web.db'}"),
        ],
        web_port,
        log,
        {**env, "COLUMNS": "200"},
        tmp_path,
    )
    url = f"http://127.0.0.1:{web_port}"
    try:
        match = re.search(r"password (\S+) \(shown once", log.read_text())
        assert match, log.read_text()
        password = match.group(1)

        def remote(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "rexec.cli", "remote", *args],
                capture_output=True,
                text=True,
                env=env,
                cwd=tmp_path,
                input=stdin,
                timeout=60,
            )

        assert remote("login", url, "-u", "admin", "--password", "wrong").returncode == 1
        assert remote("login", url, "-u", "admin", "--password", password).returncode == 0
        ran = remote("execute", "y <- x + 1; print(y)", "-i", "x=[1,2]", "-o", "y")
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout == "[1] 2 3\ny = [2.0, 3.0]\n"
        failed = remote("execute", "stop('no')")
        assert failed.returncode == 1 and "no" in failed.stderr
        (tmp_path / "local.txt").write_text("hello")
        assert remote("put", str(tmp_path / "local.txt"), "--name", "in.txt").returncode == 0
        assert remote("execute", "-", stdin="writeLines(toupper(readLines('in.txt')), 'out.txt')")
        got = remote("get", "out.txt", "-o", str(tmp_path / "fetched.txt"))
        assert got.returncode == 0, got.stderr
        assert (tmp_path / "fetched.txt").read_text() == "HELLO\n"
        snap = remote("snapshot", "--name", "cli")
        assert snap.returncode == 0 and re.fullmatch(r"[0-9a-f-]{36}\n", snap.stdout)
    finally:
        os.killpg(up.pid, signal.SIGTERM)
        up.wait(30)


def test_sigterm_to_up_alone_stops_its_compute_node(tmp_path: Path) -> None:
    """A service manager may signal `rexec up` only (not its process group): the web
    node stops and takes its compute node with it, leaving no process on the port."""
    import socket
    import time

    web_port, compute_port = free_port(), free_port()
    up = launch_web(
        [
            *(sys.executable, "-m", "rexec.cli", "up", "--port", str(web_port)),
            *("--compute-port", str(compute_port), "--pool-max", "2", "--log-level", "warning"),
            *("--database-url", f"sqlite:///{tmp_path / 'web.db'}"),
        ],
        web_port,
        tmp_path / "up.log",
        {**UTF8, "REXEC_ADMIN_PASSWORD": "an-admin-password-for-the-test"},
        tmp_path,
    )
    try:
        socket.create_connection(("127.0.0.1", compute_port), timeout=5).close()
        up.send_signal(signal.SIGTERM)
        assert up.wait(60) != 0  # ended by the signal, as a service manager expects
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", compute_port), timeout=1).close()
            except ConnectionRefusedError:
                break  # the compute node is gone too
            assert time.monotonic() < deadline, (tmp_path / "up.log").read_text()
            time.sleep(0.2)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(up.pid, signal.SIGKILL)
