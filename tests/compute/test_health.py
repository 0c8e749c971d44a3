"""The compute node's probes beside /metrics: /healthz while the supervisor serves,
/readyz 503 while the pool starts and 200 (with the default pool's numbers) once it
takes connections; no login, nothing but GET and HEAD."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import httpx

import rexec.client
from bench import servers
from tests.conftest import Server, free_port, wait_for_id_string


def test_readyz_is_503_while_the_pool_starts_then_200_with_its_numbers(tmp_path: Path) -> None:
    metrics, port = free_port(), free_port()
    workdir = Path(tempfile.mkdtemp(prefix="rexec-test-"))
    workdir.chmod(0o755)
    config = tmp_path / "rexec.toml"
    config.write_text(
        f'[server]\nport = {port}\n[session]\nworkdir = "{workdir}"\n'
        f"[metrics]\nport = {metrics}\n[pool]\ninitial = 1\nmax = 2\n"
        '[startup]\neval = ["Sys.sleep(3)"]\n'  # the template takes a while
    )
    started = servers.launch("rexec", port, servers.rexec_serve(config), tmp_path / "log")
    node = Server(started.name, started.port, started.process, started.log)
    base = f"http://127.0.0.1:{metrics}"
    try:
        deadline = time.monotonic() + 30
        while True:  # the metrics endpoint comes up first, before the pool
            try:
                early = httpx.get(f"{base}/readyz", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, node.log_text()
                time.sleep(0.05)
        assert early.status_code == 503, early.text
        assert early.json()["status"] == "not ready" and early.json()["reason"] == "starting"
        assert httpx.get(f"{base}/healthz").text == "ok\n"  # alive all the same
        wait_for_id_string(port)
        ready = httpx.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        assert ready.headers["content-type"] == "application/json"
        body = ready.json()
        assert body["status"] == "ready" and body["pool"]["max"] == 2
        with rexec.client.connect(port=port, timeout=30) as c:
            assert c.eval("1") == 1
            assert httpx.get(f"{base}/readyz").json()["pool"]["busy"] == 1
        assert httpx.head(f"{base}/readyz").status_code == 200
        assert httpx.head(f"{base}/healthz").status_code == 200
        assert httpx.post(f"{base}/readyz", content=b"x").status_code == 405
    finally:
        node.stop()
