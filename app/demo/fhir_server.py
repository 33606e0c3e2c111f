"""A tiny FHIR server on loopback: the demo patients' resources, for the service's prefetch queries.

It answers what the prefetch templates ask (``fhir_mappers.templates``): instance reads
(``Patient/{id}``, ``Encounter/{id}``) and searches by ``patient`` with an optional ``code``
token list (``system|code,…``), paginated by ``_count``/``_offset`` with ``next`` links. Every
request must carry the bearer token the demo EHR hands to Bedside in ``fhirAuthorization``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

FHIR_JSON = "application/fhir+json"
PAGE_SIZE = 100


class DemoFhirServer:
    """Reads and searches over an in-memory list of resources; counts the requests it answered."""

    def __init__(self, resources: list[dict[str, Any]], access_token: str) -> None:
        self.access_token = access_token
        self.requests = 0
        self._by_id: dict[tuple[str, str], dict[str, Any]] = {}
        self._by_patient: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for resource in resources:
            kind = resource["resourceType"]
            self._by_id[(kind, resource["id"])] = resource
            patient = _patient_of(resource)
            if patient is not None:
                self._by_patient[(kind, patient)].append(resource)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/fhir/{path:path}", self._handle)])

    async def _handle(self, request: Request) -> Response:
        self.requests += 1
        if request.headers.get("authorization") != f"Bearer {self.access_token}":
            return _outcome("login", "a valid bearer token is required", 401)
        parts = request.path_params["path"].strip("/").split("/")
        if len(parts) == 2:
            resource = self._by_id.get((parts[0], parts[1]))
            if resource is None:
                return _outcome("not-found", f"no {parts[0]} with that id", 404)
            return JSONResponse(resource, media_type=FHIR_JSON)
        if len(parts) == 1:
            return self._search(parts[0], request)
        return _outcome("not-supported", "unsupported request", 400)

    def _search(self, kind: str, request: Request) -> Response:
        params = request.query_params
        patient = (params.get("patient") or params.get("subject") or "").removeprefix("Patient/")
        if not patient:
            return _outcome("not-supported", "searches need a patient", 400)
        matches = self._by_patient.get((kind, patient), [])
        if params.get("code"):
            wanted = {token.strip() for token in params["code"].split(",")}
            matches = [resource for resource in matches if _has_code(resource, wanted)]
        count = int(params.get("_count", PAGE_SIZE))
        offset = int(params.get("_offset", "0"))
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(matches),
            "link": [{"relation": "self", "url": str(request.url)}],
            "entry": [
                {"fullUrl": f"{kind}/{resource['id']}", "resource": resource}
                for resource in matches[offset : offset + count]
            ],
        }
        if offset + count < len(matches):
            following = request.url.include_query_params(_offset=offset + count, _count=count)
            bundle["link"].append({"relation": "next", "url": str(following)})
        return JSONResponse(bundle, media_type=FHIR_JSON)


def _patient_of(resource: dict[str, Any]) -> str | None:
    if resource["resourceType"] == "Patient":
        return str(resource["id"])
    for key in ("subject", "patient"):
        reference = (resource.get(key) or {}).get("reference", "")
        if reference.startswith("Patient/"):
            return str(reference.removeprefix("Patient/"))
    return None


def _has_code(resource: dict[str, Any], wanted: set[str]) -> bool:
    for coding in (resource.get("code") or {}).get("coding", []):
        system, code = coding.get("system", ""), coding.get("code", "")
        if f"{system}|{code}" in wanted or code in wanted:
            return True
    return False


def _outcome(code: str, text: str, status: int) -> Response:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON)
