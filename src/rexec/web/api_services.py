"""``/services`` (publish and manage), ``/api`` (consume, one call or a batch) and each
service's own OpenAPI document and Swagger UI page."""

from __future__ import annotations

import asyncio
import html
import json
import mimetypes
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from rexec.web import service_types
from rexec.web.auth import Contributor, CurrentUser
from rexec.web.batch import Batches
from rexec.web.docs import ASSETS_URL
from rexec.web.errors import ApiError
from rexec.web.schemas import Message
from rexec.web.services import CallFailed, ServiceDef, Services

router = APIRouter()
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Message} for code in (400, 401, 403, 404, 409, 503)
}
CALL_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Message} for code in (400, 401, 404, 502, 503, 504)
}
PublishBody = Annotated[
    dict[str, Any],
    Body(
        description="code (required), initCode, snapshotId, model (base64 of saveRDS or "
        "save output), description, operationId, inputParameterDefinitions, "
        "outputParameterDefinitions, outputFileNames, runtimeType, timeout, isolation, "
        "isDefault: see docs/services.md",
        examples=[
            {
                "code": "result <- unname(predict(model, data.frame(wt = wt, hp = hp)))",
                "initCode": "model <- lm(mpg ~ wt + hp, data = mtcars)",
                "inputParameterDefinitions": [
                    {"name": "wt", "type": "numeric"},
                    {"name": "hp", "type": "numeric"},
                ],
                "outputParameterDefinitions": [{"name": "result", "type": "numeric"}],
                "isDefault": True,
            }
        ],
    ),
]


def _services(request: Request) -> Services:
    return request.app.state.node.services


def _batches(request: Request) -> Batches:
    return request.app.state.node.batches


# ---------------------------------------------------------------------- manage
@router.post(
    "/services/{name}", status_code=201, responses=ERRORS, tags=["services"], summary="Publish"
)
async def publish_dev(
    name: str, body: PublishBody, user: Contributor, request: Request
) -> dict[str, Any]:
    """Publish a service version whose version the server makes up (a GUID)."""
    return (await _services(request).publish(user, name, None, body)).record()


@router.post("/services/{name}/{version}", status_code=201, responses=ERRORS, tags=["services"])
async def publish(
    name: str, version: str, body: PublishBody, user: Contributor, request: Request
) -> dict[str, Any]:
    """Publish a service version: its pools start on every compute node before this
    answers (so no call ever waits for initCode)."""
    return (await _services(request).publish(user, name, version, body)).record()


@router.get("/services", tags=["services"])
def list_services(user: CurrentUser, request: Request) -> list[dict[str, Any]]:
    return [d.record() for d in _services(request).listing()]


@router.get("/services/{name}", responses=ERRORS, tags=["services"])
def list_versions(name: str, user: CurrentUser, request: Request) -> list[dict[str, Any]]:
    found = _services(request).listing(name)
    if not found:
        raise ApiError(404, f"no service {name}")
    return [d.record() for d in found]


@router.get("/services/{name}/{version}", responses=ERRORS, tags=["services"])
def show(name: str, version: str, user: CurrentUser, request: Request) -> dict[str, Any]:
    found = _services(request).listing(name, version)
    if not found:
        raise ApiError(404, f"no service {name} version {version}")
    return found[0].record()


@router.patch("/services/{name}/{version}", responses=ERRORS, tags=["services"])
async def patch(
    name: str, version: str, body: PublishBody, user: Contributor, request: Request
) -> dict[str, Any]:
    """Change a version (its publisher or an Owner). A new initCode or snapshot starts
    new pools; calls go to the old ones until the new ones are ready."""
    return (await _services(request).update(user, name, version, body)).record()


@router.delete(
    "/services/{name}/{version}", response_model=Message, responses=ERRORS, tags=["services"]
)
async def delete(name: str, version: str, user: Contributor, request: Request) -> dict[str, str]:
    await _services(request).delete(user, name, version)
    return {"message": "deleted"}


