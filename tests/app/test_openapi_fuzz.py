"""Schemathesis over every operation of ``/openapi.json``, against a real Bedside on loopback.

Requests are generated from the published OpenAPI document (valid and invalid data), sent
with real credentials (a signed JWT for the exact URL on the CDS endpoints, an admin API token
elsewhere) so that they get past authentication. No answer may be a 5xx, and every refusal
must be an OperationOutcome (docs/decisions/0002). Response bodies are not checked against the
document's schemas: it describes the routes' ``JsonResponse`` answers as a bare string.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error

from app.access.tokens import create_token
from tests.support.cds_client import CdsTestClient

RunBedside = Callable[..., Any]
EXAMPLES_PER_OPERATION = 20  # per operation and mode: about 30 s in all
KNOWN_SERVICE = "test-discharge"


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


def fuzz(
    operation: schemathesis.APIOperation,
    mode: schemathesis.GenerationMode,
    send: Callable[[schemathesis.Case], None],
) -> int:
    """Send at most EXAMPLES_PER_OPERATION generated cases; returns how many were sent."""
    sent = 0

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case: schemathesis.Case) -> None:
        nonlocal sent
        sent += 1
        send(case)

    try:
        call()
    except Unsatisfiable:  # nothing to make invalid (no parameters, no body): nothing sent
        assert mode == schemathesis.GenerationMode.NEGATIVE
    return sent


@pytest.mark.timeout(180)
def test_no_generated_request_to_any_operation_gets_a_server_error(
    run_bedside: RunBedside, engine: Any
) -> None:
    api_token = create_token(engine, "fuzz", "admin")
    failures: dict[str, str] = {}
    sent: dict[str, int] = {}
    statuses: dict[str, set[int]] = {}
    with run_bedside(rate_limit_per_minute=0) as client:
        schema = schemathesis.openapi.from_url(f"{client.base_url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]

        def send(case: schemathesis.Case) -> None:
            if "service_id" in (case.path_parameters or {}):
                case.path_parameters["service_id"] = KNOWN_SERVICE
            headers = credentials(client, api_token, case.formatted_path)
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
    # the credentials work: generated requests get past authentication to real answers
    assert 200 in statuses["GET /cds-services"]
    assert 200 in statuses["POST /outcomes"]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
