"""A database an earlier rexec made gets the columns added since, on SQLite and on
PostgreSQL; nothing else changes and its rows stay."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import inspect, text

from rexec.web.db import Database, RegisteredNode, RSession, User

DROPPED = {"sessions": ("park_key", "executions", "holder"), "compute_nodes": ("tls",)}


def _age(db: Database) -> None:
    """Make the database look as before these columns existed, with a row in each."""
    with db.session() as s:
        user = User(username=f"u-{uuid.uuid4().hex[:8]}", password_hash="x", role="Owner")
        s.add(user)
        s.flush()
        s.add(RSession(owner_id=user.id, name="old", node="n:1"))
        s.add(RegisteredNode(host=f"h-{uuid.uuid4().hex[:6]}", port=1, pool_max=2))
    with db.engine.begin() as connection:
        for table, columns in DROPPED.items():
            for column in columns:
                connection.execute(text(f'ALTER TABLE {table} DROP COLUMN "{column}"'))
    db.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_database_of_an_earlier_rexec_gets_the_new_columns(kind, tmp_path, request) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}" if kind == "sqlite" else None
    if url is None:
        url = request.getfixturevalue("postgres_url")
    _age(Database(url))
    db = Database(url)  # as a newer web node starts on it
    columns = {t: {c["name"] for c in inspect(db.engine).get_columns(t)} for t in DROPPED}
    for table, dropped in DROPPED.items():
        assert set(dropped) <= columns[table], (table, columns[table])
    with db.session() as s:
        old = s.query(RSession).filter_by(name="old").first()
        assert old is not None and old.executions == 0 and old.park_key is None
        assert all(node.tls is False for node in s.query(RegisteredNode))
    db.dispose()
