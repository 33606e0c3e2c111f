"""A cache of JSON Web Key Sets, refetched when it expires or (rate-limited) on an unknown kid."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

log = logging.getLogger(__name__)


@dataclass
class _CachedSet:
    keys: dict[str | None, dict[str, Any]]
    fetched_at: float


def index_keys(jwks: Any) -> dict[str | None, dict[str, Any]]:
    """Signing JWKs by kid (a lone key is also reachable under ``None``); empty for a non-JWKS."""
    listed = jwks.get("keys") if isinstance(jwks, dict) else None
    keys = [key for key in listed if _is_signing_key(key)] if isinstance(listed, list) else []
    by_kid: dict[str | None, dict[str, Any]] = {key.get("kid"): key for key in keys}
    if len(keys) == 1:
        by_kid.setdefault(None, keys[0])
    return by_kid


def _is_signing_key(key: object) -> bool:
    return (
        isinstance(key, dict)
        and key.get("use", "sig") == "sig"
        and isinstance(key.get("kid"), str | None)
    )


class JwksCache:
    """Fetches key sets over HTTP and keeps them for ``ttl`` seconds.

    A set that is missing, stale or lacks the wanted kid is fetched, at most once per
    ``min_refresh`` seconds per URL (failed attempts included) so that forged kids or a dead key
    server cannot make us hammer the client's key server or stall every request on its timeout.
    When a fetch fails, the last good set stays in use.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        ttl: float,
        min_refresh: float,
        timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._ttl = ttl
        self._min_refresh = min_refresh
        self._timeout = timeout
        self._clock = clock
        self._sets: dict[str, _CachedSet] = {}
        self._attempted_at: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def key(self, url: str, kid: str | None) -> dict[str, Any] | None:
        """The JWK with ``kid`` published at ``url``, or None."""
        cached = self._sets.get(url)
        if cached is not None and self._clock() - cached.fetched_at < self._ttl:
            key = cached.keys.get(kid)
            if key is not None:
                return key
        async with self._locks.setdefault(url, asyncio.Lock()):
            if self._should_fetch(url, kid):
                await self._refresh(url)
            cached = self._sets.get(url)
            return cached.keys.get(kid) if cached is not None else None

    def _should_fetch(self, url: str, kid: str | None) -> bool:
        now = self._clock()
        attempted_at = self._attempted_at.get(url)
        if attempted_at is not None and now - attempted_at < self._min_refresh:
            return False
        cached = self._sets.get(url)
        return cached is None or now - cached.fetched_at >= self._ttl or kid not in cached.keys

    async def _refresh(self, url: str) -> None:
        started = self._clock()
        self._attempted_at[url] = started
        keys = await self._fetch(url)
        if keys is not None:
            self._sets[url] = _CachedSet(keys=keys, fetched_at=started)

    async def _fetch(self, url: str) -> dict[str | None, dict[str, Any]] | None:
        try:
            response = await self._http.get(url, timeout=self._timeout)
            response.raise_for_status()
            document = orjson.loads(response.content)
            if not (isinstance(document, dict) and isinstance(document.get("keys"), list)):
                raise ValueError("not a JWK set")
        except (httpx.HTTPError, ValueError) as error:
            reason = type(error).__name__
            log.warning("JWKS fetch failed (%s)", reason, extra={"jwks_url": url, "error": reason})
            return None
        return index_keys(document)
