"""FhirClient against a real FHIR test server on loopback, and against precise faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fhir_mappers.fhir_client import FhirClient, FhirFetchError
from tests.support.fhir_server import FhirTestServer, observations
from tests.support.servers import free_port, serve_on_loopback

PATIENT_ID = "pat-4711"
PATIENT = {"resourceType": "Patient", "id": PATIENT_ID, "gender": "female"}
TOKEN = "ehr-access-token-for-tests"

Action = Callable[[FhirClient], Awaitable[dict[str, Any]]]


def fetch(
    base_url: str,
    action: Action,
    *,
    token: str | None = None,
    budget: float = 2.0,
    max_pages: int = 20,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, Any]:
    """Run ``action`` with a FhirClient for ``base_url`` in a fresh event loop."""

    async def run() -> dict[str, Any]:
        async with httpx.AsyncClient(transport=transport) as http:
            deadline = asyncio.get_running_loop().time() + budget
            client = FhirClient(
                http, base_url, access_token=token, deadline=deadline, max_pages=max_pages
            )
            return await action(client)

    return asyncio.run(run())


def read_patient(client: FhirClient) -> Awaitable[dict[str, Any]]:
    return client.get(f"Patient/{PATIENT_ID}")


def search_observations(client: FhirClient) -> Awaitable[dict[str, Any]]:
    return client.get(f"Observation?patient={PATIENT_ID}")


def recording_transport(
    answer: Callable[[httpx.Request], httpx.Response],
) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A mock transport that answers with ``answer`` and keeps every request it saw."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    return httpx.MockTransport(handle), seen


def paged_bundle(next_url: str, entries: Any = ()) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "next", "url": next_url}],
        "entry": list(entries) if not isinstance(entries, dict) else entries,
    }


def test_bearer_token_from_fhir_authorization_is_sent(fhir_server: FhirTestServer) -> None:
    fhir_server.resources = [PATIENT]
    patient = fetch(fhir_server.base_url, read_patient, token=TOKEN)
    assert patient["gender"] == "female"
    assert [call.authorization for call in fhir_server.calls] == [f"Bearer {TOKEN}"]


def test_no_authorization_header_without_an_access_token(fhir_server: FhirTestServer) -> None:
    fhir_server.resources = [PATIENT]
    fetch(fhir_server.base_url, read_patient)
    assert [call.authorization for call in fhir_server.calls] == [None]


def test_every_searchset_page_is_followed_and_merged(fhir_server: FhirTestServer) -> None:
    fhir_server.resources = [PATIENT, *observations(PATIENT_ID, 120)]
    bundle = fetch(fhir_server.base_url, search_observations, token=TOKEN)
    ids = [entry["resource"]["id"] for entry in bundle["entry"]]
    assert len(ids) == 120 == len(set(ids)) == bundle["total"]
    assert "link" not in bundle
    assert [call.path for call in fhir_server.calls] == ["/fhir/Observation"] * 3
    assert ["_offset=50" in call.query for call in fhir_server.calls] == [False, True, False]
    assert all(call.authorization == f"Bearer {TOKEN}" for call in fhir_server.calls)


@pytest.mark.parametrize(("max_pages", "completes"), [(3, True), (2, False)])
def test_searchset_longer_than_max_pages_fails(
    fhir_server: FhirTestServer, max_pages: int, completes: bool
) -> None:
    fhir_server.resources = observations(PATIENT_ID, 120)
    if completes:
        assert len(fetch(fhir_server.base_url, search_observations, max_pages=3)["entry"]) == 120
    else:
        with pytest.raises(FhirFetchError, match="more than 2 pages"):
            fetch(fhir_server.base_url, search_observations, max_pages=max_pages)
        assert len(fhir_server.calls) == 2


def test_next_link_to_another_host_is_refused_and_never_gets_the_token(
    fhir_server: FhirTestServer,
) -> None:
    elsewhere = FhirTestServer(resources=observations(PATIENT_ID, 3))
    with serve_on_loopback(elsewhere.app()) as other_base:
        bundle = paged_bundle(f"{other_base}/fhir/Observation?patient={PATIENT_ID}")
        with pytest.raises(FhirFetchError, match="outside fhirServer"):
            fetch(fhir_server.base_url, lambda client: client.complete(bundle), token=TOKEN)
    assert elsewhere.calls == []
    assert fhir_server.calls == []


@pytest.mark.parametrize(
    "next_url",
    [
        "https://ehr.example/fhir-admin/Observation?page=2",  # same host, sibling path
        "http://ehr.example/fhir/Observation?page=2",  # downgraded scheme
        "https://ehr.example:8443/fhir/Observation?page=2",  # other port
        "/fhir/Observation?page=2",  # relative
    ],
)
def test_next_link_outside_the_fhir_base_is_refused(next_url: str) -> None:
    transport, seen = recording_transport(lambda _request: httpx.Response(500))
    with pytest.raises(FhirFetchError, match="outside fhirServer"):
        fetch(
            "https://ehr.example/fhir",
            lambda client: client.complete(paged_bundle(next_url)),
            token=TOKEN,
            transport=transport,
        )
    assert seen == []


@pytest.mark.parametrize(
    "next_url",
    [
        "https://ehr.example/fhir/Observation?page=2",
        "https://EHR.example:443/fhir/Observation?page=2",  # the same origin, spelled out
    ],
)
def test_next_link_on_the_fhir_server_is_followed_with_the_token(next_url: str) -> None:
    last_page = {"resourceType": "Bundle", "entry": [{"resource": PATIENT}]}
    transport, seen = recording_transport(lambda _request: httpx.Response(200, json=last_page))
    bundle = fetch(
        "https://ehr.example/fhir",
        lambda client: client.complete(paged_bundle(next_url)),
        token=TOKEN,
        transport=transport,
    )
    assert bundle["entry"] == [{"resource": PATIENT}]
    assert [request.headers["authorization"] for request in seen] == [f"Bearer {TOKEN}"]


def test_next_link_climbing_out_of_the_fhir_base_never_reaches_the_sibling_path(
    fhir_server: FhirTestServer,
) -> None:
    """httpx resolves ``/fhir/../admin`` to ``/admin`` before sending: the check must too."""
    sibling_calls: list[tuple[str, str | None]] = []

    async def sibling(request: Request) -> Response:
        sibling_calls.append((request.url.path, request.headers.get("authorization")))
        return JSONResponse({"resourceType": "Bundle", "type": "searchset", "entry": []})

    app = Starlette(routes=[*fhir_server.app().routes, Route("/{path:path}", sibling)])
    with serve_on_loopback(app) as root:
        bundle = paged_bundle(f"{root}/fhir/../admin/steal")
        with pytest.raises(FhirFetchError, match="outside fhirServer"):
            fetch(f"{root}/fhir", lambda client: client.complete(bundle), token=TOKEN)
    assert sibling_calls == []
    assert fhir_server.calls == []


@pytest.mark.parametrize(
    "next_url",
    [
        "https://ehr.example/fhir/../admin/steal",
        "https://ehr.example/fhir/Observation/../../admin",
        "https://ehr.example/fhir/%2e%2e/admin",
        "https://ehr.example/fhir/.%2E/admin",
        "https://ehr.example/fhir%2F..%2Fadmin",
        "https://ehr.example/fhir/Observation/..",  # resolves inside the base: still refused
    ],
)
def test_next_link_with_a_dot_dot_segment_is_refused(next_url: str) -> None:
    transport, seen = recording_transport(lambda _request: httpx.Response(500))
    with pytest.raises(FhirFetchError, match="outside fhirServer"):
        fetch(
            "https://ehr.example/fhir",
            lambda client: client.complete(paged_bundle(next_url)),
            token=TOKEN,
            transport=transport,
        )
    assert seen == []


def test_next_link_is_requested_exactly_as_checked() -> None:
    next_url = "https://ehr.example/fhir/Observation?patient=pat-4711&_offset=50&note=../x"
    last_page = {"resourceType": "Bundle", "entry": []}
    transport, seen = recording_transport(lambda _request: httpx.Response(200, json=last_page))
    fetch(
        "https://ehr.example/fhir",
        lambda client: client.complete(paged_bundle(next_url)),
        token=TOKEN,
        transport=transport,
    )
    assert [str(request.url) for request in seen] == [next_url]


def test_malformed_next_link_is_a_fetch_error() -> None:
    transport, seen = recording_transport(lambda _request: httpx.Response(500))
    with pytest.raises(FhirFetchError, match="not a URL"):
        fetch(
            "https://ehr.example/fhir",
            lambda client: client.complete(paged_bundle("https://[ehr.example/fhir/x")),
            transport=transport,
        )
    assert seen == []


def test_redirects_are_not_followed() -> None:
    transport, seen = recording_transport(
        lambda _request: httpx.Response(302, headers={"Location": "https://evil.example/steal"})
    )
    with pytest.raises(FhirFetchError, match="answered 302"):
        fetch("https://ehr.example/fhir", read_patient, token=TOKEN, transport=transport)
    assert [request.url.host for request in seen] == ["ehr.example"]


def test_malformed_entry_list_fails_the_fetch() -> None:
    transport, _seen = recording_transport(
        lambda _request: httpx.Response(200, json={"resourceType": "Bundle", "entry": {}})
    )
    bundle = paged_bundle("https://ehr.example/fhir/Observation?page=2")
    with pytest.raises(FhirFetchError, match="malformed entry"):
        fetch("https://ehr.example/fhir", lambda c: c.complete(bundle), transport=transport)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("error-500", "answered 500"),
        ("garbage-html", "not JSON"),
        ("not-found", "answered 404"),
        ("refused", "unreachable"),
    ],
)
def test_fhir_server_faults_are_fetch_errors_naming_no_url(
    fhir_server: FhirTestServer, fault: str, message: str
) -> None:
    base_url = fhir_server.base_url
    if fault == "error-500":
        fhir_server.fail_with = 500
    elif fault == "garbage-html":
        fhir_server.garbage = True
    elif fault == "refused":
        base_url = f"http://127.0.0.1:{free_port()}/fhir"
    with pytest.raises(FhirFetchError, match=message) as caught:
        fetch(base_url, read_patient, token=TOKEN)
    assert PATIENT_ID not in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_slow_fhir_server_is_cut_at_the_deadline(fhir_server: FhirTestServer) -> None:
    fhir_server.resources = [PATIENT]
    fhir_server.delay = 4.0
    started = time.monotonic()
    with pytest.raises(FhirFetchError, match="latency budget"):
        fetch(fhir_server.base_url, read_patient, budget=0.3)
    assert time.monotonic() - started < 0.3 + 1.5


def test_trickling_body_is_cut_at_the_deadline() -> None:
    """Each chunk arrives within any per-read timeout; the whole answer does not."""

    async def trickle() -> AsyncIterator[bytes]:
        yield b'{"resourceType": "Patient",'
        for _ in range(30):
            await asyncio.sleep(0.1)
            yield b" "
        yield b'"id": "pat-4711"}'

    transport, _seen = recording_transport(lambda _request: httpx.Response(200, content=trickle()))
    started = time.monotonic()
    with pytest.raises(FhirFetchError, match="latency budget"):
        fetch("https://ehr.example/fhir", read_patient, budget=0.3, transport=transport)
    assert time.monotonic() - started < 0.3 + 1.5
