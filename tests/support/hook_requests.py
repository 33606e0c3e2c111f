"""Hook requests an EHR would send for a patient record of a synthetic cohort."""

from __future__ import annotations

import uuid
from typing import Any

from fhir_mappers.record import PatientRecord
from tests.support.fhir_builders import searchset


def prefetch_for(record: PatientRecord, encounter: dict[str, Any]) -> dict[str, Any]:
    """What an EHR would send for the package's prefetch templates."""
    return {
        "patient": record.patient,
        "encounter": encounter,
        "observations": searchset(record.of_type("Observation")),
        "conditions": searchset(record.of_type("Condition")),
        "encounters": searchset(
            [encounter if e["id"] == encounter["id"] else e for e in record.of_type("Encounter")]
        ),
        "medications": searchset(record.of_type("MedicationRequest")),
    }


def hook_request(
    hook: str,
    record: PatientRecord,
    encounter: dict[str, Any],
    user_id: str = "Practitioner/attending-1",
) -> dict[str, Any]:
    return {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": {
            "userId": user_id,
            "patientId": record.patient["id"],  # type: ignore[index]
            "encounterId": encounter["id"],
        },
        "prefetch": prefetch_for(record, encounter),
    }
