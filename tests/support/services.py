"""CDS services registered by tests. The shipped app only serves model packages."""

from __future__ import annotations

from typing import Any

from cds_hooks.models import Card, HookResponse, Source
from cds_hooks.registry import CdsService, HookCall, ServiceRegistry

PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "encounter": "Encounter/{{context.encounterId}}",
    "observations": "Observation?patient={{context.patientId}}",
}


def count_entries(resource: dict[str, Any] | None) -> int:
    if resource is None:
        return 0
    return len(resource.get("entry") or [])


async def summarise_prefetch(call: HookCall) -> HookResponse:
    """A card that states what the prefetch resolved to, so tests can check resolution."""
    patient = call.prefetch.get("patient")
    if "observations" in call.prefetch:
        count: int | str = count_entries(call.prefetch["observations"])
    else:
        count = "absent"
    gender = patient.get("gender", "unknown") if patient else "none"
    return HookResponse(
        cards=[
            Card(
                summary=f"observations={count}; gender={gender}",
                indicator="info",
                source=Source(label="Bedside test service"),
                detail=f"Keys resolved: {', '.join(sorted(call.prefetch))}",
            )
        ]
    )


async def no_guidance(call: HookCall) -> HookResponse:
    return HookResponse()


def build_test_registry() -> ServiceRegistry:
    return ServiceRegistry(
        [
            CdsService(
                id="test-discharge",
                hook="encounter-discharge",
                title="Test discharge service",
                description="Summarises its prefetch (a test fixture).",
                handler=summarise_prefetch,
                prefetch=PREFETCH,
                required_prefetch=frozenset({"patient", "encounter"}),
            ),
            CdsService(
                id="test-discharge-quiet",
                hook="encounter-discharge",
                title="Second service on the same hook",
                description="Answers with no cards (a test fixture).",
                handler=no_guidance,
                prefetch={"patient": PREFETCH["patient"]},
            ),
            CdsService(
                id="test-patient-view",
                hook="patient-view",
                title="Test patient-view service",
                description="Summarises its prefetch (a test fixture).",
                handler=summarise_prefetch,
                prefetch=PREFETCH,
                required_prefetch=frozenset({"patient"}),
            ),
        ]
    )
