"""Shells are hostile: session R code attacks the supervisor and the template.

The server runs with its defaults, started as root: shells as the ``rexec`` account,
control commands off, authentication off, ``server.shutdown = "auth"``. R code then
writes forged control-channel messages to every descriptor it holds — in-process, from
C code it compiles and loads, and from a program it starts with ``system()`` — and the
supervisor must act on none of them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rexec.protocol import Cmd, string_param
from tests.qap import RawClient

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (shells switch account)")

#: Writes each line of a file to every descriptor this process holds that is not an
#: internet socket (the client's): the shell's channel, if it can reach it.
FORGE_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <R.h>
#include <Rinternals.h>

SEXP forge(SEXP lines) {
    int written = 0;
    for (int fd = 0; fd < 1024; fd++) {
        struct sockaddr_storage addr;
        socklen_t len = sizeof addr;
        if (fcntl(fd, F_GETFD) < 0) continue;
        if (getsockname(fd, (struct sockaddr *) &addr, &len) == 0 &&
            addr.ss_family != AF_UNIX) continue;
        for (int i = 0; i < LENGTH(lines); i++) {
            const char *line = CHAR(STRING_ELT(lines, i));
            if (write(fd, line, strlen(line)) > 0) written++;
        }
    }
    return ScalarInteger(written);
}
"""

#: The same from a child process (a shell script): every socket it inherited.
FORGE_SH = r"""
found=""
for path in /proc/$$/fd/*; do
    fd=${path##*/}
    case "$(readlink "$path")" in
    socket:*) found="$found $fd"; eval "cat \"\$1\" >&$fd" 2>/dev/null ;;
    esac
done
echo "${found:-none}"
"""


def _forged_lines(marker: Path) -> list[str]:
    code = (
        f"writeLines(Sys.info()[['effective_user']], {str(marker)!r}); "
        "assign('pwned', TRUE, globalenv())"
    )
    messages = [
        {"op": "control", "kind": "eval", "text": code},  # the attack of issue 9
        {"op": "control", "kind": "source", "text": str(marker)},
        {"op": "login", "user": "admin", "password": "x"},
        {"op": "control", "kind": "eval", "text": code},  # after a login attempt
        {"op": "shutdown"},
        {"op": "shutdown", "pid": 1},
        {"op": "control", "kind": "shutdown", "text": ""},
        {"op": "eval", "code": code},  # what the template obeys
        {"op": "fork"},
        {"op": "ready", "tempdir": "/"},
        {"op": "tls"},
        {"op": "exit"},
        {"op": "accepted", "peer": "127.0.0.1", "port": 1},  # what only idle shells say
        {"op": "claimed"},
        {"op": "handback"},
    ]
    return [json.dumps(m) + "\n" for m in messages]


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def _uids(pid: int) -> list[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(x) for x in line.split()[1:]]
    raise AssertionError("no Uid line")


