"""Outcome sync (``bedside outcomes sync``) and the seismometer export (``bedside audit export``).

Predictions come from real discharge hook calls on stays of the session's synthetic cohort;
the stored outcomes are checked against the cohort's ``truth.csv``.
"""

from __future__ import annotations

import asyncio
import getpass
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
import yaml
from sqlalchemy import create_engine, select
from sqlalchemy.engine import Engine

from app.audit.export import EVENT_COLUMNS
from app.audit.ledger import content_columns, locked_chain, table_of, verify_chain
from app.audit.pseudonym import Pseudonymizer
from app.cli import main
from app.outcomes.sync import records_from_server
from fhir_mappers.fhirtime import parse_fhir_datetime
from fhir_mappers.labels import MORTALITY, READMISSION
from fhir_mappers.record import PatientRecord, records_from_ndjson
from tests.app.conftest import TrainedModel
from tests.conftest import TEST_AUDIT_KEY
from tests.support.cds_client import CdsTestClient
from tests.support.fhir_server import FhirTestServer
from tests.support.hook_requests import hook_request

DISCHARGE = "readmission-30d-encounter-discharge"

# The first test may pay for generating the cohort and training on it (a session fixture).
pytestmark = pytest.mark.timeout(600)

FAR_FUTURE = "2100-01-01T00:00:00+00:00"
PSEUDONYMS = Pseudonymizer(TEST_AUDIT_KEY.encode())
SUMMARY = re.compile(
    r"(\d+) outcomes derived from (\d+) patients; (\d+) for encounters with predictions: "
    r"(\d+) stored, (\d+) already on record"
)


@dataclass(frozen=True)
class Stay:
    patient_id: str
    encounter_id: str
    discharged: datetime
    readmitted: int
    readmission_start: datetime | None
    record: PatientRecord = field(repr=False)  # its by_key holds the whole cohort

    @property
    def encounter(self) -> dict[str, Any]:
        return self.record.by_key[f"Encounter/{self.encounter_id}"]

    @property
    def encounter_key(self) -> str:
        return PSEUDONYMS.key_for("Encounter", self.encounter_id)

    @property
    def patient_key(self) -> str:
        return PSEUDONYMS.key_for("Patient", self.patient_id)


@dataclass(frozen=True)
class Cohort:
    folder: Path
    records: list[PatientRecord] = field(repr=False)
    stays: list[Stay]  # three readmitted, then three not, all of different patients

    @property
    def readmitted(self) -> list[Stay]:
        return [stay for stay in self.stays if stay.readmitted]

    @property
    def not_readmitted(self) -> list[Stay]:
        return [stay for stay in self.stays if not stay.readmitted]


@pytest.fixture(scope="module")
def cohort(trained_model: TrainedModel) -> Cohort:
    records = records_from_ndjson(trained_model.cohort)
    by_patient = {record.patient["id"]: record for record in records}  # type: ignore[index]
    chosen: dict[int, list[Stay]] = {1: [], 0: []}
    patients: set[str] = set()
    for key in sorted(trained_model.truth):
        row = trained_model.truth[key]
        readmitted = int(row["readmitted"])
        if row["in_period"] != "1" or row["patient_id"] in patients or len(chosen[readmitted]) == 3:
            continue
        record = by_patient[row["patient_id"]]
        discharged = datetime.fromisoformat(row["discharge_time"])
        readmission_start = None
        if readmitted:
            readmission = record.by_key[f"Encounter/{row['readmission_encounter_id']}"]
            readmission_start = parse_fhir_datetime(readmission["period"]["start"])
            assert readmission_start is not None
            if readmission_start - discharged < timedelta(days=2):
                continue  # the window test needs room between discharge and readmission
        patients.add(row["patient_id"])
        chosen[readmitted].append(
            Stay(
                row["patient_id"],
                row["encounter_id"],
                discharged,
                readmitted,
                readmission_start,
                record,
            )
        )
    assert len(chosen[1]) == len(chosen[0]) == 3
    return Cohort(trained_model.cohort, records, [*chosen[1], *chosen[0]])


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch, database_url: str, capsys: pytest.CaptureFixture[str]
) -> Callable[..., str]:
    """Runs ``bedside …`` on the test database; returns what it printed."""
    monkeypatch.setenv("BEDSIDE_DATABASE_URL", database_url)
    monkeypatch.setenv("BEDSIDE_AUDIT_HMAC_KEY", TEST_AUDIT_KEY)

    def run(*argv: str) -> str:
        capsys.readouterr()
        assert main(list(argv)) == 0
        return capsys.readouterr().out

    return run


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def predict(client: CdsTestClient, stays: list[Stay]) -> list[dict[str, Any]]:
    """One discharge hook call per stay; the cards."""
    cards = []
    for stay in stays:
        body = hook_request("encounter-discharge", stay.record, stay.encounter)
        response = client.call(DISCHARGE, body)
        assert response.status_code == 200, response.text
        [card] = response.json()["cards"]
        cards.append(card)
    return cards


