"""The compute node's users file, read by the supervisor only (shells ask it to check a
login and never see the file).

rexec's own entries are ``name<TAB>argon2-hash`` lines (``rexec users add``). The file
may also be an Rserve password file (``pwdfile``), read the way Rserve reads it: the
user name ends at the first blank or tab, the password is the rest of the line after
leading blanks (trailing blanks included), ``#`` starts a comment, ``@user`` (Rserve's
control-command flag) and ``user/uid,gid`` (Rserve's ``auto.uid``) name the user
``user``, and a stored password is kept in clear or as ``$`` + the hex MD5 or SHA-1 of
the password. Such entries are accepted only with ``plaintext`` (``auth.plaintext``,
Rserve's ``plaintext enable``); they are then checked as Rserve checks them: the
password sent in clear, or the password sent ``crypt()``-ed with the connection's salt.
Rserve's wildcard entry ``*`` (anyone may log in) is never honoured, and a blank line is
not an empty user name.
"""

from __future__ import annotations

import ctypes
import hashlib
import hmac
import logging
import os
import threading
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
log = logging.getLogger("rexec.compute")

_ENCODING = ("utf-8", "surrogateescape")  # an Rserve file is bytes; keep every one of them
_SALT_CHARS = frozenset("./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


# --------------------------------------------------------------------------- crypt(3)


@dataclass(frozen=True, slots=True)
class _Crypt:
    function: Any
    size: int  # bytes of the zeroed scratch area each thread passes
    sized: bool  # crypt_rn(phrase, setting, data, size) rather than crypt_r(phrase, setting, data)


@cache
def _libcrypt() -> _Crypt | None:
    """The C library's reentrant crypt: libxcrypt's ``crypt_rn`` (Debian's
    ``libcrypt.so.1``), else glibc's ``crypt_r``; None when there is neither. Both
    return NULL on failure, never the ``*0`` failure token plain ``crypt()`` returns
    (which Rserve 1.8-11 then compares with what the client sent)."""
    for name in ("libcrypt.so.1", "libcrypt.so.2", "libcrypt.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        rn = getattr(lib, "crypt_rn", None)
        if rn is not None:  # sizeof(struct crypt_data) is 32768 in libxcrypt
            rn.restype = ctypes.c_char_p
            rn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
            return _Crypt(rn, 32768, True)
        r = getattr(lib, "crypt_r", None)
        if r is not None:  # glibc's struct crypt_data is about 128 KiB
            r.restype = ctypes.c_char_p
            r.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p]
            return _Crypt(r, 256 * 1024, False)
    return None


_local = threading.local()


def des_crypt(phrase: bytes, salt: str) -> str | None:
    """Traditional DES ``crypt(3)`` of ``phrase`` with a two-character salt (13
    characters, the salt first), as Rserve computes it; None when the C library cannot
    (no libcrypt, a salt outside ``[./0-9A-Za-z]``, DES left out of the build)."""
    found = _libcrypt()
    if found is None or len(salt) != 2 or not _SALT_CHARS.issuperset(salt) or b"\0" in phrase:
        return None
    scratch = getattr(_local, "scratch", None)
    if scratch is None:  # one zeroed scratch area per thread: crypt_r(n) is reentrant
        scratch = _local.scratch = ctypes.create_string_buffer(found.size)
    setting = salt.encode("ascii")
    if found.sized:
        result = found.function(phrase, setting, scratch, found.size)
    else:
        result = found.function(phrase, setting, scratch)
    if result is None or len(result) != 13 or not result.startswith(setting):
        return None
    return result.decode("ascii")


@cache
def crypt_available() -> bool:
    """Can this machine check Rserve's crypt logins (``ARuc``)? Checked with a known
    DES vector, since some libcrypt builds leave the old DES method out."""
    return des_crypt(b"secret", "ab") == "abNANd1rDfiNc"


# --------------------------------------------------------------------------- the file


@dataclass(frozen=True, slots=True)
class Entry:
    """One user line: ``secret`` is an argon2 hash or Rserve's stored password."""

    name: str
    secret: str
    line: int
    control: bool = False  # Rserve's '@' prefix
    ids: str = ""  # Rserve's '/uid,gid' suffix

    @property
    def hashed(self) -> bool:
        return self.secret.startswith("$argon2")


def _parse_line(text: str, number: int) -> Entry | str | None:
    """An entry, None for a comment or blank line, ``"*"`` for a wildcard entry."""
    if not text.strip(" \t\r"):
        return None
    end = 0
    while end < len(text) and text[end] not in " \t":
        end += 1
    login, secret = text[:end], text[end:].lstrip(" \t").split("\r")[0]
    if login.startswith("#"):
        return None
    control = login.startswith("@")
    if control:
        login = login[1:]
    login, slash, ids = login.partition("/")
    if login.startswith("*"):
        return "*"
    if not login:
        return None
    if secret.startswith("$argon2"):
        secret = secret.rstrip(" \t")
    return Entry(login, secret, number, control, ids if slash else "")


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(*_ENCODING), b.encode(*_ENCODING))