# ---------------------------------------------------------------------- pools
@router.post("/services/{name}/{version}/pool", responses=ERRORS, tags=["services"])
async def set_pool(
    name: str,
    version: str,
    user: Contributor,
    request: Request,
    body: Annotated[dict[str, Any], Body(examples=[{"initialPoolSize": 2, "maxPoolSize": 8}])],
) -> dict[str, Any]:
    """Size the service's dedicated pool on every compute node (as ML Server 9.3)."""
    initial, most = body.get("initialPoolSize"), body.get("maxPoolSize")
    if set(body) - {"initialPoolSize", "maxPoolSize"} or not all(
        type(v) is int for v in (initial, most)
    ):
        raise ApiError(400, "expected {initialPoolSize, maxPoolSize} (integers)")
    defn = await _services(request).set_pool(user, name, version, initial, most)
    return defn.record()["pool"]


@router.get("/services/{name}/{version}/pool", responses=ERRORS, tags=["services"])
async def get_pool(
    name: str, version: str, user: CurrentUser, request: Request
) -> list[dict[str, Any]]:
    """Per compute node: status, idle, busy, starting and max shells of the pool."""
    services = _services(request)
    return await services.pool_status(await services.get(name, version))


@router.delete("/services/{name}/{version}/pool", responses=ERRORS, tags=["services"])
async def delete_pool(
    name: str, version: str, user: Contributor, request: Request
) -> dict[str, Any]:
    """Back to the default sizes (a service always keeps a warm pool)."""
    settings = request.app.state.node.settings
    defn = await _services(request).set_pool(
        user, name, version, settings.service_pool_initial, settings.service_pool_max
    )
    return defn.record()["pool"]


# ---------------------------------------------------------------------- consume
async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw) if raw else None
    except ValueError as exc:
        raise ApiError(400, f"the body is not JSON: {exc}") from None


async def _consume(defn: ServiceDef, request: Request) -> JSONResponse:
    body = await _json_body(request)
    timings: dict[str, float] = {}
    try:
        answer = await _services(request).call(defn, body, timings=timings)
    except CallFailed as exc:
        headers = {"Retry-After": str(request.app.state.node.settings.retry_after)}
        raise ApiError(
            exc.status, exc.message, headers=headers if exc.status == 503 else None
        ) from None
    # Where the time went, for `rexec capacity` and browsers' developer tools (W3C).
    server_timing = ", ".join(f"{k};dur={v * 1000:.3f}" for k, v in timings.items())
    return JSONResponse(answer, headers={"Server-Timing": server_timing})


_CONSUME_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
        "description": "the service's inputs; see /api/{name}/{version}/swagger.json",
    }
}


@router.post("/api/{name}", responses=CALL_ERRORS, tags=["consume"], openapi_extra=_CONSUME_DOC)
async def consume_default(name: str, user: CurrentUser, request: Request) -> JSONResponse:
    """Call the version of ``name`` marked isDefault."""
    return await _consume(await _services(request).get_default(name), request)


@router.post(
    "/api/{name}/{version}", responses=CALL_ERRORS, tags=["consume"], openapi_extra=_CONSUME_DOC
)
async def consume(name: str, version: str, user: CurrentUser, request: Request) -> JSONResponse:
    """Call a service version: ``{success, errorMessage, consoleOutput, outputParameters,
    outputFiles}``; R errors are ``success: false``, not HTTP errors."""
    return await _consume(await _services(request).get(name, version), request)


@router.get("/api/{name}/{version}/swagger.json", responses=ERRORS, tags=["consume"])
async def swagger(name: str, version: str, user: CurrentUser, request: Request) -> dict[str, Any]:
    """The service's OpenAPI 3 document (typed request and response)."""
    defn = await _services(request).get(name, version)
    root = str(request.base_url).rstrip("/") + request.scope.get("root_path", "")
    return service_types.openapi(defn, root)


