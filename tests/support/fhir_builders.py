"""Small FHIR R4 resources for tests, valid unless a test breaks them on purpose."""

from __future__ import annotations

import uuid
from typing import Any

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def patient(patient_id: str = "p1", **fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": patient_id,
        "gender": "female",
        "birthDate": "1950-06-15",
        **fields,
    }


def encounter(
    encounter_id: str,
    start: str,
    end: str | None,
    *,
    class_code: str = "IMP",
    patient_ref: str = "Patient/p1",
    **fields: Any,
) -> dict[str, Any]:
    period = {"start": start, **({"end": end} if end else {})}
    return {
        "resourceType": "Encounter",
        "id": encounter_id,
        "status": "finished" if end else "in-progress",
        "class": {"system": ACT_CODE, "code": class_code},
        "subject": {"reference": patient_ref},
        "period": period,
        **fields,
    }


def observation(
    code: str,
    value: float | None,
    unit: str | None,
    when: str | None,
    *,
    observation_id: str | None = None,
    patient_ref: str = "Patient/p1",
    status: str = "final",
    **fields: Any,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": observation_id or uuid.uuid4().hex,
        "status": status,
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": patient_ref},
    }
    if when is not None:
        resource["effectiveDateTime"] = when
    if value is not None:
        quantity: dict[str, Any] = {"value": value}
        if unit is not None:
            quantity.update({"unit": unit, "system": UCUM, "code": unit})
        resource["valueQuantity"] = quantity
    resource.update(fields)
    return resource


def collection(*resources: dict[str, Any], full_urls: bool = False) -> dict[str, Any]:
    """A collection Bundle; with ``full_urls`` entries get urn:uuid fullUrls."""
    entries = []
    for resource in resources:
        entry: dict[str, Any] = {"resource": resource}
        if full_urls:
            entry["fullUrl"] = f"urn:uuid:{resource['id']}"
        entries.append(entry)
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A searchset Bundle of ``resources`` (one page)."""
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"resource": resource} for resource in resources],
    }
