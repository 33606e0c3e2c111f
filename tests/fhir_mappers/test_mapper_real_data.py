"""Real FHIR data through the reference spec: Synthea bundles and the HL7 R4 examples.

The files are read from ``$BEDSIDE_FHIR_SAMPLES`` (never copied into the repository); every test
skips when it is unset. Expected numbers are copied from the files, and each one says which
resource (id, date, value) it comes from.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest

import fhir_mappers
from fhir_mappers.fhirtime import parse_fhir_datetime
from fhir_mappers.labels import discharge_time, eligible_index_encounters
from fhir_mappers.mapper import InvalidPatient, map_patient
from fhir_mappers.record import (
    PatientRecord,
    Resource,
    entries_of,
    records_from_bundle,
    records_from_ndjson,
    records_from_resources,
    typed_key,
)
from fhir_mappers.row import FeatureRow
from fhir_mappers.selection import available_at, resource_time
from fhir_mappers.spec import FeatureSpec, load_spec
from fhir_mappers.validation import validation_error
from tests.support.samples import samples_folder

SPEC = load_spec(Path(fhir_mappers.__file__).parent / "specs" / "readmission_30d.yaml")
CREATININE_MOLAR_MASS = 113.12  # g/mol, as in the reference spec

# Stewart Stanton (Synthea, born 1915-07-03, male): index at the end of his oncology follow-up
# Encounter/15b2bad7-30ac-4850-a1e2-7d6290edc972 (1966-09-26 19:20-19:50 UTC), two weeks after his
# only inpatient stay and three weeks after colon cancer was diagnosed.
STANTON_INDEX = datetime(1966, 9, 26, 19, 50, 6, tzinfo=UTC)
STANTON_STAY = "Encounter/4751289b-58fb-47ce-ab0b-71c2ec083de3"  # IMP 1966-09-09 → 09-10
# Beatriz Salazar (Synthea, born 1967-05-21, female): a stated index three weeks after her
# emergency visit Encounter/53dceb87-0bf9-4024-850e-a84270425152 (2019-02-06).
SALAZAR_INDEX = datetime(2019, 3, 1, tzinfo=UTC)


# Loading samples


def synthea_params() -> list[Any]:
    """One parameter per Synthea bundle, or one skipped case when the samples are not there."""
    root = os.environ.get("BEDSIDE_FHIR_SAMPLES")
    folder = Path(root) / "synthea" if root else None
    paths = sorted(folder.glob("*.json")) if folder and folder.is_dir() else []
    if not paths:
        return [pytest.param(None, marks=pytest.mark.skip(reason="no BEDSIDE_FHIR_SAMPLES"))]
    return [pytest.param(path, id="_".join(path.stem.split("_")[:2])) for path in paths]


@cache
def read_json(path: Path) -> dict[str, Any]:
    """A sample file, parsed once per session (tests never modify what it returns)."""
    return orjson.loads(path.read_bytes())


def synthea_bundle(name: str) -> dict[str, Any]:
    [path] = samples_folder("synthea").glob(f"{name}_*.json")
    return read_json(path)


def synthea_record(name: str) -> PatientRecord:
    [record] = records_from_bundle(synthea_bundle(name))
    return record


def hl7_items() -> list[tuple[str | None, Resource]]:
    """Every HL7 example: Bundles flattened, single resources as they are."""
    items: list[tuple[str | None, Resource]] = []
    for path in sorted(samples_folder("hl7-r4-examples").glob("*.json")):
        resource = read_json(path)
        if resource.get("resourceType") == "Bundle":
            items.extend(entries_of(resource))
        else:
            items.append((None, resource))
    return items


def hl7_records() -> dict[str, PatientRecord]:
    return {str(record.patient_key): record for record in records_from_resources(hl7_items())}


# Checks every row must pass


def recorded_time(resource: Resource) -> datetime | None:
    """When a contributing resource happened; an Encounter counts from its start."""
    if resource.get("resourceType") == "Encounter":
        period = resource.get("period")
        return parse_fhir_datetime(period.get("start") if isinstance(period, dict) else None)
    return resource_time(resource)


def assert_sound(row: FeatureRow, record: PatientRecord, index_time: datetime) -> None:
    """Every value is finite or NaN-and-missing; nothing used is dated after the index time."""
    assert list(row.values) == SPEC.feature_names
    for name, value in row.values.items():
        if name in row.missing:
            assert math.isnan(value), name
        else:
            assert math.isfinite(value), (name, value)
    for name, origin in row.provenance.items():
        if origin.time is not None:
            assert origin.time <= index_time, (name, origin.time)
        for key in origin.sources:
            resource = record.by_key[key]
            when = recorded_time(resource)
            if when is not None:
                assert when <= index_time, (name, key, when)
            issued = available_at(resource) if resource["resourceType"] == "Observation" else None
            assert issued is None or issued <= index_time, (name, key, issued)


def note_resources(row: FeatureRow, feature: str, code: str) -> set[str | None]:
    return {note.resource for note in row.notes if note.feature == feature and note.code == code}


def age_at(birth: datetime, index_time: datetime) -> float:
    return (index_time - birth) / timedelta(days=365.25)


# Synthea: every bundle


@pytest.mark.parametrize("path", synthea_params())
def test_synthea_bundle_maps_soundly_at_last_encounter_and_each_discharge(path: Path) -> None:
    [record] = records_from_bundle(read_json(path))
    assert record.patient is not None
    encounters = record.of_type("Encounter")
    ends = [discharge_time(encounter) for encounter in encounters]
    last_end = max(end for end in ends if end is not None)
    row = map_patient(record, SPEC, last_end)
    assert_sound(row, record, last_end)
    assert "age_years" not in row.missing

    for stay in eligible_index_encounters(encounters, record.patient):
        discharge = discharge_time(stay)
        assert discharge is not None
        row = map_patient(record, SPEC, discharge, index_encounter=stay)
        assert_sound(row, record, discharge)
        assert row.values["length_of_stay_days"] > 0
        assert row.provenance["length_of_stay_days"].sources == (typed_key(stay),)


# Synthea: named patients, values read off the file


def test_stewart_stanton_features_equal_the_values_in_his_file() -> None:
    record = synthea_record("Stewart_Stanton")
    row = map_patient(record, SPEC, STANTON_INDEX)
    assert_sound(row, record, STANTON_INDEX)
    values = row.values
    # Observation/45bfcb19-c8b3-410c-8719-d1f5086e5226, LOINC 38483-4 (creatinine in blood, the
    # "blood" synonym of 2160-0), 1966-09-26T19:20:06Z: 2.561087410588681 mg/dL.
    assert values["creatinine_last"] == 2.561087410588681
    assert row.provenance["creatinine_last"].sources == (
        "Observation/45bfcb19-c8b3-410c-8719-d1f5086e5226",
    )
    # Within 90 days only Observation/426ce310-46c5-4f63-875a-e32131969769 (1966-09-03T19:20:06Z,
    # 1.25599135968931 mg/dL) precedes it: the slope is the rise over those 23 days.
    assert values["creatinine_slope"] == pytest.approx((2.561087410588681 - 1.25599135968931) / 23)
    # ... and both are the creatinine results of the last 30 days.
    assert values["creatinine_results_30d"] == 2
    # Observation/58d1c868-b164-41bb-8bab-0888ad518d1c, LOINC 2339-0, 1966-09-26: 111.033... mg/dL.
    assert values["glucose_last"] == 111.03302981260498
    # Observation/ae45aca0-9411-4b71-920d-1961872e377e, panel 55284-4 of 1966-09-03, component
    # 8480-6: 152.31366348703722 mm[Hg] (no panel since).
    assert values["systolic_bp_last"] == 152.31366348703722
    assert row.provenance["systolic_bp_last"].sources == (
        "Observation/ae45aca0-9411-4b71-920d-1961872e377e",
    )
    # Observation/93cadebf-4802-4daf-9a88-337d67d1ebf3, LOINC 39156-5, 1966-09-03: 27.587... kg/m2.
    assert values["bmi_last"] == 27.587072933406898
    # Observation/4b0529cf-94d0-4da5-9455-6306ef92076c, 72166-2 of 1966-09-03: SNOMED 266919005
    # "Never smoker" → 0.
    assert values["smoking_current"] == 0
    # Conditions known by then: Diabetes 44054006, CKD stage 1 431855005 (renal disease, 2),
    # Diabetic renal disease 127013003 and Neuropathy due to T2DM 368581000119106 (diabetes with
    # complications, 2, which replaces diabetes without), Malignant tumour of colon 363406005
    # (1966-09-02, malignancy, 2): 2 + 2 + 2.
    assert values["charlson_index"] == 6
    assert age_at(datetime(1915, 7, 3, tzinfo=UTC), STANTON_INDEX) == pytest.approx(51.23, abs=0.01)
    assert values["age_years"] == pytest.approx(
        age_at(datetime(1915, 7, 3, tzinfo=UTC), STANTON_INDEX)
    )
    assert values["sex_female"] == 0
    # STANTON_STAY (IMP, 1966-09-09) is the only inpatient stay in the past 12 months; his only
    # emergency visit (Encounter/c5a9c705-..., 1965-12-19) is 281 days back, outside 6 months.
    assert values["inpatient_admissions_12m"] == 1
    assert row.provenance["inpatient_admissions_12m"].sources == (STANTON_STAY,)
    assert values["emergency_visits_6m"] == 0
    # Ordered within 365 days: Leucovorin 1803932 and oxaliplatin 1736776 (both 1966-09-26) and
    # Aspirin 243670 (1965-12-19, now "stopped", which says nothing about the index time).
    assert values["active_medication_count"] == 3
    # The oncology visit's blood count and albumin, all 1966-09-26:
    # Observation/94b65185-26e5-432f-bf89-aa1c9a09086e (718-7) 12.44371750521583 g/dL,
    # Observation/5692f48b-e34a-4b56-bc04-91de64821c3c (6690-2) 2.054722227871473 10*3/uL,
    # Observation/f3fc4e8e-3dc1-47e9-9c89-c0cb000ce9cf (1751-7) 4.549740178623878 g/dL.
    assert values["hemoglobin_last"] == 12.44371750521583
    assert values["leukocytes_last"] == 2.054722227871473
    assert values["albumin_last"] == 4.549740178623878
    # No length of stay without an index encounter; Synthea records no heart rate, and no
    # temperature in the last 30 days.
    assert row.missing == {"length_of_stay_days", "heart_rate_last", "temperature_max_30d"}


def test_stewart_stanton_at_discharge_of_his_inpatient_stay() -> None:
    record = synthea_record("Stewart_Stanton")
    [stay] = eligible_index_encounters(record.of_type("Encounter"), record.patient or {})
    assert typed_key(stay) == STANTON_STAY
    discharge = datetime(1966, 9, 10, 19, 35, 6, tzinfo=UTC)
    assert discharge_time(stay) == discharge
    row = map_patient(record, SPEC, discharge, index_encounter=stay)
    assert_sound(row, record, discharge)
    # Admitted 1966-09-09T19:20:06Z, discharged a day and 15 minutes later.
    assert row.values["length_of_stay_days"] == pytest.approx(1 + 15 / 1440)
    # The stay itself is not a prior admission.
    assert row.values["inpatient_admissions_12m"] == 0
    # Observation/426ce310-46c5-4f63-875a-e32131969769 (38483-4, 1966-09-03): 1.25599135968931.
    assert row.values["creatinine_last"] == 1.25599135968931


def test_beatriz_salazar_features_equal_the_values_in_her_file() -> None:
    record = synthea_record("Beatriz_Salazar")
    row = map_patient(record, SPEC, SALAZAR_INDEX)
    assert_sound(row, record, SALAZAR_INDEX)
    values = row.values
    # Observation/ba57db7a-ebed-42b1-a910-2db934a499c1, 38483-4, 2019-01-11: 3.239310425307599.
    assert values["creatinine_last"] == 3.239310425307599
    # ... 49 days before the index: no creatinine result in the last 30 days.
    assert values["creatinine_results_30d"] == 0
    # Observation/5ff36644-54ea-4b9b-a202-fb5eaf966058, 2339-0, 2019-01-11: 78.13218475290059.
    assert values["glucose_last"] == 78.13218475290059
    # Observation/54fd0a89-ea85-4f21-8a65-55e950f5ea3e, 55284-4 of 2018-05-27, 8480-6 component.
    assert values["systolic_bp_last"] == 123.62412970204349
    # Observation/0037cc02-2de8-4001-833c-c6557585323a, 39156-5, 2018-05-27.
    assert values["bmi_last"] == 30.427024388935067
    # Observation/78b7a05c-d55e-41df-9fa4-afcf104d9af2, 72166-2 of 2018-05-27: never smoker.
    assert values["smoking_current"] == 0
    # No Charlson condition (miscarriage, prediabetes, hyperlipidaemia, bronchitis, sinusitis,
    # ankle sprain).
    assert values["charlson_index"] == 0
    assert values["age_years"] == pytest.approx(
        age_at(datetime(1967, 5, 21, tzinfo=UTC), SALAZAR_INDEX)
    )
    assert values["age_years"] == pytest.approx(51.78, abs=0.01)
    assert values["sex_female"] == 1
    # Emergency visit Encounter/53dceb87-... of 2019-02-06; she was never an inpatient.
    assert values["emergency_visits_6m"] == 1
    assert values["inpatient_admissions_12m"] == 0
    # Simvastatin 316672 (2019-01-11) and Acetaminophen 313782 (2019-02-06); the simvastatin
    # order of 2018-01-11 is 414 days back, outside the 365-day window.
    assert values["active_medication_count"] == 2


def test_creatinine_in_a_substance_unit_is_the_file_value_converted() -> None:
    record = synthea_record("Stewart_Stanton")
    # The reference spec with creatinine_last in umol/L; its plausible range is stated in the
    # target unit, so it is converted too (1 mg/dL = 88.4 umol/L).
    spec_dict = SPEC.model_dump()
    for feature in spec_dict["features"]:
        if feature["name"] == "creatinine_last":
            feature.update(unit="umol/L", plausible=(8.84, 2210.0))
    spec = FeatureSpec.model_validate(spec_dict)
    row = map_patient(record, spec, STANTON_INDEX)
    # Observation/45bfcb19-c8b3-410c-8719-d1f5086e5226, 2.561087410588681 mg/dL: × 10 gives
    # mg/L, / 113.12 mg/mmol gives mmol/L, × 1000 gives umol/L.
    expected = 2.561087410588681 * 10000 / CREATININE_MOLAR_MASS
    assert row.values["creatinine_last"] == pytest.approx(expected, rel=1e-12)
    assert row.values["creatinine_last"] == pytest.approx(226.40, abs=0.01)
    origin = row.provenance["creatinine_last"]
    assert (origin.raw_value, origin.raw_unit, origin.unit) == (
        2.561087410588681,
        "mg/dL",
        "umol/L",
    )
    assert origin.converted is True


def test_egfr_in_plain_ml_per_min_falls_back_to_the_older_normalised_value() -> None:
    record = synthea_record("Stewart_Stanton")
    row = map_patient(record, SPEC, STANTON_INDEX)
    # Observation/7747fc8c-adc2-481e-ad17-d6a7e9cf1e87 (33914-3, 1966-09-26) says 13.64 "mL/min":
    # not per 1.73 m2, so not convertible. The value used is the one before it,
    # Observation/883d5a74-56a0-434f-b6de-9f2ac33d97b0 (1966-09-03): 77.62768770314833
    # mL/min/{1.73_m2}.
    assert row.values["egfr_last"] == 77.62768770314833
    assert row.provenance["egfr_last"].sources == (
        "Observation/883d5a74-56a0-434f-b6de-9f2ac33d97b0",
    )
    assert note_resources(row, "egfr_last", "unknown_unit") == {
        "Observation/7747fc8c-adc2-481e-ad17-d6a7e9cf1e87"
    }


def test_egfr_only_in_plain_ml_per_min_is_missing_with_a_note() -> None:
    record = synthea_record("Beatriz_Salazar")
    row = map_patient(record, SPEC, SALAZAR_INDEX)
    # Her only eGFR within a year, Observation/90efaaee-5b59-4782-8349-139b60afbca1 (2019-01-11,
    # 75.98 mL/min), is in the wrong unit; she has no eGFR in mL/min/{1.73_m2} at all.
    assert math.isnan(row.values["egfr_last"])
    assert "egfr_last" in row.missing
    assert note_resources(row, "egfr_last", "unknown_unit") == {
        "Observation/90efaaee-5b59-4782-8349-139b60afbca1"
    }


# HL7 R4 examples


def test_hl7_example_patient_systolic_pressure_comes_from_the_panel_component() -> None:
    record = hl7_records()["Patient/example"]
    row = map_patient(record, SPEC, datetime(2013, 1, 1, tzinfo=UTC))
    # Observation/blood-pressure (85354-9, 2012-09-17): component 8480-6 = 107 mmHg, coded
    # mm[Hg]. Observation/blood-pressure-dar repeats 107 at the same time (a duplicate), and
    # Observation/blood-pressure-cancel is cancelled.
    assert row.values["systolic_bp_last"] == 107
    origin = row.provenance["systolic_bp_last"]
    assert origin.raw_unit == "mm[Hg]" and origin.converted is False
    assert len(origin.sources) == 1
    assert origin.sources[0] in {"Observation/blood-pressure", "Observation/blood-pressure-dar"}


def test_hl7_pat1_counts_distinct_medications_across_contained_and_coded_forms() -> None:
    record = hl7_records()["Patient/pat1"]
    # medrx0301-0339, all authored 2015-01-15, none draft or in error. 39 requests name 33
    # distinct medications (contained Medications resolved through '#id'):
    # - 29 coded products, where three are named twice or more: oxycodone SNOMED 430127000
    #   (medrx0301 and 0333, both via contained med0310), azithromycin SNOMED 324252006
    #   (medrx0302 via contained med0320, medrx0313 as a CodeableConcept) and nystatin ointment
    #   RxNorm 884308 (medrx0325, 0334, 0335);
    # - 4 uncoded compounded products told apart by their ingredients: KCl in saline (medrx0322),
    #   TPN (medrx0323), salicylic acid ointment (medrx0329) and dopamine 400 mg in 500 mL D5W,
    #   ordered three times with identical contained Medications (medrx0336, 0337, 0338).
    row = map_patient(record, SPEC, datetime(2015, 1, 16, tzinfo=UTC))
    assert row.values["active_medication_count"] == 33
    # medrx002 (2015-03-01) references Medication/med0316, chlorthalidone SNOMED 317935006 —
    # already ordered as contained med0316 of medrx0311: still 33 once it is authored.
    row = map_patient(record, SPEC, datetime(2015, 3, 2, tzinfo=UTC))
    assert row.values["active_medication_count"] == 33


def test_every_hl7_example_patient_maps_or_is_refused_only_when_invalid() -> None:
    records = hl7_records()
    assert len(records) >= 40
    refused: set[str] = set()
    for key, record in records.items():
        try:
            row = map_patient(record, SPEC, datetime(2020, 1, 1, tzinfo=UTC))
        except InvalidPatient:
            refused.add(key)
            continue
        assert row.is_finite_or_nan()
        assert all(math.isnan(row.values[name]) for name in row.missing)
    invalid = {key for key, record in records.items() if validation_error(record.patient or {})}
    assert refused == invalid
    # Every example Patient is valid R4B, so none is refused.
    assert refused == set()


def test_a_resource_delivered_twice_is_held_once_in_the_record() -> None:
    # Condition/example etc. are both single files and entries of
    # Bundle-bundle-response-simplesummary: the record must not count them twice.
    for record in hl7_records().values():
        keys = [typed_key(r) for resources in record.resources.values() for r in resources]
        keys = [key for key in keys if key is not None]
        assert len(keys) == len(set(keys)), record.patient_key
    example = hl7_records()["Patient/example"]
    conditions = [typed_key(condition) for condition in example.of_type("Condition")]
    assert conditions.count("Condition/example") == 1


# Bulk Data NDJSON


def relative_references(value: Any, aliases: dict[str, str]) -> Any:
    """A copy of ``value`` with ``urn:uuid`` references rewritten to ``Type/id``."""
    if isinstance(value, dict):
        copy = {key: relative_references(item, aliases) for key, item in value.items()}
        reference = copy.get("reference")
        if isinstance(reference, str) and reference in aliases:
            copy["reference"] = aliases[reference]
        return copy
    if isinstance(value, list):
        return [relative_references(item, aliases) for item in value]
    return value


def write_bulk_export(bundles: Iterable[dict[str, Any]], folder: Path) -> None:
    """The bundles as a Bulk Data export: one ``Type.ndjson`` per resource type."""
    by_type: dict[str, list[bytes]] = {}
    for bundle in bundles:
        entries = list(entries_of(bundle))
        aliases = {url: key for url, resource in entries if url and (key := typed_key(resource))}
        for _, resource in entries:
            line = orjson.dumps(relative_references(resource, aliases))
            by_type.setdefault(resource["resourceType"], []).append(line)
    for resource_type, lines in by_type.items():
        (folder / f"{resource_type}.ndjson").write_bytes(b"\n".join(lines) + b"\n")


def comparable(row: FeatureRow) -> Iterator[Any]:
    yield {name: None if math.isnan(value) else value for name, value in row.values.items()}
    yield row.missing
    yield {name: origin.sources for name, origin in row.provenance.items()}
    yield sorted((note.code, note.feature or "", note.resource or "") for note in row.notes)


def test_bulk_ndjson_export_gives_the_same_features_as_the_bundles(tmp_path: Path) -> None:
    names = ("Stewart_Stanton", "Beatriz_Salazar")
    bundles = [synthea_bundle(name) for name in names]
    write_bulk_export(bundles, tmp_path)
    assert (tmp_path / "Observation.ndjson").is_file()
    assert b"urn:uuid:" not in (tmp_path / "Observation.ndjson").read_bytes()
    from_ndjson = {record.patient_key: record for record in records_from_ndjson(tmp_path)}
    assert len(from_ndjson) == 2
    for bundle, index_time in zip(bundles, (STANTON_INDEX, SALAZAR_INDEX), strict=True):
        [record] = records_from_bundle(bundle)
        bulk = from_ndjson[record.patient_key]
        assert {t: len(r) for t, r in bulk.resources.items()} == {
            t: len(r) for t, r in record.resources.items()
        }
        expected = map_patient(record, SPEC, index_time)
        actual = map_patient(bulk, SPEC, index_time)
        assert list(comparable(actual)) == list(comparable(expected))
        assert "creatinine_last" not in actual.missing
