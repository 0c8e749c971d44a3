"""``rexec serve``: accept QAP1 connections and give each one an R shell from the pool.

This process never touches R. It accepts, greets, answers a login (the users file is
read here only), a switch to TLS or a cancel itself, and waits — holding no shell — until
the first ordinary request has arrived (:mod:`.admission`); then it takes an idle shell
(waiting up to ``pool.wait_timeout``) and passes the socket to it. Shells are hostile:
what they ask of this process (a login later in the session, a cancel, a detach, the
server-wide control commands, a shutdown) is authorised here from this process' own
record of each shell's connection (:meth:`ComputeServer._on_message`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import signal
import socket
import time
from typing import Any

from rexec.compute.channel import PEEK_LIMIT
from rexec.compute.identity import shell_identity
from rexec.compute.supervisor import tls
from rexec.compute.supervisor.admission import SMALL_REQUEST, Gone, Pending, TlsPending
from rexec.compute.supervisor.login import Logins
from rexec.compute.supervisor.metrics import Counts, MetricsServer
from rexec.compute.supervisor.pool import Pool, Shell
from rexec.compute.supervisor.pools import MAX_DEFINITION, PoolSpec, PoolSpecError
from rexec.compute.supervisor.sizing import sized
from rexec.compute.supervisor.status import ControlServer
from rexec.config import Config
from rexec.protocol import framing
from rexec.protocol.constants import DT, HEADER_LENGTH, POOL_COMMANDS, Cmd, Err
from rexec.protocol.errors import ProtocolError
from rexec.protocol.params import Param, decode_params, encode_params, string_param

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
        config = secure(sized(config))
        self.config = config
        self.pool = Pool(config, HANDLER, self._on_message)
        self.logins = Logins(config)
        self._listeners: list[socket.socket] = []
        self._tls_listeners: list[socket.socket] = []
        self.control = ControlServer(config, self.pool)
        self.reload_config: Any = None  # () -> Config, for SIGHUP
        self.tls_context = tls.make_context(config)
        if config["tls.only"] and not (config["tls.port"] and self.tls_context):
            raise RuntimeError("tls.only needs tls.port and tls.cert (then the only port)")
        self._stopped = asyncio.Event()
        self._up = asyncio.Event()
        self._ids = itertools.count(1)
        self._connections: set[asyncio.Task[Any]] = set()
        self._pending: dict[str, int] = {}  # connections without a shell, by address
        self._pending_total = 0
        self.pools: dict[str, Pool] = {}  # named pools (a published service's version)
        self.specs: dict[str, PoolSpec] = {}
        self.control.named = self.pools
        self.counts = Counts()
        self.metrics = MetricsServer(self)
        self.registration = self._registration(config)

    def _registration(self, config: Config) -> Any:
        """The self-registration with the web tier (register.url), or None. Imported
        here, at start: nothing of it is imported later."""
        if not config["register.url"]:
            return None
        from rexec.compute.supervisor.register import Registration, RegistrationError

        if shell_identity(config) is None:
            log.warning(
                "register.token_file is readable by R code here (R shells run as the "
                "server's own user): register from a process of its own (`rexec "
                "register`) or start the server as root, shells as another account"
            )
        try:
            return Registration(config, self._pool_max_when_serving)
        except RegistrationError as exc:
            raise RuntimeError(str(exc)) from None

    async def _pool_max_when_serving(self) -> int | None:
        return self.config["pool.max"] if self.serving else None

    @property
    def serving(self) -> bool:
        """Up (pool started, listening) and not stopping."""
        return self._up.is_set() and not self._stopped.is_set()

    @property
    def stopping(self) -> bool:
        return self._stopped.is_set()

    @property
    def port(self) -> int:
        """The plain port (the TLS port with ``tls.only``)."""
        return (self._listeners or self._tls_listeners)[0].getsockname()[1]

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
        await self.metrics.start()
        host = self.config["server.host"]
        if not self.config["tls.only"]:
            self._listeners = self._listen(self.config["server.port"])
        if self.config["tls.port"]:
            self._tls_listeners = self._listen(self.config["tls.port"])
            log.info("TLS on %s:%d", host, self._tls_listeners[0].getsockname()[1])
        self.pool.listeners = self._direct_listeners(self.config)
        self.pool.on_handback = self._handback
        await self.pool.start()
        log.info(
            "rexec compute node listening on %s:%d (pool: %s, initial %d, max %d)",
            host,
            self.port,
            self.pool.mode,
            self.config["pool.initial"],
            self.config["pool.max"],
        )

    def _direct_listeners(self, config: Config) -> list[socket.socket]:
        """The listeners idle shells accept from (pool.direct_accept): the plain port's,
        unless every connection needs this process before its first ordinary request: a
        required login (only this process reads the users file), a switch to TLS. A
        connection that starts with an optional login or a pool command is handed back
        by the shell that accepted it."""
        needs_server = config["auth.required"] or self.tls_switch
        if not config["pool.direct_accept"] or needs_server:
            return []
        return list(self._listeners)

    def _handback(self, sock: socket.socket) -> None:
        """A connection an idle shell accepted and greeted, silent so far: admit it here."""
        try:
            address = sock.getpeername()
        except OSError:
            sock.close()
            return
        self._track(self._connect(sock, address, tls_port=False, greeted=True))

    async def serve_forever(self) -> None:
        # Handlers first: shells may serve connections before start() returns.
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, self.stop)
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGHUP, lambda: self._track(self._reload_when_up()))
        await self.start()
        await self.control.start()
        self._up.set()
        if self.registration is not None:
            self.registration.start()
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

    async def _reload_when_up(self) -> None:
        await self._up.wait()  # a SIGHUP during start-up is acted on once it is done
        await self.reload()

    async def reload(self) -> None:
        """SIGHUP: read the configuration again; running sessions are not touched.
        Listening addresses and ports stay as they are until a restart. The TLS files
        (``tls.cert``, ``tls.key``, ``tls.ca``, ``tls.crl``) and ``tls.client`` are read
        again, so a rotated certificate or a new CRL serves new connections; TLS stays on
        while it is served."""
        if self.reload_config is None:
            log.warning("SIGHUP: no configuration to reload")
            return
        try:
            config = secure(sized(self.reload_config()))
            context = tls.make_context(config)
            serving_tls = bool(self._tls_listeners) or self.tls_switch
            if context is None and serving_tls:
                raise RuntimeError("TLS is served: tls.cert stays until a restart")
        except Exception as exc:
            log.error("SIGHUP: configuration not reloaded: %s", exc)
            return
        self.config = config
        self.tls_context = context
        self.logins = Logins(config)
        self.pool.listeners = self._direct_listeners(config)
        await self.pool.reload(config)
        for name, pool in list(self.pools.items()):
            await pool.reload(self.specs[name].config(config))
        log.info(
            "configuration reloaded (pool: initial %d, max %d)",
            config["pool.initial"],
            config["pool.max"],
        )

    async def close(self) -> None:
        # Drained in the registry while the listeners close and running requests finish.
        draining = (
            asyncio.ensure_future(self.registration.stop())
            if self.registration is not None
            else None
        )
        await self.control.close()
        await self.metrics.close()
        for listener in self._listeners + self._tls_listeners:
            listener.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(
            self.pool.stop(self.config["server.shutdown_grace"]),
            *(p.stop(self.config["server.shutdown_grace"]) for p in self.pools.values()),
        )
        if draining is not None:
            await draining
        log.info("rexec compute node stopped")

    async def _accept_loop(self, listener: socket.socket, tls_port: bool) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                if listener in self.pool.listeners:  # idle shells accept; this process
                    accepted = await self._accept_when_no_shell_is_idle(listener)
                    if accepted is None:
                        continue
                    client, address = accepted
                else:
                    client, address = await loop.sock_accept(listener)
            except OSError as exc:  # out of descriptors, say: do not spin, do not die
                log.error("accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            self.counts.accepted += 1
            peer = str(address[0])
            if self._pending_total >= self.config["server.max_pending"] or self._pending.get(
                peer, 0
            ) >= max(1, self.config["server.max_pending"] // 4):
                log.warning(
                    "client=%s event=refused reason='too many connections without a shell' "
                    "pending=%d",
                    peer,
                    self._pending_total,
                )
                self.counts.refuse("too_many_pending")
                client.close()
                continue
            self._track(self._connect(client, address, tls_port))

    async def _accept_when_no_shell_is_idle(
        self, listener: socket.socket
    ) -> tuple[socket.socket, Any] | None:
        """A connection accepted here because no shell is idle to accept it, or None
        (a shell became idle, or took the connection first). The accept itself is a
        plain non-blocking call, never a cancelled one, so no connection is dropped."""
        await self.pool.no_idle.wait()
        loop = asyncio.get_running_loop()
        readable = loop.create_future()
        loop.add_reader(listener.fileno(), lambda: readable.done() or readable.set_result(None))
        idle = asyncio.ensure_future(self.pool.has_idle.wait())
        try:
            await asyncio.wait({readable, idle}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            loop.remove_reader(listener.fileno())
            idle.cancel()
        if self.pool.has_idle.is_set():
            return None
        try:
            client, address = listener.accept()
        except (BlockingIOError, InterruptedError):
            return None
        client.setblocking(False)
        return client, address

    def _track(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _connect(
        self, client: socket.socket, address: Any, tls_port: bool, greeted: bool = False
    ) -> None:
        session = f"s{next(self._ids)}"
        peer = str(address[0])
        where = f"{address[0]}:{address[1]}"
        self._pending[peer] = self._pending.get(peer, 0) + 1
        self._pending_total += 1
        conn: Connection = Pending(client, peer)
        try:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls_port:
                assert self.tls_context is not None
                conn = await conn.start_tls(self.tls_context)
            admitted = await self._admit(conn, session, where, greeted)
            if admitted is None:
                return
            conn, user, pool, parked = admitted
            shell = parked or await self._shell_for(session, where, pool)
            if shell is None:
                return
            sock = conn.take(self._track)
            try:
                if parked is not None:
                    pool.resume(shell, sock, session, peer)
                else:
                    pool.hand_over(shell, sock, session, peer, user)
            finally:
                if conn.is_tls:
                    sock.close()
            log.info(
                "session=%s client=%s event=%s shell=%d tls=%s user=%s",
                session,
                where,
                "resumed" if parked is not None else "accepted",
                shell.pid,
                "yes" if conn.is_tls else "no",
                user or "-",
            )
        except Gone as exc:
            if exc.partial:
                with contextlib.suppress(Gone):
                    await conn.send(framing.error(Err.CONN_BROKEN))
            log.info("session=%s client=%s event=closed reason=%r", session, where, exc.reason)
        except OSError as exc:
            log.warning("session=%s client=%s event=failed reason=%r", session, where, str(exc))
        except Exception:  # a defect here ends this connection, never the server
            log.exception("session=%s client=%s event=failed", session, where)
        finally:
            self._pending[peer] -= 1
            if not self._pending[peer]:
                del self._pending[peer]
            self._pending_total -= 1
            conn.close()

    async def _admit(
        self, conn: Connection, session: str, where: str, greeted: bool = False
    ) -> tuple[Connection, str | None, Pool, Shell | None] | None:
        """Greet (unless a shell did, before handing the connection back), answer what
        needs no R (login, switch, cancel) and wait for the first ordinary request to
        arrive whole. The connection (TLS after a switch) and the logged-in user (None:
        nobody), or None when the connection is over."""
        greeting, salt = self.logins.greeting()
        if not greeted:
            await conn.send(greeting)
        else:
            salt = None  # a shell greets only when no login is required: no crypt salt
        config = self.config
        user: str | None = None
        pool = self.pool
        for _ in range(_ADMISSION_REQUESTS):
            deadline = time.monotonic() + config["server.handshake_timeout"]
            header = framing.unpack_header(await conn.buffered(HEADER_LENGTH, deadline))
            cmd, length = header.cmd, header.length
            if cmd in (Cmd.LOGIN, Cmd.SWITCH, Cmd.CANCEL) and length <= SMALL_REQUEST:
                await conn.read(HEADER_LENGTH, deadline)
                params = _params(await conn.read(length, deadline) if length else b"")
                if cmd == Cmd.LOGIN:
                    answer, user, over = await self._login(params, user, conn.peer, salt)
                    await conn.send(answer)
                    self.counts.login(answer == _OK)
                    log.info(
                        "session=%s client=%s event=login user=%s ok=%s",
                        session,
                        where,
                        user or "-",
                        user is not None,
                    )
                    if over:
                        return None
                elif cmd == Cmd.CANCEL:
                    await conn.send(self._cancel(params, user, session))
                elif self._may_switch(conn, params):
                    await conn.send(_OK)
                    assert self.tls_context is not None
                    conn = await conn.start_tls(self.tls_context)
                    log.info("session=%s client=%s event=tls-switch", session, where)
                else:
                    await conn.send(framing.error(_switch_error(params, self.tls_switch)))
                continue
            if cmd == Cmd.ATTACH_SESSION and length <= SMALL_REQUEST:
                await conn.read(HEADER_LENGTH, deadline)
                key = _params(await conn.read(length, deadline) if length else b"")
                parked = self._parked(key, user)
                if parked is False:  # not a key: as Rserve, which has no such command
                    await conn.send(framing.error(Err.INV_CMD))
                    continue
                if parked is None:
                    log.warning("session=%s client=%s event=attach-refused", session, where)
                    await conn.send(_failure(Err.INV_PAR, "no parked session with that key"))
                    continue
                parked.state = "resuming"  # no second attach finds it (nothing awaits below)
                return conn, user, self._pool_of(parked), parked
            if cmd in POOL_COMMANDS and length <= MAX_DEFINITION + config["pools.max_data"] + 64:
                await conn.read(HEADER_LENGTH, deadline)
                params = _params(await conn.read(length, deadline) if length else b"")
                answer, chosen = await self._pool_command(cmd, params, user, session, where)
                pool = chosen or pool
                await conn.send(answer)
                continue
            if config["auth.required"] and user is None:
                await conn.send(framing.error(Err.AUTH_FAILED))
                self.counts.refuse("no_login")
                log.info("session=%s client=%s event=refused reason='no login'", session, where)
                return None
            await conn.buffered(HEADER_LENGTH + min(length, PEEK_LIMIT), deadline)
            return conn, user, pool, None
        log.info("session=%s client=%s event=closed reason='too many requests'", session, where)
        return None

    async def _pool_command(
        self, cmd: int, params: list[Param], user: str | None, session: str, where: str
    ) -> tuple[bytes, Pool | None]:
        """rexec's pool commands: (the reply, the pool a usePool chose). Using a named
        pool needs what a session needs (a verified login where a users file exists);
        defining, removing and listing pools need a verified login always."""
        text = bytes(params[0].value) if params and params[0].dt == DT.STRING else None
        if text is None:
            return framing.error(Err.INV_PAR), None
        text = text.split(b"\x00")[0]
        verified = user is not None
        if cmd == Cmd.USE_POOL:
            if self.logins.users is not None and not verified:
                return framing.error(Err.AUTH_FAILED), None
            chosen = self.pools.get(text.decode("utf-8", "replace"))
            if chosen is None:
                return _failure(Err.INV_PAR, "no such pool"), None
            log.info("session=%s client=%s event=use-pool pool=%s", session, where, text.decode())
            return _OK, chosen
        if not verified:
            log.warning("session=%s client=%s event=pool-refused reason='no login'", session, where)
            return framing.error(Err.AUTH_FAILED), None
        if cmd == Cmd.POOL_STATUS:
            return _string_reply(json.dumps(self.pool_status())), None
        if cmd == Cmd.REMOVE_POOL:
            name = text.decode("utf-8", "replace")
            removed = self.pools.pop(name, None)
            if removed is None:
                return _failure(Err.INV_PAR, "no such pool"), None
            log.info("event=pool-removed pool=%s user=%s", name, user)
            self._track(removed.stop(self.config["server.shutdown_grace"]))
            return _OK, None
        try:
            spec = PoolSpec.parse(text, self.config)
        except PoolSpecError as exc:
            return _failure(Err.INV_PAR, str(exc)), None
        if len(params) > 1:  # the data its template restores (a service's snapshot)
            if params[1].dt != DT.BYTESTREAM:
                return _failure(Err.INV_PAR, "a pool's data is a byte stream"), None
            try:
                spec = spec.with_data(bytes(params[1].value), self.config)
            except OSError as exc:
                log.error("event=pool-failed pool=%s reason=%r", spec.name, str(exc))
                return _failure(Err.UNAVAILABLE, f"cannot stage the pool's data: {exc}"), None
        try:
            return await self._define_pool(spec, user), None
        finally:
            spec.discard_data()  # the template has read it (or failed)

    async def _define_pool(self, spec: PoolSpec, user: str | None) -> bytes:
        """Start a named pool (its template runs the start-up code and ``init`` once);
        a pool of that name already running is replaced once the new one is ready."""
        if spec.name not in self.pools and len(self.pools) >= self.config["pools.max"]:
            return _failure(Err.UNAVAILABLE, f"at most {self.config['pools.max']} pools")
        pool = Pool(spec.config(self.config), HANDLER, self._on_message)
        pool.name = spec.name
        try:
            await pool.start()
        except Exception as exc:
            await pool.stop(0)
            log.error("event=pool-failed pool=%s reason=%r", spec.name, str(exc))
            return _failure(Err.R_ERR, f"the pool's template did not start: {exc}")
        old = self.pools.get(spec.name)
        self.pools[spec.name] = pool
        self.specs[spec.name] = spec
        if old is not None:
            self._track(old.stop(self.config["server.shutdown_grace"]))
        log.info(
            "event=pool-defined pool=%s initial=%d max=%d user=%s",
            spec.name,
            spec.initial,
            spec.max,
            user,
        )
        return _OK

    def pool_status(self) -> dict[str, Any]:
        """Every pool's numbers: the default one as "", named ones by name."""
        pools = {"": dataclasses.asdict(self.pool.stats())}
        for name, pool in self.pools.items():
            pools[name] = dataclasses.asdict(pool.stats())
        return {"pools": pools}

    async def _shell_for(self, session: str, where: str, pool: Pool) -> Shell | None:
        deadline = asyncio.get_running_loop().time() + self.config["pool.wait_timeout"]
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            shell = await pool.acquire(max(remaining, 0.0))
            if shell is None or shell.sock.fileno() != -1:
                break
        if shell is None:
            self.counts.refuse("no_shell", pool)
            stats = pool.stats()
            log.warning(
                "session=%s client=%s event=refused reason='no R shell free within %.1fs' "
                "busy=%d max=%d pool=%s",
                session,
                where,
                self.config["pool.wait_timeout"],
                stats.busy,
                stats.max,
                pool.name or "-",
            )
        return shell

    @property
    def tls_switch(self) -> bool:
        return bool(self.config["tls.switch"] and self.tls_context is not None)

    def _may_switch(self, conn: Connection, params: list[Param]) -> bool:
        return (
            self.tls_switch
            and not conn.is_tls
            and bool(params)
            and params[0].dt == DT.STRING
            and bytes(params[0].value) == b"TLS"
        )

    async def _login(
        self, params: list[Param], user: str | None, peer: str, salt: str | None
    ) -> tuple[bytes, str | None, bool]:
        """A login before the connection has a shell: (reply, user, connection over)."""
        if not params or params[0].dt != DT.STRING:
            return framing.error(Err.INV_PAR), user, False
        if user is not None:  # a second login is an invalid command in Rserve
            return framing.error(Err.INV_CMD), user, False
        name, password = _credentials(params[0].value)
        if await self.logins.check(name, password, peer, salt=salt):
            return _OK, self._verified(name), False
        if self.config["auth.required"]:
            return framing.error(Err.AUTH_FAILED), None, True
        return framing.error(Err.INV_CMD), None, False

    def _pool_of(self, shell: Shell) -> Pool:
        return next((p for p in self.pools.values() if shell in p.shells), self.pool)

    def _parked(self, params: list[Param], user: str | None) -> Shell | bool | None:
        """attachSession's shell: the parked one with this key (and, where a users file
        exists, of this user); None for no such session; False when the request is not
        a key at all (then answered as by Rserve, which has no attachSession command)."""
        if len(params) != 1 or params[0].dt != DT.BYTESTREAM or len(params[0].value) != 32:
            return False
        key = bytes(params[0].value)
        for pool in (self.pool, *self.pools.values()):
            shell = pool.parked_shell(key)
            if shell is not None:
                if self.logins.users is not None and (user is None or shell.user != user):
                    return None
                return shell
        return None

    def _verified(self, name: str) -> str | None:
        """The user a successful login makes a connection: nobody without a users file
        (a login then succeeds, as in Rserve, but proves nothing, so it opens none of
        what needs an authenticated user: shutdown, control, detach with auth on)."""
        return name if self.logins.users is not None else None

    def _cancel(self, params: list[Param], user: str | None, who: str) -> bytes:
        if not params or params[0].dt != DT.INT:
            return framing.error(Err.INV_PAR)
        return _OK if self._interrupt(params[0].value, user, who) else framing.error(Err.INV_PAR)

    def _interrupt(self, pid: int, user: str | None, who: str) -> bool:
        """CMD_cancel: SIGINT the busy shell ``pid``. With authentication on, and always
        for a named pool's shell (a service's), only a session of the same user may be
        cancelled."""
        target = self.pool.busy_shell(pid)
        named = None
        if target is None:  # a shell of a named pool: only the user it serves may
            named = next((t for p in self.pools.values() if (t := p.busy_shell(pid))), None)
            target = named
        if target is None:
            return False
        strict = self.config["auth.required"] or named is not None
        if strict and (user is None or target.user != user):
            log.warning("session %s may not cancel session %s", who, target.session)
            return False
        os.kill(target.pid, signal.SIGINT)
        log.info("session %s cancelled the evaluation of session %s", who, target.session)
        return True

    async def _on_message(self, shell: Shell, message: dict[str, Any]) -> dict[str, Any] | None:
        """A request from a shell: authorised from what this process knows of the shell
        (its pid, its connection's peer and logged-in user) and the configuration, never
        from what the shell says of itself."""
        op = message["op"]
        config = self.config
        if op == "login":
            if shell.user is not None:
                return {"op": "login", "ok": False}
            ok = await self.logins.check(message["user"], message["password"], shell.peer)
            self.counts.login(ok)
            if ok:
                shell.user = self._verified(message["user"])
            log.info("session=%s event=login user=%s ok=%s", shell.session, message["user"], ok)
            return {"op": "login", "ok": ok}
        if op == "cancel":
            return {
                "op": "cancel",
                "ok": self._interrupt(message["pid"], shell.user, shell.session),
            }
        if op == "detach":
            allowed = not config["auth.required"] or shell.user is not None
            ok = allowed and self.pool.detach(shell)
            log.info("session=%s event=detach ok=%s", shell.session, ok)
            return {"op": "detach", "ok": ok}
        if op == "park":
            # With a users file only a logged-in session may park (the same user must
            # then resume it); without one the key alone resumes it, as a detach key.
            allowed = self.logins.users is None or shell.user is not None
            key = self._pool_of(shell).park(shell) if allowed else None
            log.info("session=%s event=park ok=%s", shell.session, key is not None)
            return {"op": "park", "ok": key is not None, "key": key.hex() if key else ""}
        if op == "shutdown":
            policy = config["server.shutdown"]
            if policy == "any" or (policy == "auth" and shell.user is not None):
                log.warning(
                    "session=%s event=shutdown user=%s: asked the server to shut down",
                    shell.session,
                    shell.user or "-",
                )
                asyncio.get_running_loop().call_later(0.1, self.stop)
                return {"op": "shutdown", "ok": True}
            log.warning("session=%s event=shutdown-refused policy=%s", shell.session, policy)
            return {"op": "shutdown", "ok": False}
        # control: ctrlEval, ctrlSource, ctrlShutdown
        if not config["control.enabled"] or shell.user is None:
            log.warning(
                "session=%s event=control-refused kind=%s user=%s",
                shell.session,
                message["kind"],
                shell.user or "-",
            )
            return {"op": "control", "ok": False, "denied": True}
        if message["kind"] == "shutdown":
            log.warning("session=%s event=control-shutdown user=%s", shell.session, shell.user)
            asyncio.get_running_loop().call_later(0.1, self.stop)
            return {"op": "control", "ok": True}
        if message["kind"] not in ("eval", "source"):
            return {"op": "control", "ok": False, "denied": True}
        ok = await self.pool.apply_control(message["kind"], message["text"])
        log.warning(
            "session=%s event=control kind=%s user=%s ok=%s",
            shell.session,
            message["kind"],
            shell.user,
            ok,
        )
        return {"op": "control", "ok": ok}


