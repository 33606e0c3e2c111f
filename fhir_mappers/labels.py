"""Outcome labels from raw FHIR R4 Encounters and the Patient: 30-day readmission and in-hospital
mortality. Training and outcome syncing both use these functions, so a label means the same in both.

What counts:

- Inpatient: class code IMP, ACUTE or NONAC (v3-ActCode) or ``inpatient`` (DSTU2, local systems),
  as an R4 Coding or an R5 list of CodeableConcepts. Emergency: EMER. Nothing else is inpatient.
- Encounters with status entered-in-error, cancelled or planned (voided, or not taken place), or
  without a status, never count, as index or as readmission. Encounters whose subject is
  ``Patient/<another id>`` are ignored.
- Index encounter: a finished inpatient stay (R5: completed or discharged) with a discharge time,
  ``period.end`` (R5 ``actualPeriod.end``). Partial dates follow FHIR's inclusive periods: an end
  date stands for its last instant, a start date for its first. Otherwise the label is ``None``
  with reason "not_inpatient", "not_finished", "other_patient" or "no_discharge_time".

Readmission, first rule that applies:

1. Died in hospital: discharge disposition ``exp`` (NUBC 20/41), or ``Patient.deceasedDateTime``
   at or before discharge → ``None`` "died_in_hospital".
2. Transferred: disposition ``other-hcf`` (NUBC 02/05/66/82/85/94: another acute hospital), or an
   inpatient encounter starting at or after discharge and at most :data:`TRANSFER_WINDOW` later
   (a continuation of the stay, itself an index) → ``None`` "transferred".
3. Readmitted: an unplanned inpatient encounter starting later than that and at or before
   discharge + ``window_days`` (inclusive) → 1, the earliest one is the event; one still in
   progress counts. Planned: priority EL (v3-ActPriority) or a type listed in ``planned_types``
   (none by default); R4's admit-source code system has no elective code, so it is not used.
4. Died after discharge, within the window → "died_after_discharge": ``None`` with
   ``death_policy="exclude"`` (default), 0 with ``"negative"``. A death that may fall on either
   side of discharge or of the window end (``deceasedBoolean``, a partial or unreadable
   ``deceasedDateTime``) → ``None`` "death_time_unknown".
5. ``follow_up_until`` (data complete up to then) before the window end → ``None``
   "insufficient_follow_up": not known yet.
6. Otherwise 0 "no_readmission".

In-hospital mortality: 1 "died_in_hospital" under rule 1; ``None`` "death_time_unknown" when the
death may be before or after discharge; otherwise 0 "discharged_alive" (transfers included).

Times are compared as aware instants. Malformed resources never raise: they do not count.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Literal

from fhir_mappers.fhirtime import end_of_partial, parse_fhir_datetime

READMISSION = "readmission_30d"
MORTALITY = "in_hospital_mortality"

TRANSFER_WINDOW = timedelta(hours=6)
"""An inpatient encounter starting this soon after discharge continues the stay (a transfer)."""

INPATIENT_CLASSES = frozenset({"IMP", "ACUTE", "NONAC", "inpatient"})
EMERGENCY_CLASSES = frozenset({"EMER", "emergency"})
FINISHED_STATUSES = frozenset({"finished", "completed", "discharged"})
NOT_EVENT_STATUSES = frozenset({"entered-in-error", "cancelled", "planned"})

_DISPOSITION = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
_NUBC = (
    "http://www.nubc.org/patient-discharge",
    "https://www.nubc.org/CodeSystem/PatDischargeStatus",
)
_PRIORITY = "http://terminology.hl7.org/CodeSystem/v3-ActPriority"
DIED_DISPOSITIONS = frozenset(
    {(_DISPOSITION, "exp"), *((s, c) for s in _NUBC for c in ("20", "41"))}
)
TRANSFER_DISPOSITIONS = frozenset(
    {(_DISPOSITION, "other-hcf")}
    | {(s, c) for s in _NUBC for c in ("02", "05", "66", "82", "85", "94")}
)
PLANNED_PRIORITIES = frozenset({(_PRIORITY, "EL")})

_BEGINNING = datetime.min.replace(tzinfo=UTC)
_END = datetime.max.replace(tzinfo=UTC)

Resource = dict[str, Any]
DeathSpan = tuple[datetime, datetime]


@dataclass(frozen=True)
class LabelResult:
    """One label for one index encounter; ``value`` is None when the label is not defined."""

    name: str
    value: int | None
    reason: str
    index_encounter_id: str | None
    event_encounter_id: str | None = None
    event_time: datetime | None = None


def is_inpatient(encounter: Resource) -> bool:
    """Whether the encounter class says inpatient (R4 Coding or R5 list of CodeableConcepts)."""
    return not INPATIENT_CLASSES.isdisjoint(code for _, code in _coded(_get(encounter, "class")))


def is_emergency(encounter: Resource) -> bool:
    """Whether the encounter class says emergency."""
    return not EMERGENCY_CLASSES.isdisjoint(code for _, code in _coded(_get(encounter, "class")))


def discharge_time(encounter: Resource) -> datetime | None:
    """The end of the encounter's period (its last instant if partial); None when unreadable."""
    return _parse_end(_get(_period(encounter), "end"))


