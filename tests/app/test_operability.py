"""Operability over real uvicorn: health, readiness, metrics, JSON logs and error bodies."""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.logs import configure_logging
from cds_hooks.models import HookResponse
from cds_hooks.registry import CdsService, HookCall, ServiceRegistry
from tests.support.cds_client import CdsTestClient
from tests.support.fhir_server import FhirTestServer
from tests.support.keys import SigningKey
from tests.support.outage import DatabaseOutage
from tests.support.services import build_test_registry

RunBedside = Callable[..., Any]
MetricKey = tuple[str, frozenset[tuple[str, str]]]

SECRET_PATIENT = "pat-SECRET-123"
SECRET_TOKEN = "fhir-token-SECRET-456"
FAILURE_MESSAGE = f"handler crashed on {SECRET_PATIENT}"
JWT_PATTERN = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
SERVICE_ROUTE = "/cds-services/{service_id}"
SMALL_BODY_LIMIT = 1024


# --- helpers -------------------------------------------------------------------------------


async def crash(call: HookCall) -> HookResponse:
    raise RuntimeError(FAILURE_MESSAGE)


def registry_with_failing_service() -> ServiceRegistry:
    """The test services plus ``test-crash``, whose handler raises."""
    registry = build_test_registry()
    registry.register(
        CdsService(
            id="test-crash",
            hook="patient-view",
            title="Crashing service",
            description="Raises from its handler (a test fixture).",
            handler=crash,
        )
    )
    return registry


def discharge_call(
    patient_id: str = SECRET_PATIENT, *, prefetch: bool = True, fhir_server: str | None = None
) -> dict[str, Any]:
    """An encounter-discharge call; with ``fhir_server`` it carries a FHIR access token."""
    body: dict[str, Any] = {
        "hook": "encounter-discharge",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/dr-1", "patientId": patient_id, "encounterId": "e1"},
    }
    if prefetch:
        body["prefetch"] = {
            "patient": {"resourceType": "Patient", "id": patient_id, "gender": "female"},
            "encounter": {"resourceType": "Encounter", "id": "e1", "status": "finished"},
        }
    if fhir_server:
        body["fhirServer"] = fhir_server
        body["fhirAuthorization"] = {
            "access_token": SECRET_TOKEN,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "bedside",
            "patient": patient_id,
        }
    return body


def patient_view_call(patient_id: str = SECRET_PATIENT) -> dict[str, Any]:
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/dr-1", "patientId": patient_id},
    }


