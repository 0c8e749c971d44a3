"""Logins, checked in the supervisor: the ID string a connection is greeted with, and the
check of a user's password against the users file with failed-login throttling.

This is the only place that reads the users file; shells never see it, and a shell that
relays a login gets a yes or no, never the file's contents.

Methods, as Rserve advertises them with ``auth required``:

- ``ARpt`` alone (plain text) when every stored password is an argon2 hash (rexec's
  own users file): a password ``crypt()``-ed by the client could not be checked against
  a hash, so crypt is not offered.
- ``ARuc``, ``K<salt>`` and ``ARpt``, exactly Rserve's ``auth required`` + ``plaintext
  enable`` ID string, when ``auth.plaintext`` is on, the users file holds passwords as
  Rserve stores them (in clear) and this machine's C library has DES ``crypt(3)``. The
  salt is two random characters of ``[./0-9A-Za-z]``, new for each connection; a login
  may then send the password in clear or ``crypt(password, salt)`` (the Java client
  does the latter whenever it sees ``ARuc``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from rexec.compute.supervisor.users import UsersFile, crypt_available
from rexec.config import Config
from rexec.protocol import framing

log = logging.getLogger("rexec.compute")

#: After this many failed logins from one address, each further attempt is delayed.
FREE_FAILURES = 3
_MAX_TRACKED = 10000
#: Rserve's salt characters (its ``code64`` table).
SALT_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class Logins:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.users = (
            UsersFile(
                config["auth.users_file"],
                plaintext=config["auth.plaintext"],
                remember=config["auth.remember_verified"],
            )
            if config["auth.users_file"]
            else None
        )
        self._failures: dict[str, tuple[int, float]] = {}
        if self.users is not None:
            for problem in self.users.problems():
                log.warning("%s", problem)
            if config["auth.required"] and self.offers_crypt() is None:
                log.warning(
                    "auth.plaintext is on but this machine's C library has no DES crypt(3): "
                    "crypt logins (ARuc) are not offered, only plain text (ARpt), as an "
                    "Rserve built without crypt"
                )

    def offers_crypt(self) -> bool | None:
        """Whether new connections are offered crypt logins (``ARuc``); None when they
        would be but the C library cannot check them."""
        if not (self.config["auth.plaintext"] and self.users is not None):
            return False
        if not self.users.has_clear_entries():
            return False
        return True if crypt_available() else None

    def greeting(self) -> tuple[bytes, str | None]:
        """The 32-byte ID string for a new connection, and the crypt salt it carries
        (None: no crypt offered). Pass the salt to :meth:`check` for this connection."""
        auth = self.config["auth.required"]
        salt = None
        if auth and self.offers_crypt():
            salt = secrets.choice(SALT_ALPHABET) + secrets.choice(SALT_ALPHABET)
        tls = bool(self.config["tls.switch"] and self.config["tls.cert"])
        return framing.id_string(auth=auth, plaintext=auth, salt=salt, tls=tls), salt

    async def check(self, user: str, password: str, peer: str, salt: str | None = None) -> bool:
        """Check a login from ``peer`` (an address the supervisor saw, never one a shell
        claims). ``salt``: the one this connection was greeted with, so ``password`` may
        be ``crypt()``-ed with it. After 3 failures from one address each further attempt
        waits (doubling up to 8 s), so passwords cannot be guessed at speed."""
        failures, _last = self._failures.get(peer, (0, 0.0))
        if failures >= FREE_FAILURES:
            await asyncio.sleep(min(0.25 * 2 ** (failures - FREE_FAILURES), 8.0))
        if self.users is None:
            return True  # authentication optional and no users file: as Rserve
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(None, self.users.verify, user, password, salt)
        if ok:
            self._failures.pop(peer, None)
        else:
            self._failures[peer] = (failures + 1, loop.time())
            if len(self._failures) > _MAX_TRACKED:  # bounded memory under a spray of addresses
                oldest = min(self._failures, key=lambda k: self._failures[k][1])
                del self._failures[oldest]
        return ok
