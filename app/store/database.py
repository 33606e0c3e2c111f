"""The SQLAlchemy engine for SQLite (embedded default, WAL) or PostgreSQL (psycopg 3)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import event, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlmodel import create_engine

# Bounds a connection attempt, so that a database that does not answer cannot hang a CDS call.
CONNECT_TIMEOUT_SECONDS = 5


class StoreUnavailable(RuntimeError):
    """The database could not take a write in time (down, locked or too slow): answer 503."""


def make_engine(database_url: str) -> Engine:
    """An engine with sane pooling; SQLite files get WAL and their folder is created."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_pre_ping=True
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    return create_engine(
        url, pool_pre_ping=True, pool_size=10, max_overflow=10, connect_args=connect_args
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_tables(engine: Engine) -> None:
    """Bring the tables up to date by running the migrations (idempotent)."""
    from app.store.migrate import upgrade_engine

    upgrade_engine(engine)


def ping(engine: Engine) -> bool:
    """True when the database answers; on failure the pool is emptied, to reconnect afresh.

    A pooled SQLite connection keeps working on a file that was deleted or moved away, so the
    SQLite file is also reopened by its path.
    """
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        sqlite_file = _sqlite_file(engine.url)
        if sqlite_file is not None:
            _read_existing_sqlite(sqlite_file)
        return True
    except Exception:
        engine.dispose()
        return False


def _sqlite_file(url: URL) -> Path | None:
    """The database file of a plain SQLite URL (not in-memory, not a ``file:`` URI)."""
    if url.get_backend_name() != "sqlite" or url.query.get("uri"):
        return None
    if not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def _read_existing_sqlite(path: Path) -> None:
    """Open ``path`` without creating it (``mode=rw``) and read its schema; raises on failure."""
    uri = f"file:{quote(str(path.resolve()))}?mode=rw"
    with closing(sqlite3.connect(uri, uri=True, timeout=CONNECT_TIMEOUT_SECONDS)) as connection:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
