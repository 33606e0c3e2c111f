"""Deliberately imperfect FHIR (carebundle's defect injection) through the reference spec.

carebundle makes US Core transaction Bundles whose entries have no ``id`` (POST entries named by
``urn:uuid`` fullUrls) and injects five kinds of defect, each reported with the entry it hit:
``missing_field`` drops text/status/category/encounter, ``duplicate_entry`` appends a copy with a
fresh id and fullUrl, ``out_of_order_timestamp`` moves effectiveDateTime a year later,
``unparseable_value`` replaces valueQuantity by a valueString ("QNS", "<0.1", ...) and
``unknown_code_system`` swaps the first coding's system of ``code`` for a site-local OID.

Every defect must be tolerated or reported: no crash, no ±inf, duplicates change nothing, an
unreadable value leaves a note and never a number, a recoded resource is simply not selected,
and any value that changes is explained by a defect on a resource that feature reads.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest

import fhir_mappers
from fhir_mappers.fhirtime import parse_fhir_datetime
from fhir_mappers.mapper import map_patient
from fhir_mappers.record import Resource, records_from_bundle
from fhir_mappers.row import FeatureRow
from fhir_mappers.selection import available_at, matches, resource_time
from fhir_mappers.spec import FeatureDefinition, load_spec

carebundle = pytest.importorskip("carebundle")

SPEC = load_spec(Path(fhir_mappers.__file__).parent / "specs" / "readmission_30d.yaml")
PROFILES = ("healthy", "type2_diabetes", "hypertension", "ckd_stage3", "anaemia")
SEEDS = (1, 2)
DEFECT_SEEDS = (11, 12, 13)
DERIVED_SOURCE = {
    "age_years": "Patient",
    "sex_female": "Patient",
    "length_of_stay_days": "Encounter",
    "inpatient_admissions": "Encounter",
    "emergency_visits": "Encounter",
    "charlson_index": "Condition",
    "active_medication_count": "MedicationRequest",
}
Bundle = dict[str, Any]


# Building and mapping bundles


@cache
def _generated(kind: str, profile: str, seed: int) -> str:
    if kind == "history":
        made = carebundle.generate_history(profile=profile, seed=seed, visits=4, interval_days=120)
    else:
        made = carebundle.generate_bundle(profile=profile, seed=seed)
    return carebundle.to_json(made)


def generated(profile: str, seed: int, *, history: bool = False) -> Bundle:
    """A fresh decoded carebundle Bundle (a single visit, or four visits 120 days apart)."""
    return json.loads(_generated("history" if history else "visit", profile, seed))


def with_encounter_class(bundle: Bundle, class_code: str, *, days: float = 0.0) -> Bundle:
    """The bundle with every Encounter of class ``class_code``, each lasting ``days`` longer."""
    changed = copy.deepcopy(bundle)
    for resource in resources_of(changed, "Encounter"):
        resource["class"]["code"] = class_code
        end = parse_fhir_datetime(resource["period"]["end"])
        assert end is not None
        resource["period"]["end"] = (end + timedelta(days=days)).isoformat()
    return changed


def resources_of(bundle: Bundle, resource_type: str) -> list[Resource]:
    return [
        entry["resource"]
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] == resource_type
    ]


def index_time_of(bundle: Bundle, *, after: timedelta = timedelta(days=1)) -> datetime:
    """A day (or ``after``) past the end of the bundle's last encounter."""
    ends = [parse_fhir_datetime(e["period"]["end"]) for e in resources_of(bundle, "Encounter")]
    return max(end for end in ends if end is not None) + after


def patient_key(bundle: Bundle) -> str:
    [record] = [r for r in records_from_bundle(bundle) if r.patient_key]
    return str(record.patient_key)


def map_bundle(bundle: Bundle, key: str, index_time: datetime) -> FeatureRow:
    """Map the patient ``key`` of ``bundle`` (a duplicated Patient makes a second, empty one)."""
    records = {record.patient_key: record for record in records_from_bundle(bundle)}
    return map_patient(records[key], SPEC, index_time)


def inject(bundle: Bundle, seed: int, **rates: float) -> tuple[Bundle, tuple[Any, ...]]:
    return carebundle.inject_defects(bundle, carebundle.Imperfection(**rates), seed=seed)


def without_entries(bundle: Bundle, indices: Iterable[int]) -> Bundle:
    dropped = set(indices)
    kept = [entry for i, entry in enumerate(bundle["entry"]) if i not in dropped]
    return {**bundle, "entry": copy.deepcopy(kept)}


# What a row must satisfy, and comparing rows


