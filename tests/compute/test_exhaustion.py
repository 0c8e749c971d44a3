"""Unauthenticated clients cannot hold the pool.

With ``pool.max`` 8, floods of detach requests, of half-sent requests and of hostile
frames (every QAP command code among them) run while a well-behaved client connects and
evaluates again and again; each of its connections must be served within a second.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections.abc import Callable

from rexec.protocol import Cmd, string_param
from tests.qap import RawClient

POOL = {"pool.initial": 2, "pool.max": 8, "pool.wait_timeout": 10.0}


def _well_behaved(port: int, stop: threading.Event, latencies: list[float]) -> None:
    while not stop.is_set():
        started = time.monotonic()
        try:
            with RawClient(port, timeout=5) as client:
                assert client.eval("1 + 1").value() == 2
            latencies.append(time.monotonic() - started)
        except Exception as exc:  # refused, reset, timed out: as bad as slow
            latencies.append(float("inf"))
            print("well-behaved client failed:", repr(exc))
        time.sleep(0.05)


def _alongside(port: int, attack: Callable[[], None], settle: float = 0.5) -> list[float]:
    """Run ``attack`` while a well-behaved client is timed; its latencies."""
    stop = threading.Event()
    latencies: list[float] = []
    timer = threading.Thread(target=_well_behaved, args=(port, stop, latencies))
    attacker = threading.Thread(target=attack)
    attacker.start()
    time.sleep(settle)
    timer.start()
    attacker.join(120)
    time.sleep(1.0)  # and once the attack is over, while what it left behind is still open
    stop.set()
    timer.join(30)
    assert latencies, "the well-behaved client never ran"
    return latencies


def _read(sock: socket.socket, n: int) -> bytes:
    """Up to ``n`` bytes: fewer only if the server closed first."""
    data = b""
    while len(data) < n and (chunk := sock.recv(n - len(data))):
        data += chunk
    return data


def _frame(cmd: int, *params) -> bytes:
    from rexec.protocol import request

    return b"".join(bytes(c) for c in request(cmd, params))


def test_a_detach_flood_does_not_lock_the_pool(rexec_factory) -> None:
    """Each detached session used to hold a shell for ``session.detach_timeout``."""
    server = rexec_factory(**POOL)
    replies: list[int | None] = []

    def attack() -> None:
        for _ in range(40):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(_frame(Cmd.DETACH_SESSION))
                data = _read(sock, 48)  # ID string and the reply's header
                replies.append(struct.unpack("<I", data[32:36])[0] if len(data) >= 36 else None)

    latencies = _alongside(server.port, attack)
    assert max(latencies) < 1.0, latencies
    detached = sum(1 for r in replies if r == 0x10001)
    assert 1 <= detached <= 2, [hex(r or 0) for r in replies]  # session.detach_max
    assert replies.count(0x10002 | 0x51 << 24) >= 30  # ERR_detach_failed for the rest


def test_half_sent_requests_do_not_hold_shells(rexec_factory) -> None:
    server = rexec_factory(**POOL, **{"server.handshake_timeout": 3.0})
    held: list[socket.socket] = []

    def attack() -> None:
        for i in range(40):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            if i % 2:  # a header declaring 1,000 bytes, then 10 of them
                sock.sendall(struct.pack("<IIII", Cmd.EVAL, 1000, 0, 0) + b"\x04" * 10)
            else:  # half a header
                sock.sendall(b"\x03\x00\x00")
            held.append(sock)

    latencies = _alongside(server.port, attack)
    assert max(latencies) < 1.0, latencies
    # The stalled connections are closed once server.handshake_timeout has passed.
    time.sleep(2.5)
    for sock in held:
        sock.settimeout(5)
        try:  # greeted, then closed (reset: it had unread bytes), never served
            data = _read(sock, 64)
            assert data[:4] == b"Rsrv" and len(data) == 32, data
        except ConnectionResetError:
            pass
        sock.close()
    assert "no complete request in time" in server.log_text()


def _hostile_frames(count: int, seed: int = 99) -> list[bytes]:
    """Every command code Cmd knows, and random ones, with fitting, random, truncated
    and over-long payloads."""
    rng = random.Random(seed)
    codes = [int(c) for c in Cmd] + [rng.randrange(0, 0x100) for _ in range(40)]
    payloads = [
        b"",
        _frame(0, string_param("Sys.sleep(0)"))[16:],
        _frame(0, string_param("quit('no')"))[16:],
        struct.pack("<I", 3 | 4 << 8) + struct.pack("<i", 1),
        bytes(rng.randrange(256) for _ in range(24)),
    ]
    frames = []
    while len(frames) < count:
        cmd = codes[len(frames) % len(codes)]
        payload = rng.choice(payloads)
        kind = rng.randrange(4)
        if kind == 0:  # as declared
            frames.append(struct.pack("<IIII", cmd, len(payload), 0, 0) + payload)
        elif kind == 1:  # longer than sent
            frames.append(struct.pack("<IIII", cmd, len(payload) + 500, 0, 0) + payload)
        elif kind == 2:  # a huge declared length
            frames.append(struct.pack("<IIII", cmd, 0x7FFFFFF0, 0, 0) + payload)
        else:  # random bytes
            frames.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))))
    return frames


def test_two_thousand_hostile_frames_do_not_starve_a_well_behaved_client(rexec_factory) -> None:
    server = rexec_factory(**POOL, **{"server.handshake_timeout": 2.0})
    frames = _hostile_frames(2000)

    def attack() -> None:
        for start in range(0, len(frames), 5):  # five frames a connection, then half-close
            try:
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=2)
                sock.sendall(b"".join(frames[start : start + 5]))
                sock.shutdown(socket.SHUT_WR)
                sock.settimeout(0.2)
                while sock.recv(65536):
                    pass
            except OSError:
                pass
            finally:
                sock.close()

    latencies = _alongside(server.port, attack, settle=0.2)
    assert server.process.poll() is None
    slow = [x for x in latencies if x >= 1.0]
    assert not slow, f"{len(slow)} of {len(latencies)} took a second or more: {slow}"
    with RawClient(server.port) as client:
        assert client.eval("R.version$major").value() == "4"
