"""The audit store through the running service: no unaudited card, feedback joined to its
prediction, outcomes by API token, access control and logging, outages, and no raw identifier
or secret anywhere in the database or the logs."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import make_url

from app.access.tokens import create_token
from app.audit.ledger import locked_chain, verify_chain
from app.audit.models import model_versions
from app.audit.pseudonym import Pseudonymizer
from app.audit.tables import AccessRecord, FeedbackRecord, OutcomeRecord, PredictionRecord
from app.factory import BUNDLED_MODELS
from app.models.package import load_package
from app.outcomes.store import Outcome, OutcomeStore
from app.store.database import make_engine
from tests.app.conftest import TrainedModel
from tests.conftest import TEST_AUDIT_KEY
from tests.support.api_tokens import bearer
from tests.support.bedside_process import record_for
from tests.support.cds_client import CdsTestClient
from tests.support.hook_requests import hook_request
from tests.support.outage import AuditStoreOutage, TcpRelay

pytestmark = pytest.mark.timeout(600)  # the first test pays for the session's trained model
DISCHARGE = "readmission-30d-encounter-discharge"
RunBedside = Callable[..., Any]


def rows(engine: Any, model: Any) -> list[Any]:
    with engine.connect() as connection:
        table = model.__table__
        return list(connection.execute(select(table).order_by(table.c.sequence)).mappings())


def card_of(client: CdsTestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.call(DISCHARGE, body)
    assert response.status_code == 200, response.text
    [card] = response.json()["cards"]
    return card


def feedback_entry(card: str, outcome: str = "accepted", at: datetime | None = None) -> dict:
    entry: dict[str, Any] = {
        "card": card,
        "outcome": outcome,
        "outcomeTimestamp": (at or datetime.now(UTC)).isoformat(),
    }
    if outcome == "overridden":
        entry["overrideReason"] = {
            "reason": {
                "system": "urn:bedside:override-reason",
                "code": "risk-overestimated",
                "display": "Risk overestimated",
            },
            "userComment": "seen in clinic last week",
        }
    return entry


# --- predictions -----------------------------------------------------------------------------


def test_every_card_has_its_prediction_record_with_what_the_model_saw_and_said(
    run_bedside: RunBedside, trained_model: TrainedModel, stays_by_risk: list, engine: Any
) -> None:
    _, record, encounter = stays_by_risk[-1]
    body = hook_request("encounter-discharge", record, encounter)
    with run_bedside(packages=[trained_model.package]) as client:
        card = card_of(client, body)
    [row] = rows(engine, PredictionRecord)
    keys = Pseudonymizer(TEST_AUDIT_KEY.encode())
    package = trained_model.package
    assert str(row["card_uuid"]) == card["uuid"] and row["card_shown"] is True
    assert (row["model"], row["model_version"], row["package_hash"]) == (
        package.name,
        package.version,
        package.package_hash,
    )
    assert row["service_id"] == DISCHARGE and row["hook"] == "encounter-discharge"
    assert row["hook_instance"] == body["hookInstance"]
    assert row["patient_key"] == keys.key_for("Patient", record.patient["id"])
    assert row["encounter_key"] == keys.key_for("Encounter", encounter["id"])
    assert row["user_key"] == keys.key_for("User", "Practitioner/attending-1")
    assert card["summary"] == f"Readmission risk: {round(row['probability'] * 100)}% (high)"
    assert row["band"] == "high"
    features = orjson.loads(row["features"])
    assert set(features) == set(package.spec.feature_names)
    drivers = orjson.loads(row["drivers"])
    assert drivers and all(driver["text"] in card["detail"] for driver in drivers)
    assert row["sex"] == record.patient["gender"]
    assert row["age_band"] != "unknown"
    provenance = orjson.loads(row["provenance"])
    sources = [source for item in provenance.values() for source in item["sources"]]
    assert sources, "provenance names its source resources"
    raw_ids = str(record.by_key)  # the record's resources, by their raw ids
    assert all(source.split("/")[1] not in raw_ids for source in sources)
    assert row["map_ms"] > 0 and row["score_ms"] > 0 and row["total_ms"] >= row["map_ms"]
    assert verify_chain(engine, "prediction").broken is None


def test_a_suppressed_low_risk_card_is_still_audited(
    run_bedside: RunBedside, trained_model: TrainedModel, stays_by_risk: list, engine: Any
) -> None:
    quiet = dataclasses.replace(
        trained_model.package,
        service={**trained_model.package.service, "card_for_low_risk": False},
    )
    _, record, encounter = stays_by_risk[0]
    with run_bedside(packages=[quiet]) as client:
        response = client.call(DISCHARGE, hook_request("encounter-discharge", record, encounter))
        assert response.json() == {"cards": []}
        [row] = rows(engine, PredictionRecord)
        explanation = client.http.get(f"{client.base_url}/explanations/{row['card_uuid']}")
    assert (row["band"], row["card_shown"]) == ("low", False)
    assert explanation.status_code == 404  # a card nobody was shown has no page


def test_explanation_page_is_read_from_the_prediction_record_and_logged(
    run_bedside: RunBedside, trained_model: TrainedModel, stays_by_risk: list, engine: Any
) -> None:
    _, record, encounter = stays_by_risk[-1]
    with run_bedside(packages=[trained_model.package]) as client:
        card = card_of(client, hook_request("encounter-discharge", record, encounter))
        page = client.http.get(f"{client.base_url}/explanations/{card['uuid']}")
    assert page.status_code == 200
    [access] = rows(engine, AccessRecord)
    assert (access["actor"], access["action"]) == ("explanation-link", "explanation")
    assert orjson.loads(access["parameters"]) == {"card_uuid": card["uuid"]}


def test_store_down_answers_503_and_readyz_fails_until_it_is_back(
    run_bedside: RunBedside,
    trained_model: TrainedModel,
    stays_by_risk: list,
    database_url: str,
    tmp_path: Path,
) -> None:
    """With JWT auth the replay memory is written first: a store that takes no writes refuses
    the call (503, retry) rather than risk an unaudited card or an unchecked replay."""
    _, record, encounter = stays_by_risk[-1]
    request = lambda: hook_request("encounter-discharge", record, encounter)  # noqa: E731
    with (
        AuditStoreOutage(database_url, tmp_path) as outage,
        run_bedside(packages=[trained_model.package], database_url=outage.url) as client,
    ):
        assert len(client.call(DISCHARGE, request()).json()["cards"]) == 1
        outage.cut()
        started = time.monotonic()
        during = client.call(DISCHARGE, request())
        elapsed = time.monotonic() - started
        ready_during = client.http.get(f"{client.base_url}/readyz")
        outage.restore()
        ready_after = client.http.get(f"{client.base_url}/readyz")
        after = client.call(DISCHARGE, request())
    assert during.status_code == 503, during.text
    assert during.json()["issue"][0]["code"] == "transient"
    assert elapsed < 10, "a stuck store must not hang the EHR"
    assert ready_during.status_code == 503
    assert ready_after.status_code == 200
    assert len(after.json()["cards"]) == 1
    assert_two_intact_predictions(database_url, after.json()["cards"][0]["uuid"])


def assert_two_intact_predictions(database_url: str, last_card: str) -> None:
    engine = make_engine(database_url)
    try:
        stored = [str(row["card_uuid"]) for row in rows(engine, PredictionRecord)]
        assert verify_chain(engine, "prediction").broken is None
    finally:
        engine.dispose()
    assert len(stored) == 2 and stored[-1] == last_card


@contextmanager
def prediction_chain_held(database_url: str) -> Iterator[None]:
    """Another session holds the prediction chain: PostgreSQL its head row, SQLite the file."""
    engine = make_engine(database_url)
    connection = engine.connect()
    transaction = connection.begin()
    try:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.execute(
                text("SELECT * FROM audit_chain WHERE name = 'prediction' FOR UPDATE")
            )
        yield
    finally:
        transaction.rollback()
        connection.close()
        engine.dispose()


def test_a_prediction_that_cannot_be_audited_gets_no_card_and_readyz_fails_until_it_can(
    run_bedside: RunBedside, trained_model: TrainedModel, stays_by_risk: list, database_url: str
) -> None:
    """The audit write itself fails (its chain is held past the write timeout): no card, an
    error counted in the metrics, /readyz failing, and cards again once the store is back.
    On SQLite the whole file is locked; the JWT replay memory, a file of its own, is not."""
    _, record, encounter = stays_by_risk[-1]
    request = lambda: hook_request("encounter-discharge", record, encounter)  # noqa: E731
    with run_bedside(packages=[trained_model.package]) as client:
        assert len(client.call(DISCHARGE, request()).json()["cards"]) == 1
        with prediction_chain_held(database_url):
            started = time.monotonic()
            during = client.call(DISCHARGE, request())
            elapsed = time.monotonic() - started
            ready_during = client.http.get(f"{client.base_url}/readyz")
            metrics = client.http.get(f"{client.base_url}/metrics").text
        ready_after = client.http.get(f"{client.base_url}/readyz")
        after = client.call(DISCHARGE, request())
    assert during.status_code == 200 and during.json() == {"cards": []}
    assert elapsed < 10
    assert ready_during.status_code == 503
    assert ready_during.json()["checks"]["audit"] == "not taking writes"
    assert "bedside_audit_write_failures_total 1.0" in metrics
    assert ready_after.status_code == 200
    assert len(after.json()["cards"]) == 1
    assert_two_intact_predictions(database_url, after.json()["cards"][0]["uuid"])


# --- feedback --------------------------------------------------------------------------------


def test_feedback_joins_its_prediction_and_duplicate_late_orphan_and_bad_entries_are_handled(
    run_bedside: RunBedside, trained_model: TrainedModel, stays_by_risk: list, engine: Any
) -> None:
    _, record, encounter = stays_by_risk[-1]
    with run_bedside(packages=[trained_model.package]) as client:
        card = card_of(client, hook_request("encounter-discharge", record, encounter))
        orphan = str(uuid.uuid4())
        late = datetime.now(UTC) + timedelta(days=40)
        override = feedback_entry(card["uuid"], "overridden")
        first = client.feedback(
            DISCHARGE,
            {
                "feedback": [
                    override,
                    {"card": "not-a-uuid", "outcome": "accepted"},
                    feedback_entry(orphan),
                    feedback_entry(card["uuid"], "accepted", at=late),
                ]
            },
        )
        again = client.feedback(DISCHARGE, {"feedback": [override]})
    assert first.status_code == 200
    diagnostics = [entry["diagnostics"] for entry in first.json()["issue"]]
    assert diagnostics[0] == "stored 3 of 4 feedback entries (0 already on record, 1 rejected)"
    assert diagnostics[1] == "1 stored entries refer to cards with no prediction on record"
    assert [e.get("expression") for e in first.json()["issue"][2:]] == [
        ["feedback[1].card"],
        ["feedback[1].outcomeTimestamp"],
    ]
    stored = rows(engine, FeedbackRecord)
    assert [(str(r["card_uuid"]), r["outcome"]) for r in stored] == [
        (card["uuid"], "overridden"),
        (orphan, "accepted"),
        (card["uuid"], "accepted"),
    ]
    assert stored[0]["override_code"] == "risk-overestimated"
    assert stored[2]["outcome_timestamp"] == late.replace(microsecond=late.microsecond)
    # the re-sent override is a duplicate, not a fourth row
    assert again.json()["issue"][0]["diagnostics"].startswith("stored 0 of 1")
    assert len(rows(engine, FeedbackRecord)) == 3
    assert verify_chain(engine, "feedback").broken is None


@pytest.mark.parametrize("auth", ["jwt", "insecure-dev"])
def test_feedback_while_the_store_is_down_gets_503_and_its_retry_is_stored_exactly_once(
    run_bedside: RunBedside,
    trained_model: TrainedModel,
    stays_by_risk: list,
    database_url: str,
    tmp_path: Path,
    engine: Any,
    auth: str,
) -> None:
    """Nothing is acknowledged that was not stored: feedback sent while the store takes no
    writes gets a 503 OperationOutcome (retry) and /readyz fails; the EHR's retry after recovery
    stores the entry once, and a retry of feedback already stored is a duplicate (a 200 saying
    so), not a second row. With JWT auth the replay memory refuses the call first; without it
    (``insecure-dev``) the feedback chain itself is what cannot be written."""
    _, record, encounter = stays_by_risk[-1]
    with (
        AuditStoreOutage(database_url, tmp_path) as outage,
        run_bedside(
            packages=[trained_model.package],
            database_url=outage.url,
            insecure_dev_auth=auth == "insecure-dev",
        ) as client,
    ):
        card = card_of(client, hook_request("encounter-discharge", record, encounter))
        body = {"feedback": [feedback_entry(card["uuid"], "overridden")]}
        outage.cut()
        started = time.monotonic()
        during = client.feedback(DISCHARGE, body)
        elapsed = time.monotonic() - started
        ready_during = client.http.get(f"{client.base_url}/readyz")
        stored_during = rows(engine, FeedbackRecord)  # read past the outage (relay or lock)
        outage.restore()
        ready_after = client.http.get(f"{client.base_url}/readyz")
        retried = client.feedback(DISCHARGE, body)  # each call signed anew, as an EHR does
        retried_again = client.feedback(DISCHARGE, body)  # its answer was lost, say
    assert during.status_code == 503, during.text
    assert during.headers["retry-after"] == "5"
    assert during.json()["resourceType"] == "OperationOutcome"
    assert [i["code"] for i in during.json()["issue"]] == ["transient"]
    assert elapsed < 10, f"waited {elapsed:.1f} s: a store that is down must not hang the EHR"
    assert stored_during == []
    assert ready_during.status_code == 503
    assert ready_during.json()["checks"]["audit"] == "not taking writes"
    assert ready_after.status_code == 200
    assert retried.status_code == 200, retried.text
    assert [i["diagnostics"] for i in retried.json()["issue"]] == [
        "stored 1 of 1 feedback entries (0 already on record, 0 rejected)"
    ]  # and no warning: the card's prediction is on record
    assert retried_again.status_code == 200, retried_again.text
    assert [i["diagnostics"] for i in retried_again.json()["issue"]] == [
        "stored 0 of 1 feedback entries (1 already on record, 0 rejected)"
    ]
    stored = rows(engine, FeedbackRecord)
    assert [(str(r["card_uuid"]), r["outcome"], r["override_code"]) for r in stored] == [
        (card["uuid"], "overridden", "risk-overestimated")
    ]
    assert stored[0]["client_iss"] == (client.iss if auth == "jwt" else "insecure-dev")
    report = verify_chain(engine, "feedback")
    assert report.broken is None and report.records == 1


# --- outcomes and access ---------------------------------------------------------------------


def test_outcomes_need_an_ingest_or_admin_token_and_keep_good_entries_of_a_bad_batch(
    run_bedside: RunBedside, engine: Any
) -> None:
    ingest = create_token(engine, "lab-feed", "ingest")
    officer = create_token(engine, "safety-1", "safety_officer")
    card = str(uuid.uuid4())
    batch = {
        "outcomes": [
            {
                "encounter": "Encounter/enc-77",
                "label": "readmission_30d",
                "value": 1,
                "observedAt": "2026-11-30T10:00:00Z",
            },
            {
                "encounter": "enc-78",
                "label": "Bad Label",
                "value": 0,
                "observedAt": "2026-11-30T10:00:00Z",
            },
            {
                "prediction": card,
                "label": "readmission_30d",
                "value": 0,
                "observedAt": "2026-11-30T11:00:00+01:00",
            },
            {"label": "readmission_30d", "value": 1, "observedAt": "2026-11-30T10:00:00Z"},
        ]
    }
    with run_bedside() as client:
        url = f"{client.base_url}/outcomes"
        anonymous = client.http.post(url, json=batch)
        wrong_role = client.http.post(url, json=batch, headers=bearer(officer))
        revoked_like = client.http.post(url, json=batch, headers=bearer(ingest + "x"))
        stored = client.http.post(url, json=batch, headers=bearer(ingest))
        again = client.http.post(url, json=batch, headers=bearer(ingest))
        all_bad = client.http.post(url, json={"outcomes": [{"label": 1}]}, headers=bearer(ingest))
        not_json = client.http.post(
            url, content=b"{", headers={**bearer(ingest), "Content-Type": "application/json"}
        )
    assert (anonymous.status_code, wrong_role.status_code, revoked_like.status_code) == (
        401,
        403,
        401,
    )
    assert anonymous.json()["resourceType"] == "OperationOutcome"
    assert stored.status_code == 200
    issues = stored.json()["issue"]
    assert issues[0]["diagnostics"] == "stored 2 of 4 outcomes (0 already on record, 2 rejected)"
    assert {tuple(issue["expression"]) for issue in issues[1:]} == {
        ("outcomes[1].label",),
        ("outcomes[3]",),
    }
    assert again.json()["issue"][0]["diagnostics"].startswith("stored 0 of 4 outcomes (2 already")
    assert (all_bad.status_code, not_json.status_code) == (400, 400)
    keys = Pseudonymizer(TEST_AUDIT_KEY.encode())
    saved = rows(engine, OutcomeRecord)
    assert [(r["encounter_key"], r["card_uuid"], r["value"]) for r in saved] == [
        (keys.key_for("Encounter", "enc-77"), None, 1.0),
        (None, uuid.UUID(card), 0.0),
    ]
    assert saved[1]["observed_at"] == datetime(2026, 11, 30, 10, tzinfo=UTC)
    assert {r["source"] for r in saved} == {"api:lab-feed"}
    assert verify_chain(engine, "outcome").broken is None


def test_audit_reads_need_a_safety_officer_or_admin_and_each_is_logged(
    run_bedside: RunBedside, engine: Any
) -> None:
    officer = create_token(engine, "safety-1", "safety_officer")
    ingest = create_token(engine, "lab-feed", "ingest")
    with run_bedside() as client:
        head = client.http.get(f"{client.base_url}/audit/head", headers=bearer(officer))
        verified = client.http.get(f"{client.base_url}/audit/verify", headers=bearer(officer))
        refused = client.http.get(f"{client.base_url}/audit/head", headers=bearer(ingest))
    assert head.status_code == 200
    assert {item["chain"] for item in head.json()} == {
        "prediction",
        "feedback",
        "outcome",
        "access",
    }
    assert verified.status_code == 200 and verified.json()["intact"] is True
    assert refused.status_code == 403
    logged = [(r["actor"], r["role"], r["action"]) for r in rows(engine, AccessRecord)]
    assert logged == [
        ("safety-1", "safety_officer", "audit head"),
        ("safety-1", "safety_officer", "audit verify"),
    ]
    # a read is logged before it happens: the verify saw its own access record
    assert verified.json()["chains"]["access"]["records"] == 2


# --- no raw identifiers or secrets -----------------------------------------------------------

RAW_PATIENT = "pt-SCAN-7731"
RAW_ENCOUNTER = "enc-SCAN-4410"
RAW_USER = "Practitioner/dr-SCAN-99"
FHIR_TOKEN = "fhir-access-token-SCAN-5b2f9e"


def scan_request() -> dict[str, Any]:
    return {
        "hook": "encounter-discharge",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": "http://127.0.0.1:9/fhir",
        "fhirAuthorization": {
            "access_token": FHIR_TOKEN,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "bedside",
        },
        "context": {"userId": RAW_USER, "patientId": RAW_PATIENT, "encounterId": RAW_ENCOUNTER},
        "prefetch": {
            "patient": {
                "resourceType": "Patient",
                "id": RAW_PATIENT,
                "gender": "male",
                "birthDate": "1944-01-09",
            },
            "encounter": {
                "resourceType": "Encounter",
                "id": RAW_ENCOUNTER,
                "status": "finished",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "IMP",
                },
                "subject": {"reference": f"Patient/{RAW_PATIENT}"},
                "period": {"start": "2026-11-20T08:00:00Z", "end": "2026-11-28T10:00:00Z"},
            },
            "observations": {
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [
                    {
                        "resource": {
                            "resourceType": "Observation",
                            "id": "obs-SCAN-1",
                            "status": "final",
                            "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0"}]},
                            "subject": {"reference": f"Patient/{RAW_PATIENT}"},
                            "effectiveDateTime": "2026-11-27T06:00:00Z",
                            "valueQuantity": {
                                "value": 2.4,
                                "unit": "mg/dL",
                                "system": "http://unitsofmeasure.org",
                                "code": "mg/dL",
                            },
                        }
                    }
                ],
            },
            "conditions": None,
            "encounters": None,
            "medications": None,
        },
    }


def database_text(database_url: str, tmp_path: Path) -> str:
    """Every value of every table, and for SQLite the raw bytes of the files too."""
    engine = create_engine(database_url)
    parts: list[str] = []
    try:
        with engine.connect() as connection:
            for table in inspect(connection).get_table_names():
                for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                    parts.append(repr(tuple(row)))
    finally:
        engine.dispose()
    for path in tmp_path.glob("bedside.db*"):
        parts.append(path.read_bytes().decode("latin-1"))
    return "\n".join(parts)


def test_no_raw_identifier_token_or_jwt_reaches_the_database_or_the_logs(
    run_bedside: RunBedside,
    trained_model: TrainedModel,
    database_url: str,
    tmp_path: Path,
    engine: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    api_token = create_token(engine, "lab-feed", "ingest")
    caplog.set_level(logging.DEBUG)
    with run_bedside(packages=[trained_model.package]) as client:
        url = f"{client.base_url}/cds-services/{DISCHARGE}"
        jwt = client.token(url)
        response = client.call(
            DISCHARGE, scan_request(), headers={"Authorization": f"Bearer {jwt}"}
        )
        [card] = response.json()["cards"]
        client.feedback(DISCHARGE, {"feedback": [feedback_entry(card["uuid"], "overridden")]})
        client.http.post(
            f"{client.base_url}/outcomes",
            json={
                "outcomes": [
                    {
                        "encounter": f"Encounter/{RAW_ENCOUNTER}",
                        "value": 1,
                        "label": "readmission_30d",
                        "observedAt": "2026-12-01T00:00:00Z",
                    }
                ]
            },
            headers=bearer(api_token),
        )
        client.http.get(f"{client.base_url}/explanations/{card['uuid']}")
    logs = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    stored = database_text(database_url, tmp_path)
    assert len(rows(engine, PredictionRecord)) == 1 and len(rows(engine, OutcomeRecord)) == 1
    for secret in (
        RAW_PATIENT,
        RAW_ENCOUNTER,
        RAW_USER,
        "dr-SCAN-99",
        "obs-SCAN-1",
        FHIR_TOKEN,
        jwt,
        jwt.split(".")[2],
        api_token,
    ):
        assert secret not in stored, f"{secret!r} is in the database"
        assert secret not in logs, f"{secret!r} is in the logs"


def test_each_served_model_version_is_recorded_with_its_first_and_latest_start(
    run_bedside: RunBedside, trained_model: TrainedModel, engine: Any
) -> None:
    package = trained_model.package
    retrained = dataclasses.replace(package, version="9.9.9", package_hash="f" * 64)
    with run_bedside(packages=[package]):
        pass
    with run_bedside(packages=[package]):
        pass
    with run_bedside(packages=[retrained]):
        pass
    versions = {v.version: v for v in model_versions(engine, package.name)}
    assert set(versions) == {package.version, "9.9.9"}
    first = versions[package.version]
    assert first.package_hash == package.package_hash
    assert first.last_started_at > first.first_started_at
    assert versions["9.9.9"].first_started_at == versions["9.9.9"].last_started_at
    assert orjson.loads(first.fingerprint)["sha256"] == package.fingerprint["sha256"]
    assert orjson.loads(first.performance)["auroc"] == package.card["performance"]["auroc"]


# --- review regressions ----------------------------------------------------------------------


def test_a_frozen_database_costs_a_bounded_wait_not_a_hang(
    run_bedside: RunBedside, trained_model: TrainedModel, stays_by_risk: list, database_url: str
) -> None:
    """PostgreSQL stops answering without refusing (a partition): the call gives up in time."""
    if not database_url.startswith("postgresql"):
        pytest.skip("a frozen network peer needs a server database")
    _, record, encounter = stays_by_risk[-1]
    url = make_url(database_url)
    relay = TcpRelay(url.host or "127.0.0.1", url.port or 5432)
    relay.start()
    relayed = url.set(host="127.0.0.1", port=relay.port).render_as_string(False)
    try:
        with run_bedside(
            packages=[trained_model.package], database_url=relayed, insecure_dev_auth=True
        ) as client:
            warm = client.call(DISCHARGE, hook_request("encounter-discharge", record, encounter))
            relay.frozen.set()
            started = time.monotonic()
            frozen = client.call(DISCHARGE, hook_request("encounter-discharge", record, encounter))
            elapsed = time.monotonic() - started
            relay.frozen.clear()
    finally:
        relay.stop()
    assert len(warm.json()["cards"]) == 1
    assert frozen.status_code == 200 and frozen.json() == {"cards": []}
    assert elapsed < 8, f"waited {elapsed:.1f} s for a frozen database"


def test_negative_zero_outcome_keeps_the_chain_verifiable(engine: Any) -> None:
    store = OutcomeStore(engine, Pseudonymizer(TEST_AUDIT_KEY.encode()), 2.0)
    outcome = Outcome("readmission_30d", -0.0, datetime(2026, 11, 30, tzinfo=UTC), "e-1")
    assert store.store_sync([outcome], "api:test").stored == 1
    assert verify_chain(engine, "outcome").broken is None


def test_verify_while_records_are_appended_never_reports_a_false_break(engine: Any) -> None:
    stop = threading.Event()
    written = [0]

    def keep_appending() -> None:
        while not stop.is_set():
            with locked_chain(engine, "prediction", 5.0) as chain:
                chain.append(record_for("prediction", 1, written[0]))
            written[0] += 1

    writer = threading.Thread(target=keep_appending, daemon=True)
    writer.start()
    try:
        deadline = time.monotonic() + 10
        while written[0] < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        before = written[0]
        reports = []
        while (len(reports) < 40 or written[0] < before + 5) and time.monotonic() < deadline:
            reports.append(verify_chain(engine, "prediction"))
    finally:
        stop.set()
        writer.join(timeout=10)
    assert all(report.broken is None for report in reports)
    assert reports[-1].records > reports[0].records > 0  # the writer really wrote meanwhile


@pytest.mark.parametrize(
    "reference", ["/", "   ", "Patient/123", "Encounter/", "Encounter/a b", "x" * 65]
)
def test_an_outcome_reference_that_names_no_encounter_is_refused(
    run_bedside: RunBedside, engine: Any, reference: str
) -> None:
    ingest = create_token(engine, "lab-feed", "ingest")
    entry = {
        "encounter": reference,
        "label": "readmission_30d",
        "value": 1,
        "observedAt": "2026-11-30T10:00:00Z",
    }
    with run_bedside() as client:
        response = client.http.post(
            f"{client.base_url}/outcomes", json={"outcomes": [entry]}, headers=bearer(ingest)
        )
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["outcomes[0].encounter"]
    assert rows(engine, OutcomeRecord) == []


def test_feedback_text_with_a_nul_character_is_refused_per_entry(
    bedside: CdsTestClient, engine: Any
) -> None:
    bad = feedback_entry(str(uuid.uuid4()), "overridden")
    bad["overrideReason"]["userComment"] = "before\x00after"
    good = feedback_entry(str(uuid.uuid4()))
    response = bedside.feedback("test-discharge", {"feedback": [bad, good]})
    assert response.status_code == 200
    assert response.json()["issue"][0]["diagnostics"].startswith("stored 1 of 2")
    assert [str(r["card_uuid"]) for r in rows(engine, FeedbackRecord)] == [good["card"]]


def test_free_text_attributes_longer_than_their_column_are_cut_not_fatal(
    run_bedside: RunBedside, engine: Any
) -> None:
    body = scan_request()
    body.pop("fhirServer")
    body.pop("fhirAuthorization")
    body["prefetch"]["patient"]["extension"] = [
        {
            "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
            "extension": [{"url": "text", "valueString": "R" * 300}],
        }
    ]
    with run_bedside(
        packages=[load_package(BUNDLED_MODELS / "readmission-30d")], insecure_dev_auth=True
    ) as client:
        response = client.call(DISCHARGE, body)
    assert len(response.json()["cards"]) == 1
    [row] = rows(engine, PredictionRecord)
    assert row["race"] == "R" * 128


def test_token_endpoints_answer_503_not_500_while_the_store_is_down(
    run_bedside: RunBedside, engine: Any, database_url: str, tmp_path: Path
) -> None:
    ingest = create_token(engine, "lab-feed", "ingest")
    officer = create_token(engine, "safety-1", "safety_officer")
    entry = {
        "encounter": "e-1",
        "label": "readmission_30d",
        "value": 1,
        "observedAt": "2026-11-30T10:00:00Z",
    }
    with (
        AuditStoreOutage(database_url, tmp_path) as outage,
        run_bedside(database_url=outage.url) as client,
    ):
        outage.cut()
        posted = client.http.post(
            f"{client.base_url}/outcomes", json={"outcomes": [entry]}, headers=bearer(ingest)
        )
        head = client.http.get(f"{client.base_url}/audit/head", headers=bearer(officer))
        explanation = client.http.get(f"{client.base_url}/explanations/{uuid.uuid4()}")
        outage.restore()
        after = client.http.post(
            f"{client.base_url}/outcomes", json={"outcomes": [entry]}, headers=bearer(ingest)
        )
    assert (posted.status_code, head.status_code) == (503, 503)
    assert posted.json()["issue"][0]["code"] == "transient"
    # SQLite: reads still work under a writer's lock (an unknown card is 404); PostgreSQL: 503
    assert explanation.status_code in ((404,) if database_url.startswith("sqlite") else (503,))
    assert after.status_code == 200
    assert len(rows(engine, OutcomeRecord)) == 1