def assert_sound(row: FeatureRow) -> None:
    assert list(row.values) == SPEC.feature_names
    assert row.is_finite_or_nan()
    for name, value in row.values.items():
        assert math.isnan(value) == (name in row.missing), (name, value)


def same(first: float, second: float) -> bool:
    return first == second or (math.isnan(first) and math.isnan(second))


def changed_features(clean: FeatureRow, dirty: FeatureRow) -> list[str]:
    return [name for name in clean.values if not same(clean.values[name], dirty.values[name])]


def feature_codes(feature: FeatureDefinition) -> frozenset[tuple[str, str]]:
    codes = SPEC.codes_of(feature.codes) if feature.codes else frozenset()
    return codes | (SPEC.codes_of(feature.component) if feature.component else frozenset())


def reads(feature: FeatureDefinition, resource: Resource) -> bool:
    """Whether ``feature`` reads resources like ``resource`` (by type and, if sourced, code)."""
    if feature.derived is not None:
        return resource.get("resourceType") == DERIVED_SOURCE[feature.derived]
    return resource.get("resourceType") == feature.source and matches(
        resource.get("code"), feature_codes(feature)
    )


def in_window(feature: FeatureDefinition, resource: Resource, index_time: datetime) -> bool:
    when, issued = resource_time(resource), available_at(resource)
    if when is None or when > index_time or (issued is not None and issued > index_time):
        return False
    return feature.window_days is None or when > index_time - timedelta(days=feature.window_days)


def quantity_features_reading(resource: Resource, index_time: datetime) -> list[str]:
    return [
        feature.name
        for feature in SPEC.features
        if feature.read == "quantity"
        and reads(feature, resource)
        and in_window(feature, resource, index_time)
    ]


def note_pairs(row: FeatureRow) -> set[tuple[str, str | None]]:
    return {(note.code, note.resource) for note in row.notes}


CASES = [(profile, seed) for profile in PROFILES for seed in SEEDS]


# Tests


def test_a_carebundle_bundle_without_resource_ids_maps_to_real_values() -> None:
    bundle = generated("ckd_stage3", 1)
    assert all("id" not in entry["resource"] for entry in bundle["entry"])
    row = map_bundle(bundle, patient_key(bundle), index_time_of(bundle))
    assert_sound(row)
    # The Observations (2160-0, 2345-7, 98979-8, 85354-9, ...) reach their features.
    [creatinine] = [
        o for o in resources_of(bundle, "Observation") if o["code"]["coding"][0]["code"] == "2160-0"
    ]
    assert row.values["creatinine_last"] == creatinine["valueQuantity"]["value"]
    for name in ("glucose_last", "egfr_last", "systolic_bp_last", "bmi_last", "hemoglobin_last"):
        assert name not in row.missing, name
    # N18.32 (CKD stage 3b, renal disease) counts 2; E78.5, E66.9 and I10 count nothing.
    assert row.values["charlson_index"] == 2
    assert row.values["active_medication_count"] == len(resources_of(bundle, "MedicationRequest"))


@pytest.mark.parametrize(("profile", "seed"), CASES)
def test_replayed_duplicates_leave_every_value_unchanged(profile: str, seed: int) -> None:
    for history in (False, True):
        clean = generated(profile, seed, history=history)
        key, index_time = patient_key(clean), index_time_of(clean)
        expected = map_bundle(clean, key, index_time)
        for defect_seed in DEFECT_SEEDS:
            dirty, defects = inject(clean, defect_seed, duplicate_entry=0.6)
            assert defects and all(d.kind == "duplicate_entry" for d in defects)
            row = map_bundle(dirty, key, index_time)
            assert_sound(row)
            assert changed_features(expected, row) == [], defects


@pytest.mark.parametrize("class_code", ["EMER", "IMP"])
def test_a_replayed_prior_visit_is_counted_once(class_code: str) -> None:
    for profile in PROFILES:
        # The visit becomes an emergency visit (or a 3-day inpatient stay) 30 days before the
        # index time; every entry, the Encounter included, is replayed with a fresh id.
        clean = with_encounter_class(generated(profile, 1), class_code, days=3)
        key, index_time = patient_key(clean), index_time_of(clean, after=timedelta(days=30))
        feature = "emergency_visits_6m" if class_code == "EMER" else "inpatient_admissions_12m"
        assert map_bundle(clean, key, index_time).values[feature] == 1
        dirty, defects = inject(clean, 7, duplicate_entry=1.0)
        assert any(d.resource_type == "Encounter" for d in defects)
        assert map_bundle(dirty, key, index_time).values[feature] == 1
        # A byte-identical replay (same fullUrl, as overlapping searches return it) counts once too.
        replayed = {**clean, "entry": clean["entry"] + copy.deepcopy(clean["entry"])}
        assert map_bundle(replayed, key, index_time).values[feature] == 1


