"""Schemathesis over every operation of ``/openapi.json``, against a real Bedside on loopback.

Requests are the document's own examples and data generated from it (valid and invalid), sent
with real credentials (a signed JWT for the exact URL on the CDS endpoints, an admin API token
elsewhere) so that they get past authentication; service calls are pinned to a known service's
hook and a FHIR server on loopback so that their bodies get past validation too. No answer may
be a 5xx, and every refusal must be an OperationOutcome (docs/decisions/0002). Response bodies
are not checked against the document's schemas: it describes the routes' ``JsonResponse``
answers as a bare string.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from hypothesis.strategies import SearchStrategy
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet

from app.access.tokens import create_token
from tests.support.cds_client import CdsTestClient
from tests.support.fhir_server import FhirTestServer

RunBedside = Callable[..., Any]
EXAMPLES_PER_OPERATION = 20  # per operation and mode: about 30 s in all
KNOWN_SERVICE = "test-discharge"
HOOK = "encounter-discharge"  # KNOWN_SERVICE's
WITH_BODIES = (
    "POST /cds-services/{service_id}",
    "POST /cds-services/{service_id}/feedback",
    "POST /outcomes",
)


def credentials(client: CdsTestClient, api_token: str, path: str) -> dict[str, str]:
    if path.startswith("/cds-services"):
        return {"Authorization": f"Bearer {client.token(client.base_url + path)}"}
    return {"Authorization": f"Bearer {api_token}"}


def assert_error_is_an_operation_outcome(case: schemathesis.Case, response: Any) -> None:
    """Bedside's own contract (docs/decisions/0002): every refusal is an OperationOutcome, but
    for the bare 401 of the CDS endpoints."""
    status = response.status_code
    if status < 400 or (status == 401 and case.formatted_path.startswith("/cds-services")):
        return
    where = f"{case.method} {case.formatted_path} answered {status}"
    assert response.headers.get("content-type", [""])[0].endswith("json"), where
    body = response.json()
    assert body.get("resourceType") == "OperationOutcome", where
    assert body["issue"][0]["diagnostics"], where


def pinned(document: dict[str, Any], hook: str, fhir_server: str) -> dict[str, Any]:
    """The document with the service call's ``hook`` that of KNOWN_SERVICE (as ``service_id`` is
    pinned) and its ``fhirServer`` one on loopback: generated calls then get past the hook check
    to context validation, prefetch and FHIR reads, and fetch from nowhere else."""
    operation = document["paths"]["/cds-services/{service_id}"]["post"]
    properties = operation["requestBody"]["content"]["application/json"]["schema"]["properties"]
    properties["hook"] = {"const": hook}
    properties["fhirServer"] = {"const": fhir_server}
    return document


def send_cases(
    strategy: SearchStrategy[schemathesis.Case],
    max_examples: int,
    send: Callable[[schemathesis.Case], None],
) -> int:
    """Send at most ``max_examples`` cases drawn from ``strategy``; returns how many were sent."""
    sent = 0

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def call(case: schemathesis.Case) -> None:
        nonlocal sent
        sent += 1
        send(case)

    call()
    return sent


def fuzz(
    operation: schemathesis.APIOperation,
    mode: schemathesis.GenerationMode,
    send: Callable[[schemathesis.Case], None],
) -> int:
    """Send the document's examples (positive mode), then EXAMPLES_PER_OPERATION generated cases;
    returns how many were sent."""
    sent = 0
    if mode == schemathesis.GenerationMode.POSITIVE:
        for example in operation.get_strategies_from_examples():
            sent += send_cases(example, 1, send)
    generated = operation.as_strategy(generation_mode=mode)
    try:
        sent += send_cases(generated, EXAMPLES_PER_OPERATION, send)
    except Unsatisfiable:  # nothing to make invalid (no parameters, no body): nothing sent
        assert mode == schemathesis.GenerationMode.NEGATIVE
    return sent


@pytest.mark.timeout(180)
def test_no_generated_request_to_any_operation_gets_a_server_error(
    run_bedside: RunBedside, engine: Any, fhir_server: FhirTestServer
) -> None:
    api_token = create_token(engine, "fuzz", "admin")
    failures: dict[str, str] = {}
    sent: dict[str, int] = {}
    statuses: dict[str, set[int]] = {}
    with_body: Counter[str] = Counter()
    with run_bedside(rate_limit_per_minute=0) as client:
        document = client.http.get(f"{client.base_url}/openapi.json").json()
        schema = schemathesis.openapi.from_dict(pinned(document, HOOK, fhir_server.base_url))
        operations = [result.ok() for result in schema.get_all_operations()]

        def send(case: schemathesis.Case) -> None:
            if "service_id" in (case.path_parameters or {}):
                case.path_parameters["service_id"] = KNOWN_SERVICE
            headers = credentials(client, api_token, case.formatted_path)
            with_body[case.operation.label] += not isinstance(case.body, NotSet)
            try:
                response = case.call(base_url=client.base_url, headers=headers)
                case.validate_response(response, checks=[not_a_server_error])
                assert_error_is_an_operation_outcome(case, response)
                statuses.setdefault(case.operation.label, set()).add(response.status_code)
            except (Exception, BaseExceptionGroup) as failure:  # keep the first of each
                failures.setdefault(case.operation.label, str(failure)[:2000])

        for operation in operations:
            sent[operation.label] = sum(
                fuzz(operation, mode, send)
                for mode in (
                    schemathesis.GenerationMode.POSITIVE,
                    schemathesis.GenerationMode.NEGATIVE,
                )
            )
    labels = set(sent)
    assert {"POST /cds-services/{service_id}", "POST /outcomes", "GET /healthz"} <= labels
    assert all(count > 0 for count in sent.values()), sent
    # every POST gets JSON bodies from the document, not only fuzzed path and query parameters
    assert all(with_body[label] >= EXAMPLES_PER_OPERATION for label in WITH_BODIES), with_body
    # the credentials work and the bodies are read: requests get past both to real answers
    answered = [statuses.get(label, set()) for label in ("GET /cds-services", *WITH_BODIES)]
    assert all(200 in codes for codes in answered), statuses
    # generated service calls get past validation to prefetch, read from fhirServer or refused
    assert 412 in statuses["POST /cds-services/{service_id}"], statuses
    assert fhir_server.calls, "no generated service call got as far as reading from fhirServer"
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
