"""Console output as out-of-band messages: Rserve's `console.oob enable`, compared with
a real Rserve started so, and the per-session switch web nodes use."""

from __future__ import annotations

import asyncio

import pytest

from rexec.client import aconnect
from rexec.client import convert as conv
from rexec.protocol import Cmd, decode_params, string_param, to_python
from tests.qap import RawClient


@pytest.fixture(scope="module")
def rexec_console(tmp_path_factory):
    from tests.conftest import start_rexec

    server = start_rexec(tmp_path_factory.mktemp("console"), **{"session.console_oob": True})
    yield server
    server.stop()


def _messages(port: int, code: str) -> list[tuple[int, object]]:
    """Every frame an eval of ``code`` brings, up to its reply: (cmd, value)."""
    frames = []
    with RawClient(port) as client:
        client.send(Cmd.VOID_EVAL, string_param(code))
        while True:
            reply = client.reply()
            params = decode_params(reply.payload) if reply.payload else []
            value = to_python(params[0].value) if params else None
            frames.append((reply.header.cmd, value))
            if reply.header.cmd & 0x0FFFF000 not in (0x21000, 0x22000):
                return frames


OUT, ERR = "console.out", "console.err"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("print(1:3)", [(OUT, "[1] 1 2 3\n")]),
        ('cat("a\\nb\\n"); cat("no newline")', [(OUT, "a\nb\n"), (OUT, "no newline")]),
        ('for (i in 1:2) cat("line", i, "\\n")', [(OUT, "line 1 \n"), (OUT, "line 2 \n")]),
        (
            'cat("x"); message("to stderr"); cat("y\\n")',
            [(OUT, "x"), (ERR, "to stderr\n"), (OUT, "y\n")],
        ),
        ('cat(strrep("x", 10000))', [(OUT, "x" * 10000)]),
        ("invisible(1)", []),
    ],
)
def test_console_output_arrives_line_by_line_in_rserve_s_shape(
    rexec_console, code, expected
) -> None:
    """Rserve's console.oob (src/Rserv.c, con_add_output): list(kind, text), sent at
    each newline or 8 KiB, the other stream flushed first, the rest at the end."""
    frames = _messages(rexec_console.port, code)
    assert frames[-1] == (0x10001, None)  # the voidEval's own RESP_OK comes last
    assert all(cmd == 0x21000 for cmd, _ in frames[:-1])
    assert [tuple(value) for _, value in frames[:-1]] == expected


def test_without_it_console_output_stays_in_the_server_log(rexec_server) -> None:
    assert _messages(rexec_server.port, 'print("quiet")') == [(0x10001, None)]


def test_a_session_switches_console_streaming_on_for_itself(rexec_factory) -> None:
    server = rexec_factory(**{"pool.initial": 1})  # session.console_oob off

    async def scenario() -> None:
        connection = await aconnect(port=server.port)
        seen: list[tuple[str, str]] = []
        connection.on_oob = lambda value, code: seen.append(tuple(conv.to_python(value)))
        await connection.void_eval('cat("before\\n")')
        assert seen == []  # off: the output stays in the server's log
        await connection.void_eval("options(rexec.console.oob = TRUE)")
        started = asyncio.get_running_loop().time()
        times: list[float] = []
        connection.on_oob = lambda value, code: (
            seen.append(tuple(conv.to_python(value))),
            times.append(asyncio.get_running_loop().time() - started),
        )
        await connection.void_eval('cat("one\\n"); Sys.sleep(0.6); cat("two\\n")')
        assert seen == [("console.out", "one\n"), ("console.out", "two\n")]
        # the first line arrived while R still slept, not with the reply
        assert times[1] - times[0] > 0.4
        await connection.close()

    asyncio.run(scenario())
