"""Secrets from mounted files (BEDSIDE_SECRETS_DIR, else /run/secrets): read, used, never logged."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import SettingsError
from sqlalchemy import select

from app.access.tokens import create_token
from app.audit.pseudonym import Pseudonymizer
from app.audit.tables import OutcomeRecord
from app.factory import create_app
from app.settings import Settings
from tests.conftest import TEST_ISSUER
from tests.support.api_tokens import bearer
from tests.support.cds_client import CdsTestClient
from tests.support.keys import SigningKey
from tests.support.servers import free_port, serve_on_loopback
from tests.support.services import build_test_registry

FILE_KEY = "key-from-a-mounted-file-" + "7f3a" * 10


@pytest.fixture
def secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A secrets folder holding the audit key (with the newline editors add), and the
    environment pointing at it with no BEDSIDE_AUDIT_HMAC_KEY of its own."""
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "bedside_audit_hmac_key").write_text(FILE_KEY + "\n", encoding="utf-8")
    monkeypatch.setenv("BEDSIDE_SECRETS_DIR", str(folder))
    monkeypatch.delenv("BEDSIDE_AUDIT_HMAC_KEY", raising=False)
    return folder


def test_a_secret_is_read_from_the_file_named_after_its_variable(secrets_dir: Path) -> None:
    settings = Settings()
    assert settings.audit_hmac_key is not None
    assert settings.audit_hmac_key.get_secret_value() == FILE_KEY
    assert settings.secrets_dir == secrets_dir
    assert FILE_KEY not in repr(settings)
    assert FILE_KEY not in str(settings.model_dump())


def test_any_setting_can_come_from_a_file_and_the_environment_wins(
    secrets_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (secrets_dir / "bedside_database_url").write_text("sqlite:///from-file.db", encoding="utf-8")
    assert Settings().database_url == "sqlite:///from-file.db"
    monkeypatch.setenv("BEDSIDE_AUDIT_HMAC_KEY", "from-the-environment-" + "0" * 20)
    key = Settings().audit_hmac_key
    assert key is not None and key.get_secret_value().startswith("from-the-environment-")


def test_a_kubernetes_secret_volume_is_read_through_its_symlinks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kubelet's layout (deploy/kubernetes mounts bedside-secrets at /run/secrets): each
    file is a link into ``..data``, itself a link to a timestamped folder swapped atomically on
    rotation; the folder's bookkeeping entries are no settings."""
    folder = tmp_path / "secrets"
    version = folder / "..2026_12_02_06_00_00.000000001"
    version.mkdir(parents=True)
    (version / "bedside_audit_hmac_key").write_text(FILE_KEY, encoding="utf-8")
    (version / "bedside_database_url").write_text("sqlite:///mounted.db\n", encoding="utf-8")
    (folder / "..data").symlink_to(version.name)
    for name in ("bedside_audit_hmac_key", "bedside_database_url"):
        (folder / name).symlink_to(f"..data/{name}")
    monkeypatch.setenv("BEDSIDE_SECRETS_DIR", str(folder))
    monkeypatch.delenv("BEDSIDE_AUDIT_HMAC_KEY", raising=False)
    monkeypatch.delenv("BEDSIDE_DATABASE_URL", raising=False)
    settings = Settings()
    assert settings.database_url == "sqlite:///mounted.db"
    assert settings.audit_hmac_key is not None
    assert settings.audit_hmac_key.get_secret_value() == FILE_KEY


def test_a_secrets_folder_that_is_not_there_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BEDSIDE_SECRETS_DIR", str(tmp_path / "not-mounted"))
    with pytest.raises(SettingsError, match="not a folder"):
        Settings()


def test_the_audit_key_from_a_file_pseudonymises_records_and_never_reaches_the_logs(
    secrets_dir: Path,
    database_url: str,
    clients_file: Path,
    signing_key: SigningKey,
    engine: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    api_token = create_token(engine, "lab-feed", "ingest")
    port = free_port()
    settings = Settings(
        database_url=database_url,
        clients_file=clients_file,
        public_url=f"http://127.0.0.1:{port}",
        log_level="DEBUG",
    )
    caplog.set_level(logging.DEBUG)
    app = create_app(settings, build_test_registry())
    with serve_on_loopback(app, port=port) as base_url:
        client = CdsTestClient(base_url, signing_key, TEST_ISSUER)
        call = client.call(
            "test-discharge",
            {
                "hook": "encounter-discharge",
                "hookInstance": str(uuid.uuid4()),
                "context": {"userId": "Practitioner/1", "patientId": "p1", "encounterId": "e1"},
                "prefetch": {
                    "patient": {"resourceType": "Patient", "id": "p1"},
                    "encounter": {"resourceType": "Encounter", "id": "e1"},
                },
            },
        )
        outcome = client.http.post(
            f"{base_url}/outcomes",
            json={
                "outcomes": [
                    {
                        "encounter": "Encounter/enc-secret-1",
                        "label": "readmission_30d",
                        "value": 1,
                        "observedAt": "2026-11-30T10:00:00Z",
                    }
                ]
            },
            headers=bearer(api_token),
        )
        client.close()
    assert (call.status_code, outcome.status_code) == (200, 200)
    with engine.connect() as connection:
        [stored_key] = connection.execute(select(OutcomeRecord.encounter_key)).scalars()
    assert stored_key == Pseudonymizer(FILE_KEY.encode()).key_for("Encounter", "enc-secret-1")
    logs = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert "request" in logs, "the scan saw the access log"
    assert FILE_KEY not in logs
    assert FILE_KEY[:16] not in logs
