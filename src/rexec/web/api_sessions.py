"""``/sessions``: R sessions, execution, console, history, cancel, workspace and files."""

from __future__ import annotations

import asyncio
import json
import mimetypes
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import Response, StreamingResponse

from rexec.client import ClientError
from rexec.client.convert import to_python
from rexec.web import rjson
from rexec.web.auth import Contributor, CurrentUser, Principal
from rexec.web.db import RSession
from rexec.web.errors import ApiError
from rexec.web.schemas import (
    ExecuteRequest,
    ExecuteResult,
    FileInfo,
    HistoryEntry,
    Message,
    OutputParameter,
    SessionCreate,
    SessionCreated,
    SessionInfo,
    SnapshotCreate,
    WorkspaceObject,
)
from rexec.web.sessions import Sessions, iso

RDS = "application/x-rds"
router = APIRouter(prefix="/sessions", tags=["sessions"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Message} for code in (400, 401, 403, 404, 409, 410, 503)
}
NameParam = Annotated[str, Query(min_length=1, max_length=256)]


def _sessions(request: Request) -> Sessions:
    return request.app.state.node.sessions


def _info(
    sessions: Sessions, row: RSession, holders: set[str], owner: str | None = None
) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "owner": owner,
        "state": row.state,
        "computeNode": row.node,
        "createdAt": iso(row.created_at),
        "lastActive": iso(row.last_active),
        "busy": row.holder is not None and row.holder in holders,
    }


def _object_name(name: str) -> str:
    if not name or len(name) > 256 or "\x00" in name:
        raise ApiError(400, "invalid object name")
    return name