@router.get("/docs/services/{name}/{version}", include_in_schema=False)
def service_docs(name: str, version: str, request: Request) -> HTMLResponse:
    """Swagger UI for one service, from the web node's own assets. The page carries no
    secret: it sends the token given after ``#token=`` in its address (a fragment is
    never sent to a server) or the one entered with Authorize."""
    root = request.scope.get("root_path", "").rstrip("/")
    spec = json.dumps(f"{root}/api/{name}/{version}/swagger.json")
    title = html.escape(f"{name} {version}")
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title} - rexec service</title>
<link rel="stylesheet" href="{root}{ASSETS_URL}/swagger-ui.css">
<link rel="icon" href="{root}{ASSETS_URL}/favicon.png"></head>
<body><div id="swagger-ui"></div>
<script src="{root}{ASSETS_URL}/swagger-ui-bundle.js"></script>
<script>
const token = new URLSearchParams(location.hash.slice(1)).get("token");
window.ui = SwaggerUIBundle({{
  url: {spec}, dom_id: "#swagger-ui", validatorUrl: null, displayOperationId: true,
  requestInterceptor: (req) => {{
    if (token && !req.headers.Authorization) req.headers.Authorization = "Bearer " + token;
    return req;
  }},
}});
</script></body></html>"""
    return HTMLResponse(page)


# ---------------------------------------------------------------------- batch
@router.post("/api/{name}/{version}/batch", status_code=202, responses=ERRORS, tags=["batch"])
async def batch_submit(
    name: str,
    version: str,
    user: CurrentUser,
    request: Request,
    parallelCount: Annotated[int, Query(ge=1)] = 1,
) -> dict[str, Any]:
    """Queue an array of input records; ``parallelCount`` of them run at once (capped by
    the web node's ``batch_parallel_max``)."""
    defn = await _services(request).get(name, version)
    records = await _json_body(request)
    if not isinstance(records, list):
        raise ApiError(400, "the body is an array of input records")
    for i, record in enumerate(records):  # every record checked before any is queued
        try:
            service_types.convert_inputs(defn.inputs, record)
        except service_types.InputError as exc:
            raise ApiError(400, f"record {i}: {exc}") from None
    batch_id, parallel = await asyncio.to_thread(
        _batches(request).submit, user, defn, records, parallelCount
    )
    return {"batchExecutionId": batch_id, "parallelCount": parallel}


@router.get("/api/{name}/{version}/batch", responses=ERRORS, tags=["batch"])
async def batch_list(name: str, version: str, user: CurrentUser, request: Request) -> list[str]:
    defn = await _services(request).get(name, version)
    return await asyncio.to_thread(_batches(request).listing, user, defn)


@router.get("/api/{name}/{version}/batch/{batch_id}", responses=ERRORS, tags=["batch"])
async def batch_status(
    name: str,
    version: str,
    batch_id: str,
    user: CurrentUser,
    request: Request,
    showPartialResult: bool = False,
) -> dict[str, Any]:
    defn = await _services(request).get(name, version)
    return await asyncio.to_thread(
        _batches(request).status, user, defn, batch_id, showPartialResult
    )


@router.delete("/api/{name}/{version}/batch/{batch_id}", responses=ERRORS, tags=["batch"])
async def batch_cancel(
    name: str, version: str, batch_id: str, user: CurrentUser, request: Request
) -> dict[str, Any]:
    """Cancel: queued items never start, running ones are interrupted."""
    defn = await _services(request).get(name, version)
    return await asyncio.to_thread(_batches(request).cancel, user, defn, batch_id)


@router.get(
    "/api/{name}/{version}/batch/{batch_id}/{index}/files", responses=ERRORS, tags=["batch"]
)
async def batch_files(
    name: str, version: str, batch_id: str, index: int, user: CurrentUser, request: Request
) -> list[str]:
    defn = await _services(request).get(name, version)
    return list(await asyncio.to_thread(_batches(request).files, user, defn, batch_id, index))


@router.get(
    "/api/{name}/{version}/batch/{batch_id}/{index}/files/{file_name}",
    responses=ERRORS,
    tags=["batch"],
)
async def batch_file(
    name: str,
    version: str,
    batch_id: str,
    index: int,
    file_name: str,
    user: CurrentUser,
    request: Request,
) -> Response:
    defn = await _services(request).get(name, version)
    files = await asyncio.to_thread(_batches(request).files, user, defn, batch_id, index)
    if file_name not in files:
        raise ApiError(404, "no such file")
    media = mimetypes.guess_type(file_name)[0] or "application/octet-stream"
    return Response(files[file_name], media_type=media)
