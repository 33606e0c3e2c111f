"""Authentication through the running app: bare 401s, per-endpoint audiences, CORS and logs."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest

from app.logs import JsonFormatter
from tests.support.cds_client import CdsTestClient
from tests.support.keys import SigningKey, client_claims

RunBedside = Callable[..., Any]

SERVICE_PATH = "/cds-services/test-discharge-quiet"
ENDPOINTS = {
    "discovery": ("GET", "/cds-services"),
    "service": ("POST", SERVICE_PATH),
    "feedback": ("POST", f"{SERVICE_PATH}/feedback"),
}
SANDBOX_ORIGIN = "https://sandbox.cds-hooks.org"
ELSEWHERE = "https://elsewhere.example.org/cds-services"


def request_body(endpoint: str) -> dict[str, Any] | None:
    """A body the endpoint answers with 200 once the caller is authenticated."""
    if endpoint == "service":
        return {
            "hook": "encounter-discharge",
            "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/1", "patientId": "p1", "encounterId": "e1"},
            "prefetch": {"patient": {"resourceType": "Patient", "id": "p1"}},
        }
    if endpoint == "feedback":
        entry = {
            "card": str(uuid.uuid4()),
            "outcome": "overridden",
            "outcomeTimestamp": "2024-05-01T10:00:00Z",
        }
        return {"feedback": [entry]}
    return None


def url_of(client: CdsTestClient, endpoint: str) -> str:
    return client.base_url + ENDPOINTS[endpoint][1]


def send(client: CdsTestClient, endpoint: str, authorization: str | None) -> httpx.Response:
    """Call ``endpoint`` with exactly this Authorization header (none when None)."""
    method, path = ENDPOINTS[endpoint]
    headers = {} if authorization is None else {"Authorization": authorization}
    return client.request(method, path, json=request_body(endpoint), headers=headers, sign=False)


def signed(client: CdsTestClient, endpoint: str, **claims: Any) -> str:
    return f"Bearer {client.token(url_of(client, endpoint), **claims)}"


def failing_authorizations(client: CdsTestClient, endpoint: str) -> dict[str, str | None]:
    """One Authorization header per way of failing authentication."""
    assert client.key is not None
    url = url_of(client, endpoint)
    now = int(time.time())
    intruder_claims = client_claims("https://intruder.example.org", url)
    return {
        "missing": None,
        "basic": "Basic dXNlcjpwYXNzd29yZA==",
        "garbage": "Bearer not-a-jwt",
        "alg-none": f"Bearer {jwt.encode(client_claims(client.iss, url), '', algorithm='none')}",
        "alg-list": "Bearer eyJhbGciOlsiRVMzODQiXX0.e30.c2ln",
        "expired": signed(client, endpoint, iat=now - 600, exp=now - 300),
        "wrong-audience": signed(client, endpoint, aud=ELSEWHERE),
        "unknown-issuer": f"Bearer {client.key.sign(intruder_claims)}",
        "unknown-key": f"Bearer {SigningKey('ES384').sign(client_claims(client.iss, url))}",
    }


def preflight(client: CdsTestClient, path: str, origin: str) -> httpx.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    return client.request("OPTIONS", path, headers=headers, sign=False)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_every_authentication_failure_is_a_bare_401(endpoint: str, bedside: CdsTestClient) -> None:
    for failure, authorization in failing_authorizations(bedside, endpoint).items():
        response = send(bedside, endpoint, authorization)
        answer = (response.status_code, response.content, response.headers.get("www-authenticate"))
        assert answer == (401, b"", "Bearer"), failure

    assert send(bedside, endpoint, signed(bedside, endpoint)).status_code == 200


def test_token_for_the_discovery_url_is_refused_on_the_feedback_url(
    bedside: CdsTestClient,
) -> None:
    discovery_token = signed(bedside, "discovery")
    assert send(bedside, "feedback", discovery_token).status_code == 401
    assert send(bedside, "discovery", discovery_token).status_code == 200


def test_cors_preflight_needs_no_jwt_but_only_the_configured_origin_is_allowed(
    run_bedside: RunBedside,
) -> None:
    feedback_path = ENDPOINTS["feedback"][1]
    with run_bedside(cors_origins=[SANDBOX_ORIGIN]) as client:
        allowed = preflight(client, feedback_path, SANDBOX_ORIGIN)
        foreign = preflight(client, feedback_path, "https://elsewhere.example.org")

    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == SANDBOX_ORIGIN
    allowed_headers = allowed.headers["access-control-allow-headers"].lower().split(", ")
    assert {"authorization", "content-type"} <= set(allowed_headers)
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "access-control-allow-origin" not in foreign.headers


def test_insecure_dev_auth_accepts_unsigned_calls_and_warns_at_startup(
    run_bedside: RunBedside, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with run_bedside(insecure_dev_auth=True, clients_file=None) as client:
        statuses = {endpoint: send(client, endpoint, None).status_code for endpoint in ENDPOINTS}

    assert statuses == dict.fromkeys(ENDPOINTS, 200)
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert any("INSECURE" in message for message in warnings)


def test_without_clients_file_every_call_is_refused(run_bedside: RunBedside) -> None:
    with run_bedside(clients_file=None) as client:
        statuses = {
            endpoint: send(client, endpoint, signed(client, endpoint)).status_code
            for endpoint in ENDPOINTS
        }
    assert statuses == dict.fromkeys(ENDPOINTS, 401)


def test_jwt_never_appears_in_the_logs(
    bedside: CdsTestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    accepted = signed(bedside, "service")
    refused = signed(bedside, "service", aud=ELSEWHERE)

    assert send(bedside, "service", accepted).status_code == 200
    assert send(bedside, "service", refused).status_code == 401

    lines = [JsonFormatter().format(record) for record in caplog.records]
    assert any("client authentication failed" in line for line in lines)
    for authorization in (accepted, refused):
        _, payload, signature = authorization.removeprefix("Bearer ").split(".")
        assert not any(payload in line or signature in line for line in lines)
