"""Per-client rate limiting through a running Bedside: 429 with Retry-After, per client, refilled.

Every test configures a small bucket (4 requests at once, 2 a second after that), so the waits
stay around a second. Nothing here asserts how fast anything is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.access.tokens import create_token
from app.ratelimit import RateLimited, RateLimiter
from tests.conftest import TEST_ISSUER, JwksServer
from tests.support.api_tokens import bearer
from tests.support.cds_client import CdsTestClient
from tests.support.keys import SigningKey

RunBedside = Callable[..., Any]
OTHER_ISSUER = "https://other-ehr.example.org/cds-client"
BURST = 4
PER_MINUTE = 120  # 2 a second: an exhausted bucket lets one request through after 0.5 s
LIMITS = {"rate_limit_per_minute": PER_MINUTE, "rate_limit_burst": BURST}


@pytest.fixture
def two_clients_file(tmp_path: Path, jwks_server: JwksServer) -> Path:
    path = tmp_path / "two-clients.yaml"
    path.write_text(
        f"- iss: {TEST_ISSUER}\n  jwks_url: {jwks_server.url}\n"
        f"- iss: {OTHER_ISSUER}\n  jwks_url: {jwks_server.url}\n",
        encoding="utf-8",
    )
    return path


def statuses(responses: list[httpx.Response]) -> list[int]:
    return [response.status_code for response in responses]


def most_allowed(requests_started: float, tokens: int = BURST) -> int:
    """The most requests a full bucket lets through since ``requests_started`` (refill included)."""
    return tokens + int((time.monotonic() - requests_started) * PER_MINUTE / 60) + 1


def assert_throttled(response: httpx.Response) -> int:
    """A 429 OperationOutcome with a whole-second Retry-After; returns that number."""
    assert response.status_code == 429, response.text
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "throttled"
    assert body["issue"][0]["severity"] == "error"
    assert f"retry after {retry_after} s" in body["issue"][0]["diagnostics"]
    return retry_after


def test_a_cds_client_over_its_burst_gets_429_another_client_does_not_and_it_refills(
    run_bedside: RunBedside,
    two_clients_file: Path,
    signing_key: SigningKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    with run_bedside(clients_file=two_clients_file, **LIMITS) as client:
        other = CdsTestClient(client.base_url, signing_key, OTHER_ISSUER)
        started = time.monotonic()
        burst = [client.discovery(validate=False) for _ in range(BURST * 3)]
        codes = statuses(burst)
        others = statuses([other.discovery() for _ in range(BURST)])
        retry_after = assert_throttled(next(r for r in burst if r.status_code == 429))
        time.sleep(retry_after)
        after_waiting = client.discovery()
        other.close()

    assert codes[:BURST] == [200] * BURST
    assert set(codes) == {200, 429}
    assert codes.count(200) <= most_allowed(started)
    assert others == [200] * BURST, "the other client has its own bucket"
    assert after_waiting.status_code == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a 429 is no fault"
    throttled = [r for r in caplog.records if getattr(r, "status", None) == 429]
    assert throttled and {getattr(r, "route", None) for r in throttled} == {"/cds-services"}


def test_forged_tokens_naming_a_client_do_not_spend_its_budget(
    run_bedside: RunBedside, two_clients_file: Path
) -> None:
    """The CDS bucket is charged after verification: a wrong key proves nothing about ``iss``."""
    with run_bedside(clients_file=two_clients_file, **LIMITS) as client:
        forger = CdsTestClient(client.base_url, SigningKey("ES384"), TEST_ISSUER)
        forged = statuses([forger.discovery(validate=False) for _ in range(BURST - 1)])
        genuine = statuses([client.discovery(validate=False) for _ in range(BURST)])
        forger.close()
    assert forged == [401] * (BURST - 1)
    assert genuine == [200] * BURST


def test_an_address_that_keeps_failing_authentication_is_throttled(
    run_bedside: RunBedside,
) -> None:
    with run_bedside(**LIMITS) as client:
        url = client.base_url + "/cds-services"
        started = time.monotonic()
        failures = [
            client.http.get(url, headers={"Authorization": "Bearer not-a-jwt"})
            for _ in range(BURST * 3)
        ]
    codes = statuses(failures)
    assert codes[:BURST] == [401] * BURST
    assert set(codes) == {401, 429}
    assert codes.count(401) <= most_allowed(started)
    assert_throttled(next(r for r in failures if r.status_code == 429))


def test_api_tokens_have_their_own_buckets_and_health_readiness_metrics_are_exempt(
    run_bedside: RunBedside, engine: Any
) -> None:
    lab = create_token(engine, "lab-feed", "ingest")
    other_lab = create_token(engine, "other-feed", "ingest")
    batch = {"outcomes": [{"label": "readmission_30d", "value": 1}]}  # refused per entry: 400
    with run_bedside(**LIMITS) as client:
        url = client.base_url + "/outcomes"
        started = time.monotonic()
        lab_calls = [client.http.post(url, json=batch, headers=bearer(lab)) for _ in range(12)]
        other_calls = [
            client.http.post(url, json=batch, headers=bearer(other_lab)) for _ in range(BURST)
        ]
        exempt = [
            client.http.get(client.base_url + path)
            for path in ("/healthz", "/readyz", "/metrics")
            for _ in range(BURST * 2)
        ]
        metrics = client.http.get(client.base_url + "/metrics").text

    codes = statuses(lab_calls)
    assert codes[:BURST] == [400] * BURST
    assert set(codes) == {400, 429}
    assert codes.count(400) <= most_allowed(started)
    assert statuses(other_calls) == [400] * BURST
    assert set(statuses(exempt)) == {200}
    # refused before routing: counted as "unmatched" (a CDS call is refused after it)
    assert 'method="POST",route="unmatched",status="429"' in metrics


def test_anonymous_callers_are_told_apart_by_address(run_bedside: RunBedside) -> None:
    with run_bedside(**LIMITS) as client:
        url = client.base_url + "/models"
        first = [client.http.get(url) for _ in range(BURST * 3)]
        transport = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(transport=transport, timeout=10) as elsewhere:
            second = [elsewhere.get(url) for _ in range(BURST)]
    assert statuses(first)[:BURST] == [200] * BURST
    assert 429 in statuses(first)
    assert statuses(second) == [200] * BURST


def test_limiting_is_off_with_zero(run_bedside: RunBedside) -> None:
    with run_bedside(rate_limit_per_minute=0) as client:
        codes = statuses([client.http.get(client.base_url + "/models") for _ in range(50)])
    assert codes == [200] * 50


def test_token_bucket_refills_at_the_rate_up_to_the_burst() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=60, burst=2, clock=lambda: now[0])
    limiter.take("a")
    limiter.take("a")
    with pytest.raises(RateLimited) as refused:
        limiter.take("a")
    assert refused.value.retry_after == pytest.approx(1.0)
    limiter.take("b")  # another key has its own bucket
    now[0] = 0.5
    with pytest.raises(RateLimited) as again:
        limiter.take("a")
    assert again.value.retry_after == pytest.approx(0.5)
    now[0] = 1.0
    limiter.take("a")
    now[0] = 100.0  # a long pause refills to the burst, not beyond
    limiter.take("a")
    limiter.take("a")
    with pytest.raises(RateLimited):
        limiter.take("a")


def test_the_limiter_forgets_the_least_recently_seen_client_beyond_its_capacity() -> None:
    limiter = RateLimiter(per_minute=60, burst=1, clock=lambda: 0.0, max_clients=2)
    limiter.take("a")
    limiter.take("b")
    limiter.take("c")  # "a" is forgotten: its next request starts from a full bucket
    limiter.take("a")
    with pytest.raises(RateLimited):
        limiter.take("c")
