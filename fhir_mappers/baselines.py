"""Clinical readmission baselines computed from FHIR R4: the LACE index and the HOSPITAL score.

- LACE: van Walraven C, Dhalla IA, Bell C, et al. Derivation and validation of an index to predict
  early death or unplanned readmission after discharge from hospital to the community. CMAJ
  2010;182(6):551-7. Score 0-19; :data:`LACE_HIGH_RISK` (10) and above is high risk.
- HOSPITAL: Donzé J, Aujesky D, Williams D, Schnipper JL. Potentially avoidable 30-day hospital
  readmissions in medical patients: derivation and validation of a prediction model. JAMA Intern
  Med 2013;173(8):632-8. Score 0-13; 0-4 low, 5-6 intermediate, 7 and above high risk.

Both are computed for one index stay as known at ``index_time``: nothing dated after it counts,
the stay ends at its discharge or at ``index_time`` if that comes first, and length of stay is
elapsed time (LACE counts whole days: 3.9 days is 3). Encounters that are entered-in-error,
cancelled, planned or without a status never count; two of one kind starting at the same instant
are one visit recorded twice (as in :mod:`fhir_mappers.derived`). Look-backs (ED visits, prior
admissions) count encounters that started in the window before admission. A component the data
cannot give scores 0 and is listed in ``missing``: H or S with no usable result during the stay;
L, and HOSPITAL's H, S and P, when the admission time is unreadable (look-backs then count back
from the stay's end).

Simplifications: HOSPITAL's P counts any Procedure performed during the stay, where Donzé counted
ICD-9-CM coded procedures; "oncology service" is read from a fixed list of SNOMED CT specialty
codes in Encounter.serviceType or Encounter.type (an active cancer diagnosis is not enough).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fhir_mappers.charlson import SNOMED_SYSTEM, charlson_index
from fhir_mappers.fhirtime import end_of_partial, parse_fhir_datetime
from fhir_mappers.labels import (
    NOT_EVENT_STATUSES,
    discharge_time,
    is_emergency,
    is_inpatient,
)
from fhir_mappers.record import PatientRecord, Resource, codings_of, typed_key
from fhir_mappers.selection import (
    available_at,
    is_ignored,
    quantity,
    resource_time,
)
from fhir_mappers.units import convert

LACE_HIGH_RISK = 10
"""LACE of 10 or more is high risk (van Walraven 2010)."""
HOSPITAL_HIGH_RISK = 5
"""HOSPITAL of 5 or more is intermediate (5-6) or high (7 and above) risk (Donzé 2013)."""

ED_TO_ADMISSION = timedelta(hours=6)
"""An emergency visit ending at most this long before admission (or overlapping it) led to it."""
ED_LOOKBACK = timedelta(days=182.5)  # LACE E: six months before admission
ADMISSION_LOOKBACK = timedelta(days=365)  # HOSPITAL A: twelve months before admission

_LOINC = "http://loinc.org"
_PRIORITY = "http://terminology.hl7.org/CodeSystem/v3-ActPriority"
_ADMIT_SOURCE = "http://terminology.hl7.org/CodeSystem/admit-source"
EMERGENT_PRIORITIES = frozenset({(_PRIORITY, "EM"), (_PRIORITY, "UR")})
EMERGENT_ADMIT_SOURCES = frozenset({(_ADMIT_SOURCE, "emd")})
ONCOLOGY_SERVICES = frozenset(
    (SNOMED_SYSTEM, code)
    for code in (
        "394592004",  # Clinical oncology
        "394593009",  # Medical oncology
        "418002000",  # Pediatric oncology
        "419815003",  # Radiation oncology
        "408446006",  # Gynecological oncology
    )
)
# Mass concentration in blood, serum or plasma: venous, arterial, capillary, calculated.
HEMOGLOBIN = frozenset(
    (_LOINC, code) for code in ("718-7", "20509-6", "30313-1", "30350-3", "30352-9")
)
SODIUM = frozenset((_LOINC, code) for code in ("2951-2", "2947-0"))


@dataclass(frozen=True)
class BaselineScore:
    """A baseline score: its total, points per letter, and letters the data could not give."""

    name: str
    score: int
    components: dict[str, int]
    missing: tuple[str, ...]


@dataclass(frozen=True)
class _Stay:
    """The index stay as known at the index time; ``admitted`` is None when unreadable."""

    encounter: Resource
    admitted: datetime | None
    until: datetime

    @property
    def length(self) -> timedelta | None:
        return None if self.admitted is None else self.until - self.admitted


def lace_index(
    record: PatientRecord, index_encounter: Resource, index_time: datetime
) -> BaselineScore:
    """LACE (van Walraven 2010): Length of stay, Acuity, Charlson index, ED visits in 6 months."""
    stay = _stay(index_encounter, index_time)
    led_to_admission = _led_to_admission(stay)
    visits = _prior_visits(
        record, stay, ED_LOOKBACK, lambda e: is_emergency(e) and not led_to_admission(e)
    )
    charlson = charlson_index(_known_codings(record, index_time)).score
    components = {
        "L": _lace_length_points(stay.length),
        "A": 3 if _emergent(record, stay) else 0,
        "C": 5 if charlson >= 4 else charlson,
        "E": min(visits, 4),
    }
    return _score("LACE", components, ("L",) if stay.length is None else ())


def hospital_score(
    record: PatientRecord, index_encounter: Resource, index_time: datetime
) -> BaselineScore:
    """HOSPITAL (Donzé 2013): Hemoglobin and Sodium at discharge, Oncology service, Procedure,
    Index admission type, Admissions in 12 months, Length of stay."""
    stay = _stay(index_encounter, index_time)
    hemoglobin = _last_lab(record, stay, index_time, HEMOGLOBIN, "g/dL")
    sodium = _last_lab(record, stay, index_time, SODIUM, "mmol/L", valence=1)
    admissions = _prior_visits(record, stay, ADMISSION_LOOKBACK, is_inpatient)
    components = {
        "H": int(hemoglobin is not None and hemoglobin < 12.0),
        "O": 2 if _oncology_service(index_encounter) else 0,
        "S": int(sodium is not None and sodium < 135.0),
        "P": int(_had_procedure(record, stay)),
        "I": int(_emergent(record, stay)),
        "A": 0 if admissions <= 1 else 2 if admissions <= 5 else 5,
        "L": 2 if stay.length is not None and stay.length >= timedelta(days=5) else 0,
    }
    no_stay = stay.admitted is None
    unknown = {"H": hemoglobin is None, "S": sodium is None, "P": no_stay, "L": no_stay}
    return _score("HOSPITAL", components, tuple(k for k in components if unknown.get(k)))


def _score(name: str, components: dict[str, int], missing: tuple[str, ...]) -> BaselineScore:
    return BaselineScore(name, sum(components.values()), components, missing)


def _stay(encounter: Resource, index_time: datetime) -> _Stay:
    discharged = discharge_time(encounter)
    until = index_time if discharged is None else min(discharged, index_time)
    admitted = _start(encounter)
    return _Stay(encounter, admitted if admitted and admitted <= until else None, until)


def _lace_length_points(length: timedelta | None) -> int:
    """van Walraven's L: <1 day 0, 1-3 days as many points, 4-6 days 4, 7-13 days 5, 14+ 7."""
    if length is None:
        return 0
    days = length // timedelta(days=1)
    return days if days <= 3 else 4 if days <= 6 else 5 if days <= 13 else 7


