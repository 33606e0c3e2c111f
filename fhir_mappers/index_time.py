"""The index time of a prediction: the moment its features must not look past."""

from __future__ import annotations

from datetime import datetime

from fhir_mappers.fhirtime import parse_fhir_datetime
from fhir_mappers.record import PatientRecord, Resource


def encounter_in_context(record: PatientRecord, encounter_id: str | None) -> Resource | None:
    if not encounter_id:
        return None
    return record.by_key.get(f"Encounter/{encounter_id}")


def hook_index_time(
    hook: str, index_encounter: Resource | None, request_time: datetime
) -> datetime:
    """encounter-discharge: the encounter's end (the request time when not yet recorded, and
    never later than it); every other hook: the request time."""
    if hook == "encounter-discharge" and index_encounter is not None:
        end = parse_fhir_datetime((index_encounter.get("period") or {}).get("end", ""))
        if end is not None:
            return min(end, request_time)
    return request_time
