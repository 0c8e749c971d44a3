"""The compute node's users file: one ``name<TAB>argon2-hash`` line per user.

No wildcard user, no plaintext passwords at rest. The file is read by the
supervisor only; shells ask the supervisor to check a login.
"""

from __future__ import annotations

import os
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


class UsersFile:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _read(self) -> dict[str, str]:
        users: dict[str, str] = {}
        if not self.path.exists():
            return users
        for line in self.path.read_text().splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            name, _, hashed = line.partition("\t")
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
        try:
            return _hasher.verify(hashed, password)
        except (VerificationError, InvalidHashError):
            return False