def _emergent(record: PatientRecord, stay: _Stay) -> bool:
    """Urgent or emergent admission: priority EM/UR, admitted from the ED, or via an ED visit."""
    encounter = stay.encounter
    hospitalization = encounter.get("hospitalization") or encounter.get("admission")
    admit_source = hospitalization.get("admitSource") if isinstance(hospitalization, dict) else None
    return (
        _coded_as(encounter.get("priority"), EMERGENT_PRIORITIES)
        or _coded_as(admit_source, EMERGENT_ADMIT_SOURCES)
        or any(map(_led_to_admission(stay), record.of_type("Encounter")))
    )


def _led_to_admission(stay: _Stay) -> Callable[[Resource], bool]:
    """Whether an encounter is an ED visit that started by admission and ended at most
    :data:`ED_TO_ADMISSION` before it (Synthea's start at the admission instant)."""

    def led(encounter: Resource) -> bool:
        start = _start(encounter)
        if stay.admitted is None or start is None or not _took_place(encounter):
            return False
        end = discharge_time(encounter) or start
        return is_emergency(encounter) and start <= stay.admitted <= end + ED_TO_ADMISSION

    return led


def _prior_visits(
    record: PatientRecord, stay: _Stay, lookback: timedelta, accept: Callable[[Resource], bool]
) -> int:
    """Accepted encounters starting within ``lookback`` before admission (or, when that is not
    known, before the stay's end), one per start instant."""
    anchor = stay.admitted or stay.until
    index_key = typed_key(stay.encounter)
    starts = set()
    for encounter in record.of_type("Encounter"):
        start = _start(encounter)
        if start is None or not anchor - lookback < start < anchor:
            continue
        if encounter is stay.encounter or (index_key and typed_key(encounter) == index_key):
            continue
        if _took_place(encounter) and accept(encounter):
            starts.add(start)
    return len(starts)