def wait_for(condition: Callable[[], Any], timeout: float = 3.0) -> Any:
    """Poll ``condition`` until it is truthy (work finishing just after a response is sent)."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)
    return result


def operations_get(
    client: CdsTestClient, path: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    """GET an operations endpoint (not a CDS one: no JWT, no CDS response rules)."""
    return client.request("GET", path, headers=headers, sign=False, validate=False)


def assert_operation_outcome(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert [entry["code"] for entry in body["issue"]] == [code]
    return body


# --- logging -------------------------------------------------------------------------------


@contextlib.contextmanager
def production_logging() -> Iterator[None]:
    """Log as the ``bedside`` command does (JSON on stderr); the previous setup is restored."""
    names = ["", "uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore"]
    loggers = [logging.getLogger(name) for name in names]
    saved = [(logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    configure_logging("INFO")
    try:
        yield
    finally:
        for logger, (handlers, level, propagate) in zip(loggers, saved, strict=True):
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate


def access_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("logger") == "bedside.access"]


def read_log_lines(capsys: pytest.CaptureFixture[str], expected_requests: int) -> str:
    """Everything written to stderr once ``expected_requests`` access lines were logged."""
    text = ""

    def complete() -> bool:
        nonlocal text
        text += capsys.readouterr().err
        return text.count('"logger":"bedside.access"') >= expected_requests

    wait_for(complete)
    return text


def test_every_log_line_is_json_with_the_request_id_and_no_secrets(
    run_bedside: RunBedside,
    fhir_server: FhirTestServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stranger = SigningKey("ES384")
    with run_bedside(registry_with_failing_service()) as client, production_logging():
        capsys.readouterr()
        url = f"{client.base_url}/cds-services/test-discharge"
        forged = stranger.sign({"iss": client.iss, "aud": url, "sub": SECRET_PATIENT})
        responses = [
            client.discovery(),
            client.call("test-discharge", discharge_call(fhir_server=fhir_server.base_url)),
            client.call("test-discharge", discharge_call(prefetch=False)),
            client.call(
                "test-discharge", discharge_call(), headers={"Authorization": f"Bearer {forged}"}
            ),
            client.call("test-crash", patient_view_call()),
            client.call("test-patient-view", patient_view_call(f"Patient/{SECRET_PATIENT}")),
            client.request("GET", f"/Patient/{SECRET_PATIENT}?token={SECRET_TOKEN}"),
        ]
        captured = read_log_lines(capsys, expected_requests=len(responses))

    assert [response.status_code for response in responses] == [200, 200, 412, 401, 500, 400, 404]
    authorizations = {call.authorization for call in fhir_server.calls}
    assert authorizations == {f"Bearer {SECRET_TOKEN}"}, "the token was used, so could leak"
    lines = [orjson.loads(line) for line in captured.splitlines()]
    assert all(isinstance(line, dict) and line.get("request_id") for line in lines)
    response_ids = [response.headers["x-request-id"] for response in responses]
    assert len(set(response_ids)) == len(responses)
    assert {line["request_id"] for line in lines} == set(response_ids)
    logged_status = {line["request_id"]: line["status"] for line in access_lines(lines)}
    assert logged_status == {r.headers["x-request-id"]: r.status_code for r in responses}
    [failure] = [line for line in lines if line["level"] == "ERROR"]
    assert failure["request_id"] == responses[4].headers["x-request-id"]
    assert failure["exception"].endswith("builtins.RuntimeError")
    assert FAILURE_MESSAGE not in failure["exception"]
    for secret in (SECRET_PATIENT, SECRET_TOKEN, forged):
        assert secret not in captured
    assert not JWT_PATTERN.search(captured)


def test_safe_caller_request_id_is_reused_and_unsafe_one_replaced(
    bedside: CdsTestClient,
) -> None:
    safe = "trace-4f2a.17_B"
    reused = operations_get(bedside, "/healthz", headers={"X-Request-ID": safe})
    assert reused.headers["x-request-id"] == safe
    for unsafe in ("drop table;<x>", "a" * 65, "two words"):
        replaced = operations_get(bedside, "/healthz", headers={"X-Request-ID": unsafe})
        assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["x-request-id"])


# --- health and readiness -----------------------------------------------------------------


def test_liveness_answers_ok(bedside: CdsTestClient) -> None:
    response = operations_get(bedside, "/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def readiness(client: CdsTestClient) -> tuple[int, dict[str, Any]]:
    response = operations_get(client, "/readyz")
    return response.status_code, response.json()


def test_readiness_follows_the_database(
    run_bedside: RunBedside, database_url: str, tmp_path: Path
) -> None:
    with (
        DatabaseOutage(database_url, tmp_path) as outage,
        run_bedside(database_url=outage.url) as client,
    ):
        ready = {"database": "ok", "audit": "ok", "started": True, "services": 3}
        assert readiness(client) == (200, {"status": "ready", "checks": ready})

        outage.cut()
        started = time.monotonic()
        status, body = readiness(client)
        assert (status, body["status"]) == (503, "not ready")
        assert body["checks"]["database"] == "unreachable"
        assert time.monotonic() - started < 5

        outage.restore()
        assert readiness(client) == (200, {"status": "ready", "checks": ready})


# --- metrics -------------------------------------------------------------------------------


def scrape(client: CdsTestClient) -> dict[MetricKey, float]:
    """``/metrics`` parsed as Prometheus text: sample value by (name, labels)."""
    response = operations_get(client, "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def scrape_when_counted(client: CdsTestClient, key: MetricKey) -> dict[MetricKey, float]:
    """Scrape until ``key`` shows (a request is counted just after its response is sent)."""

    def attempt() -> dict[MetricKey, float] | None:
        found = scrape(client)
        return found if key in found else None

    return wait_for(attempt)


def sample(name: str, **labels: str) -> MetricKey:
    return name, frozenset(labels.items())


def test_metrics_count_requests_latency_and_errors_per_service(
    run_bedside: RunBedside,
) -> None:
    with run_bedside(registry_with_failing_service()) as client:
        operations_get(client, "/healthz")
        operations_get(client, "/healthz")
        assert client.call("test-discharge", discharge_call()).status_code == 200
        assert client.call("test-discharge", discharge_call(prefetch=False)).status_code == 412
        assert client.call("test-crash", patient_view_call()).status_code == 500
        assert client.call(f"no-such-{SECRET_PATIENT}", discharge_call()).status_code == 404
        assert client.request("GET", "/no/such/path", sign=False).status_code == 404
        assert client.request("PROPFIND", "/healthz", sign=False).status_code == 405
        requests = "bedside_http_requests_total"
        last = sample(requests, method="other", route="/healthz", status="405")
        metrics = scrape_when_counted(client, last)

    assert metrics[sample(requests, method="GET", route="/healthz", status="200")] == 2
    assert metrics[last] == 1
    assert metrics[sample(requests, method="GET", route="unmatched", status="404")] == 1
    for status in ("200", "412", "500", "404"):
        assert metrics[sample(requests, method="POST", route=SERVICE_ROUTE, status=status)] == 1

    histogram = "bedside_cds_service_duration_seconds"
    assert metrics[sample(f"{histogram}_count", service="test-discharge")] == 2
    assert metrics[sample(f"{histogram}_bucket", service="test-discharge", le="+Inf")] == 2
    assert 0 < metrics[sample(f"{histogram}_sum", service="test-discharge")] < 5
    assert metrics[sample(f"{histogram}_count", service="test-crash")] == 1

    errors = "bedside_cds_service_errors_total"
    assert metrics[sample(errors, service="test-discharge", status="412")] == 1
    assert metrics[sample(errors, service="test-crash", status="500")] == 1
    assert sample(errors, service="test-discharge", status="200") not in metrics
    assert not any(SECRET_PATIENT in str(labels) for _name, labels in metrics)


# --- error bodies --------------------------------------------------------------------------


def test_unknown_path_answers_404_operation_outcome(bedside: CdsTestClient) -> None:
    response = bedside.request("GET", "/no/such/path", sign=False)
    assert_operation_outcome(response, 404, "not-found")


def test_unsupported_method_answers_405_operation_outcome(bedside: CdsTestClient) -> None:
    response = bedside.request("DELETE", "/cds-services", sign=False)
    assert_operation_outcome(response, 405, "not-supported")


def test_unsupported_method_answer_names_the_allowed_methods(bedside: CdsTestClient) -> None:
    response = bedside.request("DELETE", "/cds-services", sign=False)
    assert response.headers.get("allow") == "GET"


def test_handler_exception_answers_500_without_its_message(run_bedside: RunBedside) -> None:
    with run_bedside(registry_with_failing_service()) as client:
        response = client.call("test-crash", patient_view_call())
        assert operations_get(client, "/healthz").status_code == 200, "keep-alive survives"
    body = assert_operation_outcome(response, 500, "exception")
    assert FAILURE_MESSAGE not in response.text
    assert SECRET_PATIENT not in response.text
    assert body["issue"][0]["severity"] == "fatal"
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


def test_body_over_the_limit_by_content_length_answers_413(run_bedside: RunBedside) -> None:
    with run_bedside(max_body_bytes=SMALL_BODY_LIMIT) as client:
        big = orjson.dumps({**discharge_call(), "padding": "x" * SMALL_BODY_LIMIT})
        response = client.request(
            "POST",
            "/cds-services/test-discharge",
            content=big,
            headers={"Content-Type": "application/json"},
        )
        small = client.call("test-discharge", discharge_call())
    assert_operation_outcome(response, 413, "too-long")
    assert small.status_code == 200


def test_streamed_body_over_the_limit_answers_413(run_bedside: RunBedside) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b" " * (SMALL_BODY_LIMIT // 2)

    with run_bedside(max_body_bytes=SMALL_BODY_LIMIT) as client:
        url = f"{client.base_url}/cds-services/test-discharge"
        response = client.http.post(
            url,
            content=chunks(),
            headers={
                "Authorization": f"Bearer {client.token(url)}",
                "Content-Type": "application/json",
            },
        )
    assert "content-length" not in response.request.headers
    assert_operation_outcome(response, 413, "too-long")


def test_a_served_worker_freezes_its_start_up_heap(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What uvicorn's factory builds leaves the loaded stack out of later collections."""
    import gc

    from app import cli
    from fhir_mappers import validation

    monkeypatch.setattr(cli, "configure_logging", lambda _level: None)
    monkeypatch.setenv("BEDSIDE_DATABASE_URL", f"sqlite:///{tmp_path}/bedside.db")
    monkeypatch.setenv("BEDSIDE_INSECURE_DEV_AUTH", "true")
    monkeypatch.setenv("BEDSIDE_LOG_LEVEL", "WARNING")
    validation._model.cache_clear()
    gc.unfreeze()
    thresholds = gc.get_threshold()
    try:
        app = cli.create_app_from_environment()
        frozen = gc.get_freeze_count()
        worker_thresholds = gc.get_threshold()
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    assert worker_thresholds == cli.WORKER_GC_THRESHOLDS != thresholds
    assert app.title == "Bedside"
    assert frozen > 100_000  # the models, FHIR classes and web stack: ~160,000 objects
    assert validation._model.cache_info().currsize == len(validation.CONSUMED_ELEMENTS)
