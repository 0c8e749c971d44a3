"""``rexec serve``: accept QAP1 connections and give each one an R shell from the pool.

This process never touches R and never reads a request: it accepts, takes an idle
shell (waiting up to ``pool.wait_timeout``), passes the socket to it and goes back to
accepting. Logins are checked here, so shells never see the users file.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
from typing import Any

from rexec.compute.identity import shell_identity
from rexec.compute.supervisor import tls
from rexec.compute.supervisor.login import Logins
from rexec.compute.supervisor.pool import Pool, Shell
from rexec.compute.supervisor.status import ControlServer
from rexec.config import Config

log = logging.getLogger("rexec.compute")

HANDLER = "rexec.compute.shell.session:serve"


def secure(config: Config) -> Config:
    """Apply the safety rules to a configuration: listening beyond loopback requires
    authentication unless it was switched off explicitly, and authentication needs a
    users file (Rserve would let everybody in)."""
    if config["server.remote"] and not config["auth.required"]:
        if "auth.required" in config.explicit:
            log.warning(
                "!!! server.remote is on and auth.required = false: ANYONE who can reach "
                "this machine can run R code as the shell user !!!"
            )
        else:
            config = Config({**config.to_dict(), "auth.required": True})
            log.info("server.remote is on: authentication is required")
    if config["auth.required"] and not config["auth.users_file"]:
        raise RuntimeError("auth.required needs auth.users_file (see `rexec users add`)")
    identity = shell_identity(config)  # fails early when the account is missing
    log.info("R shells run as %s", identity.name if identity else "the server's own user")
    return config


class ComputeServer:
    def __init__(self, config: Config) -> None:
        config = secure(config)
        self.config = config
        self.pool = Pool(config, HANDLER, self._on_message)
        self.logins = Logins(config)
        self._listeners: list[socket.socket] = []
        self._tls_listeners: list[socket.socket] = []
        self.control = ControlServer(config, self.pool)
        self.reload_config: Any = None  # () -> Config, for SIGHUP
        self.tls_context = tls.make_context(config)
        self._stopped = asyncio.Event()
        self._ids = itertools.count(1)
        self._connections: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int:
        return self._listeners[0].getsockname()[1]

    def _hosts(self) -> list[str]:
        if self.config["server.remote"]:
            return ["0.0.0.0", "::"]
        host = self.config["server.host"]
        return [host, "::1"] if host == "127.0.0.1" else [host]

    def _listen(self, port: int) -> list[socket.socket]:
        """One listening socket per address; the first must work, IPv6 extras may not."""
        listeners = []
        for i, host in enumerate(self._hosts()):
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            listener = socket.socket(family, socket.SOCK_STREAM)
            try:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                listener.bind((host, port if i == 0 else listeners[0].getsockname()[1]))
                listener.listen(128)
            except OSError as exc:
                listener.close()
                if i == 0:
                    raise
                log.info("not listening on %s: %s", host, exc)
                continue
            listener.setblocking(False)
            listeners.append(listener)
        return listeners

    async def start(self) -> None:
        if (self.config["tls.port"] or self.config["tls.switch"]) and self.tls_context is None:
            raise RuntimeError("tls.port and tls.switch need tls.cert (and tls.key)")
        await self.pool.start()
        host = self.config["server.host"]
        self._listeners = self._listen(self.config["server.port"])
        if self.config["tls.port"]:
            self._tls_listeners = self._listen(self.config["tls.port"])
            log.info("TLS on %s:%d", host, self._tls_listeners[0].getsockname()[1])
        log.info(
            "rexec compute node listening on %s:%d (pool: %s, initial %d, max %d)",
            host,
            self.port,
            self.pool.mode,
            self.config["pool.initial"],
            self.config["pool.max"],
        )

    async def serve_forever(self) -> None:
        await self.start()
        await self.control.start()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, self.stop)
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGHUP, lambda: self._track(self.reload()))
        accepts = [
            asyncio.ensure_future(self._accept_loop(listener, tls))
            for listeners, tls in ((self._listeners, False), (self._tls_listeners, True))
            for listener in listeners
        ]
        await self._stopped.wait()
        for accept in accepts:
            accept.cancel()
        await self.close()

    def stop(self) -> None:
        self._stopped.set()

    async def reload(self) -> None:
        """SIGHUP: read the configuration again; running sessions are not touched.
        Listening addresses and ports stay as they are until a restart."""
        if self.reload_config is None:
            log.warning("SIGHUP: no configuration to reload")
            return
        try:
            config = secure(self.reload_config())
        except Exception as exc:
            log.error("SIGHUP: configuration not reloaded: %s", exc)
            return
        self.config = config
        self.logins = Logins(config)
        await self.pool.reload(config)
        log.info(
            "configuration reloaded (pool: initial %d, max %d)",
            config["pool.initial"],
            config["pool.max"],
        )

    async def close(self) -> None:
        await self.control.close()
        for listener in self._listeners + self._tls_listeners:
            listener.close()
        for task in list(self._connections):
            task.cancel()
        await self.pool.stop(self.config["server.shutdown_grace"])
        log.info("rexec compute node stopped")

    async def _accept_loop(self, listener: socket.socket, tls: bool) -> None:
        loop = asyncio.get_running_loop()
        while True:
            client, address = await loop.sock_accept(listener)
            self._track(self._connect(client, address, tls))

    def _track(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _connect(self, client: socket.socket, address: Any, tls: bool = False) -> None:
        session = f"s{next(self._ids)}"
        peer = f"{address[0]}:{address[1]}"
        try:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if not tls:  # greet at once: the client can send while a shell is handed over
                client.send(self.logins.greeting()[0])
            deadline = asyncio.get_running_loop().time() + self.config["pool.wait_timeout"]
            while True:
                remaining = deadline - asyncio.get_running_loop().time()
                shell = await self.pool.acquire(max(remaining, 0.0))
                if shell is None or shell.sock.fileno() != -1:
                    break
            if shell is None:
                stats = self.pool.stats()
                log.warning(
                    "session=%s client=%s event=refused reason='no R shell free within %.1fs' "
                    "busy=%d max=%d",
                    session,
                    peer,
                    self.config["pool.wait_timeout"],
                    stats.busy,
                    self.config["pool.max"],
                )
                return
            if tls:
                assert self.tls_context is not None
                inner, outer = socket.socketpair()
                self.pool.hand_over(shell, inner, session)
                inner.close()
                log.info(
                    "session=%s client=%s event=accepted tls=yes shell=%d", session, peer, shell.pid
                )
                self._track(self._relay(client.dup(), outer))
                return
            self.pool.hand_over(shell, client, session, greeted=True)
            log.info("session=%s client=%s event=accepted shell=%d", session, peer, shell.pid)
        except OSError as exc:
            log.warning("session %s from %s failed: %s", session, peer, exc)
        finally:
            client.close()

    async def _relay(self, client: socket.socket, inner: socket.socket) -> None:
        assert self.tls_context is not None
        try:
            await tls.relay(client, inner, self.tls_context)
        except (OSError, TimeoutError) as exc:
            log.warning("TLS connection failed: %s", exc)
        finally:
            client.close()
            inner.close()

    async def _on_message(
        self, shell: Shell, message: dict[str, Any], fds: list[int]
    ) -> dict[str, Any] | None:
        op = message.get("op")
        if op == "tls":  # CMD_switch: the shell hands the client socket over for TLS
            if not fds or self.tls_context is None:
                for fd in fds:
                    os.close(fd)
                return {"op": "tls", "ok": False}
            client = socket.socket(fileno=fds[0])
            inner, outer = socket.socketpair()
            shell.send({"op": "tls", "ok": True}, [inner.fileno()])
            inner.close()
            self._track(self._relay(client, outer))
            log.info("session %s switched to TLS", shell.session)
            return None
        if op == "login":
            peer = str(message.get("peer", ""))
            ok = await self.logins.check(
                str(message.get("user", "")), str(message.get("password")), peer
            )
            log.info("session %s login %r: %s", shell.session, message.get("user"), ok)
            return {"op": "login", "ok": ok}
        if op == "cancel":
            target = self.pool.busy_shell(message.get("pid"))
            if target is not None:
                os.kill(target.pid, signal.SIGINT)
                log.info(
                    "session %s cancelled the evaluation of session %s",
                    shell.session,
                    target.session,
                )
            return {"op": "cancel", "ok": target is not None}
        if op == "control":
            ok = await self.pool.apply_control(str(message["kind"]), str(message["text"]))
            log.warning("session %s ran server-wide %s: %s", shell.session, message["kind"], ok)
            return {"op": "control", "ok": ok}
        if op == "shutdown":
            log.warning("session %s asked the server to shut down", shell.session)
            self.stop()
            return None
        log.warning("unknown message from shell %d: %r", shell.pid, op)
        return None


def serve(config: Config, reload_config: Any = None) -> None:
    """Run a compute node until SIGINT/SIGTERM; ``reload_config()`` is used on SIGHUP."""
    logging.basicConfig(
        level=config["log.level"].upper(),
        format="%(asctime)s %(levelname)s [%(name)s] %(message)s",
    )
    try:
        server = ComputeServer(config)
    except RuntimeError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None
    server.reload_config = reload_config
    asyncio.run(server.serve_forever())