@pytest.mark.parametrize(("profile", "seed"), CASES)
def test_unknown_code_system_just_drops_the_recoded_resource(profile: str, seed: int) -> None:
    clean = generated(profile, seed)
    key, index_time = patient_key(clean), index_time_of(clean)
    all_codes = frozenset().union(*(feature_codes(f) for f in SPEC.features))
    for defect_seed in DEFECT_SEEDS:
        dirty, defects = inject(clean, defect_seed, unknown_code_system=0.4)
        assert defects and all(d.kind == "unknown_code_system" for d in defects)
        row = map_bundle(dirty, key, index_time)
        assert_sound(row)
        # Expected: the clean bundle without the resources that lost every code the spec knows.
        lost = [
            d.entry_index
            for d in defects
            if not matches(dirty["entry"][d.entry_index]["resource"].get("code"), all_codes)
        ]
        expected = map_bundle(without_entries(clean, lost), key, index_time)
        assert changed_features(expected, row) == [], defects


@pytest.mark.parametrize(("profile", "seed"), CASES)
def test_unparseable_value_is_reported_and_never_becomes_a_number(profile: str, seed: int) -> None:
    clean = generated(profile, seed)
    key, index_time = patient_key(clean), index_time_of(clean)
    [record] = records_from_bundle(clean)
    consumed = 0
    for defect_seed in DEFECT_SEEDS:
        dirty, defects = inject(clean, defect_seed, unparseable_value=0.4)
        assert defects and all(d.kind == "unparseable_value" for d in defects)
        row = map_bundle(dirty, key, index_time)
        assert_sound(row)
        for defect in defects:
            entry = dirty["entry"][defect.entry_index]
            resource_key = record.aliases[entry["fullUrl"]]
            for name in quantity_features_reading(entry["resource"], index_time):
                consumed += 1
                notes = {(n.code, n.resource) for n in row.notes if n.feature == name}
                assert ("no_value", resource_key) in notes, (name, defect)
        # As if the unreadable results were not there — yet they still count as results.
        expected = map_bundle(
            without_entries(clean, [d.entry_index for d in defects]), key, index_time
        )
        clean_row = map_bundle(clean, key, index_time)
        for feature in SPEC.features:
            reference = clean_row if feature.read in ("count", "presence") else expected
            assert same(row.values[feature.name], reference.values[feature.name]), feature.name
    assert consumed > 0


@pytest.mark.parametrize(("profile", "seed"), CASES)
def test_mixed_defects_are_tolerated_and_every_change_is_explained(profile: str, seed: int) -> None:
    rates = {
        "missing_field": 0.3,
        "duplicate_entry": 0.3,
        "out_of_order_timestamp": 0.3,
        "unparseable_value": 0.3,
        "unknown_code_system": 0.3,
    }
    for history in (False, True):
        clean = generated(profile, seed, history=history)
        clean = with_encounter_class(clean, "EMER") if history else clean
        key, index_time = patient_key(clean), index_time_of(clean, after=timedelta(days=10))
        clean_row = map_bundle(clean, key, index_time)
        assert_sound(clean_row)
        [record] = records_from_bundle(clean)
        aliases = record.aliases
        for defect_seed in DEFECT_SEEDS:
            dirty, defects = inject(clean, defect_seed, **rates)
            row = map_bundle(dirty, key, index_time)
            assert_sound(row)
            causes = [d for d in defects if d.kind != "duplicate_entry"]
            for name in changed_features(clean_row, row):
                feature = next(f for f in SPEC.features if f.name == name)
                explained = [
                    d for d in causes if reads(feature, clean["entry"][d.entry_index]["resource"])
                ]
                assert explained, (name, clean_row.values[name], row.values[name], defects)
            used = {key for origin in clean_row.provenance.values() for key in origin.sources}
            for defect in causes:
                entry = dirty["entry"][defect.entry_index]
                resource_key = aliases[entry["fullUrl"]]
                if defect.kind == "unparseable_value" and quantity_features_reading(
                    entry["resource"], index_time
                ):
                    assert ("no_value", resource_key) in note_pairs(row), defect
                only_defect = [d for d in causes if d.entry_index == defect.entry_index] == [defect]
                if defect.detail == "removed 'status'" and only_defect and resource_key in used:
                    # A resource that determined a value but lost its required status.
                    assert ("invalid_resource", resource_key) in note_pairs(row), defect