def _known_codings(record: PatientRecord, index_time: datetime) -> list[tuple[str, str]]:
    """Codings of Conditions dated and recorded by the index time (resolved ones included)."""
    pairs: list[tuple[str, str]] = []
    for condition in record.of_type("Condition"):
        when = resource_time(condition)
        recorded = parse_fhir_datetime(condition.get("recordedDate"))
        if is_ignored(condition) or when is None or when > index_time:
            continue
        if recorded is None or recorded <= index_time:
            pairs.extend(codings_of(condition.get("code")))
    return pairs


def _last_lab(
    record: PatientRecord,
    stay: _Stay,
    index_time: datetime,
    codes: frozenset[tuple[str, str]],
    unit: str,
    valence: int | None = None,
) -> float | None:
    """The last value during the stay, in ``unit``, of a result known by the index time."""
    if stay.admitted is None:
        return None
    values: list[tuple[datetime, float]] = []
    for observation in record.with_codes("Observation", codes):
        if is_ignored(observation):
            continue
        when, issued = resource_time(observation), available_at(observation)
        if when is None or not stay.admitted <= when <= stay.until:
            continue  # the stay ends by the index time
        if issued is not None and issued > index_time:
            continue  # drawn before, resulted after the index time
        read = quantity(observation.get("valueQuantity"))
        value = None if read is None else convert(read[0], read[1], unit, valence=valence)
        if value is not None:
            values.append((when, value))
    return max(values, key=lambda pair: pair[0])[1] if values else None


def _had_procedure(record: PatientRecord, stay: _Stay) -> bool:
    """Any Procedure performed within the stay (not one not done or still in preparation)."""
    if stay.admitted is None:
        return False
    for procedure in record.of_type("Procedure"):
        if is_ignored(procedure) or procedure.get("status") in ("not-done", "preparation"):
            continue
        span = _performed(procedure)
        if span is not None and span[0] <= stay.until and span[1] >= stay.admitted:
            return True
    return False


def _performed(procedure: Resource) -> tuple[datetime, datetime] | None:
    """When a Procedure was performed, as a span; a partial date covers its whole period."""
    period = procedure.get("performedPeriod")
    if isinstance(period, dict):
        first, last = period.get("start"), period.get("end")
    else:
        first = last = procedure.get("performedDateTime")
    begin = parse_fhir_datetime(first) or parse_fhir_datetime(last)
    end = _end(last) or _end(first)
    return (begin, end) if begin is not None and end is not None else None


def _oncology_service(encounter: Resource) -> bool:
    """Encounter.serviceType (R4 CodeableConcept, R5 CodeableReferences) or type is oncology."""
    concepts = []
    for name in ("serviceType", "type"):
        value = encounter.get(name)
        for item in value if isinstance(value, list) else [value]:
            concepts.append(item.get("concept", item) if isinstance(item, dict) else item)
    return any(_coded_as(concept, ONCOLOGY_SERVICES) for concept in concepts)


def _coded_as(concept: Any, codes: frozenset[tuple[str, str]]) -> bool:
    return any(pair in codes for pair in codings_of(concept))


def _took_place(encounter: Resource) -> bool:
    status = encounter.get("status")
    return isinstance(status, str) and status not in NOT_EVENT_STATUSES


def _start(encounter: Resource) -> datetime | None:
    period = encounter.get("period") or encounter.get("actualPeriod")
    return parse_fhir_datetime(period.get("start")) if isinstance(period, dict) else None


def _end(value: Any) -> datetime | None:
    return end_of_partial(value) if isinstance(value, str) else None