def eligible_index_encounters(encounters: Sequence[Resource], patient: Resource) -> list[Resource]:
    """The patient's finished inpatient stays that have a discharge time, by discharge time."""
    discharges = [(_eligibility(e, patient), e) for e in encounters]
    eligible = [(time, e) for time, e in discharges if isinstance(time, datetime)]
    return [e for _, e in sorted(eligible, key=lambda pair: pair[0])]


def readmission_30d(
    index: Resource,
    encounters: Sequence[Resource],
    patient: Resource,
    *,
    window_days: int = 30,
    follow_up_until: datetime | None = None,
    death_policy: Literal["exclude", "negative"] = "exclude",
    planned_types: Collection[tuple[str, str]] = (),
) -> LabelResult:
    """Unplanned inpatient readmission within ``window_days`` of the index discharge.

    ``follow_up_until`` is the instant up to which the patient's data is complete (aware).
    ``planned_types`` holds (system, code) pairs of Encounter.type that mark planned admissions.
    """
    if window_days < 1:
        raise ValueError("window_days must be positive")
    if follow_up_until is not None and follow_up_until.utcoffset() is None:
        raise ValueError("follow_up_until must be timezone-aware")
    if death_policy not in ("exclude", "negative"):
        raise ValueError(f"unknown death_policy {death_policy!r}")
    label = partial(LabelResult, READMISSION, index_encounter_id=_id(index))
    discharge = _eligibility(index, patient)
    if isinstance(discharge, str):
        return label(None, discharge)
    death = _death_span(patient)
    died_at = _death_in_stay(index, discharge, death)
    if died_at is not None:
        return label(None, "died_in_hospital", event_time=died_at)
    if _has_code(_get(_hospitalization(index), "dischargeDisposition"), TRANSFER_DISPOSITIONS):
        return label(None, "transferred")

    transfer_until = _shift(discharge, TRANSFER_WINDOW)
    window_end = _shift(discharge, timedelta(days=window_days))
    for start, encounter in _admissions_from(discharge, index, encounters, patient):
        if start <= transfer_until:
            return label(None, "transferred", event_encounter_id=_id(encounter), event_time=start)
        if start > window_end:
            break
        if not _is_planned(encounter, planned_types):
            return label(1, "readmitted", event_encounter_id=_id(encounter), event_time=start)

    if death is not None and death[0] <= window_end:
        earliest, latest = death
        if earliest > discharge and latest <= window_end:
            value = None if death_policy == "exclude" else 0
            return label(value, "died_after_discharge", event_time=earliest)
        return label(None, "death_time_unknown")
    if follow_up_until is not None and follow_up_until < window_end:
        return label(None, "insufficient_follow_up")
    return label(0, "no_readmission")


def in_hospital_mortality(index: Resource, patient: Resource) -> LabelResult:
    """1 when the patient died during the index stay, 0 when discharged alive."""
    label = partial(LabelResult, MORTALITY, index_encounter_id=_id(index))
    discharge = _eligibility(index, patient)
    if isinstance(discharge, str):
        return label(None, discharge)
    death = _death_span(patient)
    died_at = _death_in_stay(index, discharge, death)
    if died_at is not None:
        return label(1, "died_in_hospital", event_time=died_at)
    if death is not None and death[0] <= discharge:
        return label(None, "death_time_unknown")
    return label(0, "discharged_alive")


def _eligibility(encounter: Resource, patient: Resource) -> datetime | str:
    """The discharge time of an eligible index encounter, or why it is not eligible."""
    if not is_inpatient(encounter):
        return "not_inpatient"
    if _status(encounter) not in FINISHED_STATUSES:
        return "not_finished"
    if not _belongs_to(encounter, patient):
        return "other_patient"
    return discharge_time(encounter) or "no_discharge_time"


