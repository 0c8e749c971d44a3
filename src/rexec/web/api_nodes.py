"""``/computenodes``: the compute-node registry (Owner only), shared by all web nodes;
``/computenodes/register`` is for compute nodes themselves (the registration token)."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from rexec.web.auth import OwnerRole
from rexec.web.errors import ApiError
from rexec.web.nodes import Registry, token_matches
from rexec.web.schemas import Message

log = logging.getLogger("rexec.web.nodes")
router = APIRouter(prefix="/computenodes", tags=["compute nodes"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Message} for code in (400, 401, 403, 404, 409, 503)
}


class NodeCreate(BaseModel):
    host: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9.:_-]+$")
    port: int = Field(ge=1, le=65535)
    user: str | None = Field(default=None, max_length=150)
    password: str | None = Field(default=None, max_length=1024)
    poolMax: int = Field(default=8, ge=1, le=4096)
    #: Reach it over TLS from the first byte (``port``: its tls.port), with this web
    #: node's [compute_tls] CA and client certificate.
    tls: bool = False


class NodeAddress(BaseModel):
    host: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9.:_-]+$")
    port: int = Field(ge=1, le=65535)


def _registry(request: Request) -> Registry:
    return request.app.state.node.registry


_token = HTTPBearer(
    auto_error=False,
    scheme_name="registrationToken",
    description="The web nodes' nodes.registration_token (compute nodes registering "
    "themselves), not a user's access token.",
)


def registration_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_token)],
) -> None:
    """The caller holds the web nodes' registration token (404 when there is none)."""
    expected = request.app.state.node.settings.registration_token
    if not expected:
        raise ApiError(404, "compute nodes do not register themselves here (no registration token)")
    if credentials is None or not token_matches(expected, credentials.credentials):
        client = request.client.host if request.client else "-"
        log.warning("event=registration-refused client=%s reason='wrong or no token'", client)
        raise ApiError(401, "wrong or missing registration token", {"WWW-Authenticate": "Bearer"})


RegistrationToken = Annotated[None, Depends(registration_token)]


@router.post("", status_code=201, responses=ERRORS)
async def add_node(body: NodeCreate, user: OwnerRole, request: Request) -> dict[str, Any]:
    """Register a compute node (its login is stored sealed). It takes work once a check
    finds it healthy; the answer says how the first check went."""
    registry = _registry(request)
    node_id = await asyncio.to_thread(
        registry.add, body.host, body.port, body.user, body.password, body.poolMax, body.tls
    )
    await registry.refresh()
    node = next(n for n in registry.compute.nodes if n.id == node_id)
    await registry.check_one(node)
    return {"id": node_id, "state": node.state, "lastError": node.last_error or None}


@router.post("/register", status_code=200, responses={**ERRORS, 201: {"description": "Added"}})
async def register_node(
    body: NodeCreate, token: RegistrationToken, request: Request, response: Response
) -> dict[str, Any]:
    """A compute node registers itself (``register.url`` of ``rexec serve``), with the
    registration token as Bearer. Upserted by host and port: 201 when it is new, 200
    when it updates the record (login, poolMax); a drain the node made itself ends, an
    Owner's stays. The answer says how this web node's check of it went."""
    registry = _registry(request)
    node_id, created = await asyncio.to_thread(
        registry.register,
        body.host,
        body.port,
        body.user,
        body.password,
        body.poolMax,
        body.tls,
    )
    await registry.refresh()
    node = next(n for n in registry.compute.nodes if n.id == node_id)
    await registry.check_one(node)
    response.status_code = 201 if created else 200
    log.info(
        "event=node-registered node=%s:%d id=%d new=%s state=%s",
        body.host,
        body.port,
        node_id,
        created,
        node.state,
    )
    return {
        "id": node_id,
        "created": created,
        "state": node.state,
        "lastError": node.last_error or None,
    }


@router.post("/register/drain", response_model=Message, responses=ERRORS)
async def drain_registered(
    body: NodeAddress, token: RegistrationToken, request: Request
) -> dict[str, str]:
    """A stopping compute node drains itself (registration token as Bearer): no new
    work goes there until it registers again."""
    registry = _registry(request)
    message = await asyncio.to_thread(registry.drain_self, body.host, body.port)
    await registry.refresh()
    log.info("event=node-drained node=%s:%d by=itself", body.host, body.port)
    return {"message": message}


@router.get("", responses=ERRORS)
def list_nodes(user: OwnerRole, request: Request) -> list[dict[str, Any]]:
    """Every compute node this web node knows (the settings' and the registry's), with
    its state (healthy, draining, down) and its pools at the last check."""
    return _registry(request).listing()


def _registered(request: Request, node_id: int) -> None:
    if not any(n.id == node_id for n in _registry(request).compute.nodes):
        raise ApiError(404, "no such compute node")


@router.delete("/{node_id}", response_model=Message, responses=ERRORS)
async def remove_node(node_id: int, user: OwnerRole, request: Request) -> dict[str, str]:
    """Forget a node: no new work goes there (sessions there keep their connections)."""
    registry = _registry(request)
    await asyncio.to_thread(registry.remove, node_id)
    await registry.refresh()
    return {"message": "removed"}


@router.post("/{node_id}/drain", response_model=Message, responses=ERRORS)
async def drain_node(node_id: int, user: OwnerRole, request: Request) -> dict[str, str]:
    """No new sessions, service calls or batch items go to the node; running work
    finishes. Then it can be stopped (or undrained: ``/undrain``)."""
    registry = _registry(request)
    await asyncio.to_thread(registry.drain, node_id, True)
    await registry.refresh()
    return {"message": "draining"}


@router.post("/{node_id}/undrain", response_model=Message, responses=ERRORS)
async def undrain_node(node_id: int, user: OwnerRole, request: Request) -> dict[str, str]:
    registry = _registry(request)
    await asyncio.to_thread(registry.drain, node_id, False)
    await registry.refresh()
    return {"message": "healthy"}