def _template(server) -> int:
    children = _children(server.process.pid)
    templates = [p for p in children if b"template" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert len(templates) == 1, children
    return templates[0]


def _evaluate(server, code: str):
    with RawClient(server.port) as client:
        return client.eval(code)


def test_session_code_cannot_reach_the_supervisor_or_the_template(rexec_factory) -> None:
    server = rexec_factory(**{"pool.initial": 2})
    workdir = (server.log.parent / "work").resolve()
    drop = workdir / "drop"  # writable by the shell account, so the attack could succeed
    drop.mkdir()
    drop.chmod(0o1777)
    marker = drop / "pwned.txt"
    template = _template(server)
    rexec_uid = int(subprocess.check_output(["id", "-u", "rexec"]))
    assert _uids(template) == [rexec_uid] * 4  # the template itself never runs as root

    lines = Path(workdir / "forged.jsonl")
    lines.write_text("".join(_forged_lines(marker)))
    lines.chmod(0o644)
    (workdir / "forge.c").write_text(FORGE_C)
    (workdir / "forge.sh").write_text(FORGE_SH)
    with RawClient(server.port) as client:
        # In-process: C code compiled and loaded by the session. The supervisor may kill
        # the shell before the call returns (its first violation ends it).
        client.send(
            Cmd.EVAL,
            string_param(
                f"file.copy({str(workdir / 'forge.c')!r}, 'forge.c'); "
                "out <- system('R CMD SHLIB forge.c 2>&1', intern = TRUE); "
                "dyn.load(paste0('forge', .Platform$dynlib.ext)); "
                f"lines <- readLines({str(lines)!r}); "
                "paste(.Call('forge', paste0(lines, '\\n')), 'writes')"
            ),
        )
        try:
            reply = client.reply()
            in_process = reply.value() if reply.ok else f"error {reply.status:#x}"
        except ConnectionError:
            in_process = "the shell was killed"
    # From a program the session starts: it inherits no socket at all.
    with RawClient(server.port) as client:
        found = client.eval(
            f"system(paste('/bin/sh', {str(workdir / 'forge.sh')!r}, {str(lines)!r}), "
            "intern = TRUE)"
        ).value()
    assert found == "none", f"a child of the shell inherited sockets: {found}"

    time.sleep(1)  # let the supervisor act on whatever arrived
    assert server.process.poll() is None, "the server stopped"
    assert not marker.exists(), "forged control code ran: " + marker.read_text()
    assert _evaluate(server, "1 + 1").value() == 2
    assert _evaluate(server, "exists('pwned')").value() is False
    assert _uids(_template(server)) == [rexec_uid] * 4
    log = server.log_text()
    assert "event=shell-violation" in log, (in_process, log[-3000:])
    assert "event=control-refused" in log or "event=shutdown-refused" in log


def test_a_forged_shutdown_is_refused(rexec_factory) -> None:
    server = rexec_factory(**{"pool.initial": 1})
    workdir = (server.log.parent / "work").resolve()
    (workdir / "forge.c").write_text(FORGE_C)
    with RawClient(server.port) as client:
        reply = client.eval(
            f"file.copy({str(workdir / 'forge.c')!r}, 'forge.c'); "
            "system('R CMD SHLIB forge.c 2>&1', intern = TRUE); "
            "dyn.load(paste0('forge', .Platform$dynlib.ext)); "
            """.Call('forge', '{"op": "shutdown"}\\n')"""
        )
        assert reply.ok and reply.value() >= 1  # it did reach its own channel
        # The shell still serves its session (a refused request is not a violation).
        assert client.eval("1L").value() == 1
    time.sleep(1)
    assert server.process.poll() is None
    assert "event=shutdown-refused" in server.log_text()
    assert _evaluate(server, "2L").value() == 2


def test_the_supervisor_never_loads_r(rexec_factory) -> None:
    server = rexec_factory(**{"pool.initial": 1})
    assert _evaluate(server, "R.version$major").value() == "4"
    maps = Path(f"/proc/{server.process.pid}/maps").read_text()
    assert "libR.so" not in maps
    assert "libR.so" in Path(f"/proc/{_template(server)}/maps").read_text()
    script = (
        "import sys, rexec.compute.supervisor.server; print(any('rpy2' in m for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_shells_die_with_the_supervisor(rexec_factory) -> None:
    server = rexec_factory(**{"pool.initial": 2})
    template = _template(server)
    client = RawClient(server.port)
    client.eval("1")
    client.send(Cmd.DETACH_SESSION)
    assert client.reply().ok  # a detached shell, waiting for its owner
    client.close()
    client = RawClient(server.port)
    assert client.eval("1").ok
    workers = [template, *_children(template)]
    assert len(workers) >= 3
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in workers):
        time.sleep(0.1)
    alive = [p for p in workers if Path(f"/proc/{p}").exists()]
    client.close()
    assert not alive, f"workers outlived the supervisor: {alive}"


def test_start_up_code_runs_as_the_shell_account(rexec_factory) -> None:
    server = rexec_factory(
        **{"startup.eval": ["started_as <- Sys.info()[['effective_user']]"], "pool.initial": 1}
    )
    assert _evaluate(server, "started_as").value() == "rexec"


def test_a_second_login_in_a_session_cannot_change_its_user(rexec_factory, tmp_path) -> None:
    from rexec.compute.supervisor.users import UsersFile

    users = tmp_path / "users"
    UsersFile(users).add("alice", "pw-a")
    UsersFile(users).add("bob", "pw-b")
    server = rexec_factory(
        **{"auth.required": True, "auth.users_file": str(users), "pool.initial": 1}
    )
    with RawClient(server.port) as client:
        client.send(Cmd.LOGIN, string_param("alice\npw-a"))
        assert client.reply().ok
        client.send(Cmd.LOGIN, string_param("bob\npw-b"))
        assert client.reply().status == 0x43  # a second login is an invalid command
        assert client.eval("1L").value() == 1
