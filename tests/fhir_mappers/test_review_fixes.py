"""Regressions from review: extreme dates, lookback windows at the calendar's edge, and
conditions recorded after the index time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import fhir_mappers
from fhir_mappers.fhirtime import lookback_start, parse_fhir_datetime
from fhir_mappers.mapper import map_patient
from fhir_mappers.record import records_from_bundle
from fhir_mappers.row import FeatureRow
from fhir_mappers.selection import available_at
from fhir_mappers.spec import FeatureSpec, load_spec
from tests.support.fhir_builders import collection, encounter, observation, patient

READMISSION = load_spec(Path(fhir_mappers.__file__).parent / "specs" / "readmission_30d.yaml")
INDEX = datetime(2024, 3, 5, 10, 0, tzinfo=UTC)
NEAR_MIN = datetime(1, 1, 2, tzinfo=UTC)
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
HEART_FAILURE = "I50.9"  # Charlson: congestive heart failure, weight 1
CREATININE = "2160-0"

# Derived features only: the windows under test without any sourced feature.
DERIVED_ONLY = FeatureSpec.model_validate(
    {
        "name": "derived-windows",
        "version": "1",
        "code_groups": {},
        "features": [
            {"name": "admissions", "derived": "inpatient_admissions", "window_days": 1_000_000},
            {"name": "ed_visits", "derived": "emergency_visits", "window_days": 1_000_000},
            {"name": "medications", "derived": "active_medication_count", "window_days": 1_000_000},
            {"name": "charlson", "derived": "charlson_index"},
        ],
    }
)


def condition(code: str, onset: str, **fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": f"c-{onset}-{len(fields)}",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": ICD10, "code": code}]},
        "onsetDateTime": onset,
        **fields,
    }


def medication_request(request_id: str, authored: str, code: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": request_id,
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "authoredOn": authored,
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": code}]
        },
    }


def mapped(
    spec: FeatureSpec, index_time: datetime, *resources: dict[str, Any], index: str | None = None
) -> FeatureRow:
    [record] = records_from_bundle(collection(patient(), *resources))
    encounter_resource = record.by_key.get(f"Encounter/{index}") if index else None
    return map_patient(record, spec, index_time, encounter_resource)


# 1. Extreme dates are not usable times


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00+01:00",  # 0000-12-31T23:00Z: overflows in UTC
        "9999-12-31T23:59:59-01:00",  # 10000-01-01T00:59:59Z: overflows in UTC
        "0001-03-01",
        "9999-12-31",
        "1799-12-31T23:59:59Z",
        "1800-01-01T00:30:00+01:00",  # 1799 in UTC
        "2200-12-31T23:00:00-05:00",  # 2201 in UTC
        "2201",
    ],
)
def test_dates_outside_1800_to_2200_are_not_usable_times(value: str) -> None:
    assert parse_fhir_datetime(value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1800", datetime(1800, 1, 1, tzinfo=UTC)),
        ("1800-01-01T01:00:00+01:00", datetime(1800, 1, 1, tzinfo=UTC)),
        ("2200-12-31T23:59:59Z", datetime(2200, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("2200-12-31T18:00:00-05:00", datetime(2200, 12, 31, 23, 0, tzinfo=UTC)),
    ],
)
def test_dates_at_the_edges_of_1800_to_2200_are_kept(value: str, expected: datetime) -> None:
    assert parse_fhir_datetime(value) == expected


def test_parsed_time_keeps_its_written_offset() -> None:
    parsed = parse_fhir_datetime("2024-03-01T12:00:00+01:00")
    assert parsed is not None
    assert parsed.utcoffset() == timedelta(hours=1)
    assert parsed.tzinfo == timezone(timedelta(hours=1))


def test_lookback_past_the_first_representable_instant_is_unbounded() -> None:
    assert lookback_start(NEAR_MIN, 365) is None
    assert lookback_start(INDEX, 1_000_000) is None
    assert lookback_start(INDEX, 30) == datetime(2024, 2, 4, 10, 0, tzinfo=UTC)


def test_observation_dated_year_one_is_skipped_with_a_no_time_note() -> None:
    year_one = observation(
        CREATININE, 3.4, "mg/dL", "0001-01-01T00:00:00+01:00", observation_id="year-one"
    )
    usable = observation(CREATININE, 1.1, "mg/dL", "2024-03-04T08:00:00Z", observation_id="ok")
    row = mapped(READMISSION, INDEX, year_one, usable)
    assert row.values["creatinine_last"] == 1.1
    assert row.provenance["creatinine_last"].sources == ("Observation/ok",)
    assert ("no_time", "Observation/year-one") in {
        (note.code, note.resource) for note in row.notes if note.feature == "creatinine_last"
    }


def test_index_encounter_ending_in_year_one_leaves_its_stay_open_until_the_index_time() -> None:
    stay = encounter("e1", "2024-03-01T10:00:00Z", "0001-03-01")
    earlier = encounter("e0", "2023-06-01T00:00:00Z", "2023-06-03T00:00:00Z")
    row = mapped(READMISSION, INDEX, stay, earlier, index="e1")
    assert row.values["length_of_stay_days"] == 4.0
    assert row.values["inpatient_admissions_12m"] == 1.0


def test_windows_reaching_before_year_one_are_unbounded() -> None:
    row = mapped(
        DERIVED_ONLY,
        INDEX,
        encounter("old", "1990-01-01T00:00:00Z", "1990-01-05T00:00:00Z"),
        encounter("ed", "1995-01-01T00:00:00Z", "1995-01-01T06:00:00Z", class_code="EMER"),
        medication_request("m1", "1991-02-03", "197361"),
    )
    assert row.values == {"admissions": 1.0, "ed_visits": 1.0, "medications": 1.0, "charlson": 0.0}
    assert row.missing == frozenset()


def test_derived_windows_at_an_index_time_near_datetime_min_do_not_overflow() -> None:
    row = mapped(
        DERIVED_ONLY,
        NEAR_MIN,
        encounter("old", "1990-01-01T00:00:00Z", "1990-01-05T00:00:00Z"),
        medication_request("m1", "1991-02-03", "197361"),
    )
    assert row.values == {"admissions": 0.0, "ed_visits": 0.0, "medications": 0.0, "charlson": 0.0}


def test_sourced_windows_at_an_index_time_near_datetime_min_do_not_overflow() -> None:
    row = mapped(READMISSION, NEAR_MIN, observation(CREATININE, 1.1, "mg/dL", "2024-03-04"))
    assert "creatinine_last" in row.missing


# 4. A condition recorded after the index time was not known then


def test_condition_has_its_recorded_date_as_availability_and_observation_its_issued() -> None:
    recorded = condition(HEART_FAILURE, "2019-01-01", recordedDate="2024-03-20")
    issued = observation(CREATININE, 1.0, "mg/dL", "2024-03-04", issued="2024-03-06T00:00:00Z")
    assert available_at(recorded) == datetime(2024, 3, 20, tzinfo=UTC)
    assert available_at(issued) == datetime(2024, 3, 6, tzinfo=UTC)
    assert available_at(condition(HEART_FAILURE, "2019-01-01")) is None


def test_condition_recorded_after_the_index_time_is_not_in_charlson() -> None:
    late = condition(HEART_FAILURE, "2019-01-01", recordedDate="2024-03-20")
    row = mapped(READMISSION, INDEX, late)
    assert row.values["charlson_index"] == 0.0
    assert "charlson_index" not in row.provenance


def test_condition_recorded_before_the_index_time_is_in_charlson() -> None:
    known = condition(HEART_FAILURE, "2019-01-01", recordedDate="2019-01-02")
    row = mapped(READMISSION, INDEX, known)
    assert row.values["charlson_index"] == 1.0
    assert row.provenance["charlson_index"].sources == (f"Condition/{known['id']}",)
