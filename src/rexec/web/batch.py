"""Batch consumption: a batch's input records are queued in the web node's database and
run by whichever web node has room, ``parallelCount`` at a time.

Claiming is one transaction: the open batches are locked ``FOR UPDATE SKIP LOCKED`` (on
PostgreSQL; SQLite, one web node only, serialises writers itself), each one's running
items counted against its ``parallelCount``, and its next queued items marked
``running`` with this node's worker id and a lease. While an item runs its lease is
renewed; an item whose lease ran out lost its web node (stopped, killed) and is marked
failed, never run again: a web node restarted mid-batch finishes the batch's queued
items, and no item runs twice. An item that times out fails (it is not re-dispatched).
An item is put back in the queue only when it never started (no shell free: 503).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError

from rexec.web.auth import Principal
from rexec.web.db import Batch, BatchItem, Database, Service, utcnow
from rexec.web.errors import ApiError
from rexec.web.services import CallFailed, ServiceDef, Services
from rexec.web.settings import WebSettings

log = logging.getLogger("rexec.web.batch")
OPEN = ("queued", "running")
FINAL_ITEM = ("done", "failed", "cancelled")


@dataclass(slots=True)
class Claimed:
    id: int
    batch_id: str
    service_id: int
    index: int
    inputs: dict[str, Any]
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)


class Batches:
    def __init__(self, db: Database, services: Services, settings: WebSettings) -> None:
        self.db = db
        self.services = services
        self.settings = settings
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.running: dict[int, Claimed] = {}
        self.wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ API
    def submit(
        self, user: Principal, defn: ServiceDef, records: list[dict[str, Any]], parallel: int
    ) -> tuple[str, int]:
        parallel = max(1, min(parallel, self.settings.batch_parallel_max))
        with self.db.session() as db:
            batch = Batch(
                service_id=defn.id, owner_id=user.id, parallel_count=parallel, total=len(records)
            )
            db.add(batch)
            db.flush()
            db.add_all(
                BatchItem(batch_id=batch.id, index=i, inputs=record)
                for i, record in enumerate(records)
            )
            if not records:
                batch.state, batch.finished_at = "complete", utcnow()
            batch_id = batch.id
        self.wake.set()
        log.info("batch %s: %d items of %s %s", batch_id, len(records), defn.name, defn.version)
        return batch_id, parallel

    def _visible(self, db: Any, user: Principal, defn: ServiceDef, batch_id: str) -> Batch:
        batch = db.get(Batch, batch_id)
        if (
            batch is None
            or batch.service_id != defn.id
            or not (user.is_owner or batch.owner_id == user.id)
        ):
            raise ApiError(404, "no such batch execution")
        return batch

    def listing(self, user: Principal, defn: ServiceDef) -> list[str]:
        with self.db.session() as db:
            query = select(Batch.id).where(Batch.service_id == defn.id)
            if not user.is_owner:
                query = query.where(Batch.owner_id == user.id)
            return list(db.scalars(query.order_by(Batch.created_at)))

    def status(
        self, user: Principal, defn: ServiceDef, batch_id: str, partial: bool
    ) -> dict[str, Any]:
        with self.db.session() as db:
            batch = self._visible(db, user, defn, batch_id)
            items = db.execute(
                select(BatchItem.index, BatchItem.state, BatchItem.result)
                .where(BatchItem.batch_id == batch_id, BatchItem.state.in_(FINAL_ITEM))
                .order_by(BatchItem.index)
            ).all()
            over = batch.state not in OPEN
            results = []
            if partial or over:
                for index, state, result in items:
                    answer = dict(result or _failure(state, "cancelled before it ran"))
                    answer.setdefault("outputFiles", {})
                    files = answer.pop("outputFiles")
                    results.append(
                        {"index": index, "state": state, **answer, "outputFileNames": list(files)}
                    )
            return {
                "batchExecutionId": batch.id,
                "name": defn.name,
                "version": defn.version,
                "state": batch.state,
                "parallelCount": batch.parallel_count,
                "completedItemCount": len(items),
                "totalItemCount": batch.total,
                "batchExecutionResults": results,
            }

    def files(
        self, user: Principal, defn: ServiceDef, batch_id: str, index: int
    ) -> dict[str, bytes]:
        with self.db.session() as db:
            self._visible(db, user, defn, batch_id)
            item = db.scalars(
                select(BatchItem).where(BatchItem.batch_id == batch_id, BatchItem.index == index)
            ).first()
            if item is None:
                raise ApiError(404, "no such batch item")
            if item.state not in FINAL_ITEM:
                raise ApiError(409, "the item has not finished")
            files = (item.result or {}).get("outputFiles") or {}
            return {name: base64.b64decode(content) for name, content in files.items()}

    def cancel(self, user: Principal, defn: ServiceDef, batch_id: str) -> dict[str, Any]:
        with self.db.session() as db:
            batch = self._visible(db, user, defn, batch_id)
            if batch.state in OPEN:
                batch.state = "cancelled"
                db.execute(
                    update(BatchItem)
                    .where(BatchItem.batch_id == batch_id, BatchItem.state == "queued")
                    .values(state="cancelled", finished_at=utcnow())
                )
                if not _unfinished(db, batch_id):
                    batch.finished_at = utcnow()
        self.wake.set()
        return {"batchExecutionId": batch_id, "state": "cancelled"}

    # ------------------------------------------------------------------ dispatcher
    async def run(self) -> None:
        """Claim and run items until cancelled (one loop per web node)."""
        lease_every = max(self.settings.batch_lease / 3, 0.2)
        last_lease = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                now = loop.time()
                if now - last_lease >= lease_every:
                    await asyncio.to_thread(self._keep_leases)
                    last_lease = now
                room = self.settings.batch_workers - len(self.running)
                if self.running:
                    await self._notice_cancels()
                if room > 0:
                    for item in await asyncio.to_thread(self._claim, room):
                        self.running[item.id] = item
                        self._track(self._run_item(item))
            except OperationalError as exc:  # SQLite busy: next round
                log.debug("batch dispatcher: %s", exc)
            except Exception:
                log.exception("batch dispatcher failed; retrying")
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), 0.25 if self.running else 1.0)

    def _claim(self, room: int) -> list[Claimed]:
        claimed: list[Claimed] = []
        lease = utcnow() + dt.timedelta(seconds=self.settings.batch_lease)
        with self.db.session() as db:
            batches = db.scalars(
                select(Batch)
                .where(Batch.state.in_(OPEN))
                .order_by(Batch.created_at)
                .with_for_update(skip_locked=True)
            ).all()
            for batch in batches:
                if room <= 0:
                    break
                running = db.scalar(
                    select(func.count())
                    .select_from(BatchItem)
                    .where(BatchItem.batch_id == batch.id, BatchItem.state == "running")
                )
                want = min(room, batch.parallel_count - int(running or 0))
                if want <= 0:
                    continue
                items = db.scalars(
                    select(BatchItem)
                    .where(BatchItem.batch_id == batch.id, BatchItem.state == "queued")
                    .order_by(BatchItem.index)
                    .limit(want)
                    .with_for_update(skip_locked=True)
                ).all()
                for item in items:
                    item.state, item.worker = "running", self.worker
                    item.lease_until, item.started_at = lease, utcnow()
                    claimed.append(
                        Claimed(item.id, batch.id, batch.service_id, item.index, item.inputs)
                    )
                if items:
                    batch.state = "running"
                    room -= len(items)
        return claimed

    def _keep_leases(self) -> None:
        """Renew this node's leases; fail the running items whose web node is gone."""
        now = utcnow()
        with self.db.session() as db:
            if self.running:
                db.execute(
                    update(BatchItem)
                    .where(BatchItem.id.in_(list(self.running)), BatchItem.worker == self.worker)
                    .values(lease_until=now + dt.timedelta(seconds=self.settings.batch_lease))
                )
            lost = db.scalars(
                select(BatchItem)
                .where(BatchItem.state == "running", BatchItem.lease_until < now)
                .with_for_update(skip_locked=True)
            ).all()
            for item in lost:
                log.warning(
                    "batch %s item %d: its web node (%s) stopped while it ran; failed",
                    item.batch_id,
                    item.index,
                    item.worker,
                )
                item.state, item.finished_at = "failed", now
                item.result = _failure(
                    "failed", "interrupted: the web node running it stopped (it is not re-run)"
                )
            for batch_id in {item.batch_id for item in lost}:
                _maybe_finish(db, batch_id)
            # and any batch left open with nothing left to run (a finisher that failed)
            stale = db.scalars(
                select(Batch.id).where(
                    Batch.state.in_(OPEN),
                    ~select(BatchItem.id)
                    .where(BatchItem.batch_id == Batch.id, BatchItem.state.in_(OPEN))
                    .exists(),
                )
            ).all()
            for batch_id in stale:
                _maybe_finish(db, batch_id)

    async def _notice_cancels(self) -> None:
        ids = {item.batch_id for item in self.running.values()}

        def cancelled() -> set[str]:
            with self.db.session() as db:
                query = select(Batch.id).where(Batch.id.in_(ids), Batch.state == "cancelled")
                return set(db.scalars(query))

        gone = await asyncio.to_thread(cancelled)
        for item in self.running.values():
            if item.batch_id in gone:
                item.cancelled.set()

    async def _run_item(self, item: Claimed) -> None:
        state, result = "done", None
        try:
            defn = await self.services.get_by_id(item.service_id)
            result = await self.services.call(defn, item.inputs, cancelled=item.cancelled)
        except CallFailed as exc:
            if exc.status == 503:  # it never started: back in the queue
                log.info("batch %s item %d back in the queue: %s", item.batch_id, item.index, exc)
                await asyncio.to_thread(self._requeue, item.id)
                return
            state = "cancelled" if exc.status == 499 else "failed"
            result = _failure(state, exc.message)
        except ApiError as exc:
            state, result = "failed", _failure("failed", exc.message)
        except Exception as exc:  # never lose an item to a bug: it fails, with the reason
            log.exception("batch %s item %d", item.batch_id, item.index)
            state, result = "failed", _failure("failed", f"internal error: {exc!r}")
        finally:
            self.running.pop(item.id, None)
        await asyncio.to_thread(self._finish, item, state, result)
        self.wake.set()

    def _requeue(self, item_id: int) -> None:
        with self.db.session() as db:
            db.execute(
                update(BatchItem)
                .where(BatchItem.id == item_id, BatchItem.worker == self.worker)
                .values(state="queued", worker=None, lease_until=None, started_at=None)
            )

    def _finish(self, item: Claimed, state: str, result: dict[str, Any] | None) -> None:
        with self.db.session() as db:
            row = db.get(BatchItem, item.id)
            if row is None or row.state != "running" or row.worker != self.worker:
                return  # its lease ran out meanwhile: already failed
            row.state, row.result = state, result
            row.finished_at, row.lease_until = utcnow(), None
            db.flush()
            _maybe_finish(db, item.batch_id)

    def _track(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()


def _unfinished(db: Any, batch_id: str) -> int:
    return int(
        db.scalar(
            select(func.count())
            .select_from(BatchItem)
            .where(BatchItem.batch_id == batch_id, BatchItem.state.in_(OPEN))
        )
        or 0
    )


def _maybe_finish(db: Any, batch_id: str) -> None:
    """Close the batch once none of its items is queued or running. The batch row is
    locked first: two web nodes finishing its last two items at once would each count
    the other's item as still running (neither committed yet) and leave it open."""
    batch = db.scalars(select(Batch).where(Batch.id == batch_id).with_for_update()).first()
    if batch is None or batch.finished_at is not None or _unfinished(db, batch_id):
        return
    if batch.state != "cancelled":
        succeeded = db.scalar(
            select(func.count())
            .select_from(BatchItem)
            .where(BatchItem.batch_id == batch_id, BatchItem.state == "done")
        )
        batch.state = "complete" if succeeded or not batch.total else "failed"
    batch.finished_at = utcnow()


def _failure(state: str, message: str) -> dict[str, Any]:
    return {
        "success": False,
        "errorMessage": message,
        "consoleOutput": "",
        "outputParameters": {},
        "outputFiles": {},
    }


__all__ = ["Batches", "Service"]
