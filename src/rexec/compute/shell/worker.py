"""Worker processes: the warm template (fork mode) and the shells that serve connections.

A shell starts (forked from the template, or spawned as a new process), makes itself a
private working directory and R temp directory, says ``ready``, waits for one client
socket, serves it with the configured handler and exits. It knows nothing about the
pool beyond its control channel.

Both roles switch to the shell account before R is initialised, so neither start-up
code nor session code ever runs as root; both die with their parent (the template with
the supervisor, a shell with the template), so no shell outlives the server. A forked
shell keeps only its own channel and the standard streams of the template's descriptors.

Run as ``python -m rexec.compute.shell.worker {template|shell} CONTROL_FD CONFIG_JSON HANDLER
[LISTEN_FDS]`` (comma-separated listening sockets idle shells accept from).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import logging
import os
import select
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rexec.compute.channel import PEEK_LIMIT, Channel
from rexec.compute.identity import become, shell_identity, shell_root
from rexec.config import Config
from rexec.protocol import framing
from rexec.protocol.constants import HEADER_LENGTH, POOL_COMMANDS, Cmd

log = logging.getLogger("rexec.worker")
#: First requests only the server process answers: logins, pool commands, and
#: attachSession (a parked session is resumed in its own shell, not in this one).
_SERVER_COMMANDS = POOL_COMMANDS | {Cmd.LOGIN, Cmd.ATTACH_SESSION}

#: ``handler(client, shell, channel, config, message)`` serves one connection; ``message``
#: is the supervisor's ``serve`` message. An optional ``handler.warm_up(shell, config, channel)``
#: runs before the shell says ready, so the first request finds its code paths warm.
Handler = Callable[[socket.socket, Any, Channel, Config, dict[str, Any]], None]


def _load_handler(path: str) -> Handler:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _start_r(config: Config) -> Any:
    from rexec.rshell import shell

    startup = shell.Startup(
        packages=tuple(config["startup.packages"]),
        source=tuple(config["startup.source"]),
        eval=tuple(config["startup.eval"]),
        r_args=tuple(config["r.args"]),
    )
    return shell.start(startup)


def _private_session(config: Config, forked: bool) -> tuple[Path, str]:
    """A working directory and an R temp dir of this shell's own (made anew: whatever
    stood under this pid's name before is not trusted)."""
    from rexec.rshell import embedded

    root = shell_root(config)
    workdir = root / f"conn{os.getpid()}"
    for stale in (workdir, root / f"tmp{os.getpid()}"):
        if stale.is_symlink():
            stale.unlink()
        shutil.rmtree(stale, ignore_errors=True)
    workdir.mkdir(mode=0o700)
    os.chdir(workdir)
    os.environ["HOME"] = str(workdir)
    inherited = embedded.current_tempdir()
    # Next to the working directory, so the supervisor can sweep both by pid.
    tempdir = embedded.new_tempdir(path=str(root / f"tmp{os.getpid()}"))
    if not forked:  # R made it at start-up for this process alone
        shutil.rmtree(inherited, ignore_errors=True)
    return workdir, tempdir


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve_one(
    channel: Channel,
    shell: Any,
    config: Config,
    handler: Handler,
    forked: bool,
    listeners: list[int],
) -> None:
    """Say ready, take one client connection (handed over, or accepted from
    ``listeners``), serve it, clean up. Never returns."""
    code = 0
    workdir, tempdir = _private_session(config, forked)
    signal.signal(signal.SIGTERM, _exit_cleanly)  # retired before a session: clean up
    try:
        from rexec.rshell import blas

        blas.configure_shell(config)  # shell.threads, in the BLAS R has already loaded
        if forked:
            shell.reseed()
        warm_up = getattr(handler, "warm_up", None)
        if warm_up is not None:
            warm_up(shell, config, channel)
        channel.send({"op": "ready", "tempdir": tempdir})
        connection = next_connection(channel, listeners, config)
        for fd in listeners:  # session code never holds the listening sockets
            os.close(fd)
        listeners = []
        if connection is not None:
            client, message = connection
            handler(client, shell, channel, config, message)
    except SystemExit:
        pass
    except Exception:
        log.exception("shell %d failed", os.getpid())
        code = 1
    finally:
        # Ending anyway: a SIGTERM now (the server draining) must not cut the clean-up.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.chdir("/")
        shutil.rmtree(workdir, ignore_errors=True)
        if tempdir:
            shutil.rmtree(tempdir, ignore_errors=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def next_connection(
    channel: Channel, listeners: list[int], config: Config
) -> tuple[socket.socket, dict[str, Any]] | None:
    """The connection this shell serves and its ``serve`` message, or None (end).

    Without ``listeners`` the supervisor hands one over (``serve`` with the socket).
    With them (``pool.direct_accept``) the shell waits for whichever comes first: a
    connection on a listener
    or the supervisor's ``claim`` (it admitted a connection itself and hands it over).
    Every idle shell is woken by a new connection and one wins the accept: exclusive
    wake-ups (EPOLLEXCLUSIVE) could leave a connection queued while shells sleep.
    A connection accepted here is greeted and reported (``accepted``, so the supervisor
    no longer counts this shell idle) and served once its first request has arrived
    whole. One that stays silent for ``server.first_request_wait`` is handed back to the
    supervisor, which waits for it holding no shell; this shell then ends, as it does
    when the client leaves before a request. No session code has run here yet.
    """
    if not listeners:
        return _handed_over(channel)
    poller = select.epoll()
    sockets = [socket.socket(fileno=os.dup(fd)) for fd in listeners]  # dups: closed below
    for sock in sockets:
        poller.register(sock.fileno(), select.EPOLLIN)
    poller.register(channel.sock.fileno(), select.EPOLLIN)
    try:
        while True:
            events = dict(poller.poll())
            if channel.sock.fileno() in events:
                message, fds = channel.receive()
                if message is None or message.get("op") != "claim":
                    for fd in fds:
                        os.close(fd)
                    return None
                channel.send({"op": "claimed"})
                return _handed_over(channel)
            for sock in sockets:
                if sock.fileno() in events:
                    with contextlib.suppress(BlockingIOError, InterruptedError):
                        client, address = sock.accept()  # or another process took it
                        return _first_request(channel, client, address, config)
    finally:
        poller.close()
        for sock in sockets:
            sock.close()


def _first_request(
    channel: Channel, client: socket.socket, address: Any, config: Config
) -> tuple[socket.socket, dict[str, Any]] | None:
    """Greet a connection this shell accepted and wait until its first request has
    arrived whole (its first :data:`PEEK_LIMIT` bytes of payload, at least)."""
    peer, port = str(address[0]), int(address[1])
    try:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.sendall(framing.id_string(auth=False, plaintext=False, salt=None, tls=False))
    except OSError:
        client.close()
        return None
    channel.send({"op": "accepted", "peer": peer, "port": port})
    deadline = time.monotonic() + config["server.first_request_wait"]
    poller = select.epoll()
    poller.register(client.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
    poller.register(channel.sock.fileno(), select.EPOLLIN)
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            events = dict(poller.poll(remaining))
            if channel.sock.fileno() in events:  # a claim that crossed "accepted"
                message, fds = channel.receive()
                for fd in fds:
                    os.close(fd)
                if message is None:
                    client.close()
                    return None
            if client.fileno() not in events:
                continue
            need = _missing(client)
            if need and events[client.fileno()] & (select.EPOLLRDHUP | select.EPOLLHUP):
                need = None  # it stopped sending: the request stays incomplete
            if need is None:  # the client left
                client.close()
                return None
            if need == 0 and not _for_the_server(client):
                client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
                return client, {"session": f"p{os.getpid()}", "peer": peer, "user": None}
            if need == 0:  # a login or pool command: the server process answers it
                break
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, need)  # wake when whole
    finally:
        poller.close()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
    channel.send({"op": "handback"}, [client.fileno()])
    client.close()
    return None


def _for_the_server(client: socket.socket) -> bool:
    """Whether the first request is a login (only the server process reads the users
    file) or one of rexec's pool commands."""
    header = client.recv(HEADER_LENGTH, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    return framing.unpack_header(header).cmd in _SERVER_COMMANDS


def _missing(client: socket.socket) -> int | None:
    """0 when the first request is here (as much as is waited for), else the number of
    bytes to wait for; None when the client has gone."""
    try:
        data = client.recv(HEADER_LENGTH + PEEK_LIMIT, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return 1
    except OSError:
        return None
    if not data:
        return None
    need = HEADER_LENGTH
    if len(data) >= HEADER_LENGTH:
        need += min(framing.unpack_header(data[:HEADER_LENGTH]).length, PEEK_LIMIT)
    return 0 if len(data) >= need else need


def _handed_over(channel: Channel) -> tuple[socket.socket, dict[str, Any]] | None:
    message, fds = channel.receive()
    if message is None or message.get("op") != "serve" or not fds:
        for fd in fds:
            os.close(fd)
        return None
    for extra in fds[1:]:
        os.close(extra)
    return socket.socket(fileno=fds[0]), message


def run_template(channel: Channel, config: Config, handler: Handler, listeners: list[int]) -> None:
    """Initialise R once, then fork a shell for every ``fork`` request until EOF."""
    try:
        shell = _start_r(config)
    except Exception as exc:  # the start-up code's error, for whoever defined the pool
        channel.send({"op": "failed", "reason": str(exc)[:4000]})
        raise
    _prepare_forks()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # shells are reaped by the kernel
    channel.send({"op": "ready"})
    children: list[int] = []
    while True:
        message, fds = channel.receive()
        if message is None:  # the supervisor is done: so are shells that never served
            _stop_children(children)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # R's own clean-up waits for children
            return
        if message.get("op") == "exit":  # replaced on reload: its shells serve on
            # They die with this process (PR_SET_PDEATHSIG): outlive the last of them.
            channel.sock.close()
            while any(_running(p) for p in children):
                time.sleep(0.2)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            return
        if message.get("op") == "eval":  # server-wide code (ctrlEval / ctrlSource)
            channel.send({"op": "result", "ok": _eval_quietly(shell, message["code"])})
            continue
        if message.get("op") != "fork" or not fds:
            for fd in fds:
                os.close(fd)
            continue
        for extra in fds[1:]:
            os.close(extra)
        gc.freeze()  # keep the collector off the template's objects: fewer copied pages
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            channel.sock.close()
            _keep_only([0, 1, 2, fds[0], *listeners])
            die_with_parent(parent)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            channel = Channel(socket.socket(fileno=fds[0]))
            serve_one(channel, shell, config, handler, forked=True, listeners=listeners)
        os.close(fds[0])
        children = [p for p in children if _running(p)] + [pid]


def _prepare_forks() -> None:
    """Look up once, here, what every shell would otherwise look up after its fork:
    libR's handle (rpy2 may ask ``R RHOME``) and the BLAS libraries' setters."""
    from rexec.rshell import blas, embedded

    embedded.current_tempdir()
    blas.prepare()


def _eval_quietly(shell: Any, code: str) -> bool:
    from rexec.rshell.shell import RError

    try:
        shell.run_code(code.encode())
        return True
    except RError:
        shell.release()
        return False


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop_children(children: list[int], grace: float = 5.0) -> None:
    """SIGTERM the shells this template forked (they remove their directories) and wait."""

    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(_running(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.02)


def run_spawned(channel: Channel, config: Config, handler: Handler, listeners: list[int]) -> None:
    shell = _start_r(config)
    serve_one(channel, shell, config, handler, forked=False, listeners=listeners)


def die_with_parent(parent: int) -> None:
    """Be killed when ``parent`` ends (PR_SET_PDEATHSIG; set after any change of user,
    which clears it), and end now if it already has."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _keep_only(keep: list[int]) -> None:
    """Close every descriptor but ``keep`` (a forked shell must not hold what the
    template holds)."""
    try:
        open_fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        open_fds = list(range(3, 1024))
    for fd in open_fds:
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def main(argv: list[str]) -> None:
    role, fd, config_json, handler_path, *rest = argv
    listeners = [int(n) for n in rest[0].split(",") if n] if rest else []
    for inherited in (int(fd), *listeners):  # no program R code starts may inherit these
        os.set_inheritable(inherited, False)
    config = Config(json.loads(config_json))
    handler = _load_handler(handler_path)  # imported while the interpreter is readable
    identity = shell_identity(config)
    if identity is not None:  # before R starts: start-up code never runs as root
        become(identity, home=str(shell_root(config)))
    die_with_parent(os.getppid())
    logging.basicConfig(
        level=config["log.level"].upper(),
        format=f"%(asctime)s %(levelname)s [{role} %(process)d] %(message)s",
    )
    logging.getLogger("rpy2").setLevel(logging.WARNING)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when we stop
    channel = Channel(socket.socket(fileno=int(fd)))
    if role == "template":
        run_template(channel, config, handler, listeners)
    else:
        run_spawned(channel, config, handler, listeners)


if __name__ == "__main__":
    main(sys.argv[1:])