def seed_predictions(
    run_bedside: Callable[..., Any], trained_model: TrainedModel, stays: list[Stay]
) -> None:
    with run_bedside(packages=[trained_model.package]) as client:
        predict(client, stays)


def rows(engine: Engine, name: str) -> list[dict[str, Any]]:
    table = table_of(name)
    with engine.connect() as connection:
        return [
            dict(row)
            for row in connection.execute(select(table).order_by(table.c.sequence)).mappings()
        ]


def outcomes_by_key(engine: Engine) -> dict[tuple[str, str], dict[str, Any]]:
    """Stored outcomes by (encounter key, label); each pair stored once."""
    stored = rows(engine, "outcome")
    found = {(row["encounter_key"], row["label"]): row for row in stored}
    assert len(found) == len(stored)
    return found


def summary(output: str) -> tuple[int, int, int, int, int]:
    match = SUMMARY.search(output)
    assert match, output
    derived, patients, matched, stored, duplicates = (int(group) for group in match.groups())
    return derived, patients, matched, stored, duplicates


def test_ndjson_sync_stores_the_true_labels_of_predicted_encounters_only(
    run_bedside: Callable[..., Any],
    trained_model: TrainedModel,
    cohort: Cohort,
    cli: Callable[..., str],
    engine: Engine,
) -> None:
    predicted = [*cohort.readmitted[:2], *cohort.not_readmitted[:2]]
    seed_predictions(run_bedside, trained_model, predicted)

    first = cli("outcomes", "sync", "--ndjson", str(cohort.folder), "--as-of", FAR_FUTURE)
    derived, patients, matched, stored, duplicates = summary(first)
    assert patients == len(cohort.records)
    assert derived > 100 * matched  # the whole cohort is labelled, few encounters kept
    assert (matched, stored, duplicates) == (2 * len(predicted), 2 * len(predicted), 0)

    outcomes = outcomes_by_key(engine)
    assert {key for key, _ in outcomes} == {stay.encounter_key for stay in predicted}
    unpredicted = [stay for stay in cohort.stays if stay not in predicted]
    assert not {stay.encounter_key for stay in unpredicted} & {key for key, _ in outcomes}
    for stay in predicted:
        readmission = outcomes[(stay.encounter_key, READMISSION)]
        assert readmission["value"] == stay.readmitted
        if stay.readmitted:  # observed when the readmission began
            assert readmission["observed_at"] == stay.readmission_start
        else:  # observed when the window closed
            assert readmission["observed_at"] == stay.discharged + timedelta(days=30)
        mortality = outcomes[(stay.encounter_key, MORTALITY)]
        assert mortality["value"] == 0  # the generator kills no one
        assert mortality["observed_at"] == stay.discharged
        assert readmission["source"] == mortality["source"] == "sync:ndjson"
        assert readmission["card_uuid"] is None

    again = cli("outcomes", "sync", "--ndjson", str(cohort.folder), "--as-of", FAR_FUTURE)
    assert summary(again)[2:] == (2 * len(predicted), 0, 2 * len(predicted))
    assert len(rows(engine, "outcome")) == 2 * len(predicted)
    report = verify_chain(engine, "outcome")
    assert report.broken is None and report.records == 2 * len(predicted)


