"""CDS Hooks 2.0 conformance: Bedside in uvicorn, driven the way a CDS client drives it.

Every response goes through ``tests/support/cds_validator.py`` (``CdsTestClient`` validates each
one). Real samples are read from ``$BEDSIDE_FHIR_SAMPLES``; those tests skip when it is unset.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support.cds_client import CdsTestClient
from tests.support.cds_validator import validate_response
from tests.support.db import feedback_rows
from tests.support.fhir_builders import searchset
from tests.support.fhir_server import FhirTestServer, observations, resources_from_bundle
from tests.support.samples import samples_folder
from tests.support.servers import free_port
from tests.support.services import PREFETCH

PRACTITIONER = "Practitioner/dr-1"
PATIENT_ID = "pat-4711"
ENCOUNTER_ID = "enc-9"
PATIENT = {"resourceType": "Patient", "id": PATIENT_ID, "gender": "female"}
ENCOUNTER = {"resourceType": "Encounter", "id": ENCOUNTER_ID, "status": "finished"}
FHIR_TOKEN = "ehr-access-token-for-tests"
OUTCOME = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}
NON_ADHERENCE = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"

RunBedside = Callable[..., Any]


def hook_request(
    hook: str,
    context: dict[str, Any],
    *,
    prefetch: dict[str, Any] | None = None,
    fhir_server: str | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """A service call body as an EHR sends it."""
    body: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}
    if fhir_server is not None:
        body["fhirServer"] = fhir_server
    if token is not None:
        body["fhirAuthorization"] = fhir_authorization(token)
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def fhir_authorization(token: str) -> dict[str, Any]:
    return {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "user/Patient.read user/Encounter.read user/Observation.read",
        "subject": "bedside",
    }


def discharge_context(
    patient_id: str = PATIENT_ID, encounter_id: str = ENCOUNTER_ID
) -> dict[str, str]:
    return {"userId": PRACTITIONER, "patientId": patient_id, "encounterId": encounter_id}


def summary(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    assert len(cards) == 1
    return str(cards[0]["summary"])


def expressions(response: httpx.Response) -> list[str]:
    return [
        expression
        for entry in response.json()["issue"]
        for expression in entry.get("expression", [])
    ]


def diagnostics(response: httpx.Response) -> str:
    return " ".join(entry.get("diagnostics", "") for entry in response.json()["issue"])


# Discovery


def test_discovery_lists_services_hooks_and_prefetch_templates(bedside: CdsTestClient) -> None:
    response = bedside.discovery()
    assert response.status_code == 200
    services = {service["id"]: service for service in response.json()["services"]}
    assert {sid: service["hook"] for sid, service in services.items()} == {
        "test-discharge": "encounter-discharge",
        "test-discharge-quiet": "encounter-discharge",
        "test-patient-view": "patient-view",
    }
    assert services["test-discharge"]["prefetch"] == PREFETCH
    assert services["test-discharge-quiet"]["prefetch"] == {"patient": PREFETCH["patient"]}
    assert all(service["description"] and service["title"] for service in services.values())


def test_discovery_without_a_jwt_is_refused(bedside: CdsTestClient) -> None:
    assert bedside.discovery(sign=False).status_code == 401


def test_two_services_on_one_hook_answer_independently(bedside: CdsTestClient) -> None:
    prefetch = {"patient": PATIENT, "encounter": ENCOUNTER, "observations": searchset([])}
    body = hook_request("encounter-discharge", discharge_context(), prefetch=prefetch)
    assert summary(bedside.call("test-discharge", body)) == "observations=0; gender=female"
    quiet = bedside.call("test-discharge-quiet", body)
    assert quiet.status_code == 200
    assert quiet.json() == {"cards": []}


# Service calls: prefetch


@pytest.fixture(params=["smallest", "largest"])
def synthea_bundle(request: pytest.FixtureRequest) -> dict[str, Any]:
    """A real Synthea patient bundle (the smallest and the largest file)."""
    paths = sorted(samples_folder("synthea").glob("*.json"), key=lambda path: path.stat().st_size)
    if not paths:
        pytest.skip("no Synthea bundles in BEDSIDE_FHIR_SAMPLES")
    path = paths[0] if request.param == "smallest" else paths[-1]
    return orjson.loads(path.read_bytes())


def of_type(resources: list[dict[str, Any]], resource_type: str) -> list[dict[str, Any]]:
    return [resource for resource in resources if resource["resourceType"] == resource_type]


def test_synthea_patient_in_full_prefetch_is_summarised(
    bedside: CdsTestClient, synthea_bundle: dict[str, Any]
) -> None:
    resources = [entry["resource"] for entry in synthea_bundle["entry"]]
    (patient,) = of_type(resources, "Patient")
    encounter = of_type(resources, "Encounter")[-1]
    found = of_type(resources, "Observation")
    prefetch = {"patient": patient, "encounter": encounter, "observations": searchset(found)}
    context = discharge_context(patient["id"], encounter["id"])
    response = bedside.call(
        "test-discharge", hook_request("encounter-discharge", context, prefetch=prefetch)
    )
    assert summary(response) == f"observations={len(found)}; gender={patient['gender']}"


def test_synthea_patient_without_prefetch_is_read_from_fhir_server(
    bedside: CdsTestClient, fhir_server: FhirTestServer, synthea_bundle: dict[str, Any]
) -> None:
    fhir_server.resources = resources_from_bundle(synthea_bundle)
    (patient,) = of_type(fhir_server.resources, "Patient")
    encounter = of_type(fhir_server.resources, "Encounter")[0]
    found = len(of_type(fhir_server.resources, "Observation"))
    body = hook_request(
        "encounter-discharge",
        discharge_context(patient["id"], encounter["id"]),
        fhir_server=fhir_server.base_url,
        token=FHIR_TOKEN,
    )
    assert summary(bedside.call("test-discharge", body)) == (
        f"observations={found}; gender={patient['gender']}"
    )
    searches = [call for call in fhir_server.calls if call.path == "/fhir/Observation"]
    assert len(searches) == math.ceil(found / fhir_server.page_size)


def test_call_without_prefetch_is_served_by_fhir_server_with_the_bearer_token(
    bedside: CdsTestClient, fhir_server: FhirTestServer
) -> None:
    fhir_server.resources = [PATIENT, ENCOUNTER, *observations(PATIENT_ID, 7)]
    body = hook_request(
        "encounter-discharge",
        discharge_context(),
        fhir_server=fhir_server.base_url,
        token=FHIR_TOKEN,
    )
    assert summary(bedside.call("test-discharge", body)) == "observations=7; gender=female"
    assert sorted((call.path, call.query) for call in fhir_server.calls) == [
        (f"/fhir/Encounter/{ENCOUNTER_ID}", ""),
        ("/fhir/Observation", f"patient={PATIENT_ID}"),
        (f"/fhir/Patient/{PATIENT_ID}", ""),
    ]
    assert {call.authorization for call in fhir_server.calls} == {f"Bearer {FHIR_TOKEN}"}


def test_fhir_server_without_authorization_is_called_without_a_token(
    bedside: CdsTestClient, fhir_server: FhirTestServer
) -> None:
    fhir_server.resources = [PATIENT, ENCOUNTER]
    body = hook_request(
        "encounter-discharge", discharge_context(), fhir_server=fhir_server.base_url
    )
    assert summary(bedside.call("test-discharge", body)) == "observations=0; gender=female"
    assert len(fhir_server.calls) == 3
    assert {call.authorization for call in fhir_server.calls} == {None}


def test_null_prefetch_is_no_data_and_is_not_fetched(
    bedside: CdsTestClient, fhir_server: FhirTestServer
) -> None:
    fhir_server.resources = [PATIENT, ENCOUNTER]
    prefetch = {"patient": None, "encounter": ENCOUNTER, "observations": None}
    body = hook_request(
        "encounter-discharge",
        discharge_context(),
        prefetch=prefetch,
        fhir_server=fhir_server.base_url,
    )
    assert summary(bedside.call("test-discharge", body)) == "observations=0; gender=none"
    assert fhir_server.calls == []


def test_operation_outcome_in_prefetch_is_fetched_from_fhir_server(
    bedside: CdsTestClient, fhir_server: FhirTestServer
) -> None:
    fhir_server.resources = [PATIENT, ENCOUNTER]
    prefetch = {"patient": OUTCOME, "encounter": ENCOUNTER, "observations": searchset([])}
    body = hook_request(
        "encounter-discharge",
        discharge_context(),
        prefetch=prefetch,
        fhir_server=fhir_server.base_url,
        token=FHIR_TOKEN,
    )
    assert summary(bedside.call("test-discharge", body)) == "observations=0; gender=female"
    assert [call.path for call in fhir_server.calls] == [f"/fhir/Patient/{PATIENT_ID}"]


def test_paginated_searchset_in_prefetch_is_completed_against_fhir_server(
    bedside: CdsTestClient, fhir_server: FhirTestServer
) -> None:
    fhir_server.resources = [PATIENT, ENCOUNTER, *observations(PATIENT_ID, 120)]
    first_page = httpx.get(f"{fhir_server.base_url}/Observation?patient={PATIENT_ID}").json()
    fhir_server.calls.clear()
    prefetch = {"patient": PATIENT, "encounter": ENCOUNTER, "observations": first_page}
    body = hook_request(
        "encounter-discharge",
        discharge_context(),
        prefetch=prefetch,
        fhir_server=fhir_server.base_url,
        token=FHIR_TOKEN,
    )
    assert summary(bedside.call("test-discharge", body)) == "observations=120; gender=female"
    assert [call.path for call in fhir_server.calls] == ["/fhir/Observation"] * 2
    assert {call.authorization for call in fhir_server.calls} == {f"Bearer {FHIR_TOKEN}"}


def test_optional_keys_that_cannot_be_obtained_are_left_out(bedside: CdsTestClient) -> None:
    context = {"userId": PRACTITIONER, "patientId": PATIENT_ID}
    body = hook_request("patient-view", context, prefetch={"patient": PATIENT})
    assert summary(bedside.call("test-patient-view", body)) == "observations=absent; gender=female"


def test_same_hook_instance_sent_twice_is_answered_twice(bedside: CdsTestClient) -> None:
    """hookInstance identifies the event; it must never be used to drop a retry."""
    body = hook_request("patient-view", {"userId": PRACTITIONER, "patientId": PATIENT_ID})
    body["prefetch"] = {"patient": PATIENT}
    first, second = bedside.call("test-patient-view", body), bedside.call("test-patient-view", body)
    assert summary(first) == summary(second) == "observations=absent; gender=female"


# Service calls: 412


def test_required_prefetch_absent_without_fhir_server_is_412(bedside: CdsTestClient) -> None:
    body = hook_request("encounter-discharge", discharge_context(), prefetch={"patient": PATIENT})
    response = bedside.call("test-discharge", body)
    assert response.status_code == 412
    assert expressions(response) == ["prefetch.encounter"]
    assert "'encounter'" in diagnostics(response)


def test_fhir_server_down_is_412(bedside: CdsTestClient) -> None:
    body = hook_request(
        "encounter-discharge",
        discharge_context(),
        fhir_server=f"http://127.0.0.1:{free_port()}/fhir",
        token=FHIR_TOKEN,
    )
    response = bedside.call("test-discharge", body)
    assert response.status_code == 412
    assert expressions(response) == ["prefetch.encounter"]
    assert FHIR_TOKEN not in response.text


def test_slow_fhir_server_is_412_within_the_budget(
    run_bedside: RunBedside, fhir_server: FhirTestServer
) -> None:
    fhir_server.resources = [PATIENT, ENCOUNTER]
    fhir_server.delay = 5.0
    body = hook_request(
        "encounter-discharge", discharge_context(), fhir_server=fhir_server.base_url
    )
    with run_bedside(fhir_budget_seconds=0.5) as client:
        client.discovery()  # warms the JWKS cache, so the timing below is the call's own
        started = time.monotonic()
        response = client.call("test-discharge", body)
        elapsed = time.monotonic() - started
    assert response.status_code == 412
    assert elapsed < 0.5 + 1.5  # the call's own work on a loaded machine; the fault lasts 5 s


# Feedback


def feedback_entry(**fields: Any) -> dict[str, Any]:
    entry = {
        "card": str(uuid.uuid4()),
        "outcome": "overridden",
        "outcomeTimestamp": "2021-12-11T10:05:31Z",
    }
    return {**entry, **fields}


def mixed_feedback_batch() -> dict[str, Any]:
    """Three valid entries, then a Coding without display and an entry without a card uuid."""
    reason = {"system": NON_ADHERENCE, "code": "drug-interaction"}
    return {
        "feedback": [
            feedback_entry(outcome="accepted", acceptedSuggestions=[{"id": str(uuid.uuid4())}]),
            feedback_entry(
                overrideReason={
                    "reason": {**reason, "display": "Drug interaction"},
                    "userComment": "Seen by the pharmacist",
                }
            ),
            feedback_entry(),  # a plain dismiss
            feedback_entry(overrideReason={"reason": reason}),
            {key: value for key, value in feedback_entry().items() if key != "card"},
        ]
    }


def test_feedback_batch_stores_valid_entries_and_reports_malformed_ones(
    bedside: CdsTestClient, database_url: str
) -> None:
    batch = mixed_feedback_batch()
    response = bedside.feedback("test-discharge", batch)
    assert response.status_code == 200
    assert expressions(response) == [
        "feedback[3].overrideReason.reason.display",
        "feedback[4].card",
    ]
    assert "stored 3 of 5" in diagnostics(response)
    assert feedback_rows(database_url) == 3

    again = bedside.feedback("test-discharge", batch)
    assert again.status_code == 200
    assert "stored 0 of 5 feedback entries (3 already on record, 2 rejected)" in diagnostics(again)
    assert feedback_rows(database_url) == 3


def test_feedback_batch_with_only_invalid_entries_is_400(
    bedside: CdsTestClient, database_url: str
) -> None:
    batch = {"feedback": [*mixed_feedback_batch()["feedback"][3:], "not an entry"]}
    response = bedside.feedback("test-discharge", batch)
    assert response.status_code == 400
    assert expressions(response) == [
        "feedback[0].overrideReason.reason.display",
        "feedback[1].card",
        "feedback[2]",
    ]
    assert feedback_rows(database_url) == 0


def test_feedback_without_a_feedback_list_is_400(bedside: CdsTestClient) -> None:
    response = bedside.feedback("test-discharge", {"feedback": feedback_entry()})
    assert response.status_code == 400


@pytest.mark.parametrize("endpoint", ["call", "feedback"])
def test_unknown_service_is_404(bedside: CdsTestClient, endpoint: str) -> None:
    response = getattr(bedside, endpoint)("no-such-service", {"feedback": []})
    assert response.status_code == 404
    assert response.json()["issue"][0]["code"] == "not-found"


# Malformed requests


@dataclass(frozen=True)
class BadRequest:
    """A request a CDS client should never send; Bedside answers 400 with an OperationOutcome."""

    body: bytes
    service: str = "test-discharge"
    content_type: str = "application/json"
    expression: str | None = None
    mentions: str | None = None


def discharge_body(**fields: Any) -> bytes:
    prefetch = {"patient": PATIENT, "encounter": ENCOUNTER, "observations": searchset([])}
    body = hook_request("encounter-discharge", discharge_context(), prefetch=prefetch)
    return orjson.dumps({**body, **fields})


BAD_REQUESTS = {
    "malformed-json": BadRequest(b'{"hook": "encounter-discharge",', mentions="JSON"),
    "non-object-body": BadRequest(b"[]", mentions="JSON object"),
    "wrong-content-type": BadRequest(discharge_body(), content_type="text/plain"),
    "hook-instance-not-uuid": BadRequest(
        discharge_body(hookInstance="event-1"), expression="hookInstance"
    ),
    "hook-mismatching-service": BadRequest(discharge_body(hook="patient-view")),
    "patient-view-without-patient-id": BadRequest(
        orjson.dumps(hook_request("patient-view", {"userId": PRACTITIONER})),
        service="test-patient-view",
        expression="context.patientId",
    ),
    "user-id-not-a-reference": BadRequest(
        discharge_body(context={**discharge_context(), "userId": "dr-1"}),
        expression="context.userId",
    ),
    "fhir-authorization-without-fhir-server": BadRequest(
        discharge_body(fhirAuthorization=fhir_authorization("t")), mentions="fhirServer"
    ),
    "context-missing": BadRequest(discharge_body(context=None), expression="context"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_malformed_request_is_400_with_operation_outcome(
    bedside: CdsTestClient, case: BadRequest
) -> None:
    response = bedside.request(
        "POST",
        f"/cds-services/{case.service}",
        content=case.body,
        headers={"Content-Type": case.content_type},
    )
    assert response.status_code == 400, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    if case.expression is not None:
        assert case.expression in expressions(response)
    if case.mentions is not None:
        assert case.mentions in diagnostics(response)


def padded_body(size: int) -> bytes:
    body = hook_request("encounter-discharge", discharge_context(), prefetch={"patient": PATIENT})
    return orjson.dumps({**body, "extension": {"padding": "x" * size}})


def chunked(body: bytes, chunk_size: int = 1024) -> Iterator[bytes]:
    for start in range(0, len(body), chunk_size):
        yield body[start : start + chunk_size]


def test_body_over_the_limit_is_413(run_bedside: RunBedside) -> None:
    with run_bedside(max_body_bytes=4096) as client:
        assert client.call("test-discharge", orjson.loads(padded_body(100))).status_code == 412
        response = client.request("POST", "/cds-services/test-discharge", content=padded_body(8192))
    assert response.status_code == 413


def test_streamed_body_over_the_limit_is_413(run_bedside: RunBedside) -> None:
    with run_bedside(max_body_bytes=4096) as client:
        path = "/cds-services/test-discharge"
        url = client.base_url + path
        response = client.http.post(
            url,
            content=chunked(padded_body(32 * 1024)),
            headers={
                "Authorization": f"Bearer {client.token(url)}",
                "Content-Type": "application/json",
            },
        )
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    validate_response(path, "POST", response.status_code, response.content, response.headers)
    assert response.status_code == 413


# The specification's own example requests


def patient_view_examples() -> list[Any]:
    """The spec's patient-view examples, or one skipped case when the samples are not there."""
    root = os.environ.get("BEDSIDE_FHIR_SAMPLES")
    folder = Path(root) / "cds-hooks-examples" if root else None
    paths = sorted(folder.glob("*patient-view*.json")) if folder and folder.is_dir() else []
    if not paths:
        return [pytest.param(None, marks=pytest.mark.skip(reason="no BEDSIDE_FHIR_SAMPLES"))]
    return [pytest.param(path, id=path.stem) for path in paths]


