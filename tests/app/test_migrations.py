"""The Alembic migrations build exactly the tables the models declare, and upgrade idempotently."""

from __future__ import annotations

import multiprocessing

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

from app.cli import main
from app.store import explanations, feedback, replay  # noqa: F401  (registers the tables)
from app.store.database import make_engine
from app.store.migrate import MIGRATIONS, current_revision, upgrade

HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()


def test_migrations_match_the_models(database_url: str) -> None:
    assert upgrade(database_url) == HEAD
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, SQLModel.metadata) == []
    finally:
        engine.dispose()


def test_db_upgrade_twice_reports_the_head(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BEDSIDE_DATABASE_URL", database_url)
    assert main(["db", "upgrade"]) == 0
    assert main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"database at revision {HEAD}"] * 2
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) == HEAD
    finally:
        engine.dispose()


def test_a_database_made_by_create_all_is_adopted(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        SQLModel.metadata.create_all(engine)
        assert current_revision(engine) is None
        assert upgrade(database_url) == HEAD
        assert current_revision(engine) == HEAD
    finally:
        engine.dispose()


def test_workers_upgrading_together_migrate_once(database_url: str) -> None:
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        revisions = pool.map(upgrade, [database_url] * 3)
    assert revisions == [HEAD] * 3
