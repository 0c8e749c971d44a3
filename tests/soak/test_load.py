"""Load: 1,000 connections over 60 s against pool.max 8 (`make soak`, not `make test`).

Every connection gets its result or a clear refusal (the server closes it), none hangs,
and afterwards the server is back at its idle memory."""

from __future__ import annotations

import concurrent.futures
import socket
import time

import pytest

from rexec.protocol import Cmd, request, string_param, unpack_header
from tests.compute.test_operations import _descendants

pytestmark = pytest.mark.soak

CONNECTIONS = 1000
SECONDS = 60.0


def _tree_pss_kb(pid: int) -> int:
    total = 0
    for p in [pid, *_descendants(pid)]:
        try:
            with open(f"/proc/{p}/smaps_rollup") as handle:
                total += next(int(x.split()[1]) for x in handle if x.startswith("Pss:"))
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            pass
    return total


def _one(port: int) -> str:
    frame = b"".join(bytes(c) for c in request(Cmd.EVAL, [string_param("Sys.sleep(0.2); 1L")]))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.settimeout(30)
        data = b""
        while len(data) < 32:
            chunk = sock.recv(32 - len(data))
            if not chunk:
                return "refused"
            data += chunk
        try:
            sock.sendall(frame)
        except OSError:
            return "refused"
        head = b""
        while len(head) < 16:
            chunk = sock.recv(16 - len(head))
            if not chunk:
                return "refused"
            head += chunk
        header = unpack_header(head)
        return "ok" if header.cmd == 0x10001 else f"error {header.cmd:#x}"


def test_thousand_connections_against_eight_shells(rexec_factory) -> None:
    server = rexec_factory(**{"pool.initial": 4, "pool.max": 8, "pool.wait_timeout": 2.0})
    time.sleep(1)
    idle = _tree_pss_kb(server.process.pid)
    outcomes: list[str] = []
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
        futures = []
        for i in range(CONNECTIONS):
            delay = started + i * SECONDS / CONNECTIONS - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(_one, server.port))
        for future in futures:
            outcomes.append(future.result(timeout=60))  # none hangs
    counts = {k: outcomes.count(k) for k in set(outcomes)}
    print(f"outcomes: {counts}")
    assert set(counts) <= {"ok", "refused"}
    assert counts.get("ok", 0) > CONNECTIONS // 2
    if counts.get("refused"):
        assert "no R shell free" in server.log_text()
    time.sleep(3)
    assert _tree_pss_kb(server.process.pid) < idle * 1.3 + 20_000
    assert server.process.poll() is None
