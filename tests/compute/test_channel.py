"""The supervisor's end of the worker channel: only the schema gets through, and the
kernel, not the worker, says who sent a line."""

from __future__ import annotations

import asyncio
import json
import os
import socket

import pytest

from rexec.compute.channel import (
    FROM_SHELL,
    MAX_LINE,
    AsyncChannelReader,
    ChannelViolation,
    validate,
)


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b"[1, 2]",
        b'{"op": "eval", "code": "1"}',  # the template's vocabulary, not a shell's
        b'{"op": "shutdown", "pid": 1}',  # an extra field
        b'{"op": "login", "user": "a"}',  # a missing field
        b'{"op": "cancel", "pid": "12"}',  # a string for an int
        b'{"op": "cancel", "pid": true}',  # a bool is not an int here
        b'{"op": "control", "kind": "eval", "text": 5}',
        json.dumps({"op": "login", "user": "a", "password": "x" * 70000}).encode(),
        b'{"op": 1}',
    ],
)
def test_anything_outside_the_schema_is_a_violation(line: bytes) -> None:
    with pytest.raises(ChannelViolation):
        validate(line, FROM_SHELL)


def test_the_schema_lets_its_messages_through() -> None:
    assert validate(b'{"op": "cancel", "pid": 7}', FROM_SHELL) == {"op": "cancel", "pid": 7}
    assert validate(b'{"op": "shutdown"}', FROM_SHELL) == {"op": "shutdown"}


def test_the_sender_pid_comes_from_the_kernel() -> None:
    ours, theirs = socket.socketpair()
    # SO_PASSCRED must be on before the line is sent: make the reader first.
    loop = asyncio.new_event_loop()
    reader = AsyncChannelReader(ours, FROM_SHELL)
    pid = os.fork()
    if pid == 0:
        theirs.sendall(b'{"op": "shutdown"}\n')
        os._exit(0)
    os.waitpid(pid, 0)
    received = loop.run_until_complete(reader.receive())
    loop.close()
    assert received.message == {"op": "shutdown"}
    assert received.pid == pid and pid != os.getpid()


def test_an_endless_line_is_a_violation_without_growing() -> None:
    ours, theirs = socket.socketpair()
    loop = asyncio.new_event_loop()
    reader = AsyncChannelReader(ours, FROM_SHELL)
    theirs.setblocking(False)
    sent = 0
    try:
        while sent <= MAX_LINE + 1:
            sent += theirs.send(b"x" * 8192)
    except BlockingIOError:
        pass
    with pytest.raises(ChannelViolation):
        loop.run_until_complete(asyncio.wait_for(reader.receive(), 5))
    loop.close()


def test_a_line_begun_by_one_process_and_ended_by_another_is_a_violation() -> None:
    ours, theirs = socket.socketpair()
    loop = asyncio.new_event_loop()
    reader = AsyncChannelReader(ours, FROM_SHELL)
    theirs.sendall(b'{"op": "shut')
    pid = os.fork()
    if pid == 0:
        theirs.sendall(b'down"}\n')
        os._exit(0)
    os.waitpid(pid, 0)
    with pytest.raises(ChannelViolation):
        loop.run_until_complete(asyncio.wait_for(reader.receive(), 5))
    loop.close()


def test_descriptors_belong_to_the_line_they_were_sent_with() -> None:
    """A shell that accepted a connection whose first request is a login sends
    ``accepted`` then ``handback`` (with the socket) at once: one read returns both
    lines, and the descriptor must come with ``handback``, not with ``accepted``."""
    ours, theirs = socket.socketpair()
    loop = asyncio.new_event_loop()
    reader = AsyncChannelReader(ours, FROM_SHELL)
    spare_a, spare_b = socket.socketpair()
    accepted = json.dumps({"op": "accepted", "peer": "127.0.0.1", "port": 5}).encode() + b"\n"
    theirs.sendall(accepted)
    socket.send_fds(theirs, [b'{"op": "handback"}\n'], [spare_a.fileno()])
    try:
        first = loop.run_until_complete(reader.receive())
        second = loop.run_until_complete(reader.receive())
    finally:
        loop.close()
    assert first.message is not None and first.message["op"] == "accepted"
    assert first.fds == []
    assert second.message == {"op": "handback"} and len(second.fds) == 1
    os.close(second.fds[0])
    for sock in (ours, theirs, spare_a, spare_b):
        sock.close()
