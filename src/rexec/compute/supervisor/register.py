"""Self-registration: a compute node tells the web tier where it is and keeps telling it.

With ``register.url`` set, ``rexec serve`` registers itself once its pool is up
(:class:`Registration`): ``POST /computenodes/register`` on a web node, authenticated by
the web nodes' registration token (``Authorization: Bearer``, read from
``register.token_file``), with the address web nodes reach it at (``register.host``,
``server.port``), its ``pool.max`` and the QAP login they are to use (``register.user``,
``register.password_file``; the web node keeps the password sealed). The registry
upserts by host and port, so a restart updates the node's record instead of adding one.
It registers again every ``register.interval`` seconds (an Owner's removal, a new
database, a changed ``pool.max`` are made good); while no web node answers, attempts
back off from 1 s up to that interval. Nothing here blocks or stops the node: every
failure is a log line and a later attempt.

On SIGTERM the node drains itself (``POST /computenodes/register/drain``): web nodes
send it no new work while it stops, and its next registration undrains it (a drain an
Owner made stays).

Where R shells run as the server's own user (started as non-root, as in a container)
they can read the token file; there the registration runs in a process of its own that
shells cannot reach: ``rexec register`` (:func:`run_beside`, a Kubernetes sidecar
container), which asks the node's ``/readyz`` (metrics.port) whether it is up and for
its ``pool.max``.

httpx is imported with this module, when ``rexec serve`` starts: nothing is imported
later, after a worker may have lost access to the interpreter's files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from rexec.config import Config

log = logging.getLogger("rexec.compute.register")
logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise

#: Seconds one request to a web node may take (registering runs the web node's first
#: health check of this node, which waits up to its compute_connect_timeout).
TIMEOUT = 15.0
#: Seconds a stopping node spends telling the web tier it drains.
DRAIN_TIMEOUT = 5.0
FIRST_BACKOFF = 1.0

PoolMax = Callable[[], Awaitable[int | None]]


class RegistrationError(RuntimeError):
    """The register.* settings cannot work (a missing file, a bad URL)."""


def _read(path: str, key: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise RegistrationError(f"{key} {path!r}: {exc.strerror or exc}") from None
    if not text:
        raise RegistrationError(f"{key} {path!r} is empty")
    return text


def urls_of(config: Config) -> list[str]:
    urls = [u.rstrip("/") for u in config["register.url"].replace(",", " ").split()]
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise RegistrationError(f"register.url: {url!r} is not an http(s) URL")
    return urls


def check(config: Config) -> None:
    """Refuse settings that can never work, at start (not at every attempt)."""
    if not urls_of(config):
        raise RegistrationError("register.url is empty")
    if not config["register.token_file"]:
        raise RegistrationError("register.url needs register.token_file")
    _read(config["register.token_file"], "register.token_file")
    if bool(config["register.user"]) != bool(config["register.password_file"]):
        raise RegistrationError("register.user and register.password_file go together")
    if config["register.password_file"]:
        _read(config["register.password_file"], "register.password_file")
    if config["register.interval"] <= 0:
        raise RegistrationError("register.interval must be more than 0")


class Registration:
    """Register the node described by ``config`` and keep it registered.

    ``pool_max()`` is the node's ``pool.max`` now, or None while it is not ready (not
    up yet, stopping, restarting): then nothing is sent.
    """

    def __init__(self, config: Config, pool_max: PoolMax) -> None:
        check(config)
        self.config = config
        self.pool_max = pool_max
        self.urls = urls_of(config)
        self.host = config["register.host"] or socket.gethostname()
        #: The port web nodes reach: the TLS port when the node serves TLS only.
        self.port = config["tls.port"] if config["tls.only"] else config["server.port"]
        #: The registry's answer to the last registration that went through.
        self.last: dict[str, Any] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    def _headers(self) -> dict[str, str]:
        token = _read(self.config["register.token_file"], "register.token_file")
        return {"Authorization": f"Bearer {token}"}

    def body(self, pool_max: int) -> dict[str, Any]:
        user = self.config["register.user"] or None
        password = (
            _read(self.config["register.password_file"], "register.password_file") if user else None
        )
        return {
            "host": self.host,
            "port": self.port,
            "user": user,
            "password": password,
            "poolMax": pool_max,
            "tls": bool(self.config["tls.only"]),  # then port is the TLS port
        }

    async def _post(self, path: str, body: dict[str, Any]) -> tuple[str, httpx.Response]:
        """POST to the first web node that answers; OSError-like failures of every one
        are raised together."""
        failures = []
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            for url in self.urls:
                try:
                    reply = await client.post(f"{url}{path}", json=body, headers=self._headers())
                except httpx.HTTPError as exc:
                    failures.append(f"{url}: {exc!s} ({type(exc).__name__})")
                    continue
                if reply.status_code >= 500:  # that web node is not well: try another
                    failures.append(f"{url}: {reply.status_code} {_message(reply)}")
                    continue
                return url, reply
        raise ConnectionError("; ".join(failures) or "no register.url")

    async def register(self) -> bool:
        """One registration (when the node is ready); whether it went through."""
        pool_max = await self.pool_max()
        if pool_max is None:
            log.info("event=register-wait reason='the node is not ready'")
            return False
        try:
            url, reply = await self._post("/computenodes/register", self.body(pool_max))
        except (ConnectionError, RegistrationError) as exc:
            log.warning("event=register-failed node=%s reason=%r", self.name, str(exc))
            return False
        if reply.status_code not in (200, 201):
            reason = {
                401: "the web node refused the registration token",
                404: "the web node takes no registrations (no nodes.registration_token)",
            }.get(reply.status_code, "")
            log.error(
                "event=register-refused node=%s web=%s status=%d reason=%r",
                self.name,
                url,
                reply.status_code,
                reason or _message(reply),
            )
            return False
        answer = reply.json()
        changed = self.last is None or (self.last.get("id"), self.last.get("state")) != (
            answer.get("id"),
            answer.get("state"),
        )
        self.last = answer
        (log.info if changed else log.debug)(
            "event=registered node=%s web=%s id=%s state=%s pool_max=%d%s",
            self.name,
            url,
            answer.get("id"),
            answer.get("state"),
            pool_max,
            f" last_error={answer['lastError']!r}" if answer.get("lastError") else "",
        )
        return True

    async def run(self) -> None:
        """Register, then again every register.interval; back off while it fails."""
        delay = FIRST_BACKOFF
        while True:
            try:
                done = await self.register()
            except Exception:  # a defect here costs a registration, never the node
                log.exception("event=register-failed node=%s", self.name)
                done = False
            interval = self.config["register.interval"]
            if done:
                delay = FIRST_BACKOFF
                await asyncio.sleep(interval)
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self.run())

    async def drain(self) -> bool:
        """Tell the web tier this node stops: no new work goes here until it registers
        again. Bounded by DRAIN_TIMEOUT; whether a web node took it."""
        try:
            url, reply = await asyncio.wait_for(
                self._post("/computenodes/register/drain", {"host": self.host, "port": self.port}),
                DRAIN_TIMEOUT,
            )
        except (ConnectionError, RegistrationError, TimeoutError) as exc:
            log.warning("event=drain-failed node=%s reason=%r", self.name, str(exc) or "timeout")
            return False
        if reply.status_code != 200:
            log.warning(
                "event=drain-failed node=%s web=%s status=%d reason=%r",
                self.name,
                url,
                reply.status_code,
                _message(reply),
            )
            return False
        log.info("event=drained node=%s web=%s (%s)", self.name, url, _message(reply))
        return True

    async def stop(self) -> None:
        """Stop re-registering and drain (also when no registration went through since
        this process started: an earlier one's may still be in the registry)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.drain()


def _message(reply: httpx.Response) -> str:
    try:
        return str(reply.json().get("message") or reply.json().get("detail") or reply.text)
    except (ValueError, AttributeError):
        return reply.text[:200]


# ---------------------------------------------------------------- beside the node


def ready_url(config: Config) -> str:
    """The node's own /readyz (its metrics endpoint), as a process beside it reaches it."""
    port = config["metrics.port"]
    if not port:
        raise RegistrationError("rexec register needs the node's metrics.port (its /readyz)")
    host = config["metrics.host"]
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{host}]:{port}/readyz" if ":" in host else f"http://{host}:{port}/readyz"


def pool_max_from(url: str) -> PoolMax:
    """``pool_max()`` read from the node's /readyz: its pool.max when it is ready."""

    async def pool_max() -> int | None:
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                reply = await client.get(url)
        except httpx.HTTPError as exc:
            log.debug("readyz %s: %s", url, exc)
            return None
        if reply.status_code != 200:
            return None
        try:
            return int(reply.json()["pool"]["max"])
        except (ValueError, KeyError, TypeError):
            log.error("readyz %s: unexpected answer %r", url, reply.text[:200])
            return None

    return pool_max


async def run_beside(config: Config, readiness: str | None = None, drain: bool = False) -> int:
    """``rexec register``: keep the node ``config`` describes registered from a process
    of its own until SIGTERM or SIGINT, then drain it. With ``drain``, drain once and
    return (0 when a web node took it)."""
    registration = Registration(config, pool_max_from(readiness or ready_url(config)))
    if drain:
        return 0 if await registration.drain() else 1
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stopped.set)
    log.info(
        "registering %s with %s (every %.0f s)",
        registration.name,
        " ".join(registration.urls),
        config["register.interval"],
    )
    registration.start()
    await stopped.wait()
    await registration.stop()
    return 0
