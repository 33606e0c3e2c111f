"""Property tests: whatever shape the resources take, mapping never crashes and never yields ±inf.

Each resource starts well-formed, with codes the spec reads and times inside its windows (so it
reaches the feature code), and then gets up to three mutations: a field or nested element is
replaced by random JSON (wrong types, None, nested lists and objects, random or extreme date
strings, huge and tiny numbers, unknown units) or deleted. A valid Patient always maps; a random
Patient either maps or is refused with :class:`InvalidPatient` — never another exception.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fhir_mappers
from fhir_mappers.mapper import InvalidPatient, map_patient
from fhir_mappers.record import PatientRecord, records_from_bundle
from fhir_mappers.row import FeatureRow
from fhir_mappers.spec import FeatureSpec, load_spec
from fhir_mappers.validation import validation_error
from tests.support.fhir_builders import collection, patient

SPEC = load_spec(Path(fhir_mappers.__file__).parent / "specs" / "readmission_30d.yaml")


def _unbounded(spec: FeatureSpec) -> FeatureSpec:
    """The spec without plausible ranges, so extreme values reach the aggregations."""
    spec_dict = spec.model_dump()
    for feature in spec_dict["features"]:
        feature["plausible"] = None
    return FeatureSpec.model_validate(spec_dict)


UNBOUNDED_SPEC = _unbounded(SPEC)
PROPERTY_SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
INDEX = datetime(2024, 3, 1, tzinfo=UTC)

LOINC, SNOMED = "http://loinc.org", "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
# (system, code, unit, range): every code the spec reads, with the unit and plausible range of
# the feature reading it.
READS = sorted(
    {
        (system, code, feature.unit or "1", feature.plausible or (0.05, 300.0))
        for feature in SPEC.features
        for group in (feature.codes, feature.component)
        if group is not None
        for system, code in SPEC.codes_of(group)
    }
)
CONDITION_CODES = [
    (SNOMED, "22298006"),
    (SNOMED, "44054006"),
    (SNOMED, "363406005"),
    (ICD10, "I50.9"),
    (ICD10, "C78"),
    (ICD10, "N18.3"),
]
SMOKING_CODES = [(SNOMED, "449868002"), (SNOMED, "8517006"), (SNOMED, "266919005")]
UNITS = [
    *("mg/dL", "umol/L", "mmol/L", "meq/L", "g/dL", "%", "mmol/mol", "kg/m2", "mm[Hg]", "kPa"),
    *("Cel", "[degF]", "/min", "10*3/uL", "mL/min", "mL/min/{1.73_m2}", "MG/DL", "furlongs"),
    *("", "{score}"),
]
USED_STATUSES = st.sampled_from(["final", "amended", "preliminary", "corrected"])
OBSERVATION_STATUSES = st.one_of(
    USED_STATUSES, USED_STATUSES, USED_STATUSES, st.sampled_from(["registered", "cancelled"])
)

# Building blocks: random JSON, dates, numbers

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
aware_datetimes = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)
offsets = st.sampled_from(["Z", "+00:00", "+14:00", "-12:00", "+05:30", "", "+99:00"])
date_strings = (
    aware_datetimes.map(lambda moment: moment.date().isoformat())
    | st.builds(
        lambda moment, offset: moment.strftime("%Y-%m-%dT%H:%M:%S") + offset,
        aware_datetimes,
        offsets,
    )
    | st.integers(min_value=0, max_value=9999).map(lambda year: f"{year:04d}")
    | st.sampled_from(["2024-02-30", "2024-13", "2023-06-01T25:61:00Z", "now", ""])
)
# Inside every lookback window of the spec at INDEX (the shortest is 30 days).
recent = st.integers(min_value=60, max_value=29 * 24 * 3600).map(
    lambda seconds: (INDEX - timedelta(seconds=seconds)).isoformat()
)
numbers = (
    st.floats(min_value=0.05, max_value=300)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.sampled_from([1e-320, 5e-324, 1.7e308, -1.7e308, 0])
)
junk = json_values | date_strings | numbers | st.sampled_from(UNITS)
DELETE = object()


def code(pairs: list[tuple[str, str]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.sampled_from(pairs).map(
        lambda pair: {"coding": [{"system": pair[0], "code": pair[1]}]}
    )


def quantity(unit: str, plausible: tuple[float, float]) -> st.SearchStrategy[dict[str, Any]]:
    """Mostly a plausible value in ``unit``; sometimes an extreme number, or another unit."""
    sane_numbers = st.floats(min_value=plausible[0], max_value=plausible[1])
    return st.builds(
        lambda value, unit: {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
        st.one_of(sane_numbers, sane_numbers, numbers),
        st.one_of(st.just(unit), st.just(unit), st.sampled_from(UNITS)),
    )


def mutated(base: st.SearchStrategy[dict[str, Any]], paths: list[tuple[Any, ...]]) -> Any:
    """``base`` with up to three elements (given by path) replaced by junk or deleted."""

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        resource = draw(base)
        for _ in range(draw(st.integers(min_value=0, max_value=3))):
            *parents, last = draw(st.sampled_from(paths))
            value = draw(st.just(DELETE) | junk)
            holder: Any = resource
            for step in parents:
                holder = _child(holder, step)
            if isinstance(holder, dict) and isinstance(last, str):
                if value is DELETE:
                    holder.pop(last, None)
                else:
                    holder[last] = value
            elif isinstance(holder, list) and isinstance(last, int) and last < len(holder):
                holder[last] = None if value is DELETE else value
        return resource

    return build()


def _child(holder: Any, step: Any) -> Any:
    if isinstance(holder, dict) and isinstance(step, str):
        return holder.get(step)
    if isinstance(holder, list) and isinstance(step, int) and step < len(holder):
        return holder[step]
    return None


# Well-formed resources the spec reads, and where they may break


def observation_of(read: tuple[str, str, str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """An Observation of one code the spec reads, with one value[x] (or none) and maybe
    components (a blood pressure panel's systolic, or anything the spec reads)."""
    system, code_value, unit, plausible = read
    base = st.fixed_dictionaries(
        {
            "resourceType": st.just("Observation"),
            "id": ids,
            "status": OBSERVATION_STATUSES,
            "subject": st.just(SUBJECT),
            "code": st.just({"coding": [{"system": system, "code": code_value}]}),
            "effectiveDateTime": recent,
        },
        optional={
            "issued": recent,
            "component": st.lists(
                st.sampled_from(READS).flatmap(
                    lambda part: st.builds(
                        lambda value: {
                            "code": {"coding": [{"system": part[0], "code": part[1]}]},
                            "valueQuantity": value,
                        },
                        quantity(part[2], part[3]),
                    )
                ),
                max_size=2,
            ),
        },
    )
    return base.flatmap(
        lambda observation: st.one_of(
            quantity(unit, plausible).map(lambda value: {**observation, "valueQuantity": value}),
            quantity(unit, plausible).map(lambda value: {**observation, "valueQuantity": value}),
            code(SMOKING_CODES).map(lambda value: {**observation, "valueCodeableConcept": value}),
            st.just(observation),
        )
    )


SUBJECT = {"reference": "Patient/p1"}
ids = st.text(alphabet="abcdef0123456789", min_size=1, max_size=8)
observations = mutated(
    st.sampled_from(READS).flatmap(observation_of),
    [
        *[(name,) for name in ("id", "status", "code", "effectiveDateTime", "issued", "subject")],
        ("code", "coding"),
        ("code", "coding", 0),
        ("code", "coding", 0, "system"),
        ("code", "coding", 0, "code"),
        ("valueQuantity",),
        ("valueQuantity", "value"),
        ("valueQuantity", "code"),
        ("valueQuantity", "unit"),
        ("valueQuantity", "comparator"),
        ("component",),
        ("component", 0),
        ("component", 0, "code", "coding"),
        ("component", 0, "valueQuantity"),
        ("component", 0, "valueQuantity", "value"),
        ("valueCodeableConcept", "coding"),
        ("effectivePeriod",),
        ("effectiveInstant",),
    ],
)
conditions = mutated(
    st.fixed_dictionaries(
        {
            "resourceType": st.just("Condition"),
            "id": ids,
            "subject": st.just(SUBJECT),
            "code": code(CONDITION_CODES),
            "onsetDateTime": recent,
        },
        optional={"verificationStatus": code([(SNOMED, "confirmed"), (SNOMED, "refuted")])},
    ),
    [
        ("code",),
        ("code", "coding"),
        ("code", "coding", 0, "code"),
        ("onsetDateTime",),
        ("recordedDate",),
        ("onsetPeriod",),
        ("verificationStatus",),
        ("verificationStatus", "coding"),
        ("clinicalStatus",),
        ("status",),
    ],
)
encounters = mutated(
    st.builds(
        lambda encounter_id, class_code, start, hours: {
            "resourceType": "Encounter",
            "id": encounter_id,
            "status": "finished",
            "class": {"system": ACT_CODE, "code": class_code},
            "subject": SUBJECT,
            "period": {
                "start": start,
                "end": (datetime.fromisoformat(start) + timedelta(hours=hours)).isoformat(),
            },
        },
        ids,
        st.sampled_from(["IMP", "EMER", "AMB", "ACUTE"]),
        recent,
        st.integers(min_value=0, max_value=200),
    ),
    [
        ("id",),
        ("status",),
        ("class",),
        ("class", "code"),
        ("period",),
        ("period", "start"),
        ("period", "end"),
        ("hospitalization",),
    ],
)
medication_requests = mutated(
    st.fixed_dictionaries(
        {
            "resourceType": st.just("MedicationRequest"),
            "id": ids,
            "status": st.sampled_from(["active", "completed", "stopped", "draft", "on-hold"]),
            "intent": st.just("order"),
            "subject": st.just(SUBJECT),
            "authoredOn": recent,
        },
        optional={
            "medicationCodeableConcept": code([(RXNORM, "316672"), (RXNORM, "313782")]),
            "medicationReference": st.sampled_from(["#m1", "#m2", "Medication/x"]).map(
                lambda reference: {"reference": reference}
            ),
            "contained": st.lists(
                st.fixed_dictionaries(
                    {"resourceType": st.just("Medication"), "id": st.sampled_from(["m1", "m2"])},
                    optional={
                        "code": code([(RXNORM, "316672")]),
                        "ingredient": st.just(
                            [{"itemCodeableConcept": {"coding": [{"system": RXNORM, "code": "1"}]}}]
                        ),
                    },
                ),
                max_size=2,
            ),
        },
    ),
    [
        ("status",),
        ("authoredOn",),
        ("medicationCodeableConcept",),
        ("medicationCodeableConcept", "coding"),
        ("medicationReference",),
        ("medicationReference", "reference"),
        ("contained",),
        ("contained", 0),
        ("contained", 0, "code"),
        ("contained", 0, "ingredient"),
    ],
)
any_resource = observations | conditions | encounters | medication_requests
index_times = st.just(INDEX) | st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


# Checks


def assert_sound(row: FeatureRow, spec: FeatureSpec) -> None:
    """Finite or NaN-and-missing, every feature present, in order."""
    assert list(row.values) == spec.feature_names
    for name, value in row.values.items():
        assert not math.isinf(value), name
        assert math.isnan(value) == (name in row.missing), (name, value)


def record_of(resources: list[dict[str, Any]], patient_resource: dict[str, Any]) -> PatientRecord:
    [record] = records_from_bundle(collection(patient_resource, *resources))
    return record


# Properties


@PROPERTY_SETTINGS
@given(
    resources=st.lists(any_resource, max_size=6),
    index_time=index_times,
    unbounded=st.booleans(),
    index_choice=st.integers(min_value=0, max_value=4),
)
def test_random_resource_shapes_never_crash_or_give_infinity(
    resources: list[dict[str, Any]], index_time: datetime, unbounded: bool, index_choice: int
) -> None:
    spec = UNBOUNDED_SPEC if unbounded else SPEC
    record = record_of(resources, patient())
    # Sometimes one of the (possibly broken) Encounters is the index encounter.
    candidates = record.of_type("Encounter")
    index_encounter = candidates[index_choice] if index_choice < len(candidates) else None
    row = map_patient(record, spec, index_time, index_encounter=index_encounter)
    assert_sound(row, spec)


@PROPERTY_SETTINGS
@given(
    values=st.lists(numbers, min_size=1, max_size=6),
    units=st.lists(st.sampled_from(UNITS), min_size=6, max_size=6),
    hours=st.lists(st.integers(min_value=0, max_value=24 * 400), min_size=6, max_size=6),
)
def test_extreme_numbers_in_read_codes_never_give_infinity(
    values: list[Any], units: list[str], hours: list[int]
) -> None:
    resources = [
        {
            "resourceType": "Observation",
            "id": f"o{i}{code}",
            "status": "final",
            "subject": SUBJECT,
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "effectiveDateTime": (INDEX - timedelta(hours=hour)).isoformat(),
            "valueQuantity": {"value": value, "unit": unit, "code": unit},
        }
        for i, (value, unit, hour) in enumerate(zip(values, units, hours, strict=False))
        for code in ("2160-0", "2345-7", "39156-5")
    ]
    for spec in (SPEC, UNBOUNDED_SPEC):
        assert_sound(map_patient(record_of(resources, patient()), spec, INDEX), spec)


patient_fields = st.fixed_dictionaries(
    {},
    optional={
        "gender": st.sampled_from(["female", "male", "other", "unknown", "F"]) | json_values,
        "birthDate": date_strings | json_values,
        "deceasedBoolean": json_values,
        "deceasedDateTime": date_strings,
        "name": json_values,
        "extension": json_values,
        "communication": json_values,
        "active": json_values,
    },
)


@PROPERTY_SETTINGS
@given(fields=patient_fields, index_time=index_times, resources=st.lists(any_resource, max_size=3))
def test_random_patient_maps_or_is_refused_as_invalid(
    fields: dict[str, Any], index_time: datetime, resources: list[dict[str, Any]]
) -> None:
    patient_resource = {"resourceType": "Patient", "id": "p1", **fields}
    record = record_of(resources, patient_resource)
    try:
        row = map_patient(record, SPEC, index_time)
    except InvalidPatient:
        assert validation_error(patient_resource) is not None
        return
    assert validation_error(patient_resource) is None
    assert_sound(row, SPEC)
    assert set(row.attributes) == {"sex", "age_band", "race", "ethnicity", "language"}


@PROPERTY_SETTINGS
@given(patient_resource=json_values, index_time=index_times)
def test_anything_in_place_of_the_patient_is_refused_or_mapped(
    patient_resource: Any, index_time: datetime
) -> None:
    record = PatientRecord(patient=patient_resource if isinstance(patient_resource, dict) else None)
    try:
        row = map_patient(record, SPEC, index_time)
    except InvalidPatient:
        return
    assert_sound(row, SPEC)


def test_patients_born_long_ago_or_with_huge_values_map_soundly() -> None:
    # Cases the properties found, pinned: a valid Patient born in 1800 is past the last age
    # band's bound (200 years), and an integer too large for a float is a legal FHIR decimal.
    huge = {
        "resourceType": "Observation",
        "id": "huge",
        "status": "final",
        "subject": SUBJECT,
        "code": {"coding": [{"system": LOINC, "code": "2160-0"}]},
        "effectiveDateTime": "2024-02-01",
        "valueQuantity": {"value": 10**400, "unit": "mg/dL", "code": "mg/dL"},
    }
    row = map_patient(record_of([huge], patient(birthDate="1800-01-01")), SPEC, INDEX)
    assert_sound(row, SPEC)
    assert row.attributes["age_band"] == "75+"
    assert "creatinine_last" in row.missing
    assert ("unreadable_value", "Observation/huge") in {(n.code, n.resource) for n in row.notes}
