"""Features for a hook call: the prefetch becomes a record, the hook fixes the index time."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from fhir_mappers.index_time import encounter_in_context, hook_index_time
from fhir_mappers.mapper import InvalidPatient, map_patient
from fhir_mappers.record import PatientRecord, record_from_prefetch
from fhir_mappers.row import FeatureRow
from fhir_mappers.spec import FeatureSpec
from fhir_mappers.templates import SEARCH_KEYS
from fhir_mappers.validation import ValidationCache
from fhir_mappers.validation_memo import ValidationMemo

TYPE_OF_SEARCH_KEY = {key: resource_type for resource_type, key in SEARCH_KEYS.items()}


def hook_record(
    prefetch: Mapping[str, Any], context: Mapping[str, Any], memo: ValidationMemo | None = None
) -> PatientRecord:
    """The patient's record from the resolved prefetch; :class:`InvalidPatient` when it holds
    no single Patient or another patient than the one in context.

    With a ``memo``, resources whose content an earlier call validated are not validated again.
    """
    record = record_from_prefetch(prefetch)
    if record is None:
        raise InvalidPatient("the prefetch holds no single Patient")
    record.validation = ValidationCache(memo)
    patient_id = context.get("patientId")
    if patient_id and record.patient_key != f"Patient/{patient_id}":
        raise InvalidPatient("the prefetched Patient is not the patient in context")
    return record


def unavailable_types(prefetch: Mapping[str, Any], templates: Mapping[str, str]) -> frozenset[str]:
    """Resource types whose search could not be obtained (key left out by prefetch resolution).

    Features computed from them are unknown, not zero: no Conditions fetched is not "no
    comorbidity".
    """
    return frozenset(
        TYPE_OF_SEARCH_KEY[key]
        for key in templates
        if key not in prefetch and key in TYPE_OF_SEARCH_KEY
    )


def features_for_hook(
    spec: FeatureSpec,
    hook: str,
    record: PatientRecord,
    context: Mapping[str, Any],
    request_time: datetime,
    unavailable: frozenset[str] = frozenset(),
) -> FeatureRow:
    """Map the record at the hook's index time."""
    encounter = encounter_in_context(record, context.get("encounterId"))
    index_time = hook_index_time(hook, encounter, request_time)
    return map_patient(record, spec, index_time, encounter, unavailable=unavailable)