def test_sync_as_of_inside_the_window_stores_no_readmission_label_yet(
    run_bedside: Callable[..., Any],
    trained_model: TrainedModel,
    cohort: Cohort,
    cli: Callable[..., str],
    engine: Engine,
) -> None:
    open_window, readmitted_later, readmitted_early = (
        cohort.not_readmitted[0],
        cohort.readmitted[0],
        cohort.readmitted[1],
    )
    assert readmitted_later.readmission_start and readmitted_early.readmission_start
    stays = [open_window, readmitted_later, readmitted_early]
    seed_predictions(run_bedside, trained_model, stays)
    checks = [
        # Ten days after a discharge without readmission: not known yet.
        (open_window.discharged + timedelta(days=10), open_window, None),
        # Between a discharge and its readmission: that readmission has not happened by then,
        # so the label is not known either (data dated after --as-of must not decide it).
        (
            readmitted_later.discharged
            + (readmitted_later.readmission_start - readmitted_later.discharged) / 2,
            readmitted_later,
            None,
        ),
        # Readmitted before --as-of, the window still open: known to be 1 already.
        (readmitted_early.readmission_start + timedelta(hours=1), readmitted_early, 1),
    ]
    # In time order, so that no earlier check is undone by a later, better informed sync.
    for as_of, stay, expected in sorted(checks, key=lambda check: check[0]):
        assert stay.discharged < as_of < stay.discharged + timedelta(days=30)
        cli("outcomes", "sync", "--ndjson", str(cohort.folder), "--as-of", as_of.isoformat())
        outcomes = outcomes_by_key(engine)
        readmission = outcomes.get((stay.encounter_key, READMISSION))
        assert (None if readmission is None else readmission["value"]) == expected, stay
        assert outcomes[(stay.encounter_key, MORTALITY)]["value"] == 0  # known at discharge

    # A sync once every window has closed adds the missing labels, and only those.
    last = cli("outcomes", "sync", "--ndjson", str(cohort.folder), "--as-of", FAR_FUTURE)
    outcomes = outcomes_by_key(engine)
    assert len(outcomes) == 2 * len(stays)
    for stay in stays:
        assert outcomes[(stay.encounter_key, READMISSION)]["value"] == stay.readmitted
    assert summary(last)[2] == 2 * len(stays)  # derived again, new ones stored
    assert verify_chain(engine, "outcome").broken is None


def test_fhir_server_sync_matches_the_ndjson_sync_and_sends_the_token(
    run_bedside: Callable[..., Any],
    trained_model: TrainedModel,
    cohort: Cohort,
    cli: Callable[..., str],
    engine: Engine,
    fhir_server: FhirTestServer,
    tmp_path: Path,
) -> None:
    seed_predictions(run_bedside, trained_model, cohort.stays)
    fhir_server.page_size = 500
    fhir_server.resources = [
        resource
        for record in cohort.records
        for resource in [record.patient, *record.of_type("Encounter")]
        if resource is not None
    ]
    token_file = tmp_path / "token"
    token_file.write_text("sync-token-123\n")

    output = cli(
        "outcomes",
        "sync",
        "--fhir-server",
        fhir_server.base_url,
        "--since",
        "2022-01-01",
        "--token-file",
        str(token_file),
        "--as-of",
        FAR_FUTURE,
    )
    _, patients, matched, stored, _ = summary(output)
    assert patients == len(cohort.records)
    assert matched == stored == 2 * len(cohort.stays)
    from_server = outcomes_by_key(engine)
    for stay in cohort.stays:
        assert from_server[(stay.encounter_key, READMISSION)]["value"] == stay.readmitted
        assert from_server[(stay.encounter_key, MORTALITY)]["value"] == 0
    assert {row["source"] for row in from_server.values()} == {"sync:fhir-server"}

    searches = [call for call in fhir_server.calls if call.path == "/fhir/Encounter"]
    assert searches and "date=ge2022-01-01" in searches[0].query
    reads = {call.path for call in fhir_server.calls if call.path.startswith("/fhir/Patient/")}
    assert len(reads) == len(cohort.records)
    assert {call.authorization for call in fhir_server.calls} == {"Bearer sync-token-123"}

    # The NDJSON path derives exactly the same outcomes: every one is already on record.
    again = cli("outcomes", "sync", "--ndjson", str(cohort.folder), "--as-of", FAR_FUTURE)
    assert summary(again)[2:] == (matched, 0, matched)
    assert outcomes_by_key(engine).keys() == from_server.keys()


