"""Prefetch resolution: templates, the four cases of what the EHR sent, faults and the budget."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from fhir_mappers.fhir_client import FhirClient
from fhir_mappers.prefetch import (
    PrefetchPlan,
    PrefetchUnavailable,
    render_template,
    resolve_prefetch,
)
from tests.support.fhir_server import FhirTestServer, observations
from tests.support.servers import free_port
from tests.support.services import PREFETCH

PATIENT_ID = "pat-4711"
CONTEXT = {"userId": "Practitioner/123", "patientId": PATIENT_ID, "encounterId": "enc-9"}
PATIENT = {"resourceType": "Patient", "id": PATIENT_ID, "gender": "female"}
ENCOUNTER = {"resourceType": "Encounter", "id": "enc-9", "status": "finished"}
OUTCOME = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}
BUDGET = 0.5
MARGIN = 1.5  # the client's own work on a loaded machine; the fault lasts 4 s


def plan(
    *required: str, keys: tuple[str, ...] = ("patient", "encounter", "observations")
) -> PrefetchPlan:
    return PrefetchPlan(
        templates={key: PREFETCH[key] for key in keys}, required=frozenset(required)
    )


def resolve(
    prefetch_plan: PrefetchPlan,
    sent: Mapping[str, Any] | None,
    base_url: str | None,
    *,
    context: Mapping[str, Any] = CONTEXT,
    budget: float = 2.0,
) -> dict[str, dict[str, Any] | None]:
    """Resolve in a fresh event loop, with a FhirClient when ``base_url`` is given."""

    async def run() -> dict[str, dict[str, Any] | None]:
        async with httpx.AsyncClient() as http:
            fhir = None
            if base_url is not None:
                deadline = asyncio.get_running_loop().time() + budget
                fhir = FhirClient(
                    http, base_url, access_token="tok", deadline=deadline, max_pages=20
                )
            return await resolve_prefetch(prefetch_plan, sent, context, fhir)

    return asyncio.run(run())


def searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": resource} for resource in resources],
    }


@pytest.mark.parametrize(
    ("template", "rendered"),
    [
        ("Patient/{{context.patientId}}", f"Patient/{PATIENT_ID}"),
        ("Encounter/{{context.encounterId}}", "Encounter/enc-9"),
        ("Practitioner/{{userPractitionerId}}", "Practitioner/123"),
        (
            "Observation?patient={{context.patientId}}&encounter={{ context.encounterId }}",
            f"Observation?patient={PATIENT_ID}&encounter=enc-9",
        ),
        ("Patient?_count=1", "Patient?_count=1"),
    ],
)
def test_template_renders_context_and_user_tokens(template: str, rendered: str) -> None:
    assert render_template(template, CONTEXT) == rendered


def test_template_values_are_url_encoded() -> None:
    context = {"patientId": "a&_id=b c/d"}
    assert render_template("Observation?patient={{context.patientId}}", context) == (
        "Observation?patient=a%26_id%3Db%20c%2Fd"
    )


@pytest.mark.parametrize(
    ("template", "context"),
    [
        ("Encounter/{{context.encounterId}}", {"patientId": PATIENT_ID}),
        ("Encounter/{{context.encounterId}}", {"encounterId": ""}),
        ("Patient/{{context.patientId}}", {"patientId": {"reference": "Patient/1"}}),
        ("Patient/{{context.patientId}}", {"patientId": True}),
        ("Practitioner/{{userPractitionerId}}", {"userId": "PractitionerRole/123"}),
        ("Practitioner/{{userPractitionerId}}", {"userId": "Practitioner/"}),
        ("Patient/{{userPatientId}}", {"userId": "Practitioner/123"}),
        ("Patient?birthdate={{today}}", CONTEXT),
    ],
)
def test_unrenderable_template_is_none(template: str, context: dict[str, Any]) -> None:
    assert render_template(template, context) is None


def test_missing_prefetch_key_is_fetched_from_fhir_server(fhir_server: FhirTestServer) -> None:
    fhir_server.resources = [PATIENT, ENCOUNTER]
    resolved = resolve(plan("patient", keys=("patient",)), {}, fhir_server.base_url)
    assert resolved == {"patient": PATIENT}
    assert [call.path for call in fhir_server.calls] == [f"/fhir/Patient/{PATIENT_ID}"]
    assert fhir_server.calls[0].authorization == "Bearer tok"


def test_null_prefetch_means_no_data_and_is_not_fetched(fhir_server: FhirTestServer) -> None:
    fhir_server.resources = [PATIENT, ENCOUNTER]
    sent = {"patient": None, "encounter": None, "observations": None}
    resolved = resolve(plan("patient", "encounter"), sent, fhir_server.base_url)
    assert resolved == {"patient": None, "encounter": None, "observations": None}
    assert fhir_server.calls == []


def test_operation_outcome_in_prefetch_is_fetched_from_fhir_server(
    fhir_server: FhirTestServer,
) -> None:
    fhir_server.resources = [PATIENT, ENCOUNTER]
    sent = {"patient": OUTCOME, "encounter": ENCOUNTER, "observations": searchset([])}
    resolved = resolve(plan("patient"), sent, fhir_server.base_url)
    assert resolved["patient"] == PATIENT
    assert [call.path for call in fhir_server.calls] == [f"/fhir/Patient/{PATIENT_ID}"]


def test_complete_prefetch_is_used_as_sent_without_fhir_server() -> None:
    sent = {"patient": PATIENT, "encounter": ENCOUNTER, "observations": searchset([])}
    assert resolve(plan("patient", "encounter"), sent, None) == sent


def test_absent_key_fetch_follows_every_page(fhir_server: FhirTestServer) -> None:
    fhir_server.resources = [PATIENT, *observations(PATIENT_ID, 120)]
    resolved = resolve(plan(keys=("observations",)), {}, fhir_server.base_url)
    assert len(resolved["observations"]["entry"]) == 120
    assert len(fhir_server.calls) == 3


def test_paginated_prefetch_searchset_is_completed_against_fhir_server(
    fhir_server: FhirTestServer,
) -> None:
    fhir_server.resources = observations(PATIENT_ID, 120)
    first_page = httpx.get(f"{fhir_server.base_url}/Observation?patient={PATIENT_ID}").json()
    fhir_server.calls.clear()
    resolved = resolve(
        plan(keys=("observations",)), {"observations": first_page}, fhir_server.base_url
    )
    ids = {entry["resource"]["id"] for entry in resolved["observations"]["entry"]}
    assert ids == {resource["id"] for resource in fhir_server.resources}
    assert [parse_qs(call.query)["_offset"] for call in fhir_server.calls] == [["50"], ["100"]]


def test_paginated_prefetch_without_fhir_server_cannot_be_completed() -> None:
    first_page = {**searchset([]), "link": [{"relation": "next", "url": "https://x.example/p2"}]}
    sent = {"patient": PATIENT, "observations": first_page}
    keys = ("patient", "observations")
    assert resolve(plan("patient", keys=keys), sent, None) == {"patient": PATIENT}
    with pytest.raises(PrefetchUnavailable) as caught:
        resolve(plan("observations", keys=keys), sent, None)
    assert caught.value.key == "observations"


def test_unrenderable_template_resolves_to_none_without_a_fetch(
    fhir_server: FhirTestServer,
) -> None:
    fhir_server.resources = [PATIENT]
    context = {"userId": "Practitioner/123", "patientId": PATIENT_ID}
    resolved = resolve(plan("patient", "encounter"), {}, fhir_server.base_url, context=context)
    assert resolved["encounter"] is None
    assert resolved["patient"] == PATIENT
    assert not any(call.path.startswith("/fhir/Encounter") for call in fhir_server.calls)


def test_absent_key_without_fhir_server_fails_required_and_omits_optional() -> None:
    assert resolve(plan(), {"patient": PATIENT}, None) == {"patient": PATIENT}
    with pytest.raises(PrefetchUnavailable) as caught:
        resolve(plan("patient", "encounter"), {"patient": PATIENT}, None)
    assert caught.value.key == "encounter"


@pytest.fixture(params=["error-500", "garbage-html", "slow", "refused"])
def faulty_fhir_base(request: pytest.FixtureRequest, fhir_server: FhirTestServer) -> str:
    """The base URL of a FHIR server that cannot deliver, in one of four ways."""
    fhir_server.resources = [PATIENT, ENCOUNTER]
    if request.param == "refused":
        return f"http://127.0.0.1:{free_port()}/fhir"
    if request.param == "error-500":
        fhir_server.fail_with = 500
    elif request.param == "garbage-html":
        fhir_server.garbage = True
    else:
        fhir_server.delay = 4.0
    return fhir_server.base_url


def test_unreachable_data_fails_a_required_key_within_budget(faulty_fhir_base: str) -> None:
    started = time.monotonic()
    with pytest.raises(PrefetchUnavailable) as caught:
        resolve(plan("patient"), {}, faulty_fhir_base, budget=BUDGET)
    assert time.monotonic() - started < BUDGET + MARGIN
    assert caught.value.key == "patient"
    assert PATIENT_ID not in str(caught.value)


def test_unreachable_data_omits_optional_keys_within_budget(faulty_fhir_base: str) -> None:
    started = time.monotonic()
    resolved = resolve(plan(), {"encounter": ENCOUNTER}, faulty_fhir_base, budget=BUDGET)
    assert time.monotonic() - started < BUDGET + MARGIN
    assert resolved == {"encounter": ENCOUNTER}


def test_fetches_run_concurrently(fhir_server: FhirTestServer) -> None:
    fhir_server.resources = [PATIENT, ENCOUNTER]
    fhir_server.delay = 0.5
    resolved = resolve(
        plan("patient", "encounter", keys=("patient", "encounter")), {}, fhir_server.base_url
    )
    assert fhir_server.max_in_flight == 2, "the two reads were not in flight together"
    assert resolved == {"patient": PATIENT, "encounter": ENCOUNTER}
    assert len(fhir_server.calls) == 2
