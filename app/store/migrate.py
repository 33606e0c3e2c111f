"""Alembic migrations of the database: ``bedside db upgrade``, also run at every start.

The migration scripts live in ``app/store/migrations`` and ship with the package; Alembic is
configured here, so no ``alembic.ini`` is needed. An upgrade holds a lock (a PostgreSQL advisory
lock, SQLite's write lock; and a lock within the process), so that workers starting together
migrate one after the other.
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from app.settings import Settings
from app.store.database import SQLITE_BUSY_MILLISECONDS, make_engine, set_busy_timeout

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The revision whose tables ``create_all`` made before there were migrations.
BASELINE = "0001"
BASELINE_TABLES = ("seen_token", "feedback", "explanation")
# Key of the PostgreSQL advisory lock held during an upgrade ("bedside" in ASCII).
LOCK_KEY = 0x62656473696465
# Alembic's ``context`` is a process-wide proxy, so one migration runs at a time per process.
_PROCESS_LOCK = threading.Lock()


def upgrade(database_url: str) -> str:
    """Migrate the database at ``database_url`` to the newest revision and return it."""
    engine = make_engine(database_url)
    try:
        return upgrade_engine(engine)
    finally:
        engine.dispose()


def upgrade_engine(engine: Engine, target: str = "head") -> str:
    """Migrate ``engine``'s database to ``target`` (the newest revision; idempotent); return it.

    A database whose tables ``create_all`` made is first stamped with the baseline revision.
    """
    with _PROCESS_LOCK, engine.begin() as connection:
        _lock(connection)
        config = _config(connection)
        if _revision(connection) is None and all(
            inspect(connection).has_table(table) for table in BASELINE_TABLES
        ):
            command.stamp(config, BASELINE)
        command.upgrade(config, target)
        revision = _revision(connection)
    assert revision is not None
    return revision


def current_revision(engine: Engine) -> str | None:
    """The database's revision; None before the first migration."""
    with engine.connect() as connection:
        return _revision(connection)


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def _lock(connection: Connection) -> None:
    """Hold the migration lock until the transaction ends."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    elif connection.dialect.name == "sqlite":
        set_busy_timeout(connection, SQLITE_BUSY_MILLISECONDS)
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser(
        "upgrade", help="apply the migrations to BEDSIDE_DATABASE_URL (safe to run repeatedly)"
    )


def run(args: argparse.Namespace) -> int:
    """Run the ``db`` action (``upgrade``, the only one) and print the revision reached."""
    revision = upgrade(Settings().database_url)
    print(f"database at revision {revision}")
    return 0
