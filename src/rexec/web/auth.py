"""Logins, tokens and roles.

Access tokens are HS256 JWTs (one hour); refresh tokens are random strings stored only
as SHA-256 hashes (14 days), rotated on every refresh and revocable. Passwords are
argon2 hashes. Consecutive failed logins for a name are answered ever more slowly, so
guessing costs time without locking the real user out.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from rexec.web.db import Database, LoginFailure, RefreshToken, User, utcnow
from rexec.web.errors import ApiError
from rexec.web.settings import WebSettings

ROLES = ("Reader", "Contributor", "Owner")
_RANK = {role: i for i, role in enumerate(ROLES)}
_hasher = PasswordHasher()
#: Compared against when the user does not exist, so timing does not reveal names.
_DUMMY_HASH = _hasher.hash("rexec: no such user")


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller, as the access token describes them."""

    id: int
    username: str
    role: str

    def at_least(self, role: str) -> bool:
        return _RANK[self.role] >= _RANK[role]

    @property
    def is_owner(self) -> bool:
        return self.role == "Owner"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Auth:
    def __init__(self, db: Database, settings: WebSettings) -> None:
        self.db = db
        self.settings = settings
        self.secret = settings.jwt_secret or db.meta("jwt_secret", secrets.token_urlsafe(48))

    # ------------------------------------------------------------------ users
    def create_user(self, username: str, password: str, role: str) -> User:
        if role not in _RANK:
            raise ApiError(422, f"role must be one of {', '.join(ROLES)}")
        with self.db.session() as db:
            if db.scalars(select(User).where(User.username == username)).first() is not None:
                raise ApiError(409, f"user {username!r} exists")
            user = User(username=username, password_hash=hash_password(password), role=role)
            db.add(user)
        return user

    def has_users(self) -> bool:
        with self.db.session() as db:
            return db.scalars(select(User.id).limit(1)).first() is not None

    # ------------------------------------------------------------------ login
    async def login(self, username: str, password: str) -> dict[str, Any]:
        """Check the password and issue tokens; the database and argon2 work run in
        worker threads, off the event loop."""
        user = await asyncio.to_thread(self._user, username)
        stored = user.password_hash if user is not None else _DUMMY_HASH
        ok = await asyncio.to_thread(_verify, stored, password)
        if user is None or not ok:
            await asyncio.sleep(await asyncio.to_thread(self._failed, username))
            raise ApiError(401, "invalid user name or password")
        await asyncio.to_thread(self._succeeded, username)
        return await asyncio.to_thread(self.issue, user)

    def _user(self, username: str) -> User | None:
        with self.db.session() as db:
            return db.scalars(select(User).where(User.username == username)).first()

    def _failed(self, username: str) -> float:
        """Record a failure (in the database every web node shares); the delay to impose
        grows with consecutive failures: min(base * 2 ** (n - 1), max)."""
        for _attempt in range(3):  # two web nodes may insert the first failure at once
            try:
                with self.db.session() as db:
                    row = db.get(LoginFailure, username)
                    if row is None:
                        row = LoginFailure(username=username, count=0)
                        db.add(row)
                    row.count += 1
                    row.last_at = utcnow()
                    count = row.count
                break
            except IntegrityError:
                continue
        else:  # pragma: no cover - a third collision in a row
            count = 1
        s = self.settings
        return min(s.login_delay_base * 2 ** (count - 1), s.login_delay_max)

    def _succeeded(self, username: str) -> None:
        with self.db.session() as db:
            db.execute(delete(LoginFailure).where(LoginFailure.username == username))

    def issue(self, user: User) -> dict[str, Any]:
        now = int(time.time())
        expires = now + self.settings.access_token_ttl
        claims = {"sub": str(user.id), "name": user.username, "role": user.role}
        access = jwt.encode(
            {**claims, "iat": now, "exp": expires, "jti": secrets.token_hex(8)},
            self.secret,
            algorithm="HS256",
        )
        refresh = secrets.token_urlsafe(32)
        with self.db.session() as db:
            db.add(
                RefreshToken(
                    user_id=user.id,
                    token_hash=_digest(refresh),
                    expires_at=utcnow() + dt.timedelta(seconds=self.settings.refresh_token_ttl),
                )
            )
        return {
            "token_type": "Bearer",
            "access_token": access,
            "expires_in": self.settings.access_token_ttl,
            "expires_on": expires,
            "refresh_token": refresh,
        }

    def refresh(self, token: str) -> dict[str, Any]:
        """A new token pair for a valid refresh token, which is revoked (rotation)."""
        with self.db.session() as db:
            row = db.scalars(
                select(RefreshToken).where(RefreshToken.token_hash == _digest(token))
            ).first()
            if row is None or row.revoked or row.expires_at < utcnow():
                raise ApiError(401, "invalid or expired refresh token")
            row.revoked = True
            user = db.get(User, row.user_id)
        if user is None:
            raise ApiError(401, "invalid or expired refresh token")
        return self.issue(user)

    def revoke(self, token: str) -> bool:
        with self.db.session() as db:
            result = db.execute(
                update(RefreshToken)
                .where(RefreshToken.token_hash == _digest(token))
                .values(revoked=True)
            )
            db.execute(delete(RefreshToken).where(RefreshToken.expires_at < utcnow()))
            return bool(result.rowcount)

    def principal(self, token: str) -> Principal:
        try:
            claims = jwt.decode(token, self.secret, algorithms=["HS256"])
            principal = Principal(int(claims["sub"]), str(claims["name"]), str(claims["role"]))
        except (jwt.PyJWTError, KeyError, ValueError) as exc:
            raise ApiError(401, "invalid or expired access token") from exc
        if principal.role not in _RANK:
            raise ApiError(401, "invalid access token")
        return principal


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


# ---------------------------------------------------------------------- dependencies

_bearer = HTTPBearer(auto_error=False)


def current_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The authenticated caller; 401 without a valid bearer token."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(401, "authentication required", headers={"WWW-Authenticate": "Bearer"})
    return request.app.state.node.auth.principal(credentials.credentials)


def require(role: str) -> Any:
    """A dependency: the caller, who must hold ``role`` or a higher one (else 403)."""

    def check(user: Annotated[Principal, Depends(current_user)]) -> Principal:
        if not user.at_least(role):
            raise ApiError(403, f"this needs the {role} role")
        return user

    return check


CurrentUser = Annotated[Principal, Depends(current_user)]
Contributor = Annotated[Principal, Depends(require("Contributor"))]
OwnerRole = Annotated[Principal, Depends(require("Owner"))]
