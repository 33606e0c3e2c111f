"""A JSON response rendered with orjson (fast, and no custom encoder needed)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class JsonResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class FhirJsonResponse(JsonResponse):
    media_type = "application/fhir+json"
