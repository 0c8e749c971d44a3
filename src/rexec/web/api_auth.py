"""``/login`` (tokens) and ``/users`` (user management, Owner only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import select

from rexec.web.auth import OwnerRole
from rexec.web.db import User
from rexec.web.errors import ApiError
from rexec.web.schemas import LoginRequest, Message, RefreshRequest, Tokens, UserCreate, UserInfo
from rexec.web.sessions import iso

router = APIRouter()
ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": Message}, 422: {"model": Message}}


@router.post("/login", response_model=Tokens, responses=ERRORS, tags=["authentication"])
async def login(body: LoginRequest, request: Request) -> dict[str, Any]:
    """Exchange a user name and password for an access token (1 h) and a refresh token."""
    return await request.app.state.node.auth.login(body.username, body.password)


@router.post(
    "/login/refreshToken", response_model=Tokens, responses=ERRORS, tags=["authentication"]
)
def refresh(body: RefreshRequest, request: Request) -> dict[str, Any]:
    """A new token pair; the refresh token used is revoked."""
    return request.app.state.node.auth.refresh(body.refreshToken)


@router.delete(
    "/login/refreshToken", response_model=Message, responses=ERRORS, tags=["authentication"]
)
def revoke(
    request: Request, refreshToken: str = Query(min_length=1, max_length=512)
) -> dict[str, str]:
    """Revoke a refresh token (no authentication needed: holding it is the proof)."""
    if not request.app.state.node.auth.revoke(refreshToken):
        raise ApiError(404, "unknown refresh token")
    return {"message": "revoked"}


def _user_info(user: User) -> dict[str, Any]:
    return {"username": user.username, "role": user.role, "createdAt": iso(user.created_at)}


@router.get("/users", response_model=list[UserInfo], tags=["users"])
def list_users(user: OwnerRole, request: Request) -> list[dict[str, Any]]:
    with request.app.state.node.db.session() as db:
        return [_user_info(u) for u in db.scalars(select(User).order_by(User.username))]


@router.post("/users", response_model=UserInfo, status_code=201, tags=["users"])
def create_user(body: UserCreate, user: OwnerRole, request: Request) -> dict[str, Any]:
    created = request.app.state.node.auth.create_user(body.username, body.password, body.role)
    return _user_info(created)


@router.delete("/users/{username}", response_model=Message, tags=["users"])
def delete_user(username: str, user: OwnerRole, request: Request) -> dict[str, str]:
    if username == user.username:
        raise ApiError(409, "you cannot delete yourself")
    with request.app.state.node.db.session() as db:
        row = db.scalars(select(User).where(User.username == username)).first()
        if row is None:
            raise ApiError(404, "no such user")
        db.delete(row)
    return {"message": "deleted"}