def _clear_matches(stored: str, password: str) -> bool:
    """Rserve's check of a password sent in clear: ``$`` + 32 hex digits is the MD5 of
    the password, ``$`` + 40 the SHA-1 (both lower-case hex), anything else the password."""
    raw = password.encode(*_ENCODING)
    if stored.startswith("$") and len(stored) == 33:
        return _same(stored[1:], hashlib.md5(raw).hexdigest())
    if stored.startswith("$") and len(stored) == 41:
        return _same(stored[1:], hashlib.sha1(raw).hexdigest())
    return _same(stored, password)


def _crypt_matches(stored: str, salt: str, sent: str) -> bool:
    """Rserve's crypt check: ``crypt(stored password, salt)`` equals what was sent."""
    expected = des_crypt(stored.encode(*_ENCODING), salt)
    return expected is not None and _same(expected, sent)


class UsersFile:
    """``plaintext``: also accept entries stored as Rserve stores them (in clear, or as
    MD5/SHA-1 hex), as Rserve's ``plaintext enable``; off by default, and such entries
    are then refused with a logged reason naming the setting."""

    def __init__(self, path: str | Path, *, plaintext: bool = False, remember: float = 0.0) -> None:
        self.path = Path(path)
        self.plaintext = plaintext
        self._cached: tuple[tuple[int, int, int], list[Entry], int] | None = None
        self._lock = threading.Lock()
        #: Seconds a password verified against an argon2 entry is remembered, as an HMAC
        #: under a key that exists only in this process' memory, keyed by the entry's
        #: hash (a changed password is a new hash). 0: every login runs argon2.
        self.remember = remember
        self._key = os.urandom(32)
        self._verified: dict[tuple[str, str], tuple[bytes, float]] = {}

    # reading -------------------------------------------------------------------

    def _lines(self) -> list[str]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        lines = data.decode(*_ENCODING).split("\n")
        return lines[:-1] if lines[-1] == "" else lines

    def _load(self) -> tuple[list[Entry], int]:
        """The entries in file order and the number of wildcard lines; re-read whenever
        the file changes (so ``rexec users add`` takes effect at the next login)."""
        try:
            st = os.stat(self.path)
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            return [], 0
        with self._lock:
            if self._cached is not None and self._cached[0] == key:
                return self._cached[1], self._cached[2]
        entries: list[Entry] = []
        wildcards = 0
        for number, text in enumerate(self._lines(), 1):
            parsed = _parse_line(text, number)
            if parsed == "*":
                wildcards += 1
            elif isinstance(parsed, Entry):
                entries.append(parsed)
        with self._lock:
            self._cached = (key, entries, wildcards)
        return entries, wildcards

    def entries(self) -> list[Entry]:
        return self._load()[0]

    def names(self) -> list[str]:
        return sorted({entry.name for entry in self.entries()})

    def has_clear_entries(self) -> bool:
        """Is any password stored as Rserve stores them (so crypt logins can be checked)?"""
        return any(not entry.hashed for entry in self.entries())

    def problems(self) -> list[str]:
        """What in the file rexec will not honour, one sentence each (for start-up logs)."""
        if not self.path.exists():
            return [f"users file {self.path} does not exist: every login is refused"]
        entries, wildcards = self._load()
        found = []
        if wildcards:
            found.append(
                f"users file {self.path}: the wildcard entry '*' (Rserve: anyone may log in) "
                "is ignored; only listed users log in"
            )
        clear = sorted({e.name for e in entries if not e.hashed})
        if clear and not self.plaintext:
            found.append(
                f"users file {self.path}: the passwords of {', '.join(clear)} are stored as "
                "Rserve stores them (in clear, or as plain MD5/SHA-1) and are refused: set "
                "auth.plaintext = true (Rserve's 'plaintext enable') to accept them, or store "
                "argon2 hashes with `rexec users add`"
            )
        return found

    # writing -------------------------------------------------------------------

    def _write(self, lines: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
            out.write("".join(line + "\n" for line in lines).encode(*_ENCODING))
        os.chmod(tmp, 0o600)
        tmp.replace(self.path)

    def _without(self, name: str) -> tuple[list[str], bool]:
        """The file's lines without ``name``'s entries (comments and others kept)."""
        kept, dropped = [], False
        for number, text in enumerate(self._lines(), 1):
            parsed = _parse_line(text, number)
            if isinstance(parsed, Entry) and parsed.name == name:
                dropped = True
            else:
                kept.append(text)
        return kept, dropped

    def add(self, name: str, password: str) -> None:
        """Add ``name`` (or replace its entries) with an argon2 hash of ``password``."""
        if not name or any(c.isspace() or c in "*/" for c in name) or name.startswith(("@", "#")):
            raise ValueError(
                "a user name is non-empty, without blanks, '*' or '/', and does "
                "not start with '@' or '#'"
            )
        lines, _ = self._without(name)
        self._write([*lines, f"{name}\t{_hasher.hash(password)}"])

    def remove(self, name: str) -> bool:
        lines, dropped = self._without(name)
        if dropped:
            self._write(lines)
        return dropped

    # checking ------------------------------------------------------------------

    def _mac(self, password: str) -> bytes:
        return hmac.new(self._key, password.encode("utf-8", "surrogatepass"), "sha256").digest()

    def _remembered(self, entry: Entry, password: str) -> bool:
        if self.remember <= 0:
            return False
        with self._lock:
            known = self._verified.get((entry.name, entry.secret))
        if known is None or time.monotonic() > known[1]:
            return False
        return hmac.compare_digest(known[0], self._mac(password))

    def _remember(self, entry: Entry, password: str) -> None:
        if self.remember <= 0:
            return
        with self._lock:
            if len(self._verified) >= 4096:
                self._verified.clear()
            until = time.monotonic() + self.remember
            self._verified[(entry.name, entry.secret)] = (self._mac(password), until)

    def verify(self, name: str, password: str, salt: str | None = None) -> bool:
        """Check a login. ``salt``: the crypt salt this connection was greeted with
        (``ARuc``); then ``password`` may also be the password ``crypt()``-ed with it,
        which only entries stored in clear can be checked against. Entries of the same
        user are tried in file order, as Rserve does."""
        entries = self.entries()
        candidates = [entry for entry in entries if entry.name == name]
        if not candidates:
            # Spend the time of a real check, so timing does not reveal user names.
            if any(entry.hashed for entry in entries) or not self.plaintext:
                _hasher.hash(password)
            else:
                _clear_matches(password, password)
            return False
        for entry in candidates:
            if entry.hashed:
                if self._remembered(entry, password):
                    return True
                try:
                    if _hasher.verify(entry.secret, password):
                        self._remember(entry, password)
                        return True
                except (VerificationError, InvalidHashError):
                    pass
            elif not self.plaintext:
                log.error(
                    "user %r has a password stored in clear: refused (set auth.plaintext, "
                    "Rserve's 'plaintext enable', to accept it)",
                    name,
                )
                _hasher.hash(password)
            elif _clear_matches(entry.secret, password) or (
                salt is not None and _crypt_matches(entry.secret, salt, password)
            ):
                return True
        return False
