"""A minimal async FHIR REST client for one hook call: bearer token, deadline, page following.

The access token lives only in this object for the duration of the call; it is never logged.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

FHIR_JSON = "application/fhir+json"
_DEFAULT_PORTS = {"http": 80, "https": 443}


class FhirFetchError(Exception):
    """A FHIR request failed. The message names no URL (URLs carry patient ids)."""


class FhirClient:
    """Reads from one FHIR server within a wall-clock deadline (``loop.time()`` based).

    Every request, body included, must end by ``deadline``. Redirects are never followed and
    ``next`` links must stay under ``base_url``, so the token goes to this server only.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        *,
        access_token: str | None,
        deadline: float,
        max_pages: int,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._headers = {"Accept": FHIR_JSON}
        if access_token:
            self._headers["Authorization"] = f"Bearer {access_token}"
        self._deadline = deadline
        self._max_pages = max_pages

    async def get(self, relative: str) -> dict[str, Any]:
        """Read ``{base}/{relative}``; searchsets come back with every page merged in."""
        resource = await self._get_url(f"{self._base}/{relative.lstrip('/')}")
        if resource.get("resourceType") == "Bundle":
            return await self.complete(resource)
        return resource

    async def complete(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """Follow ``next`` links of a searchset and merge the entries into one Bundle."""
        next_url = next_link(bundle)
        if next_url is None:
            return bundle
        entries = list(_entries(bundle))
        pages = 1
        while next_url is not None:
            if pages >= self._max_pages:
                raise FhirFetchError(f"searchset has more than {self._max_pages} pages")
            page = await self._get_url(self._check_same_server(next_url))
            if page.get("resourceType") != "Bundle":
                raise FhirFetchError("a searchset page is not a Bundle")
            entries.extend(_entries(page))
            next_url = next_link(page)
            pages += 1
        merged = {key: value for key, value in bundle.items() if key not in ("link", "entry")}
        merged["entry"] = entries
        merged["total"] = len(entries)
        return merged

    def _check_same_server(self, url: str) -> httpx.URL:
        """Never send the EHR's token anywhere but its own FHIR server.

        The check is on the URL as httpx will send it (``..`` segments resolved), and the caller
        requests exactly the returned URL object. Any ``..`` segment, raw or percent-encoded,
        is refused outright.
        """
        try:
            raw_path = urlsplit(url).path
            base, target = httpx.URL(self._base), httpx.URL(url)
        except (httpx.InvalidURL, ValueError):
            raise FhirFetchError("a next link is not a URL") from None
        same_origin = bool(target.host) and _origin(base) == _origin(target)
        base_path = base.path.rstrip("/")
        inside = target.path == base_path or target.path.startswith(f"{base_path}/")
        dot_dot = any(_DOT_DOT.search(path) for path in (raw_path, target.path))
        if not (same_origin and inside) or dot_dot:
            raise FhirFetchError("a next link points outside fhirServer")
        return target

    async def _get_url(self, url: str | httpx.URL) -> dict[str, Any]:
        """GET one URL; the whole exchange, body included, must end before the deadline."""
        try:
            async with asyncio.timeout_at(self._deadline):
                response = await self._http.get(url, headers=self._headers, follow_redirects=False)
        except (TimeoutError, httpx.TimeoutException):
            raise FhirFetchError("FHIR server did not answer within the latency budget") from None
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            raise FhirFetchError(f"FHIR server unreachable ({type(error).__name__})") from None
        if response.status_code != 200:
            raise FhirFetchError(f"FHIR server answered {response.status_code}")
        try:
            resource = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise FhirFetchError("FHIR server answered something that is not JSON") from None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise FhirFetchError("FHIR server answered something that is not a resource")
        if resource["resourceType"] == "OperationOutcome":
            raise FhirFetchError("FHIR server answered an OperationOutcome")
        return resource


def next_link(bundle: dict[str, Any]) -> str | None:
    """The ``next`` page URL of a Bundle, if any."""
    links = bundle.get("link")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("relation") == "next" and link.get("url"):
            return str(link["url"])
    return None


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """Scheme, host and port, with the scheme's default port made explicit."""
    return url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme)


# A ``..`` path segment, also percent-encoded (``%2e%2e``, ``.%2E``); checked in the path as
# written and once decoded (``%2F..%2F``), since a server may decode and resolve it again.
_DOT_DOT = re.compile(r"(?:^|/)(?:\.|%2e){2}(?:/|$)", re.IGNORECASE)


def _entries(bundle: dict[str, Any]) -> list[Any]:
    """A searchset page's entries; a malformed ``entry`` fails the fetch rather than the call."""
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise FhirFetchError("a searchset page has a malformed entry list")
    return entries
