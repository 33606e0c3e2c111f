"""A CDS client for tests: signs every call for its exact URL and validates every response."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.cds_validator import validate_response
from tests.support.keys import SigningKey, client_claims


class CdsTestClient:
    """Talks to a Bedside base URL the way an EHR does."""

    def __init__(self, base_url: str, key: SigningKey | None, iss: str, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.iss = iss
        self.http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def token(self, url: str, **claims: Any) -> str:
        assert self.key is not None
        return self.key.sign({**client_claims(self.iss, url), **claims})

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        sign: bool = True,
        validate: bool = True,
    ) -> httpx.Response:
        url = self.base_url + path
        all_headers = dict(headers or {})
        if sign and self.key is not None and "Authorization" not in all_headers:
            all_headers["Authorization"] = f"Bearer {self.token(url)}"
        response = self.http.request(method, url, json=json, content=content, headers=all_headers)
        if validate:
            validate_response(
                path, method, response.status_code, response.content, response.headers
            )
        return response

    def discovery(self, **kwargs: Any) -> httpx.Response:
        return self.request("GET", "/cds-services", **kwargs)

    def call(self, service_id: str, body: Any, **kwargs: Any) -> httpx.Response:
        return self.request("POST", f"/cds-services/{service_id}", json=body, **kwargs)

    def feedback(self, service_id: str, body: Any, **kwargs: Any) -> httpx.Response:
        return self.request("POST", f"/cds-services/{service_id}/feedback", json=body, **kwargs)
