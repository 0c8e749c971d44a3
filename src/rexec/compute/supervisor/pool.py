"""The pool's arbiter: spawns R shells ahead of demand, hands each one a connection,
notices when one exits and replaces it.

Shells are separate processes. In ``fork`` mode they are forked by a template
process that initialised R and ran the start-up code once (copy-on-write, ~ms per
shell); in ``spawn`` mode each is a fresh interpreter that starts R itself (no fork
needed, as on Windows). Either way a shell serves exactly one connection: the client
socket itself is passed to it (SCM_RIGHTS), so request bytes never cross this process.

Every worker is hostile once session R code may have run in it. What the pool knows of
a shell — its pid (from the kernel, not from the shell), its state, the peer and the
user of its connection — is held here and never taken from a message. A worker that
says anything outside the channel's schema, or speaks with another process' voice, is
killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rexec.compute.channel import (
    FROM_SHELL,
    FROM_TEMPLATE,
    AsyncChannelReader,
    ChannelViolation,
    encode,
)
from rexec.compute.identity import prepare_shell_root, shell_root
from rexec.config import Config

log = logging.getLogger("rexec.pool")

#: ``on_message(shell, message)`` answers requests a shell sends (login, shutdown, ...),
#: already checked against the channel's schema; it authorises each from the pool's state.
MessageHandler = Callable[["Shell", dict[str, Any]], Awaitable[dict[str, Any] | None]]


@dataclass(eq=False)
class Worker:
    """The supervisor's end of one worker process (a shell or the template)."""

    sock: socket.socket
    reader: AsyncChannelReader
    process: asyncio.subprocess.Process | None = None
    pid: int = 0

    def send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        """Send one small message whole, or raise OSError: the channel is non-blocking,
        and a worker that lets its end fill up is not waited for."""
        data = encode(message)
        try:
            sent = socket.send_fds(self.sock, [data], fds) if fds else self.sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent != len(data):
            raise OSError(f"worker {self.pid} does not read its channel")

    def close(self) -> None:
        self.reader.close()
        with contextlib.suppress(OSError):
            self.sock.close()


@dataclass(eq=False)
class Shell(Worker):
    state: str = "starting"  # starting -> idle [-> claiming] -> busy [-> detached|parked] -> gone
    #: A parked session's key (sha256 of it): attachSession with the key resumes it, or
    #: takes it over while attached (web nodes), until the session ends.
    park_digest: bytes = b""
    tempdir: str = ""
    session: str = ""
    peer: str = ""  # the client's address, as the supervisor accepted it
    user: str | None = None  # who logged in on this shell's connection (the supervisor checked)
    generation: int = 0
    created: float = field(default_factory=time.monotonic)
    claim: asyncio.Future[bool] | None = None  # answered "claimed" (True) or "accepted"
    accepted_itself: bool = False  # its connection is one it accepted (may be handed back)


@dataclass
class PoolStats:
    idle: int
    busy: int
    starting: int
    waiting: int
    served: int
    recycled: int
    failed: int
    max: int
    detached: int = 0
    #: Resumable sessions (parked once by detachSession with a timeout; counted in
    #: ``busy``: they hold their shells), attached now or not.
    parked: int = 0


