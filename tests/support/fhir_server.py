"""A small FHIR server for tests: serves given resources, paginates searches, records calls."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class RecordedCall:
    path: str
    query: str
    authorization: str | None


@dataclass
class FhirTestServer:
    """Answers ``GET /{Type}/{id}`` and ``GET /{Type}?…`` from ``resources``.

    Searches return every resource of that type whose ``subject``/``patient`` reference the
    ``patient`` parameter, ``page_size`` per page with ``next`` links. ``fail_with`` forces a
    status code, ``delay`` slows every answer, ``garbage`` answers non-JSON. ``max_in_flight``
    is the most requests it was answering at one moment (how tests see concurrency).
    """

    resources: list[dict[str, Any]] = field(default_factory=list)
    page_size: int = 50
    fail_with: int | None = None
    delay: float = 0.0
    garbage: bool = False
    calls: list[RecordedCall] = field(default_factory=list)
    base_url: str = ""
    in_flight: int = 0
    max_in_flight: int = 0

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/fhir/{path:path}", self._handle)])

    async def _handle(self, request: Request) -> Response:
        self.calls.append(
            RecordedCall(
                path=request.url.path,
                query=request.url.query,
                authorization=request.headers.get("authorization"),
            )
        )
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            return self._answer(request)
        finally:
            self.in_flight -= 1

    def _answer(self, request: Request) -> Response:
        if self.fail_with is not None:
            return JSONResponse({"resourceType": "OperationOutcome"}, status_code=self.fail_with)
        if self.garbage:
            return Response(b"<html>proxy error</html>", media_type="text/html")
        parts = request.path_params["path"].strip("/").split("/")
        if len(parts) == 2:
            return self._read(*parts)
        return self._search(parts[0], request)

    def _read(self, resource_type: str, resource_id: str) -> Response:
        for resource in self.resources:
            if resource["resourceType"] == resource_type and resource.get("id") == resource_id:
                return JSONResponse(resource, media_type="application/fhir+json")
        return JSONResponse({"resourceType": "OperationOutcome"}, status_code=404)

    def _search(self, resource_type: str, request: Request) -> Response:
        patient = request.query_params.get("patient") or request.query_params.get("subject")
        matches = [
            resource
            for resource in self.resources
            if resource["resourceType"] == resource_type
            and (patient is None or _refers_to_patient(resource, patient))
        ]
        offset = int(request.query_params.get("_offset", "0"))
        page = matches[offset : offset + self.page_size]
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(matches),
            "link": [{"relation": "self", "url": str(request.url)}],
            "entry": [{"resource": resource} for resource in page],
        }
        if offset + self.page_size < len(matches):
            query = dict(request.query_params)
            query["_offset"] = str(offset + self.page_size)
            next_url = request.url.replace_query_params(**query)
            bundle["link"].append({"relation": "next", "url": str(next_url)})
        return JSONResponse(bundle, media_type="application/fhir+json")


def resources_from_bundle(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The resources of a transaction Bundle, ``urn:uuid:`` references rewritten to ``Type/id``.

    That is how a FHIR server holds what a Synthea bundle describes.
    """
    references = {
        entry["fullUrl"]: f"{entry['resource']['resourceType']}/{entry['resource']['id']}"
        for entry in bundle.get("entry", [])
        if "fullUrl" in entry and "id" in entry["resource"]
    }
    return [_rewrite(entry["resource"], references) for entry in bundle.get("entry", [])]


def _rewrite(value: Any, references: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            key: references.get(item, item) if key == "reference" else _rewrite(item, references)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_rewrite(item, references) for item in value]
    return value


def _refers_to_patient(resource: dict[str, Any], patient: str) -> bool:
    patient_id = patient.removeprefix("Patient/")
    for key in ("subject", "patient"):
        reference = (resource.get(key) or {}).get("reference", "")
        if reference.removeprefix("Patient/") == patient_id:
            return True
    return False


def observations(patient_id: str, count: int) -> list[dict[str, Any]]:
    """``count`` body-weight Observations of one patient."""
    return [
        {
            "resourceType": "Observation",
            "id": f"obs-{patient_id}-{index}",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "subject": {"reference": f"Patient/{patient_id}"},
            "valueQuantity": {"value": 70 + index % 10, "unit": "kg"},
        }
        for index in range(count)
    ]
