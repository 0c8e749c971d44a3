"""Logins, checked in the supervisor: the ID string a connection is greeted with, and the
check of a user's password against the users file with failed-login throttling.

This is the only place that reads the users file; shells never see it, and a shell that
relays a login gets a yes or no, never the file's contents.
"""

from __future__ import annotations

import asyncio
import logging

from rexec.compute.supervisor.users import UsersFile
from rexec.config import Config
from rexec.protocol import framing

log = logging.getLogger("rexec.compute")

#: After this many failed logins from one address, each further attempt is delayed.
FREE_FAILURES = 3
_MAX_TRACKED = 10000


class Logins:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.users = (
            UsersFile(config["auth.users_file"], plaintext=config["auth.plaintext"])
            if config["auth.users_file"]
            else None
        )
        self._failures: dict[str, tuple[int, float]] = {}

    def greeting(self) -> tuple[bytes, str | None]:
        """The 32-byte ID string for a new connection, and the crypt salt it carries."""
        auth = self.config["auth.required"]
        tls = bool(self.config["tls.switch"] and self.config["tls.cert"])
        return framing.id_string(auth=auth, plaintext=auth, tls=tls), None

    async def check(self, user: str, password: str, peer: str, salt: str | None = None) -> bool:
        """Check a login from ``peer`` (an address the supervisor saw, never one a shell
        claims); after 3 failures from one address each further attempt waits (doubling
        up to 8 s), so passwords cannot be guessed at speed."""
        failures, _last = self._failures.get(peer, (0, 0.0))
        if failures >= FREE_FAILURES:
            await asyncio.sleep(min(0.25 * 2 ** (failures - FREE_FAILURES), 8.0))
        if self.users is None:
            return True  # authentication optional and no users file: as Rserve
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(None, self.users.verify, user, password)
        if ok:
            self._failures.pop(peer, None)
        else:
            self._failures[peer] = (failures + 1, loop.time())
            if len(self._failures) > _MAX_TRACKED:  # bounded memory under a spray of addresses
                oldest = min(self._failures, key=lambda k: self._failures[k][1])
                del self._failures[oldest]
        return ok
