"""Derived features: computed by named functions rather than read from one code group."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from fhir_mappers.charlson import charlson_index
from fhir_mappers.fhirtime import lookback_start, parse_fhir_datetime
from fhir_mappers.labels import is_emergency, is_inpatient
from fhir_mappers.record import PatientRecord, Resource, as_list, typed_key
from fhir_mappers.selection import available_at, codings, is_ignored, resource_time
from fhir_mappers.spec import FeatureDefinition

DAYS_PER_YEAR = 365.25
NAN = float("nan")
DEFAULT_WINDOWS = {
    "inpatient_admissions": 365.0,
    "emergency_visits": 182.5,
    "active_medication_count": 365.0,
}
INACTIVE_MEDICATION_STATUSES = frozenset({"draft", "unknown"})


@dataclass(frozen=True)
class DerivedContext:
    record: PatientRecord
    index_time: datetime
    index_encounter: Resource | None
    valid: Callable[[Resource, str | None], bool]


DerivedResult = tuple[float, tuple[str, ...]]


def _keys(resources: list[Resource]) -> tuple[str, ...]:
    return tuple(key for resource in resources if (key := typed_key(resource)))


def age_years(context: DerivedContext, feature: FeatureDefinition) -> DerivedResult:
    patient = context.record.patient or {}
    birth = parse_fhir_datetime(patient.get("birthDate", ""))
    if birth is None or birth > context.index_time:
        return NAN, ()
    age = (context.index_time - birth).total_seconds() / 86400 / DAYS_PER_YEAR
    return age, _keys([patient])


def sex_female(context: DerivedContext, feature: FeatureDefinition) -> DerivedResult:
    patient = context.record.patient or {}
    value = {"female": 1.0, "male": 0.0}.get(str(patient.get("gender")), NAN)
    return value, _keys([patient])


def length_of_stay_days(context: DerivedContext, feature: FeatureDefinition) -> DerivedResult:
    """From admission to discharge, or to the index time while the stay goes on."""
    encounter = context.index_encounter
    if encounter is None or not context.valid(encounter, feature.name):
        return NAN, ()
    start = _period_point(encounter, "start")
    end = min(_period_point(encounter, "end") or context.index_time, context.index_time)
    if start is None or start > end:
        return NAN, ()
    return (end - start).total_seconds() / 86400, _keys([encounter])


def _period_point(encounter: Resource | None, name: str) -> datetime | None:
    """``period.start`` or ``period.end`` of an Encounter, None when absent or malformed."""
    period = encounter.get("period") if isinstance(encounter, dict) else None
    return parse_fhir_datetime(period.get(name)) if isinstance(period, dict) else None


def _prior_encounters(
    context: DerivedContext, feature: FeatureDefinition, accept: Callable[[Resource], bool]
) -> DerivedResult:
    """Encounters that started within the window and before the index encounter.

    Two accepted encounters starting at the same instant are one visit recorded twice (an
    interface replay under a new id), so each start time counts once. A window reaching past
    the first representable instant is unbounded (see ``lookback_start``).
    """
    window = feature.window_days or DEFAULT_WINDOWS[str(feature.derived)]
    earliest = lookback_start(context.index_time, window)
    index = context.index_encounter
    index_key = typed_key(index) if index is not None else None
    before = context.index_time
    index_start = _period_point(index, "start")
    if index_start is not None:
        before = min(before, index_start)
    counted: dict[datetime, Resource] = {}
    for encounter in context.record.of_type("Encounter"):
        if encounter is index or (index_key is not None and typed_key(encounter) == index_key):
            continue
        if is_ignored(encounter) or not accept(encounter):
            continue
        start = _period_point(encounter, "start")
        if start is None or start in counted or not start < before:
            continue
        if earliest is not None and start <= earliest:
            continue
        if context.valid(encounter, feature.name):
            counted[start] = encounter
    return float(len(counted)), _keys(list(counted.values()))


def inpatient_admissions(context: DerivedContext, feature: FeatureDefinition) -> DerivedResult:
    return _prior_encounters(context, feature, is_inpatient)


def emergency_visits(context: DerivedContext, feature: FeatureDefinition) -> DerivedResult:
    return _prior_encounters(context, feature, is_emergency)


def charlson(context: DerivedContext, feature: FeatureDefinition) -> DerivedResult:
    """Charlson index over the conditions known at the index time.

    A condition counts when it began by the index time and was not recorded after it: a
    diagnosis entered later (even with an earlier onset) was not known at the index time.
    """
    known = []
    for condition in context.record.of_type("Condition"):
        if is_ignored(condition):
            continue
        when = resource_time(condition)
        if when is None or when > context.index_time:
            continue
        recorded = available_at(condition)
        if recorded is not None and recorded > context.index_time:
            continue
        if charlson_index(codings(condition.get("code"))).score > 0 and context.valid(
            condition, feature.name
        ):
            known.append(condition)
    pairs = [pair for condition in known for pair in codings(condition.get("code"))]
    return float(charlson_index(pairs).score), _keys(known)


def active_medication_count(context: DerivedContext, feature: FeatureDefinition) -> DerivedResult:
    """Distinct medications ordered within the window before the index time.

    A request's current status says nothing about the past, so "active at the index time" is
    approximated by "authored within the window and not a draft or in error". A window
    reaching past the first representable instant is unbounded (see ``lookback_start``).
    """
    window = feature.window_days or DEFAULT_WINDOWS["active_medication_count"]
    earliest = lookback_start(context.index_time, window)
    medications: dict[str, Resource] = {}
    for request in context.record.of_type("MedicationRequest"):
        status = request.get("status")
        inactive = isinstance(status, str) and status in INACTIVE_MEDICATION_STATUSES
        if inactive or is_ignored(request):
            continue
        authored = resource_time(request)
        if authored is None or authored > context.index_time:
            continue
        if earliest is not None and authored <= earliest:
            continue
        identity = _medication_identity(context.record, request)
        if identity not in medications and context.valid(request, feature.name):
            medications[identity] = request
    return float(len(medications)), _keys(list(medications.values()))


def _medication_identity(record: PatientRecord, request: Resource) -> str:
    """What makes two requests order the same medication.

    Its code; for an uncoded (e.g. compounded) Medication the set of its ingredients' codes,
    else its text; else the request itself.
    """
    concept = request.get("medicationCodeableConcept")
    reference = request.get("medicationReference")
    medication = None
    if concept is None:
        medication = record.resolve(reference, container=request)
        concept = medication.get("code") if isinstance(medication, dict) else None
    pairs = sorted(codings(concept))
    if pairs:
        return "|".join(pairs[0])
    if isinstance(medication, dict):
        ingredients = sorted(
            {
                pair
                for ingredient in as_list(medication.get("ingredient"))
                if isinstance(ingredient, dict)
                for pair in codings(ingredient.get("itemCodeableConcept"))
            }
        )
        if ingredients:
            return "ingredients:" + ";".join("|".join(pair) for pair in ingredients)
    for holder, name in ((concept, "text"), (reference, "display")):
        text = holder.get(name) if isinstance(holder, dict) else None
        if isinstance(text, str) and text.strip():
            return "text:" + " ".join(text.casefold().split())
    return f"request:{typed_key(request) or id(request)}"


DERIVED_FEATURES: dict[str, Callable[[DerivedContext, FeatureDefinition], DerivedResult]] = {
    "age_years": age_years,
    "sex_female": sex_female,
    "length_of_stay_days": length_of_stay_days,
    "inpatient_admissions": inpatient_admissions,
    "emergency_visits": emergency_visits,
    "charlson_index": charlson,
    "active_medication_count": active_medication_count,
}
