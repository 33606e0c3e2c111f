"""Features for a hook call: the prefetch becomes a record, the hook fixes the index time."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from fhir_mappers.index_time import encounter_in_context, hook_index_time
from fhir_mappers.mapper import InvalidPatient, map_patient
from fhir_mappers.record import record_from_prefetch
from fhir_mappers.row import FeatureRow
from fhir_mappers.spec import FeatureSpec


def features_for_hook(
    spec: FeatureSpec,
    hook: str,
    context: Mapping[str, Any],
    prefetch: Mapping[str, dict[str, Any] | None],
    request_time: datetime,
) -> FeatureRow:
    """Map a hook's resolved prefetch; :class:`InvalidPatient` when it holds no usable Patient."""
    record = record_from_prefetch(prefetch)
    if record is None:
        raise InvalidPatient("the prefetch holds no single Patient")
    patient_id = context.get("patientId")
    if patient_id and record.patient_key != f"Patient/{patient_id}":
        raise InvalidPatient("the prefetched Patient is not the patient in context")
    encounter = encounter_in_context(record, context.get("encounterId"))
    index_time = hook_index_time(hook, encounter, request_time)
    return map_patient(record, spec, index_time, encounter)
