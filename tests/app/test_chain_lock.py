"""The chain lock's time bound: set in one statement per append, kept with the connection."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from app.audit.ledger import AuditUnavailable, locked_chain
from app.store.database import make_engine
from app.store.migrate import upgrade_engine
from tests.support.round_trips import traced


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL sent to the database in the block (PostgreSQL: as libpq traced it, since the
    append's own statements go to the driver's cursor without SQLAlchemy's events)."""
    if engine.dialect.name == "postgresql":
        with traced(engine) as trips:
            seen: list[str] = []
            yield seen
            seen += [line for line in trips.messages() if "\tParse\t" in line]
        return
    seen = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def lock_bound(connection: Any) -> tuple[str, ...]:
    """What the transaction's wait for a lock is bounded by, as the database reports it."""
    if connection.dialect.name == "sqlite":
        return (str(connection.exec_driver_sql("PRAGMA busy_timeout").scalar()),)
    return (
        connection.exec_driver_sql("SHOW lock_timeout").scalar(),
        connection.exec_driver_sql("SHOW statement_timeout").scalar(),
    )


def test_an_append_bounds_its_lock_wait_and_sets_it_only_when_it_changes(engine: Engine) -> None:
    sqlite = engine.dialect.name == "sqlite"
    with statements(engine) as first, locked_chain(engine, "feedback", 0.25) as chain:
        assert lock_bound(chain.connection) == (("250",) if sqlite else ("250ms", "250ms"))
    with statements(engine) as second, locked_chain(engine, "feedback", 0.25):
        pass
    bounding = [s for s in first + second if "busy_timeout =" in s or "set_config" in s]
    # SQLite keeps the value with the pooled connection; PostgreSQL's is for the transaction.
    assert len(bounding) == (1 if sqlite else 2)

    upgrade_engine(engine)  # the migration lock waits 30 s on SQLite: the next append resets it
    with locked_chain(engine, "feedback", 0.25) as chain:
        assert lock_bound(chain.connection) == (("250",) if sqlite else ("250ms", "250ms"))
    with engine.connect() as connection:
        outside = lock_bound(connection)
    assert outside == (("250",) if sqlite else ("0", "0"))


def test_a_held_chain_fails_the_append_within_its_bound(engine: Engine, database_url: str) -> None:
    holder = make_engine(database_url)
    try:
        with holder.connect() as connection, connection.begin():
            if holder.dialect.name == "sqlite":
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                connection.execute(
                    text("SELECT * FROM audit_chain WHERE name = 'feedback' FOR UPDATE")
                )
            started = time.monotonic()
            with pytest.raises(AuditUnavailable), locked_chain(engine, "feedback", 0.3):
                pass
            assert time.monotonic() - started < 3
    finally:
        holder.dispose()