class Pool:
    def __init__(self, config: Config, handler: str, on_message: MessageHandler) -> None:
        self.config = config
        self.handler = handler
        self.on_message = on_message
        self.mode = config["pool.mode"]
        self.name = ""  # "" for the node's default pool; a named pool's name otherwise
        self.shells: set[Shell] = set()
        self.idle: deque[Shell] = deque()
        self.waiters: deque[asyncio.Future[Shell]] = deque()
        self.template: Worker | None = None
        self._template_ready: asyncio.Future[None] | None = None
        self._template_reply: asyncio.Future[bool] | None = None
        self._control_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self.generation = 0  # bumped by server-wide code: older idle shells are replaced
        self._served = 0
        self._recycled = 0
        self._failed = 0
        #: Read by rexec.compute.supervisor.metrics: shells started, and connections
        #: idle shells accepted themselves (pool.direct_accept).
        self.started = 0
        self.accepted = 0
        self._consecutive_failures = 0
        self._backoff_until = 0.0
        self._readied = 0
        #: Listening sockets idle shells accept from themselves (pool.direct_accept);
        #: set by the server before :meth:`start`. Empty: every connection is handed over.
        self.listeners: list[socket.socket] = []
        #: ``on_handback(sock)``: a connection an idle shell accepted and gives back.
        self.on_handback: Callable[[socket.socket], None] = lambda sock: sock.close()
        self.has_idle = asyncio.Event()
        self.no_idle = asyncio.Event()
        self.no_idle.set()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start the template (fork mode) and the initial shells; wait until they are ready."""
        sweep(prepare_shell_root(self.config))  # left by a server that did not stop cleanly
        if self.mode == "fork":
            await self._start_template()
        self.maintain()
        deadline = time.monotonic() + 120
        # Counted as they say ready: idle shells may serve connections at once.
        while self._readied < min(self.config["pool.initial"], self.config["pool.max"]):
            if time.monotonic() > deadline:
                raise RuntimeError("R shells did not become ready")
            if self._failed and not self.idle and self._consecutive_failures >= 3:
                raise RuntimeError("R shells fail to start; see the log above")
            await asyncio.sleep(0.02)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop every worker. Idle shells end at once; busy ones are asked (SIGTERM) to
        finish the request they are running and close; after ``grace`` seconds what is
        left is killed."""
        self._stopping = True
        for waiter in self.waiters:
            if not waiter.done():
                waiter.cancel()
        for shell in list(self.idle):
            self._retire(shell)
        for shell in list(self.shells):
            self._signal(shell, signal.SIGTERM)
        if self.template is not None:
            self.template.close()
        deadline = time.monotonic() + grace
        while self.shells and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for shell in list(self.shells):
            self._signal(shell, signal.SIGKILL)
        while self.shells and time.monotonic() < deadline + 2:
            await asyncio.sleep(0.05)
        if self.template is not None and self.template.process is not None:
            with contextlib.suppress(TimeoutError):  # it stops the shells it forked
                await asyncio.wait_for(self.template.process.wait(), 10)
        for task in list(self._tasks):
            task.cancel()
        sweep(shell_root(self.config))

    def stats(self) -> PoolStats:
        busy = sum(1 for s in self.shells if s.state in ("busy", "parked"))
        starting = sum(1 for s in self.shells if s.state == "starting")
        return PoolStats(
            len(self.idle),
            busy,
            starting,
            len(self.waiters),
            self._served,
            self._recycled,
            self._failed,
            self.config["pool.max"],
            self._detached(),
            sum(1 for s in self.shells if s.state in ("parked", "busy") and s.park_digest),
        )

    def _detached(self) -> int:
        return sum(1 for s in self.shells if s.state == "detached")

    async def reload(self, config: Config) -> None:
        """Take a new configuration without dropping connections: busy shells finish
        their sessions as they are; idle ones (and, in fork mode, the template) are
        replaced by ones started with the new settings."""
        old_template = self.template
        self.config = config
        self.generation += 1
        if self.mode == "fork":
            await self._start_template()
            if old_template is not None:
                with contextlib.suppress(OSError):
                    old_template.send({"op": "exit"})  # leave its busy shells alone
                old_template.close()
        for shell in list(self.idle):
            self._retire(shell)
        self.maintain()

    # ------------------------------------------------------------------ acquiring
    async def acquire(self, timeout: float) -> Shell | None:
        """An idle shell, waiting up to ``timeout`` seconds; None if none became free.
        Shells that accept connections themselves are claimed first (they may have just
        taken one: then the next is tried)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            while self.idle:
                shell = self.idle.popleft()
                self._idle_changed()
                if shell.state != "idle":
                    continue
                if self.direct and not await self._claim(shell):
                    continue
                shell.state = "busy"
                self.maintain()
                return shell
            waiter: asyncio.Future[Shell | None] = loop.create_future()
            self.waiters.append(waiter)
            self.maintain()
            try:
                shell = await asyncio.wait_for(waiter, max(deadline - loop.time(), 0.0))
            except (TimeoutError, asyncio.CancelledError):
                if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                    self._make_idle(waiter.result())  # it arrived just too late: give it back
                return None
            finally:
                with contextlib.suppress(ValueError):
                    self.waiters.remove(waiter)
            if shell is not None:
                return shell
            # direct mode: a shell became idle; claim it (or another) above

    async def _claim(self, shell: Shell) -> bool:
        """Ask an idle, accepting shell to stop accepting and wait for ``serve``."""
        shell.state = "claiming"
        shell.claim = asyncio.get_running_loop().create_future()
        try:
            shell.send({"op": "claim"})
            return await asyncio.wait_for(asyncio.shield(shell.claim), 5)
        except (OSError, TimeoutError):
            log.error("R shell %d did not answer a claim: killing it", shell.pid)
            self._signal(shell, signal.SIGKILL)
            return False
        finally:
            shell.claim = None

    def busy_shell(self, pid: object) -> Shell | None:
        """The busy (or detached) shell with process id ``pid``: those may be interrupted."""
        for shell in self.shells:
            if shell.state in ("busy", "detached") and shell.pid == pid and pid:
                return shell
        return None

    def hand_over(
        self, shell: Shell, client: socket.socket, session: str, peer: str, user: str | None
    ) -> None:
        """Pass the client socket to the shell; the caller then closes its own copy."""
        shell.session, shell.peer, shell.user = session, peer, user
        message = {"op": "serve", "session": session, "peer": peer, "user": user}
        try:
            shell.send(message, [client.fileno()])
        except OSError:
            self._signal(shell, signal.SIGKILL)  # never leave a shell counted busy for nothing
            raise
        self._served += 1

    def detach(self, shell: Shell) -> bool:
        """Let a busy shell's session outlive its connection. Detached sessions have a
        small budget of their own (``session.detach_max``) outside ``pool.max``, so
        detaching never takes shells away from new connections."""
        if shell.state != "busy" or self._detached() >= self.config["session.detach_max"]:
            return False
        shell.state = "detached"
        self.maintain()
        return True

    def park(self, shell: Shell) -> bytes | None:
        """Park a busy shell's session between requests: its connection closes and the
        session waits to be resumed by attachSession on the server's own port with the
        key returned here (only its digest is kept). Unlike a detached session, a parked
        one keeps its place in ``pool.max``: it is a session whose client is away."""
        if shell.state != "busy":
            return None
        key = secrets.token_bytes(32)
        shell.state, shell.park_digest = "parked", hashlib.sha256(key).digest()
        return key

    def parked_shell(self, key: bytes) -> Shell | None:
        """The shell whose session ``key`` resumes: parked, or resumable and attached
        (attachSession then takes it over), or None."""
        digest = hashlib.sha256(key).digest()
        for shell in self.shells:
            if (
                shell.state in ("parked", "busy")
                and shell.park_digest
                and hmac.compare_digest(shell.park_digest, digest)
            ):
                return shell
        return None

    def resume(self, shell: Shell, client: socket.socket, session: str, peer: str) -> None:
        """Pass a new connection to a parked or resumable shell (it answers attachSession
        itself, and closes the connection it had); the key stays good."""
        shell.state = "busy"
        shell.session, shell.peer = session, peer
        try:
            shell.send({"op": "resume", "session": session, "peer": peer}, [client.fileno()])
        except OSError:
            self._signal(shell, signal.SIGKILL)
            raise

    def _make_idle(self, shell: Shell) -> None:
        if self.direct:  # it accepts at once: waiters must claim it (acquire)
            shell.state = "idle"
            self.idle.append(shell)
            self._idle_changed()
            while self.waiters:
                waiter = self.waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
            return
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                shell.state = "busy"
                waiter.set_result(shell)
                return
        shell.state = "idle"
        self.idle.append(shell)
        self._idle_changed()

    # ------------------------------------------------------------------ keeping the count
    def maintain(self) -> None:
        """Start shells until ``pool.initial`` are idle or starting (more while
        connections wait), never exceeding ``pool.max`` alive."""
        if self._stopping:
            return
        if time.monotonic() < self._backoff_until:
            self._later(self._backoff_until - time.monotonic(), self.maintain)
            return
        if self.mode == "fork" and (self.template is None or not self._template_is_ready()):
            return
        ready_or_starting = len(self.idle) + sum(1 for s in self.shells if s.state == "starting")
        wanted = max(self.config["pool.initial"], len(self.waiters)) - ready_or_starting
        room = self.config["pool.max"] - (len(self.shells) - self._detached())
        for _ in range(max(0, min(wanted, room))):
            self._spawn_shell()

    def _template_is_ready(self) -> bool:
        return self._template_ready is not None and self._template_ready.done()

    def _later(self, delay: float, callback: Callable[[], None]) -> None:
        asyncio.get_running_loop().call_later(max(delay, 0.0), callback)

    def _spawn_shell(self) -> None:
        # The shell is counted as starting at once, so maintain() never over-spawns.
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        reader = AsyncChannelReader(parent, FROM_SHELL)
        shell = Shell(sock=parent, reader=reader, generation=self.generation)
        self.shells.add(shell)
        if self.mode == "fork":
            assert self.template is not None
            try:
                self.template.send({"op": "fork"}, [child.fileno()])
            except OSError:
                self.shells.discard(shell)
                parent.close()
                return
            finally:
                child.close()
            self._track(self._run_shell(shell))
        else:
            self._track(self._spawn_process(shell, child))
        self.started += 1

    async def _spawn_process(self, shell: Shell, child: socket.socket) -> None:
        try:
            shell.process = await self._exec("shell", child)
        except OSError:
            log.exception("could not start an R shell process")
            shell.close()
        finally:
            child.close()
        await self._run_shell(shell)

    async def _exec(self, role: str, child: socket.socket) -> asyncio.subprocess.Process:
        config_json = json.dumps(self.config.to_dict())
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "rexec.compute.shell.worker",
            role,
            str(child.fileno()),
            config_json,
            self.handler,
            ",".join(str(fd) for fd in self._listener_fds()),
            pass_fds=[child.fileno(), *self._listener_fds()],
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def direct(self) -> bool:
        """Whether idle shells accept connections themselves."""
        return bool(self.listeners)

    def _listener_fds(self) -> list[int]:
        return [listener.fileno() for listener in self.listeners]

    def _idle_changed(self) -> None:
        if any(s.state == "idle" for s in self.idle):
            self.no_idle.clear()
            self.has_idle.set()
        else:
            self.has_idle.clear()
            self.no_idle.set()

    async def _run_shell(self, shell: Shell) -> None:
        try:
            await self._listen(shell)
        except (ChannelViolation, OSError) as exc:
            log.error(
                "event=shell-violation shell=%d session=%s reason=%r: killing it",
                shell.pid,
                shell.session,
                str(exc),
            )
            if shell.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(shell.pid, signal.SIGKILL)
        finally:
            await self._shell_gone(shell)

    async def _listen(self, shell: Shell) -> None:
        while True:
            received = await shell.reader.receive()
            message = received.message
            if message is not None and message["op"] == "handback":
                self._handback(shell, received.pid, received.fds)
                continue
            for fd in received.fds:  # no other message from a shell carries descriptors
                os.close(fd)
            if message is None:
                return
            if received.fds:
                raise ChannelViolation("a shell passed descriptors")
            if message["op"] in ("accepted", "claimed"):
                self._accepted(shell, received.pid, message)
                continue
            if shell.state == "starting":
                if message["op"] != "ready" or not received.pid:
                    raise ChannelViolation(f"{message['op']} before ready")
                shell.pid = received.pid  # the kernel's word, not the shell's
                shell.tempdir = message["tempdir"]
                self._readied += 1
                log.debug(
                    "R shell %d ready in %.1f ms",
                    shell.pid,
                    (time.monotonic() - shell.created) * 1000,
                )
                self._consecutive_failures = 0
                if self._stopping or shell.generation != self.generation:
                    self._retire(shell)  # started before a server-wide change
                else:
                    self._make_idle(shell)
                continue
            if received.pid != shell.pid:
                raise ChannelViolation(f"message from pid {received.pid}, not the shell's")
            if message["op"] == "ready" or shell.state not in ("busy", "detached"):
                raise ChannelViolation(f"{message['op']} from a shell that is {shell.state}")
            reply = await self.on_message(shell, message)
            if reply is not None and shell.state != "gone":
                shell.send(reply)

    def _accepted(self, shell: Shell, pid: int, message: dict[str, Any]) -> None:
        """An idle shell serves a connection it accepted itself, or answers a claim.
        Only a shell in which no session code has run yet may say either."""
        if shell.state not in ("idle", "claiming") or pid != shell.pid:
            raise ChannelViolation(f"{message['op']} from a shell that is {shell.state}")
        claim = shell.claim
        if message["op"] == "claimed":
            if claim is None or claim.done():
                raise ChannelViolation("claimed without a claim")
            claim.set_result(True)
            return
        shell.state = "busy"
        shell.accepted_itself = True
        shell.session, shell.peer, shell.user = f"p{shell.pid}", message["peer"], None
        with contextlib.suppress(ValueError):
            self.idle.remove(shell)
        self._idle_changed()
        self._served += 1
        self.accepted += 1
        if claim is not None and not claim.done():
            claim.set_result(False)
        log.info(
            "session=%s client=%s:%d event=accepted shell=%d tls=no user=-",
            shell.session,
            shell.peer,
            message["port"],
            shell.pid,
        )
        self.maintain()

    def _handback(self, shell: Shell, pid: int, fds: list[int]) -> None:
        """A connection a shell accepted itself did not send its first request in time:
        the server waits for it now, holding no shell, and the shell ends (it is killed:
        session code could have sent this, and may then hand back only its own
        connection, once). Checked to be a connection to one of our listeners."""
        if not shell.accepted_itself or pid != shell.pid or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise ChannelViolation(f"handback from a shell that is {shell.state}")
        shell.accepted_itself = False
        self._signal(shell, signal.SIGKILL)
        sock = socket.socket(fileno=fds[0])
        try:
            local = sock.getsockname()[:2]
            sock.getpeername()
            ours = any(local == listener.getsockname()[:2] for listener in self.listeners)
        except OSError:
            ours = False  # the client left meanwhile, or not a connected socket
        if not ours or sock.type != socket.SOCK_STREAM:
            sock.close()
            return
        log.info(
            "session=%s client=%s event=handback reason='a login or pool command, or no first "
            "request within %ss'",
            shell.session,
            shell.peer,
            self.config["server.first_request_wait"],
        )
        self.on_handback(sock)

    async def _shell_gone(self, shell: Shell) -> None:
        was = shell.state
        shell.state = "gone"
        if shell.claim is not None and not shell.claim.done():
            shell.claim.set_result(False)
        self.shells.discard(shell)
        with contextlib.suppress(ValueError):
            self.idle.remove(shell)
        self._idle_changed()
        shell.close()
        if shell.process is not None:
            await shell.process.wait()
        if shell.pid:
            for name in (f"conn{shell.pid}", f"tmp{shell.pid}"):
                shutil.rmtree(shell_root(self.config) / name, ignore_errors=True)
        if was in ("detached", "parked"):
            self._recycled += 1
            log.debug("detached R shell %d ended", shell.pid)
        elif was == "starting":
            self._failed += 1
            self._consecutive_failures += 1
            if self._consecutive_failures >= 3:
                self._backoff_until = time.monotonic() + min(30, self._consecutive_failures)
            log.error("an R shell exited before it was ready")
        elif was == "retiring":
            log.debug("R shell %d retired", shell.pid)
        elif was == "idle":
            log.warning("idle R shell %d exited; replacing it", shell.pid)
        else:
            self._recycled += 1
            log.debug("R shell %d finished session %s", shell.pid, shell.session)
        self.maintain()

    async def apply_control(self, kind: str, text: str) -> bool:
        """Run start-up code server-wide (ctrlEval/ctrlSource): every *new* session sees
        it, so idle shells forked or spawned before it are replaced."""
        code = text if kind == "eval" else f"source({text!r})"
        async with self._control_lock:
            if self.mode == "fork":
                if self.template is None:
                    return False
                self._template_reply = asyncio.get_running_loop().create_future()
                self.template.send({"op": "eval", "code": code})
                try:
                    ok = await asyncio.wait_for(self._template_reply, 300)
                except TimeoutError:
                    ok = False
            else:
                startup = [*self.config["startup.eval"], code]
                self.config = Config({**self.config.to_dict(), "startup.eval": startup})
                ok = True
        if ok:
            self.generation += 1
            for shell in list(self.idle):
                self._retire(shell)
            self.maintain()
        return ok

    # ------------------------------------------------------------------ the template
    async def _start_template(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = await self._exec("template", child)
        finally:
            child.close()
        reader = AsyncChannelReader(parent, FROM_TEMPLATE)
        self.template = Worker(sock=parent, reader=reader, process=process)
        self._template_ready = asyncio.get_running_loop().create_future()
        self._track(self._watch_template(self.template, self._template_ready))
        await asyncio.wait_for(asyncio.shield(self._template_ready), 120)

    async def _watch_template(self, template: Worker, ready: asyncio.Future[None]) -> None:
        failure = ""
        while True:
            try:
                received = await template.reader.receive()
            except ChannelViolation as exc:
                log.error("event=template-violation reason=%r: killing it", str(exc))
                with contextlib.suppress(ProcessLookupError):
                    os.kill(template.pid or template.process.pid, signal.SIGKILL)  # type: ignore[union-attr]
                break
            for fd in received.fds:
                os.close(fd)
            message = received.message
            if message is None:
                break
            if message.get("op") == "ready" and not ready.done():
                template.pid = template.process.pid  # type: ignore[union-attr]
                ready.set_result(None)
                log.info("R template %d ready", template.pid)
                self.maintain()
            elif message.get("op") == "failed":
                failure = message["reason"]
            elif message.get("op") == "result":
                reply = self._template_reply
                if reply is not None and not reply.done():
                    reply.set_result(bool(message.get("ok")))
        template.close()
        assert template.process is not None
        code = await template.process.wait()
        if not ready.done():
            reason = f": {failure}" if failure else ""
            ready.set_exception(RuntimeError(f"R template failed to start (exit {code}){reason}"))
            return
        if not self._stopping and template is self.template:  # not one replaced on reload
            log.error("R template exited (code %s); starting a new one", code)
            self.template = None
            await asyncio.sleep(1)
            self._track(self._restart_template())

    async def _restart_template(self) -> None:
        try:
            await self._start_template()
        except Exception:
            log.exception("could not restart the R template")
        self.maintain()

    # ------------------------------------------------------------------ helpers
    def _retire(self, shell: Shell) -> None:
        """Take an idle shell out of service for good (it is replaced)."""
        with contextlib.suppress(ValueError):
            self.idle.remove(shell)
        shell.state = "retiring"
        self._idle_changed()
        self._signal(shell, signal.SIGTERM)

    def _signal(self, shell: Shell, signum: int) -> None:
        if shell.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(shell.pid, signum)
        else:
            shell.close()

    def _track(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def sweep(workdir: Path) -> None:
    """Remove the working and temp directories (``conn<pid>``, ``tmp<pid>``) of shells
    that no longer run: ones killed before they said ready, or by a crash."""
    if not workdir.is_dir():
        return
    for entry in workdir.iterdir():
        for prefix in ("conn", "tmp"):
            number = entry.name[len(prefix) :]
            if entry.name.startswith(prefix) and number.isdigit() and not _alive(int(number)):
                shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
