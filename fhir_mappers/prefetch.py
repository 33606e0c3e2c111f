"""Prefetch resolution (CDS Hooks 2.0): use what the EHR sent, fetch what it did not.

Per key the EHR's prefetch can be absent (fetch it), ``null`` (there is no such data), an
OperationOutcome (the EHR failed: fetch it) or a searchset Bundle (maybe paginated: follow
``next``). A required key that cannot be obtained raises :class:`PrefetchUnavailable`, which the
protocol layer answers with 412.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fhir_mappers.fhir_client import FhirClient, FhirFetchError, next_link

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9_.]*)\s*\}\}")
_USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}


class PrefetchUnavailable(Exception):
    """Required data could not be obtained (answered with 412)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"prefetch {key!r}: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class PrefetchPlan:
    """What one service asks for: templates by key and the keys it cannot do without."""

    templates: Mapping[str, str]
    required: frozenset[str]


def render_template(template: str, context: Mapping[str, Any]) -> str | None:
    """Fill ``{{context.x}}`` and ``{{userPractitionerId}}``-style tokens, URL-encoding values.

    ``None`` when a token cannot be filled (the context lacks the field, or ``userId`` is of
    another type): the query cannot be asked, so there is no such data.
    """
    values: dict[str, str] = {}
    for name in _PLACEHOLDER.findall(template):
        value = _token_value(name, context)
        if value is None:
            return None
        values[name] = quote(value, safe="")
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def _token_value(name: str, context: Mapping[str, Any]) -> str | None:
    """The raw value of one template token, or ``None`` when the request does not carry it."""
    if name.startswith("context."):
        value = context.get(name.removeprefix("context."))
        if isinstance(value, str | int | float) and not isinstance(value, bool) and value != "":
            return str(value)
        return None
    if name in _USER_TOKENS:
        resource_type, _, user_id = str(context.get("userId", "")).partition("/")
        if resource_type == _USER_TOKENS[name] and user_id:
            return user_id
    return None


async def resolve_prefetch(
    plan: PrefetchPlan,
    sent: Mapping[str, Any] | None,
    context: Mapping[str, Any],
    fhir: FhirClient | None,
) -> dict[str, dict[str, Any] | None]:
    """Resolve every key of ``plan`` to a resource or ``None`` (no such data).

    Optional keys that cannot be obtained are left out; required ones raise
    :class:`PrefetchUnavailable`. Fetches run concurrently.
    """
    sent = sent or {}
    resolved: dict[str, dict[str, Any] | None] = {}
    pending: dict[str, asyncio.Task[dict[str, Any]]] = {}
    failures: dict[str, str] = {}

    async with asyncio.TaskGroup() as group:
        for key, template in plan.templates.items():
            value = sent.get(key, _ABSENT)
            if value is None:
                resolved[key] = None
            elif _is_usable(value):
                if next_link(value) is None:
                    resolved[key] = value
                elif fhir is not None:
                    pending[key] = group.create_task(_guard(fhir.complete(value)))
                else:
                    failures[key] = "searchset is paginated and no fhirServer was given"
            elif (query := render_template(template, context)) is None:
                resolved[key] = None  # the context lacks what the query needs: no such data
            elif fhir is None:
                failures[key] = "not prefetched and no fhirServer was given"
            else:
                pending[key] = group.create_task(_guard(fhir.get(query)))

    for key, task in pending.items():
        outcome = task.result()
        if isinstance(outcome, FhirFetchError):
            failures[key] = str(outcome)
        else:
            resolved[key] = outcome

    for key in sorted(failures):
        if key in plan.required:
            raise PrefetchUnavailable(key, failures[key])
    return resolved


_ABSENT = object()


def _is_usable(value: Any) -> bool:
    """A prefetched value we can use as is: a resource that is not an OperationOutcome."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("resourceType"), str)
        and value["resourceType"] != "OperationOutcome"
    )


async def _guard(fetch: Any) -> Any:
    """Return a FhirFetchError instead of raising it, so one failure does not cancel the rest."""
    try:
        return await fetch
    except FhirFetchError as error:
        return error
