"""The Alembic migrations build exactly the tables the models declare, and upgrade idempotently."""

from __future__ import annotations

import multiprocessing
import uuid
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlmodel import SQLModel

from app.audit import tables  # noqa: F401  (registers the tables)
from app.audit.ledger import verify_chain
from app.cli import main
from app.store import replay  # noqa: F401
from app.store.database import make_engine
from app.store.migrate import BASELINE, MIGRATIONS, current_revision, upgrade
from app.store.migrate import upgrade_engine as upgrade_to

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
    """Before the migrations, ``create_all`` made the baseline tables and no version table."""
    engine = make_engine(database_url)
    try:
        assert upgrade_to(engine, BASELINE) == BASELINE
        with engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE alembic_version")
        assert current_revision(engine) is None
        assert upgrade(database_url) == HEAD
        assert current_revision(engine) == HEAD
    finally:
        engine.dispose()


def test_workers_upgrading_together_migrate_once(database_url: str) -> None:
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        revisions = pool.map(upgrade, [database_url] * 3)
    assert revisions == [HEAD] * 3


def test_feedback_stored_before_the_audit_store_is_chained_in_arrival_order(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    try:
        upgrade_to(engine, BASELINE)
        cards = [uuid.uuid4() for _ in range(3)]
        with engine.begin() as connection:
            for number, card in enumerate(cards):
                connection.execute(
                    text(
                        "INSERT INTO feedback (dedupe_key, service_id, card_uuid, outcome, "
                        "accepted_suggestions, outcome_timestamp, received_at, client_iss) "
                        "VALUES (:key, 's', :card, 'accepted', '[]', :at, :at, 'iss')"
                    ),
                    {
                        "key": f"{number:064d}",
                        "card": card.hex if engine.dialect.name == "sqlite" else card,
                        "at": datetime(2026, 11, 20, 8, number, tzinfo=UTC),
                    },
                )
        upgrade_to(engine)
        report = verify_chain(engine, "feedback")
        with engine.connect() as connection:
            stored = connection.execute(
                text("SELECT sequence, card_uuid FROM feedback ORDER BY sequence")
            ).all()
    finally:
        engine.dispose()
    assert report.broken is None
    assert report.records == 3 and report.head.sequence == 3
    assert [uuid.UUID(str(card)) for _, card in stored] == cards
