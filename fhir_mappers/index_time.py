"""The index time of a prediction: the moment its features must not look past."""

from __future__ import annotations

from datetime import datetime

from fhir_mappers.labels import discharge_time
from fhir_mappers.record import PatientRecord, Resource


def encounter_in_context(record: PatientRecord, encounter_id: object) -> Resource | None:
    if not isinstance(encounter_id, str) or not encounter_id:
        return None
    return record.by_key.get(f"Encounter/{encounter_id}")


def hook_index_time(
    hook: str, index_encounter: Resource | None, request_time: datetime
) -> datetime:
    """encounter-discharge: the encounter's discharge time — read as training reads it
    (``labels.discharge_time``), never later than the request; other hooks: the request time."""
    if hook == "encounter-discharge" and index_encounter is not None:
        end = discharge_time(index_encounter)
        if end is not None:
            return min(end, request_time)
    return request_time
