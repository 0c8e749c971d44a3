"""``/snapshots``: saved session states, private to their creator (an Owner sees all)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select

from rexec.web.auth import CurrentUser
from rexec.web.db import Snapshot, User
from rexec.web.schemas import Message, SnapshotInfo
from rexec.web.sessions import iso

router = APIRouter(prefix="/snapshots", tags=["snapshots"])
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": Message} for code in (401, 404)}


def _info(row: Snapshot, owner: str | None = None) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "owner": owner,
        "sessionId": row.session_id,
        "createdAt": iso(row.created_at),
        "size": row.size,
    }


@router.get("", response_model=list[SnapshotInfo], responses=ERRORS)
def list_snapshots(user: CurrentUser, request: Request) -> list[dict[str, Any]]:
    node = request.app.state.node
    rows = node.sessions.snapshots(user)
    with node.db.session() as db:
        names = {row.id: row.username for row in db.execute(select(User.id, User.username))}
    return [_info(row, names.get(row.owner_id)) for row in rows]


@router.get("/{snapshot_id}", response_model=SnapshotInfo, responses=ERRORS)
def get_snapshot(snapshot_id: str, user: CurrentUser, request: Request) -> dict[str, Any]:
    return _info(request.app.state.node.sessions.snapshot_record(user, snapshot_id))


@router.get(
    "/{snapshot_id}/content",
    response_class=Response,
    responses={200: {"content": {"application/gzip": {}}}, **ERRORS},
)
def snapshot_content(snapshot_id: str, user: CurrentUser, request: Request) -> Response:
    """The snapshot as a gzip-ed tar: ``workspace.rds`` (a named list) and ``files/``."""
    content = request.app.state.node.sessions.snapshot_content(user, snapshot_id)
    return Response(
        content,
        media_type="application/gzip",
        headers={"Content-Disposition": f'attachment; filename="{snapshot_id}.tar.gz"'},
    )


@router.delete("/{snapshot_id}", response_model=Message, responses=ERRORS)
def delete_snapshot(snapshot_id: str, user: CurrentUser, request: Request) -> dict[str, str]:
    request.app.state.node.sessions.delete_snapshot(user, snapshot_id)
    return {"message": "deleted"}