def _file_name(name: str) -> str:
    parts = name.split("/")
    if (
        not name
        or len(name) > 1024
        or name.startswith("/")
        or any(c in name for c in "\\\x00")
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise ApiError(400, "file names are relative paths inside the session directory")
    return name


# ---------------------------------------------------------------------- sessions


@router.post("", response_model=SessionCreated, status_code=201, responses=ERRORS)
async def create_session(
    user: Contributor, request: Request, body: SessionCreate | None = None
) -> dict[str, str]:
    """Start an R session (restoring a snapshot when ``snapshotId`` is given)."""
    body = body or SessionCreate()
    row = await _sessions(request).open(user, body.name, body.snapshotId)
    return {"id": row.id}


@router.get("", response_model=list[SessionInfo], responses=ERRORS)
def list_sessions(user: CurrentUser, request: Request) -> list[dict[str, Any]]:
    """Your sessions (an Owner sees everyone's)."""
    sessions = _sessions(request)
    holders = sessions.live_holders()
    return [_info(sessions, row, holders) for row in sessions.visible(user)]


@router.get("/{session_id}", response_model=SessionInfo, responses=ERRORS)
def get_session(session_id: str, user: CurrentUser, request: Request) -> dict[str, Any]:
    sessions = _sessions(request)
    return _info(sessions, sessions.record(user, session_id), sessions.live_holders())


@router.delete("/{session_id}", response_model=Message, responses=ERRORS)
async def delete_session(session_id: str, user: CurrentUser, request: Request) -> dict[str, str]:
    """Close the session: its R shell ends, its record and history are deleted."""
    sessions = _sessions(request)
    await asyncio.to_thread(sessions.record, user, session_id)
    await sessions.close(session_id)
    return {"message": "deleted"}


# ---------------------------------------------------------------------- execution


@router.post("/{session_id}/execute", response_model=ExecuteResult, responses=ERRORS)
async def execute(
    session_id: str, body: ExecuteRequest, user: Contributor, request: Request
) -> dict[str, Any]:
    """Run R code; inputs are assigned first, outputs read after (JSON, see docs/api.md)."""
    sessions = _sessions(request)
    session = await sessions.get(user, session_id)
    inputs = [(p.name, p.value, p.type) for p in body.inputParameters]
    for name in body.outputParameters:
        _object_name(name)
    return await sessions.execute(session, body.code, inputs, body.outputParameters)


@router.get(
    "/{session_id}/console-output",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/plain": {}}}, **ERRORS},
)
async def console_output(session_id: str, user: CurrentUser, request: Request) -> Any:
    """The running execution's console output, streamed (chunked) until it ends;
    with nothing running, the last execution's output."""
    sessions = _sessions(request)
    session = await sessions.get(user, session_id)
    return StreamingResponse(sessions.console(session), media_type="text/plain; charset=utf-8")


@router.get("/{session_id}/history", response_model=list[HistoryEntry], responses=ERRORS)
def history(session_id: str, user: CurrentUser, request: Request) -> list[dict[str, Any]]:
    sessions = _sessions(request)
    sessions.record(user, session_id)
    return [
        {
            "executionId": e.number,
            "code": e.code,
            "success": e.success,
            "errorMessage": e.error_message,
            "consoleOutput": e.console_output,
            "warnings": e.warnings,
            "changedFiles": e.changed_files,
            "startTime": iso(e.started_at),
            "endTime": iso(e.finished_at),
        }
        for e in sessions.history(session_id)
    ]


@router.post("/{session_id}/cancel", response_model=Message, responses=ERRORS)
async def cancel(session_id: str, user: Contributor, request: Request) -> dict[str, str]:
    """Interrupt the running execution; it ends with ``success: false``."""
    sessions = _sessions(request)
    await sessions.cancel(await sessions.get(user, session_id))
    return {"message": "cancel requested"}


# ---------------------------------------------------------------------- workspace


@router.get("/{session_id}/workspace", response_model=list[WorkspaceObject], responses=ERRORS)
async def workspace(session_id: str, user: CurrentUser, request: Request) -> list[dict[str, Any]]:
    """The objects of the session's global environment and their classes."""
    sessions = _sessions(request)
    session = await sessions.get(user, session_id)
    listing = await sessions.use(session, lambda c: c.call("rexec_workspace"))
    names = listing["names"]
    names = names if isinstance(names, list) else [names]
    classes = listing["classes"] or []
    return [
        {"name": n, "classes": c if isinstance(c, list) else [c]}
        for n, c in zip(names, classes, strict=False)
        if n is not None
    ]


@router.get(
    "/{session_id}/workspace/{name}",
    response_model=OutputParameter,
    responses={200: {"content": {RDS: {}}}, **ERRORS},
)
async def get_object(session_id: str, name: str, user: CurrentUser, request: Request) -> Any:
    """One object: JSON ``{name, value, type}``, or RDS bytes with ``Accept: application/x-rds``."""
    sessions = _sessions(request)
    session = await sessions.get(user, session_id)
    _object_name(name)
    accept = request.headers.get("accept", "")
    if RDS in accept or "application/octet-stream" in accept:
        exists = await sessions.use(session, lambda c: c.call("exists", name, inherits=False))
        if not exists:
            raise ApiError(404, f"no object {name!r}")
        data = await sessions.use(session, lambda c: c.call("rexec_get_rds", name))
        return Response(data, media_type=RDS)
    fetched = await sessions.use(session, lambda c: c.call("rexec_outputs", [name], convert="raw"))
    found, values = fetched.value
    if not to_python(found):
        raise ApiError(404, f"no object {name!r}")
    value = values.value[0]
    return {"name": name, "value": rjson.to_json(value), "type": rjson.r_type(value)}


@router.put(
    "/{session_id}/workspace/{name}",
    response_model=Message,
    responses=ERRORS,
    openapi_extra={
        "requestBody": {"content": {"application/json": {"schema": {}}, RDS: {"schema": {}}}}
    },
)
async def put_object(
    session_id: str,
    name: str,
    user: Contributor,
    request: Request,
    type: str | None = Query(None, max_length=32),
) -> dict[str, str]:
    """Create or replace an object from JSON (``?type=`` picks the R type) or RDS bytes."""
    sessions = _sessions(request)
    session = await sessions.get(user, session_id)
    _object_name(name)
    body = await request.body()
    content_type = request.headers.get("content-type", "application/json")
    if content_type.startswith((RDS, "application/octet-stream")):
        try:
            await sessions.use(session, lambda c: c.call("rexec_put_rds", name, body))
        except ClientError as exc:
            raise ApiError(400, f"not an RDS object: {exc}") from exc
        return {"message": "stored"}
    if not content_type.startswith("application/json"):
        raise ApiError(415, "send application/json or application/x-rds")
    try:
        value = rjson.from_json(json.loads(body), type)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"invalid value: {exc}") from None
    await sessions.use(session, lambda c: c.assign(name, value))
    return {"message": "stored"}


