"""Validation of what a spec consumes, with the R4B models of ``fhir.resources``.

The default (R5) models of fhir.resources 8 reject R4 data; R4B accepts it. Only resources that
determine a feature are validated, and of those only the elements the mapper reads (plus the
ones R4 requires): narrative, identifiers, names or addresses the model never sees are not worth
the time (validation costs 0.1–1 ms per resource and dominates mapping).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from fhir_mappers.validation_memo import ValidationMemo

CONSUMED_ELEMENTS: dict[str, frozenset[str]] = {
    "Patient": frozenset(
        {"gender", "birthDate", "extension", "communication", "deceasedBoolean", "deceasedDateTime"}
    ),
    "Observation": frozenset(
        {
            "status",
            "code",
            "subject",
            "effectiveDateTime",
            "effectiveInstant",
            "effectivePeriod",
            "issued",
            "valueQuantity",
            "valueCodeableConcept",
            "component",
        }
    ),
    "Encounter": frozenset(
        {
            "status",
            "class",
            "subject",
            "period",
            "hospitalization",
            "priority",
            "type",
            "serviceType",
        }
    ),
    "Condition": frozenset(
        {
            "clinicalStatus",
            "verificationStatus",
            "code",
            "subject",
            "onsetDateTime",
            "onsetPeriod",
            "recordedDate",
            "abatementDateTime",
        }
    ),
    "MedicationRequest": frozenset(
        {
            "status",
            "intent",
            "subject",
            "authoredOn",
            "medicationCodeableConcept",
            "medicationReference",
            "contained",
        }
    ),
    "Procedure": frozenset({"status", "code", "subject", "performedDateTime", "performedPeriod"}),
}
ALWAYS_KEPT = frozenset({"resourceType", "id"})
CONSUMED_EXTENSIONS = frozenset(
    {
        "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
        "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity",
    }
)


def consumed_part(resource: dict[str, Any]) -> dict[str, Any]:
    """The elements of ``resource`` that the mapper reads (all of it for other types)."""
    consumed = CONSUMED_ELEMENTS.get(str(resource.get("resourceType")))
    if consumed is None:
        return resource
    part = {key: value for key, value in resource.items() if key in consumed or key in ALWAYS_KEPT}
    extensions = part.get("extension")
    if isinstance(extensions, list):
        part["extension"] = [
            extension
            for extension in extensions
            if not isinstance(extension, dict) or extension.get("url") in CONSUMED_EXTENSIONS
        ]
        if not part["extension"]:
            del part["extension"]
    return part


@cache
def _model(resource_type: str) -> Any:
    return get_fhir_model_class(resource_type)


def load_models() -> None:
    """Import the R4B model classes of every consumed type now (else on first use)."""
    for resource_type in CONSUMED_ELEMENTS:
        _model(resource_type)


def validation_error(resource: dict[str, Any]) -> str | None:
    """None when ``resource`` is valid R4, else a short description of the first problems."""
    return part_error(consumed_part(resource))


def part_error(part: dict[str, Any]) -> str | None:
    """:func:`validation_error` of a resource already cut to its :func:`consumed_part`."""
    try:
        model = _model(str(part.get("resourceType")))
    except (KeyError, ValueError):
        return f"unknown resourceType {part.get('resourceType')!r}"
    try:
        model.model_validate(part)
    except ValidationError as error:
        problems = error.errors(include_input=False, include_url=False)[:3]
        return "; ".join(
            ".".join(str(part) for part in problem["loc"]) + ": " + problem["msg"]
            for problem in problems
        )
    except (TypeError, ValueError) as error:
        return type(error).__name__
    return None


class ValidationCache:
    """Validates each resource object at most once while the cache lives.

    A record keeps one for all its mapping runs, so a patient mapped at several index times
    (training) validates each resource once. With a ``memo`` (the service's, shared by its
    calls) a resource whose content was validated in an earlier call is not validated again.
    """

    def __init__(self, memo: ValidationMemo | None = None) -> None:
        self._memo = memo
        self._results: dict[int, str | None] = {}
        self._keep: list[dict[str, Any]] = []  # keeps ids stable while cached

    def error(self, resource: dict[str, Any]) -> str | None:
        key = id(resource)
        if key not in self._results:
            part = consumed_part(resource)
            memo = self._memo
            self._results[key] = memo.error(part) if memo is not None else part_error(part)
            self._keep.append(resource)
        return self._results[key]

    @property
    def validated(self) -> int:
        return len(self._results)
