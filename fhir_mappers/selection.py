"""Reading timed values out of resources: code matching, times, statuses, quantities."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from fhir_mappers.fhirtime import parse_fhir_datetime
from fhir_mappers.record import IGNORED_STATUSES, Resource, as_list
from fhir_mappers.record import codings_of as codings

Codes = frozenset[tuple[str, str]]
IGNORED_VERIFICATION = frozenset({"entered-in-error", "refuted"})
NOT_YET_RESULTED = frozenset({"registered"})


def matches(concept: Any, codes: Codes) -> bool:
    return any(pair in codes for pair in codings(concept))


def is_ignored(resource: Resource) -> bool:
    """entered-in-error and cancelled resources (and refuted conditions) never count."""
    status = resource.get("status")
    if isinstance(status, str) and (status in IGNORED_STATUSES or status in NOT_YET_RESULTED):
        return True
    verification = resource.get("verificationStatus")
    if verification is None:
        return False
    return any(code in IGNORED_VERIFICATION for _, code in codings(verification))


def is_preliminary(resource: Resource) -> bool:
    return resource.get("status") == "preliminary"


def _first_time(resource: Resource, *names: str) -> datetime | None:
    for name in names:
        value = resource.get(name)
        if isinstance(value, str):
            parsed = parse_fhir_datetime(value)
            if parsed is not None:
                return parsed
        elif isinstance(value, dict):  # a Period: the latest known point
            parsed = _first_time(value, "end", "start")
            if parsed is not None:
                return parsed
    return None


RESOURCE_TIME_FIELDS: dict[str, tuple[str, ...]] = {
    "Observation": ("effectiveDateTime", "effectiveInstant", "effectivePeriod", "issued"),
    "Condition": ("onsetDateTime", "recordedDate", "onsetPeriod"),
    "MedicationRequest": ("authoredOn",),
    "Procedure": ("performedDateTime", "performedPeriod"),
    "Encounter": ("period",),
}


def resource_time(resource: Resource) -> datetime | None:
    """When the resource's fact happened (clinically relevant time), or None."""
    fields = RESOURCE_TIME_FIELDS.get(str(resource.get("resourceType")), ())
    return _first_time(resource, *fields)


AVAILABILITY_FIELDS: dict[str, tuple[str, ...]] = {"Condition": ("recordedDate",)}


def available_at(resource: Resource) -> datetime | None:
    """When the fact became known, if stated: a Condition's ``recordedDate``, otherwise (an
    Observation's) ``issued``."""
    fields = AVAILABILITY_FIELDS.get(str(resource.get("resourceType")), ("issued",))
    return _first_time(resource, *fields)


def quantity(element: Any) -> tuple[float, str | None, str | None] | None:
    """(value, unit, comparator) of a Quantity element, or None when it has no number."""
    if not isinstance(element, dict):
        return None
    value = element.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # a legal decimal beyond float range: not a usable number
        number = math.inf if value > 0 else -math.inf
    unit = element.get("code") or element.get("unit")
    comparator = element.get("comparator")
    return (
        number,
        unit if isinstance(unit, str) else None,
        comparator if isinstance(comparator, str) else None,
    )


def component_quantity(resource: Resource, codes: Codes) -> Any:
    """The valueQuantity of the first component whose code is in ``codes``."""
    for component in as_list(resource.get("component")):
        if isinstance(component, dict) and matches(component.get("code"), codes):
            return component.get("valueQuantity")
    return None