@router.delete("/{session_id}/workspace/{name}", response_model=Message, responses=ERRORS)
async def delete_object(
    session_id: str, name: str, user: Contributor, request: Request
) -> dict[str, str]:
    sessions = _sessions(request)
    session = await sessions.get(user, session_id)
    if not await sessions.use(session, lambda c: c.call("rexec_remove", _object_name(name))):
        raise ApiError(404, f"no object {name!r}")
    return {"message": "deleted"}


# ---------------------------------------------------------------------- files


@router.get("/{session_id}/files", response_model=list[FileInfo], responses=ERRORS)
async def list_files(session_id: str, user: CurrentUser, request: Request) -> list[dict[str, Any]]:
    """The files of the session's working directory."""
    sessions = _sessions(request)
    session = await sessions.get(user, session_id)
    table = await sessions.use(session, lambda c: c.call("rexec_files"))
    names, sizes, times = (table[k] for k in ("name", "size", "mtime"))
    return [
        {"name": n, "size": int(s), "modified": float(t)}
        for n, s, t in zip(names, sizes, times, strict=True)
    ]


async def _write(request: Request, user: Principal, session_id: str, name: str, data: bytes):
    sessions = _sessions(request)
    session = await sessions.get(user, session_id)
    await sessions.use(session, lambda c: c.call("rexec_write_file", _file_name(name), data))
    return {"message": "stored", "name": name}


@router.post("/{session_id}/files", response_model=Message, status_code=201, responses=ERRORS)
async def upload_file(
    session_id: str,
    user: Contributor,
    request: Request,
    file: Annotated[UploadFile, File()],
    name: Annotated[str | None, Form(max_length=1024)] = None,
) -> dict[str, str]:
    """Upload a file (multipart form field ``file``; ``name`` overrides its file name)."""
    target = _file_name(name or file.filename or "")
    limit = request.app.state.node.settings.max_upload
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "file too large")
    return await _write(request, user, session_id, target, data)


@router.put(
    "/{session_id}/files/{name:path}",
    response_model=Message,
    status_code=201,
    responses=ERRORS,
    openapi_extra={"requestBody": {"content": {"application/octet-stream": {"schema": {}}}}},
)
async def put_file(session_id: str, name: str, user: Contributor, request: Request) -> Any:
    """Write a file from the raw request body."""
    _file_name(name)
    limit = request.app.state.node.settings.max_upload
    if int(request.headers.get("content-length") or 0) > limit:
        raise ApiError(413, "file too large")
    return await _write(request, user, session_id, name, await request.body())


@router.get(
    "/{session_id}/files/{name:path}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}, **ERRORS},
)
async def download_file(session_id: str, name: str, user: CurrentUser, request: Request) -> Any:
    sessions = _sessions(request)
    session = await sessions.get(user, session_id)
    data = await sessions.use(session, lambda c: c.call("rexec_read_file", _file_name(name)))
    if data is None:
        raise ApiError(404, f"no file {name!r}")
    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response(bytes(data), media_type=media)


@router.delete("/{session_id}/files/{name:path}", response_model=Message, responses=ERRORS)
async def delete_file(
    session_id: str, name: str, user: Contributor, request: Request
) -> dict[str, str]:
    sessions = _sessions(request)
    session = await sessions.get(user, session_id)
    if not await sessions.use(session, lambda c: c.call("rexec_remove_file", _file_name(name))):
        raise ApiError(404, f"no file {name!r}")
    return {"message": "deleted"}


# ---------------------------------------------------------------------- snapshots


@router.post(
    "/{session_id}/snapshot", response_model=SessionCreated, status_code=201, responses=ERRORS
)
async def create_snapshot(
    session_id: str, user: Contributor, request: Request, body: SnapshotCreate | None = None
) -> dict[str, str]:
    """Save the workspace and working directory as a snapshot; returns its id."""
    sessions = _sessions(request)
    session = await sessions.get(user, session_id)
    row = await sessions.snapshot(user, session, (body or SnapshotCreate()).name)
    return {"id": row.id}


@router.post("/{session_id}/loadsnapshot/{snapshot_id}", response_model=Message, responses=ERRORS)
async def load_snapshot(
    session_id: str, snapshot_id: str, user: Contributor, request: Request
) -> dict[str, str]:
    """Restore a snapshot's objects and files into the session (existing ones are replaced)."""
    sessions = _sessions(request)
    session = await sessions.get(user, session_id)
    content = await asyncio.to_thread(sessions.snapshot_content, user, snapshot_id)
    await sessions.use(session, lambda c: c.call("rexec_restore", content))
    return {"message": "loaded"}
