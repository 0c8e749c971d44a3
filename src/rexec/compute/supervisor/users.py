"""The compute node's users file: one ``name<TAB>argon2-hash`` line per user.

No wildcard user, no plaintext passwords at rest. The file is read by the
supervisor only; shells ask the supervisor to check a login.
"""

from __future__ import annotations

import hmac
import logging
import os
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
log = logging.getLogger("rexec.compute")


class UsersFile:
    """``plaintext``: also accept entries whose password is stored in clear (Rserve's
    password files), as Rserve's ``plaintext enable`` compatibility; off by default, and
    such entries are then refused with a logged reason."""

    def __init__(self, path: str | Path, *, plaintext: bool = False) -> None:
        self.path = Path(path)
        self.plaintext = plaintext

    def _read(self) -> dict[str, str]:
        users: dict[str, str] = {}
        if not self.path.exists():
            return users
        for line in self.path.read_text().splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            name, _, hashed = line.replace(" ", "\t", 1).partition("\t")
            users[name] = hashed.strip()
        return users

    def _write(self, users: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(f"{name}\t{hashed}\n" for name, hashed in sorted(users.items())))
        os.chmod(tmp, 0o600)
        tmp.replace(self.path)

    def names(self) -> list[str]:
        return sorted(self._read())

    def add(self, name: str, password: str) -> None:
        if not name or any(c.isspace() for c in name) or "*" in name:
            raise ValueError("a user name is non-empty, without blanks or '*'")
        users = self._read()
        users[name] = _hasher.hash(password)
        self._write(users)

    def remove(self, name: str) -> bool:
        users = self._read()
        if users.pop(name, None) is None:
            return False
        self._write(users)
        return True

    def verify(self, name: str, password: str) -> bool:
        hashed = self._read().get(name)
        if hashed is None:
            # Spend the same time as a real check, so timing does not reveal user names.
            _hasher.hash(password)
            return False
        if not hashed.startswith("$argon2"):
            if not self.plaintext:
                log.error("user %r has a password stored in clear: refused (auth.plaintext)", name)
                _hasher.hash(password)
                return False
            return hmac.compare_digest(hashed.encode(), password.encode())
        try:
            return _hasher.verify(hashed, password)
        except (VerificationError, InvalidHashError):
            return False