def _admissions_from(
    discharge: datetime, index: Resource, encounters: Sequence[Resource], patient: Resource
) -> list[tuple[datetime, Resource]]:
    """The patient's other inpatient encounters starting at or after discharge, by start."""
    admissions = []
    for encounter in encounters:
        start = _parse_start(_get(_period(encounter), "start"))
        if (
            start is not None
            and start >= discharge
            and is_inpatient(encounter)
            and _counts_as_event(encounter)
            and _belongs_to(encounter, patient)
            and not _same(encounter, index)
        ):
            admissions.append((start, encounter))
    return sorted(admissions, key=lambda pair: pair[0])


def _counts_as_event(encounter: Resource) -> bool:
    status = _status(encounter)
    return status is not None and status not in NOT_EVENT_STATUSES


def _status(encounter: Resource) -> str | None:
    status = _get(encounter, "status")
    return status if isinstance(status, str) else None


def _is_planned(encounter: Resource, planned_types: Collection[tuple[str, str]]) -> bool:
    if _has_code(_get(encounter, "priority"), PLANNED_PRIORITIES):
        return True
    return any(pair in planned_types for pair in _coded(_get(encounter, "type")))


def _death_span(patient: Resource) -> DeathSpan | None:
    """Earliest and latest possible time of death; all of time when deceased at an unknown time."""
    value = _get(patient, "deceasedDateTime")
    if value is not None:
        earliest, latest = _parse_start(value), _parse_end(value)
        return (earliest, latest) if earliest and latest else (_BEGINNING, _END)
    return (_BEGINNING, _END) if _get(patient, "deceasedBoolean") is True else None


def _death_in_stay(
    index: Resource, discharge: datetime, death: DeathSpan | None
) -> datetime | None:
    """When the patient died in the stay (the discharge time when only the disposition says so)."""
    if death is not None and death[1] <= discharge:
        return death[0]
    if _has_code(_get(_hospitalization(index), "dischargeDisposition"), DIED_DISPOSITIONS):
        return discharge
    return None


def _belongs_to(encounter: Resource, patient: Resource) -> bool:
    """False only when the subject is a reference to another Patient."""
    patient_id = _get(patient, "id")
    reference = _get(_get(encounter, "subject"), "reference")
    if not isinstance(patient_id, str) or not isinstance(reference, str):
        return True
    parts = reference.split("/_history/")[0].split("/")
    return len(parts) < 2 or parts[-2] != "Patient" or parts[-1] == patient_id


def _coded(element: Any) -> Iterator[tuple[str | None, str]]:
    """(system, code) of every coding in a Coding, a CodeableConcept, or a list of either."""
    for item in element if isinstance(element, list) else [element]:
        if isinstance(item, str):  # DSTU2 Encounter.class was a bare code
            yield None, item
        elif isinstance(item, dict):
            codings = item.get("coding")
            for coding in codings if isinstance(codings, list) else [item]:
                system, code = _get(coding, "system"), _get(coding, "code")
                if isinstance(code, str) and (system is None or isinstance(system, str)):
                    yield system, code


def _has_code(element: Any, wanted: frozenset[tuple[str, str]]) -> bool:
    """Whether a coding matches a (system, code) pair; one without a system matches by code."""
    codes = {code for _, code in wanted}
    return any(
        (system, code) in wanted or (system is None and code in codes)
        for system, code in _coded(element)
    )


def _parse_start(value: Any) -> datetime | None:
    return parse_fhir_datetime(value) if isinstance(value, str) else None


def _parse_end(value: Any) -> datetime | None:
    """The last instant of a (possibly partial) FHIR dateTime."""
    return end_of_partial(value) if isinstance(value, str) else None


def _shift(moment: datetime, delta: timedelta) -> datetime:
    try:
        return moment + delta
    except OverflowError:
        return _END


def _get(resource: Any, key: str) -> Any:
    return resource.get(key) if isinstance(resource, dict) else None


def _id(resource: Any) -> str | None:
    value = _get(resource, "id")
    return value if isinstance(value, str) else None


def _same(encounter: Resource, other: Resource) -> bool:
    return encounter is other or (_id(encounter) is not None and _id(encounter) == _id(other))


def _period(encounter: Resource) -> Any:
    return _get(encounter, "period") or _get(encounter, "actualPeriod")


def _hospitalization(encounter: Resource) -> Any:
    return _get(encounter, "hospitalization") or _get(encounter, "admission")