def _insert_other_model_prediction(engine: Engine, template: dict[str, Any]) -> dict[str, Any]:
    """A prediction by another model, for a patient and encounter with no outcome."""
    columns = content_columns(table_of("prediction"))
    row = {name: template[name] for name in columns}
    row.update(
        created_at=datetime.now(UTC),
        card_uuid=uuid.uuid4(),
        model="other-model",
        patient_key=PSEUDONYMS.key_for("Patient", "other-patient"),
        encounter_key=PSEUDONYMS.key_for("Encounter", "other-encounter"),
        probability=0.123,
    )
    with locked_chain(engine, "prediction", 5.0) as chain:
        chain.append(row)
    return row


def _read(folder: Path, name: str, fmt: str) -> pd.DataFrame:
    path = folder / f"{name}.{fmt}"
    return pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path)


def test_audit_export_for_seismometer(
    run_bedside: Callable[..., Any],
    trained_model: TrainedModel,
    cohort: Cohort,
    cli: Callable[..., str],
    engine: Engine,
    tmp_path: Path,
) -> None:
    early, late = cohort.stays[::2], cohort.stays[1::2]  # each a mix of outcomes
    accepted_at = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
    overridden_at = datetime(2024, 3, 2, 11, 30, tzinfo=UTC)
    with run_bedside(packages=[trained_model.package]) as client:
        early_cards = predict(client, early)
        time.sleep(0.05)
        middle = datetime.now(UTC)
        time.sleep(0.05)
        late_cards = predict(client, late)
        accepted, overridden = early_cards[0], late_cards[0]
        reason = overridden["overrideReasons"][0]
        for card, entry in (
            (accepted, {"outcome": "accepted", "outcomeTimestamp": accepted_at.isoformat()}),
            (
                overridden,
                {
                    "outcome": "overridden",
                    "outcomeTimestamp": overridden_at.isoformat(),
                    "overrideReason": {
                        "reason": {k: reason[k] for k in ("system", "code", "display")}
                    },
                },
            ),
        ):
            response = client.feedback(DISCHARGE, {"feedback": [{"card": card["uuid"], **entry}]})
            assert response.status_code == 200, response.text
    predictions = {str(row["card_uuid"]): row for row in rows(engine, "prediction")}
    assert set(predictions) == {card["uuid"] for card in [*early_cards, *late_cards]}
    other = _insert_other_model_prediction(engine, next(iter(predictions.values())))
    cli("outcomes", "sync", "--ndjson", str(cohort.folder), "--as-of", FAR_FUTURE)
    stay_of = {
        card["uuid"]: stay
        for card, stay in zip([*early_cards, *late_cards], [*early, *late], strict=True)
    }
    model = trained_model.package.name

    def export(name: str, fmt: str, *options: str) -> Path:
        out = tmp_path / name
        printed = cli("audit", "export", "--format", fmt, "--out", str(out), *options)
        assert printed.startswith("exported ")
        return out

    # Filters: the model, and the window [start, end).
    everything = _read(export("all", "parquet"), "predictions", "parquet")
    assert len(everything) == len(predictions) + 1
    other_out = export("other", "parquet", "--model", "other-model")
    others = _read(other_out, "predictions", "parquet")
    assert list(others["card_uuid"]) == [str(other["card_uuid"])]
    assert others["score"].tolist() == [0.123] and others["target"].isna().all()
    no_events = _read(other_out, "events", "parquet")  # no outcome nor feedback for it
    assert no_events.empty and list(no_events.columns) == EVENT_COLUMNS
    by_model = ("--model", model)
    after = _read(
        export("late", "parquet", *by_model, "--start", middle.isoformat()),
        "predictions",
        "parquet",
    )
    before = _read(
        export("early", "parquet", *by_model, "--end", middle.isoformat()), "predictions", "parquet"
    )
    assert set(after["card_uuid"]) == {card["uuid"] for card in late_cards}
    assert set(before["card_uuid"]) == {card["uuid"] for card in early_cards}

    outcomes = outcomes_by_key(engine)
    raw_ids = {
        text
        for stay in cohort.stays
        for text in [stay.patient_id, *(e["id"] for e in stay.record.of_type("Encounter"))]
    }
    for fmt in ("parquet", "csv"):
        out = export(f"model-{fmt}", fmt, *by_model)
        frame, events = _read(out, "predictions", fmt), _read(out, "events", fmt)
        assert sorted(frame["card_uuid"]) == sorted(stay_of)
        for _, row in frame.iterrows():
            stay, stored = stay_of[row["card_uuid"]], predictions[row["card_uuid"]]
            assert row["score"] == pytest.approx(stored["probability"], rel=1e-12)
            assert row["entity_id"] == stay.patient_key == stored["patient_key"]
            assert row["context_id"] == stay.encounter_key == stored["encounter_key"]
            assert row["target"] == stay.readmitted
            assert row["target"] == outcomes[(stay.encounter_key, READMISSION)]["value"]
            assert row["model"] == model and row["band"] == stored["band"]
            assert row["model_version"] == stored["model_version"]
            assert bool(row["card_shown"]) is stored["card_shown"]
            assert pd.Timestamp(row["prediction_time"]) == pd.Timestamp(stored["created_at"])
            features = orjson.loads(stored["features"])
            for name, value in features.items():
                if value is None:
                    assert pd.isna(row[f"feature_{name}"])
                else:
                    assert row[f"feature_{name}"] == pytest.approx(value)
            assert row["sex"] == stored["sex"] and row["age_band"] == stored["age_band"]

        events["time"] = pd.to_datetime(events["time"], utc=True)
        responses = events[events["type"].str.startswith("card_")]
        assert sorted(
            zip(responses["type"], responses["context_id"], responses["time"], strict=True)
        ) == [
            ("card_accepted", stay_of[accepted["uuid"]].encounter_key, pd.Timestamp(accepted_at)),
            (
                "card_overridden",
                stay_of[overridden["uuid"]].encounter_key,
                pd.Timestamp(overridden_at),
            ),
        ]
        labels = events[~events["type"].str.startswith("card_")]
        assert len(labels) == 2 * len(cohort.stays)
        for stay in cohort.stays:
            mine = labels[labels["context_id"] == stay.encounter_key]
            assert set(mine["entity_id"]) == {stay.patient_key}
            assert dict(zip(mine["type"], mine["value"], strict=True)) == {
                READMISSION: stay.readmitted,
                MORTALITY: 0,
            }
        assert events["time"].is_monotonic_increasing

        config = yaml.safe_load((out / "usage_config.yml").read_text())["data_usage"]
        assert config["entity_id"] == "entity_id" and config["context_id"] == "context_id"
        assert config["primary_output"] == "score" and config["predict_time"] == "prediction_time"
        assert config["primary_target"] == READMISSION
        assert set(config["features"]) == {c for c in frame.columns if c.startswith("feature_")}
        assert set(config["features"]) == {f"feature_{name}" for name in features}
        for column in ("entity_id", "context_id", "score", "prediction_time"):
            assert column in frame.columns

        # No raw patient or encounter id anywhere: the files' bytes, nor any decoded value.
        texts = [path.read_bytes() for path in out.iterdir()]
        texts += [frame.to_csv().encode(), events.to_csv().encode()]
        for raw_id in raw_ids:
            assert not any(raw_id.encode() in blob for blob in texts), raw_id

    access = [row for row in rows(engine, "access") if row["action"] == "audit export"]
    assert len(access) == 6
    assert {row["actor"] for row in access} == {f"cli:{getpass.getuser()}"}
    assert {row["role"] for row in access} == {"database"}
    last = orjson.loads(access[-1]["parameters"])
    assert last == {
        "format": "csv",
        "model": model,
        "start": None,
        "end": None,
        "label": READMISSION,
    }
    assert orjson.loads(access[2]["parameters"])["start"] == middle.isoformat()
    assert verify_chain(engine, "access").broken is None


def test_server_sync_follows_absolute_subject_references(fhir_server: FhirTestServer) -> None:
    fhir_server.resources = [
        {"resourceType": "Patient", "id": "abs-1"},
        {
            "resourceType": "Encounter",
            "id": "abs-enc",
            "status": "finished",
            "subject": {"reference": f"{fhir_server.base_url}/Patient/abs-1"},
        },
    ]
    since = datetime(2026, 1, 1, tzinfo=UTC)
    [record] = asyncio.run(records_from_server(fhir_server.base_url, since, None, 10))
    assert record.patient == fhir_server.resources[0]
    assert [e["id"] for e in record.of_type("Encounter")] == ["abs-enc"]