Connection = Pending | TlsPending
_ADMISSION_REQUESTS = 16
_OK = b"".join(bytes(chunk) for chunk in framing.ok())


def _failure(status: int, message: str) -> bytes:
    """An error reply carrying a message (a DT_STRING), for rexec's own commands."""
    return framing.error(status, payload=b"".join(bytes(c) for c in _encoded(message)))


def _string_reply(text: str) -> bytes:
    return b"".join(bytes(chunk) for chunk in framing.ok(_encoded(text)))


def _encoded(text: str) -> list[bytes]:
    return [bytes(chunk) for chunk in encode_params([string_param(text)])[0]]


def _params(payload: bytes) -> list[Param]:
    try:
        return decode_params(payload)
    except ProtocolError:
        return []


def _credentials(text: bytes) -> tuple[str, str]:
    """Rserve's login parameter: ``user\npassword`` (the password ends at \n or \r)."""
    name, _, rest = bytes(text).split(b"\x00")[0].partition(b"\n")
    password = rest.split(b"\n")[0].split(b"\r")[0]
    return name.decode("utf-8", "replace"), password.decode("utf-8", "replace")


def _switch_error(params: list[Param], enabled: bool) -> int:
    if not params or params[0].dt != DT.STRING:
        return Err.INV_PAR
    if bytes(params[0].value) != b"TLS":
        return Err.UNSUPPORTED_CMD
    return Err.DISABLED


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
