"""The web node's database (SQLAlchemy 2): users, refresh tokens, sessions, history,
snapshots, published services and their batches.

SQLite by default, PostgreSQL by URL; only web nodes touch it. Times are naive UTC.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, deferred, mapped_column, sessionmaker

log = logging.getLogger("rexec.web.db")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def new_id() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    pass


class Meta(Base):
    """Key/value settings shared by all web nodes (the JWT signing key)."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class RefreshToken(Base):
    """Only the SHA-256 of a refresh token is stored."""

    __tablename__ = "refresh_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class RSession(Base):
    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    node: Mapped[str] = mapped_column(String(255))
    #: active, closed (timed out) or gone (its shell disappeared)
    state: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_active: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    #: Where its shell waits between requests: parked on ``node`` under this key (hex;
    #: useless without the node's login, which the registry keeps sealed).
    park_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    workdir: Mapped[str] = mapped_column(Text, default="")
    executions: Mapped[int] = mapped_column(Integer, default=0)
    #: The web node (heartbeat id) using the session now; the lease ends with the
    #: request, or when that web node's heartbeat goes stale.
    holder: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: The execution running now (its number) and its console output so far, for
    #: readers on other web nodes.
    running: Mapped[int | None] = mapped_column(Integer, nullable=True)
    console_live: Mapped[str] = mapped_column(Text, default="")


class Execution(Base):
    __tablename__ = "executions"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(Text)
    success: Mapped[bool] = mapped_column(Boolean)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    console_output: Mapped[str] = mapped_column(Text, default="")
    warnings: Mapped[list[str]] = mapped_column(JSON, default=list)
    changed_files: Mapped[list[str]] = mapped_column(JSON, default=list)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime)
    finished_at: Mapped[dt.datetime] = mapped_column(DateTime)


class Snapshot(Base):
    __tablename__ = "snapshots"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    session_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    size: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = deferred(mapped_column(LargeBinary))


class Service(Base):
    """A published service version. ``revision`` changes whenever what its pools'
    templates run changes (initCode, its data, the pool sizes): pools are named by it."""

    __tablename__ = "services"
    #: AUTOINCREMENT: SQLite would reuse a deleted row's id, and pools are named by it.
    __table_args__ = (UniqueConstraint("name", "version"), {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    operation_id: Mapped[str] = mapped_column(String(128))
    code: Mapped[str] = mapped_column(Text)
    init_code: Mapped[str] = mapped_column(Text, default="")
    snapshot_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    #: What the template restores (a tar.gz of workspace.rds, files/, model.*), or None.
    data: Mapped[bytes | None] = deferred(mapped_column(LargeBinary, nullable=True))
    data_size: Mapped[int] = mapped_column(Integer, default=0)  # 0: no data
    inputs: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    outputs: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    output_files: Mapped[list[str]] = mapped_column(JSON, default=list)
    runtime_type: Mapped[str] = mapped_column(String(16), default="R")
    timeout: Mapped[float] = mapped_column(Float)
    isolation: Mapped[str] = mapped_column(String(16), default="shell")
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    pool_initial: Mapped[int] = mapped_column(Integer)
    pool_max: Mapped[int] = mapped_column(Integer)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Batch(Base):
    """A batch execution: its items are queued in ``batch_items``, claimed by whichever
    web node has room (``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL)."""

    __tablename__ = "batches"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    service_id: Mapped[int] = mapped_column(
        ForeignKey("services.id", ondelete="CASCADE"), index=True
    )
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: queued, running, complete, failed (no item succeeded) or cancelled
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    parallel_count: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class BatchItem(Base):
    __tablename__ = "batch_items"
    __table_args__ = (UniqueConstraint("batch_id", "index"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    #: queued, running, done (it ran: see result.success), failed (it could not run to
    #: the end: timed out, shell died, its web node stopped) or cancelled
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    worker: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: A running item whose lease ran out lost its web node: it fails, never runs again.
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class WebNodeRecord(Base):
    """A web node's heartbeat: every web node on a database, and whether it is alive."""

    __tablename__ = "web_nodes"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    address: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    seen_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class LoginFailure(Base):
    """Consecutive failed logins per user name, shared by every web node, so spreading
    guesses over web nodes does not escape the growing delay."""

    __tablename__ = "login_failures"
    username: Mapped[str] = mapped_column(String(150), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    last_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class RegisteredNode(Base):
    """A compute node in the registry all web nodes share. ``password_sealed`` is the
    node's QAP password sealed with the web nodes' shared secret (rexec.web.nodes)."""

    __tablename__ = "compute_nodes"
    __table_args__ = (UniqueConstraint("host", "port"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    user: Mapped[str | None] = mapped_column(String(150), nullable=True)
    password_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    pool_max: Mapped[int] = mapped_column(Integer, default=8)
    #: Reached over TLS from the first byte (with the web node's [compute_tls] files).
    tls: Mapped[bool] = mapped_column(Boolean, default=False)
    draining: Mapped[bool] = mapped_column(Boolean, default=False)
    #: As the last web node to check it saw it: healthy, draining or down.
    state: Mapped[str] = mapped_column(String(16), default="unknown")
    pools: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    checked_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Database:
    """An engine and a session factory; tables are created on first use."""

    def __init__(self, url: str) -> None:
        if url.startswith(("postgresql://", "postgres://")):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        options: dict[str, Any] = {"pool_pre_ping": True}
        if url.startswith("sqlite"):
            options["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.url = url
        self.engine = create_engine(url, **options)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        Base.metadata.create_all(self.engine)
        _add_missing_columns(self.engine)

    @property
    def kind(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error."""
        with self._sessions() as db, db.begin():
            yield db

    def ping(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def meta(self, key: str, default: str) -> str:
        """The shared value for ``key``, storing ``default`` if there is none yet."""
        try:
            with self.session() as db:
                row = db.get(Meta, key)
                if row is not None:
                    return row.value
                db.add(Meta(key=key, value=default))
        except IntegrityError:
            pass
        with self.session() as db:  # another web node may have won the race
            return db.scalars(select(Meta.value).where(Meta.key == key)).one()

    def dispose(self) -> None:
        self.engine.dispose()


def _add_missing_columns(engine: Any) -> None:
    """A database made by an earlier rexec gets the columns added since (each new column
    is nullable or has a scalar default): create_all makes missing tables only. Nothing
    is ever dropped or changed."""
    inspector = inspect(engine)
    with engine.begin() as connection:
        for table in Base.metadata.sorted_tables:
            present = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in present:
                    continue
                kind = column.type.compile(engine.dialect)
                clause = f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'
                default = column.default.arg if column.default is not None else None
                if default is not None and not callable(default):
                    literal = column.type.literal_processor(engine.dialect)
                    clause += f" NOT NULL DEFAULT {literal(default) if literal else default}"
                log.info("database: adding column %s.%s", table.name, column.name)
                connection.execute(text(clause))


def _sqlite_pragmas(connection: Any, record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()
