"""Load: 1,000 connections over 60 s against pool.max 8 (`make soak`, not `make test`).

The rule: every connection gets its result (the integer 1), or it is refused as the
design allows, and only then: every shell (pool.max) stayed busy for pool.wait_timeout,
the server closed the connection and logged that refusal for that client's port
(``event=refused reason='no R shell free within 2.0s' busy=8 max=8``). Any other outcome
fails: an error reply, a wrong value, a close without that log line (or with fewer than
pool.max shells busy), a hang. Afterwards the server is back at its idle memory."""

from __future__ import annotations

import concurrent.futures
import re
import socket
import time

import pytest

from rexec.protocol import Cmd, request, string_param, unpack_header
from tests.compute.test_operations import _descendants
from tests.qap import Reply

pytestmark = pytest.mark.soak

CONNECTIONS = 1000
SECONDS = 60.0
POOL_MAX = 8
WAIT_TIMEOUT = 2.0


def _tree_pss_kb(pid: int) -> int:
    total = 0
    for p in [pid, *_descendants(pid)]:
        try:
            with open(f"/proc/{p}/smaps_rollup") as handle:
                total += next(int(x.split()[1]) for x in handle if x.startswith("Pss:"))
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            pass
    return total


def _read(sock: socket.socket, n: int) -> bytes | None:
    """``n`` bytes, or None if the server closed the connection first."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _one(port: int) -> tuple[int, str]:
    """(the client's local port, outcome): ``ok``, ``refused`` or what went wrong."""
    frame = b"".join(bytes(c) for c in request(Cmd.EVAL, [string_param("Sys.sleep(0.2); 1L")]))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        local = sock.getsockname()[1]
        sock.settimeout(30)
        if _read(sock, 32) is None:
            return local, "refused"
        try:
            sock.sendall(frame)
        except OSError:
            return local, "refused"
        head = _read(sock, 16)
        if head is None:
            return local, "refused"
        header = unpack_header(head)
        payload = _read(sock, header.length)
        if payload is None:
            return local, "closed mid-reply"
        reply = Reply(header, payload)
        if not reply.ok:
            return local, f"error {reply.status:#x}"
        value = reply.value()
        return local, "ok" if value == 1 else f"wrong value {value!r}"


def test_thousand_connections_against_eight_shells(rexec_factory) -> None:
    server = rexec_factory(
        **{"pool.initial": 4, "pool.max": POOL_MAX, "pool.wait_timeout": WAIT_TIMEOUT}
    )
    time.sleep(1)
    idle = _tree_pss_kb(server.process.pid)
    outcomes: list[tuple[int, str]] = []
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
    kinds = [kind for _, kind in outcomes]
    counts = {k: kinds.count(k) for k in set(kinds)}
    print(f"outcomes: {counts}")
    assert set(counts) <= {"ok", "refused"}, counts
    # each refusal must be the pool.wait_timeout refusal, with every shell busy
    log = server.log_text()
    refusals = re.findall(
        r"client=127\.0\.0\.1:(\d+) event=refused reason='no R shell free within "
        rf"{WAIT_TIMEOUT:.1f}s' busy=(\d+) max={POOL_MAX}\b",
        log,
    )
    busy_at_refusal = {int(port): int(busy) for port, busy in refusals}
    refused = [port for port, kind in outcomes if kind == "refused"]
    unexplained = [port for port in refused if port not in busy_at_refusal]
    assert not unexplained, f"closed without a logged wait_timeout refusal: {unexplained[:10]}"
    assert all(busy_at_refusal[port] == POOL_MAX for port in refused), busy_at_refusal
    assert len(refusals) == len(refused), "a refusal was logged for a connection that got through"
    time.sleep(3)
    assert _tree_pss_kb(server.process.pid) < idle * 1.3 + 20_000
    assert server.process.poll() is None
