"""Published services on the web node: their records, their pools on the compute nodes,
and the call path.

Every service version has a named pool (``svc-<id>-r<revision>``) on each compute node,
whose template ran the service's helpers, restored its data and ran its ``initCode``
once; the web node keeps QAP connections to that pool's shells and hands one to each
call. A call is one QAP round trip (:func:`rexec_service_call` in
:mod:`rexec.web.service_code`) and touches the database not at all: service records
are cached for ``service_cache_ttl`` seconds, and every database access runs in a
worker thread, never on the event loop.

Isolation ``shell`` (the default): a connection serves calls until it has served
``service_recycle_after`` of them or one failed (R error, timeout), then it is closed and
its shell ends; the pool forks another ahead of demand. Isolation ``process``: every
call gets a freshly forked shell, closed after the call.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import io
import logging
import re
import secrets
import tarfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from rexec.client import AsyncConnection, ClientError, ConnectionLost, RError
from rexec.client import convert as conv
from rexec.client._async import aconnect, adefine_pool, apool_status, aremove_pool
from rexec.protocol import XT, Sexp
from rexec.web import rjson, service_code, service_types
from rexec.web.auth import Principal
from rexec.web.compute import Compute, NodeState
from rexec.web.db import Database, Service, Snapshot, User, utcnow
from rexec.web.errors import ApiError
from rexec.web.service_types import InputError, Parameter

log = logging.getLogger("rexec.web.services")

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ISOLATIONS = ("shell", "process")
POOL_PREFIX = "svc-"
#: Seconds a call waits after the timeout for the interrupted shell to answer.
INTERRUPT_GRACE = 3.0


@dataclass(frozen=True, slots=True)
class ServiceDef:
    """A service version as the call path needs it (an immutable copy of its row)."""

    id: int
    name: str
    version: str
    owner_id: int
    owner: str
    description: str
    operation_id: str
    code: str
    init_code: str
    snapshot_id: str | None
    has_data: bool
    inputs: tuple[Parameter, ...]
    outputs: tuple[Parameter, ...]
    output_files: tuple[str, ...]
    runtime_type: str
    timeout: float
    isolation: str
    is_default: bool
    pool_initial: int
    pool_max: int
    revision: int
    created_at: dt.datetime
    #: The database's own id (web nodes of other databases may share a compute node).
    cluster: str = ""

    @property
    def pool_name(self) -> str:
        return f"{POOL_PREFIX}{self.cluster}-{self.id}-r{self.revision}"

    @classmethod
    def of(cls, row: Service, owner: str, cluster: str = "") -> ServiceDef:
        return cls(
            row.id,
            row.name,
            row.version,
            row.owner_id,
            owner,
            row.description or "",
            row.operation_id,
            row.code,
            row.init_code or "",
            row.snapshot_id,
            row.data_size > 0,
            service_types.parse_parameters(row.inputs, "inputs"),
            service_types.parse_parameters(row.outputs, "outputs"),
            tuple(row.output_files or ()),
            row.runtime_type,
            float(row.timeout),
            row.isolation,
            bool(row.is_default),
            row.pool_initial,
            row.pool_max,
            row.revision,
            row.created_at,
            cluster,
        )

    def record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "operationId": self.operation_id,
            "inputParameterDefinitions": [p.describe() for p in self.inputs],
            "outputParameterDefinitions": [p.describe() for p in self.outputs],
            "outputFileNames": list(self.output_files),
            "runtimeType": self.runtime_type,
            "timeout": self.timeout,
            "isolation": self.isolation,
            "isDefault": self.is_default,
            "owner": self.owner,
            "creationTime": self.created_at.replace(tzinfo=dt.UTC).isoformat(),
            "snapshotId": self.snapshot_id,
            "code": self.code,
            "initCode": self.init_code,
            "pool": {"initialPoolSize": self.pool_initial, "maxPoolSize": self.pool_max},
        }


class CallFailed(Exception):
    """A call that did not run to its end: ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ====================================================================== connections


@dataclass(slots=True)
class Held:
    connection: AsyncConnection
    calls: int = 0