def replayable(example: dict[str, Any], fhir_base: str) -> dict[str, Any]:
    """The example as a request to this test: context-only examples get the envelope a client
    adds, and ``fhirServer`` points at the loopback FHIR test server (tests stay off the net)."""
    if "hook" not in example:
        example = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), **example}
    return {**example, "fhirServer": fhir_base}


@pytest.mark.parametrize("path", patient_view_examples())
def test_spec_patient_view_example_is_answered_by_the_spec(
    bedside: CdsTestClient, fhir_server: FhirTestServer, path: Path
) -> None:
    example = orjson.loads(path.read_bytes())
    fhir_server.resources = [{**PATIENT, "id": "1288992", "gender": "male"}]
    request = replayable(example, fhir_server.base_url)
    response = bedside.call("test-patient-view", request)
    context = request["context"]
    if "userId" not in context or "patientId" not in context:
        assert response.status_code == 400
        missing = {"userId", "patientId"} - set(context)
        assert {f"context.{field}" for field in missing} <= set(expressions(response))
        return
    assert context["patientId"] == "1288992"
    assert summary(response) == "observations=0; gender=male"
    token = example.get("fhirAuthorization", {}).get("access_token")
    expected = f"Bearer {token}" if token else None
    assert {call.authorization for call in fhir_server.calls} == {expected}
