"""The SQLAlchemy engine for SQLite (embedded default, WAL) or PostgreSQL (psycopg 3)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import anyio
from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import create_engine

from app.store.liveness import replace_closed_connections

# Bounds a connection attempt, so that a database that does not answer cannot hang a CDS call.
CONNECT_TIMEOUT_SECONDS = 5
# libpq: drop a connection whose sent data goes unacknowledged this long (a frozen server).
TCP_USER_TIMEOUT_MS = 10_000
Result = TypeVar("Result")


def call_bound(write_timeout_seconds: float) -> float:
    """How long a request waits for the database in all: twice the lock wait (connecting,
    writing and committing included)."""
    return 2 * write_timeout_seconds


class StoreUnavailable(RuntimeError):
    """The database could not answer in time (down, locked, frozen or too slow): answer 503."""


async def run_bounded(seconds: float, function: Callable[..., Result], *args: Any) -> Result:
    """Run a blocking database call in a worker thread, giving up after ``seconds``.

    A database that stops answering (no refusal, no reset) would otherwise hold the caller for
    as long as the operating system keeps the connection: the call is abandoned instead (its
    thread finishes or fails on its own) and :class:`StoreUnavailable` raised. Any other
    database error is raised as :class:`StoreUnavailable` too.
    """
    try:
        with anyio.fail_after(seconds):
            return await anyio.to_thread.run_sync(function, *args, abandon_on_cancel=True)
    except TimeoutError:
        raise StoreUnavailable(f"the database did not answer within {seconds:g} s") from None
    except SQLAlchemyError as error:
        raise StoreUnavailable(f"database error: {type(error).__name__}") from error


def make_engine(database_url: str, pool_size: int = 10, max_overflow: int = 10) -> Engine:
    """An engine with sane pooling; SQLite files get WAL and their folder is created.

    ``pool_size`` and ``max_overflow`` bound a server database's connections per process."""
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
    if url.get_backend_name() == "postgresql":
        connect_args.setdefault("connect_timeout", CONNECT_TIMEOUT_SECONDS)
        connect_args.update(keepalives=1, keepalives_idle=10, keepalives_interval=5)
        connect_args["tcp_user_timeout"] = TCP_USER_TIMEOUT_MS
        for name in list(connect_args):
            if name in url.query:
                del connect_args[name]
    # psycopg connections are checked at checkout without a round trip (app.store.liveness).
    checked_locally = url.get_backend_name() == "postgresql" and url.get_driver_name() == "psycopg"
    engine = create_engine(
        url,
        pool_pre_ping=not checked_locally,
        pool_size=pool_size,
        max_overflow=max_overflow,
        connect_args=connect_args,
    )
    if checked_locally:
        replace_closed_connections(engine)
    return engine


SQLITE_BUSY_MILLISECONDS = 30_000


def _sqlite_pragmas(dbapi_connection: Any, record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MILLISECONDS}")
    cursor.close()
    record.info["busy_timeout"] = SQLITE_BUSY_MILLISECONDS


def set_busy_timeout(connection: Connection, milliseconds: int) -> None:
    """How long this SQLite connection waits for the write lock; a statement only when it
    changes (the pooled connection keeps its value across checkouts)."""
    pooled = connection.connection.info
    if pooled.get("busy_timeout") != milliseconds:
        connection.exec_driver_sql(f"PRAGMA busy_timeout = {milliseconds}")
        pooled["busy_timeout"] = milliseconds


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
        path = sqlite_file(engine.url)
        if path is not None:
            _read_existing_sqlite(path)
        return True
    except Exception:
        engine.dispose()
        return False


def sqlite_file(url: URL) -> Path | None:
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
