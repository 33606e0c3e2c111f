"""Synthetic edge cases: each pins one rule of the mapper on a tiny hand-built record."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from fhir_mappers.mapper import InvalidPatient, map_patient
from fhir_mappers.record import records_from_bundle
from fhir_mappers.row import FeatureRow
from fhir_mappers.spec import FeatureSpec
from tests.support.fhir_builders import collection, encounter, observation, patient

INDEX = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
CREATININE_SERUM, CREATININE_BLOOD = "2160-0", "38483-4"

SPEC = FeatureSpec.model_validate(
    {
        "name": "edge-cases",
        "version": "1",
        "code_groups": {
            "creatinine": [{"system": "http://loinc.org", "codes": ["2160-0", "38483-4"]}],
            "bp_panel": [{"system": "http://loinc.org", "codes": ["85354-9"]}],
            "systolic": [{"system": "http://loinc.org", "codes": ["8480-6"]}],
            "smoking": [{"system": "http://loinc.org", "codes": ["72166-2"]}],
        },
        "features": [
            {"name": "age", "derived": "age_years"},
            {"name": "los", "derived": "length_of_stay_days"},
            {
                "name": "creatinine_last",
                "source": "Observation",
                "codes": "creatinine",
                "read": "quantity",
                "unit": "mg/dL",
                "molar_mass": 113.12,
                "window_days": 365,
                "aggregation": "last",
                "plausible": [0.1, 25],
            },
            {
                "name": "creatinine_mean",
                "source": "Observation",
                "codes": "creatinine",
                "read": "quantity",
                "unit": "mg/dL",
                "molar_mass": 113.12,
                "window_days": 365,
                "aggregation": "mean",
                "plausible": [0.1, 25],
            },
            {
                "name": "creatinine_slope",
                "source": "Observation",
                "codes": "creatinine",
                "read": "quantity",
                "unit": "mg/dL",
                "molar_mass": 113.12,
                "window_days": 365,
                "aggregation": "slope",
            },
            {
                "name": "creatinine_count",
                "source": "Observation",
                "codes": "creatinine",
                "read": "count",
                "window_days": 365,
            },
            {
                "name": "systolic_last",
                "source": "Observation",
                "codes": "bp_panel",
                "read": "component",
                "component": "systolic",
                "unit": "mm[Hg]",
                "window_days": 365,
                "aggregation": "last",
            },
            {
                "name": "smoker",
                "source": "Observation",
                "codes": "smoking",
                "read": "concept",
                "concept_values": {"http://snomed.info/sct|449868002": 1},
                "window_days": 3650,
                "aggregation": "last",
            },
        ],
    }
)


def map_resources(*resources: dict, full_urls: bool = False, **kwargs) -> FeatureRow:
    [record] = records_from_bundle(collection(patient(), *resources, full_urls=full_urls))
    return map_patient(record, SPEC, INDEX, **kwargs)


def note_codes(row: FeatureRow, feature: str) -> list[str]:
    return [note.code for note in row.notes if note.feature == feature]


def test_future_dated_observation_never_reaches_a_feature() -> None:
    row = map_resources(
        observation(CREATININE_SERUM, 1.0, "mg/dL", "2024-02-01T08:00:00Z"),
        observation(CREATININE_SERUM, 9.0, "mg/dL", "2024-03-01T12:00:01Z"),
    )
    assert row.values["creatinine_last"] == 1.0
    assert row.values["creatinine_count"] == 1.0


def test_result_issued_after_the_index_time_is_not_used() -> None:
    late = observation(CREATININE_SERUM, 5.0, "mg/dL", "2024-03-01T06:00:00Z")
    late["issued"] = "2024-03-01T18:00:00Z"
    row = map_resources(observation(CREATININE_SERUM, 1.2, "mg/dL", "2024-01-01T00:00:00Z"), late)
    assert row.values["creatinine_last"] == 1.2


def test_observation_outside_the_lookback_window_is_ignored() -> None:
    row = map_resources(observation(CREATININE_SERUM, 1.0, "mg/dL", "2023-02-01T00:00:00Z"))
    assert math.isnan(row.values["creatinine_last"])
    assert "creatinine_last" in row.missing


def test_duplicate_observations_count_once() -> None:
    first = observation(CREATININE_SERUM, 1.0, "mg/dL", "2024-01-10T08:00:00Z")
    copy = {**first, "id": "copy-of-first"}
    row = map_resources(
        first, copy, observation(CREATININE_SERUM, 2.0, "mg/dL", "2024-02-10T08:00:00Z")
    )
    assert row.values["creatinine_mean"] == pytest.approx(1.5)
    assert row.values["creatinine_count"] == 2.0


def test_loinc_synonym_and_unit_conversion_give_one_value_in_the_target_unit() -> None:
    row = map_resources(
        observation(CREATININE_SERUM, 1.0, "mg/dL", "2024-01-10T08:00:00Z"),
        observation(CREATININE_BLOOD, 176.84, "umol/L", "2024-02-10T08:00:00Z", observation_id="u"),
    )
    assert row.values["creatinine_last"] == pytest.approx(2.0, rel=1e-3)
    provenance = row.provenance["creatinine_last"]
    assert provenance.sources == ("Observation/u",)
    assert provenance.raw_value == 176.84 and provenance.raw_unit == "umol/L"
    assert provenance.converted is True


def test_unknown_unit_makes_the_value_missing_and_leaves_a_note() -> None:
    row = map_resources(observation(CREATININE_SERUM, 1.1, "furlongs", "2024-02-10T08:00:00Z"))
    assert "creatinine_last" in row.missing
    assert "unknown_unit" in note_codes(row, "creatinine_last")


def test_implausible_value_is_dropped_with_a_note_and_older_value_used() -> None:
    row = map_resources(
        observation(CREATININE_SERUM, 1.3, "mg/dL", "2024-01-10T08:00:00Z"),
        observation(CREATININE_SERUM, 130.0, "mg/dL", "2024-02-10T08:00:00Z"),
    )
    assert row.values["creatinine_last"] == 1.3
    assert "implausible" in note_codes(row, "creatinine_last")


def test_observation_without_effective_time_is_reported_not_guessed() -> None:
    row = map_resources(observation(CREATININE_SERUM, 1.1, "mg/dL", None))
    assert "creatinine_last" in row.missing
    assert "no_time" in note_codes(row, "creatinine_last")


def test_entered_in_error_observation_is_ignored() -> None:
    row = map_resources(
        observation(CREATININE_SERUM, 1.0, "mg/dL", "2024-01-10T08:00:00Z"),
        observation(
            CREATININE_SERUM, 7.0, "mg/dL", "2024-02-10T08:00:00Z", status="entered-in-error"
        ),
    )
    assert row.values["creatinine_last"] == 1.0


def test_preliminary_result_is_used_and_marked() -> None:
    row = map_resources(
        observation(CREATININE_SERUM, 1.4, "mg/dL", "2024-02-10T08:00:00Z", status="preliminary")
    )
    assert row.values["creatinine_last"] == 1.4
    assert row.provenance["creatinine_last"].preliminary is True


def test_urn_uuid_and_relative_references_both_reach_the_patient() -> None:
    by_urn = observation(
        CREATININE_SERUM, 1.0, "mg/dL", "2024-01-10T08:00:00Z", patient_ref="urn:uuid:p1"
    )
    relative = observation(CREATININE_SERUM, 3.0, "mg/dL", "2024-02-10T08:00:00Z")
    row = map_resources(by_urn, relative, full_urls=True)
    assert row.values["creatinine_count"] == 2.0
    assert row.values["creatinine_mean"] == 2.0


def test_absolute_url_reference_reaches_the_patient() -> None:
    absolute = observation(
        CREATININE_SERUM,
        2.5,
        "mg/dL",
        "2024-02-10T08:00:00Z",
        patient_ref="https://fhir.example.org/r4/Patient/p1",
    )
    assert map_resources(absolute).values["creatinine_last"] == 2.5


def test_slope_is_change_per_day() -> None:
    row = map_resources(
        observation(CREATININE_SERUM, 1.0, "mg/dL", "2024-01-01T00:00:00Z"),
        observation(CREATININE_SERUM, 2.0, "mg/dL", "2024-01-11T00:00:00Z"),
        observation(CREATININE_SERUM, 3.0, "mg/dL", "2024-01-21T00:00:00Z"),
    )
    assert row.values["creatinine_slope"] == pytest.approx(0.1)


def test_systolic_read_from_a_panel_component_and_from_a_standalone_observation() -> None:
    panel = observation("85354-9", None, None, "2024-01-05T08:00:00Z")
    panel["component"] = [
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "valueQuantity": {"value": 150, "unit": "mmHg", "code": "mm[Hg]"},
        },
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
            "valueQuantity": {"value": 90, "unit": "mmHg", "code": "mm[Hg]"},
        },
    ]
    assert map_resources(panel).values["systolic_last"] == 150
    standalone = observation("8480-6", 128, "mm[Hg]", "2024-02-05T08:00:00Z")
    assert map_resources(panel, standalone).values["systolic_last"] == 128


def test_coded_value_is_mapped_through_the_concept_table() -> None:
    smoking = observation("72166-2", None, None, "2023-05-05T08:00:00Z")
    smoking["valueCodeableConcept"] = {
        "coding": [{"system": "http://snomed.info/sct", "code": "449868002"}]
    }
    assert map_resources(smoking).values["smoker"] == 1.0


def test_invalid_contributing_resource_is_skipped_and_reported() -> None:
    broken = observation(CREATININE_SERUM, 4.0, "mg/dL", "2024-02-10T08:00:00Z", observation_id="x")
    broken["valueQuantity"]["precision"] = 2  # Quantity has no such element
    good = observation(CREATININE_SERUM, 1.1, "mg/dL", "2024-01-10T08:00:00Z")
    row = map_resources(good, broken)
    assert row.values["creatinine_last"] == 1.1
    [note] = [note for note in row.notes if note.code == "invalid_resource"]
    assert note.resource == "Observation/x"


def test_invalid_patient_is_refused() -> None:
    bundle = collection(patient(birthDate="15/06/1950"))
    [record] = records_from_bundle(bundle)
    with pytest.raises(InvalidPatient):
        map_patient(record, SPEC, INDEX)


def test_length_of_stay_of_an_ongoing_stay_runs_to_the_index_time() -> None:
    stay = encounter("e1", "2024-02-28T12:00:00Z", None)
    row = map_resources(stay, index_encounter=stay)
    assert row.values["los"] == pytest.approx(2.0)


def test_age_at_index_in_years() -> None:
    row = map_resources()
    assert row.values["age"] == pytest.approx(73.71, abs=0.01)


def test_features_of_an_unavailable_resource_type_are_missing_with_a_note() -> None:
    row = map_resources(
        observation(CREATININE_SERUM, 1.0, "mg/dL", "2024-02-01T08:00:00Z"),
        unavailable=frozenset({"Observation"}),
    )
    assert "creatinine_last" in row.missing and "creatinine_count" in row.missing
    assert math.isnan(row.values["creatinine_count"])
    assert "source_unavailable" in note_codes(row, "creatinine_last")
    assert "age" not in row.missing


def test_date_only_discharge_is_indexed_at_the_end_of_that_day_as_in_training() -> None:
    from fhir_mappers.index_time import hook_index_time
    from fhir_mappers.labels import discharge_time

    stay = encounter("e1", "2024-03-01", "2024-03-05")
    request_time = datetime(2024, 3, 9, tzinfo=UTC)
    index = hook_index_time("encounter-discharge", stay, request_time)
    assert index == datetime(2024, 3, 5, 23, 59, 59, 999999, tzinfo=UTC)
    assert index == discharge_time(stay)
    assert hook_index_time("patient-view", stay, request_time) == request_time
