"""The audit and token commands: head, purge under retention, token lifecycle, and the key rules."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from app.access.tokens import principal_for
from app.audit.ledger import locked_chain, verify_chain
from app.audit.pseudonym import KEY_FILE_NAME, MissingAuditKey, pseudonymizer_for
from app.audit.tables import AccessRecord
from app.cli import main
from app.factory import create_app
from app.settings import Settings
from app.store.database import make_engine
from app.store.migrate import upgrade
from tests.conftest import TEST_AUDIT_KEY
from tests.support.bedside_process import record_for


@pytest.fixture
def engine(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("BEDSIDE_DATABASE_URL", database_url)
    monkeypatch.setenv("BEDSIDE_AUDIT_HMAC_KEY", TEST_AUDIT_KEY)
    upgrade(database_url)
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def append(engine: Any, chain: str, indexes: range) -> None:
    with locked_chain(engine, chain, 5.0) as appender:
        for index in indexes:
            appender.append(record_for(chain, 0, index))


def test_audit_head_prints_every_chain_head_as_json(
    engine: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    append(engine, "prediction", range(3))
    assert main(["audit", "head"]) == 0
    printed = {head["chain"]: head for head in json.loads(capsys.readouterr().out)}
    report = verify_chain(engine, "prediction")
    assert printed["prediction"]["sequence"] == 3
    assert printed["prediction"]["hash"] == report.head.hash
    assert printed["feedback"]["sequence"] == 0 and set(printed) == {
        "prediction",
        "feedback",
        "outcome",
        "access",
    }


def test_purge_deletes_the_old_records_and_the_rest_still_verifies(
    engine: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    append(engine, "prediction", range(10))  # dated 10:00:00 … 10:00:09
    before = verify_chain(engine, "prediction").head
    assert main(["audit", "purge", "--before", "2026-11-22T10:00:05+00:00"]) == 0
    assert "prediction: 5 records before" in capsys.readouterr().out
    report = verify_chain(engine, "prediction")
    assert report.broken is None and report.records == 5
    assert (report.head.base_sequence, report.head.sequence) == (5, 10)
    assert report.head.hash == before.hash
    append(engine, "prediction", range(10, 12))
    assert verify_chain(engine, "prediction").broken is None
    # a purge does not make tampering with the remaining records invisible
    with engine.begin() as connection:
        connection.execute(text("UPDATE prediction SET probability = 0.99 WHERE sequence = 7"))
    assert verify_chain(engine, "prediction").broken.sequence == 7  # type: ignore[union-attr]
    with engine.connect() as connection:
        actions = list(connection.execute(select(AccessRecord.action)).scalars())
    assert actions == ["audit purge"]


def test_purge_without_a_retention_or_cut_off_refuses(
    engine: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    append(engine, "prediction", range(2))
    assert main(["audit", "purge"]) == 2
    assert "BEDSIDE_AUDIT_RETENTION_DAYS" in capsys.readouterr().err
    assert verify_chain(engine, "prediction").records == 2


def test_purge_uses_the_configured_retention(
    engine: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    append(engine, "prediction", range(4))  # dated 2026-11-22, days before "now"
    days = (datetime.now(UTC) - datetime(2026, 11, 22, tzinfo=UTC)).days
    monkeypatch.setenv("BEDSIDE_AUDIT_RETENTION_DAYS", str(days + 30))
    assert main(["audit", "purge"]) == 0
    assert verify_chain(engine, "prediction").records == 4  # younger than the retention
    monkeypatch.setenv("BEDSIDE_AUDIT_RETENTION_DAYS", str(max(days - 1, 1)))
    assert main(["audit", "purge"]) == 0
    assert verify_chain(engine, "prediction").records == 0
    assert verify_chain(engine, "prediction").broken is None


def test_token_create_list_revoke(engine: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "create", "--role", "safety_officer", "--name", "officer-a"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("bds_") and len(token) > 40
    assert principal_for(engine, token).role == "safety_officer"  # type: ignore[union-attr]
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT token_hash FROM api_token")).scalar_one()
    assert token not in stored
    assert main(["token", "create", "--role", "admin", "--name", "officer-a"]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["token", "list"]) == 0
    assert capsys.readouterr().out.split("\t")[:2] == ["officer-a", "safety_officer"]
    assert main(["token", "revoke", "--name", "officer-a"]) == 0
    assert principal_for(engine, token) is None
    assert main(["token", "revoke", "--name", "officer-a"]) == 1


def test_a_server_database_without_an_audit_key_refuses_to_start() -> None:
    settings = Settings(database_url="postgresql+psycopg://bedside@127.0.0.1:1/none")
    with pytest.raises(MissingAuditKey):
        create_app(settings)


def test_a_local_trial_keeps_one_generated_key_beside_its_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'trial' / 'bedside.db'}"
    first = pseudonymizer_for(url, None).key_for("Patient", "p1")
    second = pseudonymizer_for(url, None).key_for("Patient", "p1")
    key_file = tmp_path / "trial" / KEY_FILE_NAME
    assert first == second
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert pseudonymizer_for(url, TEST_AUDIT_KEY).key_for("Patient", "p1") != first


def patient_key_in_new_process(url: str) -> str:
    return pseudonymizer_for(url, None).key_for("Patient", "p1")


def test_workers_starting_together_on_a_local_trial_share_one_generated_key(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'together' / 'bedside.db'}"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        keys = pool.map(patient_key_in_new_process, [url] * 8)
    assert len(set(keys)) == 1
    assert [path.name for path in (tmp_path / "together").iterdir()] == [KEY_FILE_NAME]
