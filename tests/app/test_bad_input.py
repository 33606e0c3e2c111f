"""Hostile and broken request bodies on every POST endpoint: a 4xx OperationOutcome, never a 500.

Each body is sent to a real Bedside (uvicorn on loopback): the CDS service call, CDS feedback and
``POST /outcomes``. After the whole barrage each endpoint still answers a good request.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from app.access.tokens import create_token
from tests.support.api_tokens import bearer
from tests.support.fhir_server import FhirTestServer

RunBedside = Callable[..., Any]
MAX_BODY = 1024 * 1024  # above the deepest bodies below (~600 kB)
SERVICE = "/cds-services/test-discharge"
FEEDBACK = "/cds-services/test-discharge/feedback"
OUTCOMES = "/outcomes"
DEEP = 100_000


def good_body(endpoint: str) -> dict[str, Any]:
    """A body each endpoint answers with 200."""
    if endpoint == SERVICE:
        return {
            "hook": "encounter-discharge",
            "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/1", "patientId": "p1", "encounterId": "e1"},
            "prefetch": {
                "patient": {"resourceType": "Patient", "id": "p1", "gender": "female"},
                "encounter": {"resourceType": "Encounter", "id": "e1", "status": "finished"},
                "observations": None,
            },
        }
    if endpoint == FEEDBACK:
        entry = {
            "card": str(uuid.uuid4()),
            "outcome": "overridden",
            "outcomeTimestamp": "2026-11-30T10:00:00Z",
        }
        return {"feedback": [entry]}
    return {
        "outcomes": [
            {
                "encounter": "Encounter/e1",
                "label": "readmission_30d",
                "value": 1,
                "observedAt": "2026-11-30T10:00:00Z",
            }
        ]
    }


def with_duplicate_key(endpoint: str, decoy_last: bool) -> bytes:
    """The good body with its first key given twice, once with a wrong value ("decoy")."""
    body = good_body(endpoint)
    first = next(iter(body))
    text = orjson.dumps(body).decode()
    if decoy_last:
        return (text[:-1] + f', "{first}": "decoy"}}').encode()
    return ("{" + f'"{first}": "decoy", ' + text[1:]).encode()


def nested(depth: int, leaf: str = "1") -> bytes:
    return ("[" * depth + leaf + "]" * depth).encode()


def bad_bodies(endpoint: str) -> dict[str, bytes]:
    """Bodies sent as application/json; each must be refused with 400."""
    good = orjson.dumps(good_body(endpoint))
    first = next(iter(good_body(endpoint)))
    return {
        "malformed": good[:-7],
        "trailing garbage": good + b"}",
        "empty": b"",
        "whitespace only": b"  \n",
        "deeply nested arrays": nested(DEEP),
        "deeply nested objects": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
        "deep value in the expected field": (b'{"' + first.encode() + b'": ' + nested(DEEP) + b"}"),
        "invalid utf-8": good.replace(b'"', b'"\xff\xfe', 1),
        "lone surrogate escape": b'{"' + first.encode() + b'": "\\ud800"}',
        "utf-8 byte order mark": b"\xef\xbb\xbf" + good,
        "utf-16": good.decode().encode("utf-16"),
        "NaN": b'{"' + first.encode() + b'": NaN}',
        "Infinity": b'{"' + first.encode() + b'": [Infinity, -Infinity]}',
        "number too large": b'{"' + first.encode() + b'": 1e999}',
        "integer of 5000 digits": b'{"' + first.encode() + b'": ' + b"9" * 5000 + b"}",
        "duplicate key, the last one wrong": with_duplicate_key(endpoint, decoy_last=True),
        "array": b"[]",
        "string": b'"feedback"',
        "null": b"null",
        "number": b"42",
        "empty object": b"{}",
        "field of the wrong type": orjson.dumps({first: "not-a-list-or-hook"}),
        "list of scalars": orjson.dumps({first: [1, "a", None, True]}),
        "list of nested lists": orjson.dumps({first: [[[[]]]]}),
        "object keys that are not strings": b"{1: 2}",
        "nul character": orjson.dumps({first: "\u0000"}),
    }


WRONG_TYPES = {
    "text/plain": b"{}",
    "application/x-www-form-urlencoded": b"hook=encounter-discharge",
    "multipart/form-data; boundary=x": (
        b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--x--\r\n'
    ),
    "application/xml": b"<feedback/>",
    "application/json-seq": b"\x1e{}\n",
    "": b"{}",
}


@pytest.fixture
def hostile(run_bedside: RunBedside, engine: Any) -> Iterator[Callable[..., httpx.Response]]:
    """``send(endpoint, content, content_type)`` against a Bedside with a 1 MiB body limit."""
    token = create_token(engine, "lab-feed", "ingest")
    with run_bedside(max_body_bytes=MAX_BODY) as client:

        def send(
            endpoint: str,
            content: bytes | Iterator[bytes],
            content_type: str | None = "application/json",
        ) -> httpx.Response:
            headers = {} if content_type is None else {"Content-Type": content_type}
            if endpoint == OUTCOMES:
                headers.update(bearer(token))
                return client.http.post(
                    client.base_url + endpoint, content=content, headers=headers
                )
            url = client.base_url + endpoint
            headers["Authorization"] = f"Bearer {client.token(url)}"
            return client.http.post(url, content=content, headers=headers)

        yield send


def assert_operation_outcome(response: httpx.Response, status: int | set[int], case: str) -> None:
    allowed = status if isinstance(status, set) else {status}
    assert response.status_code in allowed, f"{case}: {response.status_code} {response.text[:300]}"
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", case
    first = body["issue"][0]
    assert first["severity"] in {"error", "fatal"}, case
    assert isinstance(first["code"], str) and first["code"], case
    assert isinstance(first["diagnostics"], str) and first["diagnostics"], case


ENDPOINTS = [SERVICE, FEEDBACK, OUTCOMES]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_every_broken_json_body_is_a_400_operation_outcome_and_the_service_goes_on(
    hostile: Callable[..., httpx.Response], endpoint: str
) -> None:
    for case, content in bad_bodies(endpoint).items():
        started = time.monotonic()
        response = hostile(endpoint, content)
        elapsed = time.monotonic() - started
        assert_operation_outcome(response, 400, f"{endpoint} {case}")
        assert elapsed < 5, f"{endpoint} {case} took {elapsed:.1f} s"
    assert hostile(endpoint, orjson.dumps(good_body(endpoint))).status_code == 200


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_body_that_is_not_json_by_its_content_type_is_refused(
    hostile: Callable[..., httpx.Response], endpoint: str
) -> None:
    good = orjson.dumps(good_body(endpoint))
    for content_type, content in {**WRONG_TYPES, "text/plain; charset=utf-8": good}.items():
        response = hostile(endpoint, content, content_type)
        assert_operation_outcome(response, {400, 415}, f"{endpoint} {content_type!r}")
        assert "content type" in response.json()["issue"][0]["diagnostics"]
    for content_type in ("application/json; charset=utf-8", "application/fhir+json", None):
        response = hostile(endpoint, orjson.dumps(good_body(endpoint)), content_type)
        assert response.status_code == 200, f"{endpoint} {content_type!r}: {response.text}"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_body_over_the_limit_is_413_declared_or_streamed(
    hostile: Callable[..., httpx.Response], endpoint: str
) -> None:
    declared = hostile(endpoint, b"[" + b"0," * MAX_BODY + b"0]")

    def chunks() -> Iterator[bytes]:
        yield b'{"padding": "'
        for _ in range(MAX_BODY // 1024 + 2):
            yield b"x" * 1024
        yield b'"}'

    streamed = hostile(endpoint, chunks())
    assert_operation_outcome(declared, 413, f"{endpoint} declared")
    assert_operation_outcome(streamed, 413, f"{endpoint} streamed")
    assert declared.json()["issue"][0]["code"] == "too-long"
    assert hostile(endpoint, orjson.dumps(good_body(endpoint))).status_code == 200


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_repeated_key_takes_its_last_value_like_every_json_parser(
    hostile: Callable[..., httpx.Response], endpoint: str
) -> None:
    """Last one wins (orjson, JSON.parse, Python's json): the decoy before the good value is
    ignored, the one after it is what gets validated (and refused, without being echoed)."""
    decoy_first = hostile(endpoint, with_duplicate_key(endpoint, decoy_last=False))
    decoy_last = hostile(endpoint, with_duplicate_key(endpoint, decoy_last=True))
    assert decoy_first.status_code == 200, decoy_first.text
    assert_operation_outcome(decoy_last, 400, endpoint)
    if endpoint != SERVICE:  # a hook name that is not the service's is named in the answer
        assert "decoy" not in decoy_last.text


def with_deep_value(body: dict[str, Any], depth: int) -> bytes:
    """``body`` as JSON with every ``"DEEP"`` string replaced by arrays nested ``depth`` deep."""
    return orjson.dumps(body).replace(b'"DEEP"', nested(depth))


@pytest.mark.parametrize("depth", [240, 260, 1000])
def test_deep_values_inside_valid_requests_are_taken_or_refused_never_a_500(
    hostile: Callable[..., httpx.Response], depth: int
) -> None:
    """Nesting the parser accepts (up to 1024) deep inside otherwise valid bodies: up to 254
    levels in all the body is handled, deeper is refused with 400."""
    call = good_body(SERVICE)
    call["context"]["extra"] = "DEEP"
    call["prefetch"]["encounter"]["extension"] = "DEEP"
    entry = good_body(FEEDBACK)
    entry["feedback"][0]["overrideReason"] = {"reason": "DEEP", "userComment": "x"}
    entry["feedback"].append({**good_body(FEEDBACK)["feedback"][0], "extra": "DEEP"})
    outcome = good_body(OUTCOMES)
    outcome["outcomes"][0]["value"] = "DEEP"
    answers = {
        endpoint: hostile(endpoint, with_deep_value(body, depth))
        for endpoint, body in ((SERVICE, call), (FEEDBACK, entry), (OUTCOMES, outcome))
    }
    for endpoint, answer in answers.items():
        assert answer.status_code in {200, 400}, f"{endpoint}: {answer.status_code} {answer.text}"
        if depth > 254:
            assert_operation_outcome(answer, 400, endpoint)
            assert "nested too deeply" in answer.json()["issue"][0]["diagnostics"]
    assert_operation_outcome(answers[OUTCOMES], 400, OUTCOMES)
    if depth <= 254:
        assert answers[SERVICE].status_code == 200, "extra context and FHIR fields are allowed"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def bearer_jwt(header: bytes, claims: bytes) -> bytes:
    """An unsigned-looking JWT made of these raw header and claims bytes."""
    return ("Bearer " + b64(header) + "." + b64(claims) + ".c2ln").encode()


ES384_HEADER = b'{"alg": "ES384", "typ": "JWT"}'
HOSTILE_AUTHORIZATIONS: dict[str, bytes] = {
    "not latin-1 text": "Bearer ключ-\u2603".encode(),
    "invalid utf-8 bytes": b"Bearer \xff\xfe\xfd",
    "deeply nested JWT header": bearer_jwt(b'{"alg": ' + nested(3000) + b"}", b"{}"),
    "deeply nested JWT claims": bearer_jwt(ES384_HEADER, b'{"iss": ' + nested(3000) + b"}"),
    "JWT claims that are not JSON": bearer_jwt(ES384_HEADER, b"\xff{"),
    "JWT claims with NaN": bearer_jwt(ES384_HEADER, b'{"iss": "x", "exp": NaN}'),
    "a 12 kB token": b"Bearer " + b"A" * 12_000,
}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_hostile_authorization_headers_are_refused_with_401_never_500(
    run_bedside: RunBedside, endpoint: str
) -> None:
    with run_bedside() as client:
        url = client.base_url + endpoint
        answers = {
            case: client.http.post(
                url, content=orjson.dumps(good_body(endpoint)), headers={"Authorization": value}
            )
            for case, value in HOSTILE_AUTHORIZATIONS.items()
        }
    for case, answer in answers.items():
        assert answer.status_code == 401, f"{endpoint} {case}: {answer.status_code} {answer.text}"
        if endpoint == OUTCOMES:  # the CDS endpoints' 401 is bare on purpose
            assert_operation_outcome(answer, 401, f"{endpoint} {case}")


GOOD_FHIR_TOKEN = "eyJhbGciOi.eyJzdWIiOi-_~+/=="
UNSENDABLE_FHIR_TOKENS = {
    "not ascii": "jeton-d'accès-é",
    "cyrillic": "ключ",
    "a space": "two words",
    "a line break": "token\r\nX-Injected: 1",
}


def with_fhir_token(fhir_base_url: str, token: str) -> dict[str, Any]:
    """The good service call, with ``observations`` left to be read from the FHIR server."""
    body = good_body(SERVICE)
    del body["prefetch"]["observations"]
    authorization = {"token_type": "Bearer", "expires_in": 300, "scope": "x", "subject": "y"}
    return {
        **body,
        "fhirServer": fhir_base_url,
        "fhirAuthorization": {**authorization, "access_token": token},
    }


def test_a_fhir_access_token_no_bearer_header_can_carry_is_a_400_never_a_500(
    run_bedside: RunBedside, fhir_server: FhirTestServer
) -> None:
    """Found by the OpenAPI fuzz: a non-ASCII ``access_token`` failed as it was put in the FHIR
    request's header (500). It must be an RFC 6750 token, checked before anything is fetched."""
    with run_bedside() as client:
        answers = {
            case: client.call("test-discharge", with_fhir_token(fhir_server.base_url, token))
            for case, token in UNSENDABLE_FHIR_TOKENS.items()
        }
        good = client.call("test-discharge", with_fhir_token(fhir_server.base_url, GOOD_FHIR_TOKEN))
    for case, answer in answers.items():
        assert_operation_outcome(answer, 400, case)
        assert answer.json()["issue"][0]["expression"] == ["fhirAuthorization.access_token"], case
        assert UNSENDABLE_FHIR_TOKENS[case] not in answer.text, case
    assert good.status_code == 200, good.text
    assert {call.authorization for call in fhir_server.calls} == {f"Bearer {GOOD_FHIR_TOKEN}"}