@dataclass(slots=True)
class Lane:
    """This web node's connections to one service pool on one compute node. ``limit``
    is this web node's share of the pool's shells: ``maxPoolSize`` divided among the
    live web nodes (each holds connections to the shells it uses, so together they
    never want more shells than the pool has)."""

    limit: int
    idle: list[Held] = field(default_factory=list)
    in_use: int = 0
    opening: int = 0  # spare connections being opened in the background
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    @property
    def free(self) -> int:
        return self.limit - self.in_use

    async def enter(self, timeout: float) -> bool:
        """A place for one call (False: none within ``timeout`` seconds)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.in_use >= self.limit:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            waiter = loop.create_future()
            self.waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                return False
            finally:
                if waiter in self.waiters:
                    self.waiters.remove(waiter)
        self.in_use += 1
        return True

    def leave(self) -> None:
        self.in_use -= 1
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)
                break


# ====================================================================== the manager


class Services:
    def __init__(self, db: Database, compute: Compute) -> None:
        self.db = db
        self.compute = compute
        self.settings = compute.settings
        self._cache: dict[tuple[str, str], tuple[ServiceDef | None, float]] = {}
        self._defaults: dict[str, tuple[str | None, float]] = {}
        self._names: dict[int, tuple[str, str]] = {}
        self._lanes: dict[tuple[str, str], Lane] = {}  # (pool name, node name)
        self._defined: dict[str, set[str]] = {}  # node name -> pool names defined there
        self._define_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Pools are named svc-<cluster>-<id>-r<revision>: <cluster> is this database's
        #: own random id, so web nodes of another database sharing a compute node
        #: never take (or remove) this one's pools.
        self.cluster = db.meta("cluster_id", secrets.token_hex(4))
        #: How many web nodes are alive (they share each pool's shells); set by the app.
        self.peers: Any = lambda: 1
        self.prefix = f"{POOL_PREFIX}{self.cluster}-"

    # ------------------------------------------------------------------ records
    def _load(self, name: str, version: str) -> ServiceDef | None:
        with self.db.session() as db:
            row = db.scalars(
                select(Service).where(Service.name == name, Service.version == version)
            ).first()
            if row is None:
                return None
            owner = db.get(User, row.owner_id)
            return ServiceDef.of(row, owner.username if owner else "", self.cluster)

    def _load_default(self, name: str) -> str | None:
        with self.db.session() as db:
            return db.scalars(
                select(Service.version).where(Service.name == name, Service.is_default)
            ).first()

    async def get(self, name: str, version: str) -> ServiceDef:
        """The service version (404 unknown), from the cache when fresh."""
        key = (name, version)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is None or now - cached[1] > self.settings.service_cache_ttl:
            defn = await asyncio.to_thread(self._load, name, version)
            cached = self._cache[key] = (defn, now)
        if cached[0] is None:
            raise ApiError(404, f"no service {name} version {version}")
        return cached[0]

    async def get_by_id(self, service_id: int) -> ServiceDef:
        """The service version with this row id (batch items name their service so)."""

        def name_of() -> tuple[str, str] | None:
            with self.db.session() as db:
                row = db.get(Service, service_id)
                return None if row is None else (row.name, row.version)

        key = self._names.get(service_id) or await asyncio.to_thread(name_of)
        if key is None:
            raise ApiError(404, "the service of this batch was deleted")
        self._names[service_id] = key
        return await self.get(*key)

    async def get_default(self, name: str) -> ServiceDef:
        cached = self._defaults.get(name)
        now = time.monotonic()
        if cached is None or now - cached[1] > self.settings.service_cache_ttl:
            cached = self._defaults[name] = (await asyncio.to_thread(self._load_default, name), now)
        if cached[0] is None:
            raise ApiError(404, f"service {name} has no default version")
        return await self.get(name, cached[0])

    def forget(self, name: str, version: str | None = None) -> None:
        self._defaults.pop(name, None)
        for service_id in [i for i, key in self._names.items() if key[0] == name]:
            del self._names[service_id]
        for key in [k for k in self._cache if k[0] == name and version in (None, k[1])]:
            del self._cache[key]

    def listing(self, name: str | None = None, version: str | None = None) -> list[ServiceDef]:
        with self.db.session() as db:
            query = select(Service, User.username).join(User, User.id == Service.owner_id)
            if name is not None:
                query = query.where(Service.name == name)
            if version is not None:
                query = query.where(Service.version == version)
            rows = db.execute(query.order_by(Service.name, Service.created_at)).all()
            return [ServiceDef.of(row, owner, self.cluster) for row, owner in rows]

    # ------------------------------------------------------------------ publish
    async def publish(
        self, user: Principal, name: str, version: str | None, body: dict[str, Any]
    ) -> ServiceDef:
        if not NAME.fullmatch(name):
            raise ApiError(400, f"service names match {NAME.pattern}")
        if version is not None and not NAME.fullmatch(version):
            raise ApiError(400, f"versions match {NAME.pattern}")
        version = version or str(uuid.uuid4())
        values = self._validate(body, name, partial=False)
        await asyncio.to_thread(self._check_name, user, name, version)
        if body.get("snapshotId") or body.get("model"):
            values["data"] = await asyncio.to_thread(
                self._service_data, user, body.get("snapshotId"), body.get("model")
            )
            values["data_size"] = len(values["data"])
            values["snapshot_id"] = body.get("snapshotId")
        values.setdefault("pool_initial", self.settings.service_pool_initial)
        values.setdefault("pool_max", self.settings.service_pool_max)
        # The row first (so the name is taken), its pools next; no pool, no service.
        row_id = await asyncio.to_thread(self._insert, user, name, version, values)
        defn = await self.get_fresh(name, version)
        try:
            await self.define_everywhere(defn)
        except BaseException:
            await asyncio.to_thread(self._delete_row, row_id)
            self.forget(name)
            raise
        log.info("service %s %s published by %s", name, version, user.username)
        return defn

    async def get_fresh(self, name: str, version: str) -> ServiceDef:
        self.forget(name, version)
        return await self.get(name, version)

    def _validate(self, body: dict[str, Any], name: str, *, partial: bool) -> dict[str, Any]:
        """The columns a publish (or a PATCH, ``partial``) body sets; 400 when bad."""
        known = {
            "code",
            "initCode",
            "snapshotId",
            "model",
            "description",
            "operationId",
            "inputParameterDefinitions",
            "outputParameterDefinitions",
            "outputFileNames",
            "runtimeType",
            "timeout",
            "isolation",
            "isDefault",
        }
        unknown = set(body) - known
        if unknown:
            raise ApiError(400, f"unknown field(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}

        def text(key: str, limit: int) -> str | None:
            value = body.get(key)
            if value is None:
                return None
            if not isinstance(value, str) or len(value) > limit:
                raise ApiError(400, f"{key} is a string of at most {limit} characters")
            return value

        code = text("code", 1024 * 1024)
        if code is None and not partial:
            raise ApiError(400, "code is required")
        if code is not None:
            if not code.strip():
                raise ApiError(400, "code is empty")
            values["code"] = code
        init = text("initCode", self.settings.service_max_init_code)
        if init is not None:
            values["init_code"] = init
        if (description := text("description", 4096)) is not None:
            values["description"] = description
        operation = text("operationId", 128)
        if operation is not None:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", operation):
                raise ApiError(400, "operationId is letters, digits and _")
            values["operation_id"] = operation
        elif not partial:
            values["operation_id"] = "consume" + re.sub(r"[^A-Za-z0-9_]", "", name.title())
        for key, column in (
            ("inputParameterDefinitions", "inputs"),
            ("outputParameterDefinitions", "outputs"),
        ):
            if key in body:
                try:
                    parsed = service_types.parse_parameters(body[key], key)
                except ValueError as exc:
                    raise ApiError(400, str(exc)) from None
                values[column] = [p.describe() for p in parsed]
        if "outputFileNames" in body:
            files = body["outputFileNames"] or []
            if not isinstance(files, list) or not all(
                isinstance(f, str) and _plain_file_name(f) for f in files
            ):
                raise ApiError(400, "outputFileNames are plain file names")
            values["output_files"] = list(dict.fromkeys(files))
        runtime = body.get("runtimeType")
        if runtime is not None and runtime != "R":
            raise ApiError(400, "runtimeType must be R")
        timeout = body.get("timeout")
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, int | float):
                raise ApiError(400, "timeout is a number of seconds")
            if not 0 < timeout <= self.settings.service_max_timeout:
                raise ApiError(
                    400, f"timeout is between 0 and {self.settings.service_max_timeout} seconds"
                )
            values["timeout"] = float(timeout)
        elif not partial:
            values["timeout"] = self.settings.service_timeout
        isolation = body.get("isolation")
        if isolation is not None:
            if isolation not in ISOLATIONS:
                raise ApiError(400, f"isolation is one of {', '.join(ISOLATIONS)}")
            values["isolation"] = isolation
        if "isDefault" in body:
            if not isinstance(body["isDefault"], bool):
                raise ApiError(400, "isDefault is a boolean")
            values["is_default"] = body["isDefault"]
        if body.get("model") is not None and not isinstance(body["model"], str):
            raise ApiError(400, "model is a base64 string (saveRDS or save output)")
        if partial and ("snapshotId" in body or "model" in body):
            values["_data"] = True
        return values

    def _check_name(self, user: Principal, name: str, version: str) -> None:
        with self.db.session() as db:
            first = db.scalars(
                select(Service).where(Service.name == name).order_by(Service.id).limit(1)
            ).first()
            if first is not None and first.owner_id != user.id and not user.is_owner:
                raise ApiError(403, f"the name {name!r} belongs to another user")
            taken = db.scalars(
                select(Service.id).where(Service.name == name, Service.version == version)
            ).first()
            if taken is not None:
                raise ApiError(409, f"service {name} version {version} exists")

    def _service_data(self, user: Principal, snapshot_id: str | None, model: str | None) -> bytes:
        """The tar.gz a service's template restores: a snapshot's workspace.rds and
        files/ (copied now: the service keeps them if the snapshot is deleted) and a
        published model as model.rds or model.RData."""
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:gz") as archive:
            if snapshot_id:
                with self.db.session() as db:
                    row = db.get(Snapshot, snapshot_id)
                    if row is None or not (user.is_owner or row.owner_id == user.id):
                        raise ApiError(404, "no such snapshot")
                    content = bytes(row.content)
                with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as snapshot:
                    for member in snapshot.getmembers():
                        if member.isfile() or member.isdir():
                            extracted = snapshot.extractfile(member) if member.isfile() else None
                            archive.addfile(member, extracted)
            if model:
                try:
                    raw = base64.b64decode(model, validate=True)
                except ValueError:
                    raise ApiError(400, "model is not valid base64") from None
                # saveRDS output is gzip (or xz/bzip2) of "X\n"/"A\n"; save() of "RDX".
                plain = _decompressed_head(raw)
                name = "model.RData" if plain.startswith((b"RDX", b"RDA")) else "model.rds"
                info = tarfile.TarInfo(name)
                info.size = len(raw)
                archive.addfile(info, io.BytesIO(raw))
        data = out.getvalue()
        if len(data) > self.settings.service_max_data:
            raise ApiError(
                413, f"a service's data is at most {self.settings.service_max_data} bytes"
            )
        return data

    def _insert(self, user: Principal, name: str, version: str, values: dict[str, Any]) -> int:
        try:
            with self.db.session() as db:
                if values.get("is_default"):
                    for other in db.scalars(select(Service).where(Service.name == name)):
                        other.is_default = False
                row = Service(name=name, version=version, owner_id=user.id, **values)
                db.add(row)
                db.flush()
                return row.id
        except IntegrityError:
            raise ApiError(409, f"service {name} version {version} exists") from None

    def _delete_row(self, row_id: int) -> None:
        with self.db.session() as db:
            row = db.get(Service, row_id)
            if row is not None:
                db.delete(row)

    # ------------------------------------------------------------------ change
    def _editable(self, db: Any, user: Principal, name: str, version: str) -> Service:
        row = db.scalars(
            select(Service).where(Service.name == name, Service.version == version)
        ).first()
        if row is None:
            raise ApiError(404, f"no service {name} version {version}")
        if row.owner_id != user.id and not user.is_owner:
            raise ApiError(403, "only its publisher or an Owner may change this service")
        return row

    async def update(
        self, user: Principal, name: str, version: str, body: dict[str, Any]
    ) -> ServiceDef:
        values = self._validate(body, name, partial=True)
        data_changed = values.pop("_data", False)
        if data_changed:
            values["data"] = (
                await asyncio.to_thread(
                    self._service_data, user, body.get("snapshotId"), body.get("model")
                )
                if body.get("snapshotId") or body.get("model")
                else None
            )
            values["snapshot_id"] = body.get("snapshotId")
            values["data_size"] = len(values["data"] or b"")
        old = await self.get_fresh(name, version)
        rebuild = data_changed or ("init_code" in values and values["init_code"] != old.init_code)
        await asyncio.to_thread(self._apply, user, name, version, values, rebuild)
        new = await self.get_fresh(name, version)
        if rebuild:
            try:
                await self.define_everywhere(new)
            except BaseException:  # keep serving the old pools
                await asyncio.to_thread(self._restore, old)
                self.forget(name)
                raise
            self._track(self.remove_everywhere(old.pool_name))
        self.forget(name)
        return new

    def _apply(
        self, user: Principal, name: str, version: str, values: dict[str, Any], rebuild: bool
    ) -> None:
        with self.db.session() as db:
            row = self._editable(db, user, name, version)
            if values.get("is_default"):
                for other in db.scalars(select(Service).where(Service.name == name)):
                    other.is_default = False
            for key, value in values.items():
                setattr(row, key, value)
            if rebuild:
                row.revision += 1
            row.updated_at = utcnow()

    def _restore(self, old: ServiceDef) -> None:
        with self.db.session() as db:
            row = db.get(Service, old.id)
            if row is not None:
                row.revision = old.revision
                row.init_code = old.init_code

    async def set_pool(
        self, user: Principal, name: str, version: str, initial: int, most: int
    ) -> ServiceDef:
        limit = self.settings.service_pool_limit
        if not 1 <= most <= limit or not 0 <= initial <= most:
            raise ApiError(400, f"need 0 <= initialPoolSize <= maxPoolSize <= {limit}")
        old = await self.get_fresh(name, version)
        await asyncio.to_thread(self._set_pool_row, user, name, version, initial, most)
        new = await self.get_fresh(name, version)
        try:
            await self.define_everywhere(new)
        except BaseException:
            await asyncio.to_thread(
                self._set_pool_row,
                user,
                name,
                version,
                old.pool_initial,
                old.pool_max,
                old.revision,
            )
            self.forget(name)
            raise
        self._track(self.remove_everywhere(old.pool_name))
        return new

    def _set_pool_row(
        self,
        user: Principal,
        name: str,
        version: str,
        initial: int,
        most: int,
        revision: int | None = None,
    ) -> None:
        with self.db.session() as db:
            row = self._editable(db, user, name, version)
            row.pool_initial, row.pool_max = initial, most
            row.revision = revision if revision is not None else row.revision + 1

    async def delete(self, user: Principal, name: str, version: str) -> None:
        defn = await self.get_fresh(name, version)
        await asyncio.to_thread(self._delete_editable, user, name, version)
        self.forget(name)
        await self.remove_everywhere(defn.pool_name)

    def _delete_editable(self, user: Principal, name: str, version: str) -> None:
        with self.db.session() as db:
            db.delete(self._editable(db, user, name, version))

    # ------------------------------------------------------------------ pools
    def _nodes(self) -> list[NodeState]:
        return self.compute.nodes

    def _credentials(self, node: NodeState) -> dict[str, Any]:
        if node.config.user is None:
            raise CallFailed(
                503,
                f"compute node {node.config.name} has no login for this web node: service "
                "pools need one (a user of the compute node's users file)",
            )
        return {**self.compute.qap(node), "password": node.config.password or ""}

    async def _data(self, defn: ServiceDef) -> bytes | None:
        if not defn.has_data:
            return None

        def load() -> bytes | None:
            with self.db.session() as db:
                row = db.get(Service, defn.id)
                return None if row is None or row.data is None else bytes(row.data)

        return await asyncio.to_thread(load)

    async def define(self, defn: ServiceDef, node: NodeState, data: bytes | None) -> None:
        """Start the service's pool on ``node`` (once; concurrent callers wait for it)."""
        lock = self._define_locks.setdefault((node.config.name, defn.pool_name), asyncio.Lock())
        async with lock:
            if defn.pool_name in self._defined.get(node.config.name, set()):
                return
            init = service_code.template_init(defn.init_code, data is not None)
            try:
                await adefine_pool(
                    defn.pool_name,
                    init,
                    initial=defn.pool_initial,
                    max=defn.pool_max,
                    data=data,
                    timeout=self.settings.service_define_timeout,
                    **self._credentials(node),
                )
            except RError as exc:
                raise ApiError(400, f"initCode failed on {node.config.name}: {exc}") from None
            except ClientError as exc:
                text = str(exc)
                if "did not start" in text:
                    raise ApiError(400, f"initCode failed on {node.config.name}: {text}") from None
                raise CallFailed(503, f"{node.config.name}: {text}") from None
            except (OSError, TimeoutError) as exc:
                raise CallFailed(503, f"{node.config.name}: {exc!r}") from None
            self._defined.setdefault(node.config.name, set()).add(defn.pool_name)
            log.info("pool %s started on %s", defn.pool_name, node.config.name)

    async def define_everywhere(self, defn: ServiceDef) -> None:
        """The service's pool on every compute node; 400 when initCode fails, 503 when no
        node could start it (nodes that are down get it from :meth:`reconcile` later)."""
        data = await self._data(defn)
        outcomes = await asyncio.gather(
            *(self.define(defn, node, data) for node in self._nodes()), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, ApiError):
                self._track(self.remove_everywhere(defn.pool_name))
                raise outcome
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if len(failures) == len(outcomes):
            first = failures[0]
            if isinstance(first, CallFailed):
                raise ApiError(503, first.message, headers=self._retry())
            raise first

    async def remove_everywhere(self, pool_name: str) -> None:
        for key in [k for k in self._lanes if k[0] == pool_name]:
            lane = self._lanes.pop(key)
            for held in lane.idle:
                await held.connection.close()
        for node in self._nodes():
            defined = self._defined.get(node.config.name, set())
            defined.discard(pool_name)
            with contextlib.suppress(ClientError, OSError, TimeoutError, CallFailed):
                await aremove_pool(pool_name, **self._credentials(node))

    async def pool_status(self, defn: ServiceDef) -> list[dict[str, Any]]:
        async def one(node: NodeState) -> dict[str, Any]:
            try:
                status = await apool_status(**self._credentials(node))
            except (ClientError, OSError, TimeoutError, CallFailed) as exc:
                return {"node": node.config.name, "status": "down", "error": str(exc)}
            stats = status["pools"].get(defn.pool_name)
            if stats is None:
                return {"node": node.config.name, "status": "missing"}
            return {
                "node": node.config.name,
                "status": "ready",
                "idle": stats["idle"],
                "busy": stats["busy"],
                "starting": stats["starting"],
                "max": stats["max"],
            }

        return list(await asyncio.gather(*(one(node) for node in self._nodes())))

    async def reconcile(self) -> None:
        """Make every node run exactly the pools of the published services: start the
        missing ones (a compute node restarted, or was down at publish time), remove
        the ones no service has any more (deleted, or replaced by a new revision)."""
        wanted = {d.pool_name: d for d in await asyncio.to_thread(self.listing)}
        for node in self._nodes():
            try:
                status = await apool_status(**self._credentials(node))
            except (ClientError, OSError, TimeoutError, CallFailed):
                self._defined.pop(node.config.name, None)
                continue
            running = {n for n in status["pools"] if n.startswith(self.prefix)}
            self._defined[node.config.name] = set(running)
            for name in running - set(wanted):
                with contextlib.suppress(ClientError, OSError, TimeoutError):
                    await aremove_pool(name, **self._credentials(node))
                self._defined[node.config.name].discard(name)
            for name in set(wanted) - running:
                try:
                    await self.define(wanted[name], node, await self._data(wanted[name]))
                except (ApiError, CallFailed) as exc:
                    log.warning("pool %s on %s: %s", name, node.config.name, exc)

    async def keep_reconciling(self) -> None:
        while True:
            try:
                await self.reconcile()
            except Exception:
                log.exception("reconciling service pools failed")
            await asyncio.sleep(self.settings.service_reconcile_interval)

    # ------------------------------------------------------------------ calls
    def _lane(self, defn: ServiceDef, node: NodeState) -> Lane:
        key = (defn.pool_name, node.config.name)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = Lane(defn.pool_max)
        lane.limit = max(1, defn.pool_max // max(1, self.peers()))
        while lane.idle and lane.in_use + len(lane.idle) > lane.limit:  # another web node
            self._track(lane.idle.pop(0).connection.close())  # came: leave it its share
        return lane

    def _node_named(self, lane: Lane) -> NodeState:
        name = next(node for (_pool, node), known in self._lanes.items() if known is lane)
        return next(n for n in self._nodes() if n.config.name == name)

    def _retry(self) -> dict[str, str]:
        return {"Retry-After": str(self.settings.retry_after)}

    async def _checkout(self, defn: ServiceDef) -> tuple[Lane, NodeState, Held]:
        nodes = self.compute.working()  # neither draining nor down
        if not nodes:
            raise CallFailed(503, "no compute node takes work (all draining or down)")
        node = max(nodes, key=lambda n: self._lane(defn, n).free)
        lane = self._lane(defn, node)
        if not await lane.enter(self.settings.service_wait):
            raise CallFailed(503, "every shell of this service is busy")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.service_wait
        try:
            while True:
                while lane.idle:
                    held = lane.idle.pop()
                    if not held.connection.closed:
                        self._refill(defn, node, lane)
                        last = held.calls + 1 >= self.settings.service_recycle_after
                        if last and lane.in_use + len(lane.idle) + lane.opening < lane.limit:
                            lane.opening += 1  # its last call: its successor starts now
                            self._track(self._open_spare(defn, node, lane))
                        return lane, node, held
                # A connection of its own only within the share (spares being opened
                # count): more would queue on the compute node for a shell.
                if lane.in_use + lane.opening <= lane.limit or loop.time() > deadline:
                    return lane, node, Held(await self._open(defn, node))
                await asyncio.sleep(0.005)  # a spare is about to land in idle
        except BaseException:
            lane.leave()
            raise

    async def _open(self, defn: ServiceDef, node: NodeState) -> AsyncConnection:
        credentials = self._credentials(node)
        for attempt in range(2):
            try:
                connection = await aconnect(
                    **credentials, pool=defn.pool_name, timeout=self.settings.connect_timeout
                )
            except ClientError as exc:
                if "no such pool" in str(exc) and attempt == 0:
                    self._defined.get(node.config.name, set()).discard(defn.pool_name)
                    try:
                        await self.define(defn, node, await self._data(defn))
                    except ApiError as failed:
                        raise CallFailed(503, failed.message) from None
                    continue
                # One failed connection says little: the health checks decide "down".
                raise CallFailed(503, f"{node.config.name}: {exc}") from None
            except (OSError, TimeoutError) as exc:
                raise CallFailed(503, f"{node.config.name}: {exc!r}") from None
            connection.timeout = None
            node.reachable = True
            return connection
        raise CallFailed(503, "the service's pool could not be started")  # pragma: no cover

    def _refill(self, defn: ServiceDef, node: NodeState, lane: Lane) -> None:
        """Keep ``initialPoolSize`` connections open and warmed ahead of the calls (a new
        shell's connection and its first call's page faults stay off the call path;
        for isolation "process" these are the fresh shells the next calls take)."""
        ready = min(max(defn.pool_initial, 1), lane.limit)  # idle ones to keep
        room = lane.limit - lane.in_use - len(lane.idle) - lane.opening  # within the share
        for _ in range(min(ready - len(lane.idle) - lane.opening, room)):
            lane.opening += 1
            self._track(self._open_spare(defn, node, lane))

    async def _open_spare(self, defn: ServiceDef, node: NodeState, lane: Lane) -> None:
        try:
            connection = await self._open(defn, node)
            try:  # one empty call: the shell's first-call work done before a real call
                await connection.call(
                    "rexec_service_call",
                    "invisible(NULL)",
                    Sexp(XT.VECTOR, [], conv.attributes(names=conv.strings([]))),
                    conv.strings([]),
                    conv.strings([]),
                    10.0,
                    convert="raw",
                )
            except (ClientError, OSError):
                await connection.close()
                return
            if lane in self._lanes.values():
                lane.idle.append(Held(connection))
            else:
                await connection.close()
        except (CallFailed, ClientError, OSError) as exc:
            log.debug("no spare connection for %s: %s", defn.pool_name, exc)
        finally:
            lane.opening -= 1

    def _checkin(self, defn: ServiceDef, lane: Lane, held: Held, reusable: bool) -> None:
        lane.leave()
        keep = (
            lane.in_use + len(lane.idle) < lane.limit  # within this web node's share
            and reusable
            and defn.isolation == "shell"
            and held.calls < self.settings.service_recycle_after
            and not held.connection.closed
            and lane in self._lanes.values()  # its pool was not removed meanwhile
        )
        if keep:
            lane.idle.append(held)
        else:
            self._track(held.connection.close())
            if lane in self._lanes.values():
                self._refill(defn, self._node_named(lane), lane)

    async def call(
        self,
        defn: ServiceDef,
        body: Any,
        *,
        cancelled: asyncio.Event | None = None,
        timings: dict[str, float] | None = None,
    ) -> dict[str, Any]:
        """Run one call; the answer's JSON. Raises ApiError 400 (inputs) or CallFailed
        (502 shell died, 503 no shell, 504 timed out, 499 cancelled). ``timings`` gets
        the seconds spent per stage: inputs, checkout (a shell's connection), hop (the
        QAP round trip less R's time: both ways on the wire, encoding and decoding, the
        compute node's relay), r (R's own time in the call, as R measured it), outputs.
        A pool whose template predates R's own timing gives no hop: r is the round trip."""
        clock = time.perf_counter
        started = clock()
        try:
            inputs = service_types.convert_inputs(defn.inputs, body)
        except InputError as exc:
            raise ApiError(400, str(exc)) from None
        converted = clock()
        lane, _node, held = await self._checkout(defn)
        checked_out = clock()
        reusable = False
        try:
            raw = await self._run(defn, held, inputs, cancelled)
            ran = clock()
            held.calls += 1
            answer, reusable = self._answer(defn, raw)
            if timings is not None:
                round_trip = ran - checked_out
                in_r = _r_seconds(raw)
                timings.update(inputs=converted - started, checkout=checked_out - converted)
                if in_r is None:
                    timings["r"] = round_trip
                else:
                    in_r = min(max(in_r, 0.0), round_trip)  # R's clock is not ours
                    timings.update(hop=round_trip - in_r, r=in_r)
                timings["outputs"] = clock() - ran
            return answer
        finally:
            self._checkin(defn, lane, held, reusable)

    async def _run(
        self,
        defn: ServiceDef,
        held: Held,
        inputs: list[tuple[str, Sexp]],
        cancelled: asyncio.Event | None,
    ) -> Sexp:
        names = conv.strings(name for name, _ in inputs)
        listed = Sexp(XT.VECTOR, [value for _, value in inputs], conv.attributes(names=names))
        connection = held.connection
        call = asyncio.ensure_future(
            connection.call(
                "rexec_service_call",
                defn.code,
                listed,
                conv.strings(p.name for p in defn.outputs),
                conv.strings(defn.output_files),
                float(defn.timeout),
                convert="raw",
            )
        )
        waits: list[asyncio.Future[Any]] = [call]
        stop = asyncio.ensure_future(cancelled.wait()) if cancelled is not None else None
        if stop is not None:
            waits.append(stop)
        try:
            done, _ = await asyncio.wait(
                waits, timeout=defn.timeout + 1.0, return_when=asyncio.FIRST_COMPLETED
            )
            if call not in done:  # past the timeout (R's own limit did not stop it), or cancelled
                reason = "cancelled" if stop is not None and stop in done else "timeout"
                await self._interrupt(connection, call)
                if reason == "cancelled":
                    raise CallFailed(499, "the call was cancelled")
                raise CallFailed(504, f"the call ran past the service's {defn.timeout:g} s timeout")
            return call.result()
        except ConnectionLost as exc:
            raise CallFailed(502, f"the R shell died during the call: {exc}") from None
        except RError as exc:
            raise CallFailed(502, f"the call failed in the compute node: {exc}") from None
        finally:
            if stop is not None:
                stop.cancel()

    async def _interrupt(self, connection: AsyncConnection, call: asyncio.Future[Any]) -> None:
        with contextlib.suppress(ClientError, OSError, TimeoutError):
            await asyncio.wait_for(connection.cancel(), INTERRUPT_GRACE)
        with contextlib.suppress(asyncio.TimeoutError, ClientError, OSError):
            await asyncio.wait_for(asyncio.shield(call), INTERRUPT_GRACE)
        if not call.done():
            call.cancel()  # the connection is closed: the shell goes with it
        await connection.close()

    def _answer(self, defn: ServiceDef, raw: Sexp) -> tuple[dict[str, Any], bool]:
        """(the call's JSON answer, whether its shell may serve another call)."""
        parts = _named(raw)
        success = conv.to_python(parts["success"]) is True
        if conv.to_python(parts["timedOut"]) is True:
            raise CallFailed(504, f"the call ran past the service's {defn.timeout:g} s timeout")
        error = conv.to_python(parts["error"])
        found = conv.to_python(parts["found"])
        found = found if isinstance(found, list) else [found]
        values = list(parts["values"].value) if parts["values"].xt != XT.NULL else []
        outputs: dict[str, Any] = {}
        if success:
            for parameter, present, value in zip(defn.outputs, found, values, strict=False):
                if not present:
                    success, error = False, f"output parameter {parameter.name!r} was not set"
                    break
                problem = service_types.output_problem(parameter, value)
                if problem is not None:
                    success, error = False, problem
                    break
                outputs[parameter.name] = rjson.to_json(value)
        files: dict[str, str] = {}
        if success and parts["files"].xt != XT.NULL:
            for name, content in zip(defn.output_files, parts["files"].value, strict=False):
                if content.xt == XT.RAW:
                    files[name] = base64.b64encode(bytes(content.value)).decode("ascii")
        answer = {
            "success": success,
            "errorMessage": None if success else (error or "the call failed"),
            "consoleOutput": conv.to_python(parts["console"]) or "",
            "outputParameters": outputs if success else {},
            "outputFiles": files,
        }
        return answer, success

    # ------------------------------------------------------------------ lifetime
    def _track(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for lane in self._lanes.values():
            for held in lane.idle:
                await held.connection.close()
        self._lanes.clear()
        for task in list(self._tasks):
            task.cancel()


def _r_seconds(raw: Sexp) -> float | None:
    """The seconds R says it spent in a call (its answer's ``elapsed``), or None."""
    value = _named(raw).get("elapsed")
    if value is None:
        return None
    seconds = conv.to_python(value)
    return float(seconds) if isinstance(seconds, int | float) else None


def _named(s: Sexp) -> dict[str, Sexp]:
    names = conv.attribute_strings(s, "names") or []
    return {str(n): v for n, v in zip(names, s.value, strict=False)}


def _plain_file_name(name: str) -> bool:
    return (
        bool(name)
        and len(name) <= 255
        and "/" not in name
        and "\\" not in name
        and (name not in (".", ".."))
        and "\x00" not in name
    )


def _decompressed_head(raw: bytes) -> bytes:
    """The first bytes of an R file, compressed (gzip, bzip2, xz) or not."""
    import bz2
    import lzma
    import zlib

    for decompressor in (
        zlib.decompressobj(16 + zlib.MAX_WBITS),
        bz2.BZ2Decompressor(),
        lzma.LZMADecompressor(),
    ):
        with contextlib.suppress(Exception):
            head = decompressor.decompress(raw[:65536])
            if head:
                return head[:16]
    return raw[:16]
