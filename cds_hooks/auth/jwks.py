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


def index_keys(jwks: dict[str, Any]) -> dict[str | None, dict[str, Any]]:
    """JWKs by kid; signing keys only. A lone key without kid is also reachable under ``None``."""
    keys = [
        key
        for key in jwks.get("keys", [])
        if isinstance(key, dict) and key.get("use", "sig") == "sig"
    ]
    by_kid: dict[str | None, dict[str, Any]] = {key.get("kid"): key for key in keys}
    if len(keys) == 1:
        by_kid.setdefault(None, keys[0])
    return by_kid


class JwksCache:
    """Fetches key sets over HTTP and keeps them for ``ttl`` seconds.

    An unknown kid triggers a refetch (key rotation), at most once per ``min_refresh`` seconds
    per URL so that forged kids cannot make us hammer the client's key server.
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
        self._locks: dict[str, asyncio.Lock] = {}

    async def key(self, url: str, kid: str | None) -> dict[str, Any] | None:
        """The JWK with ``kid`` published at ``url``, or None."""
        cached = self._sets.get(url)
        now = self._clock()
        if cached is not None and now - cached.fetched_at < self._ttl and kid in cached.keys:
            return cached.keys[kid]
        lock = self._locks.setdefault(url, asyncio.Lock())
        async with lock:
            cached = self._sets.get(url)
            now = self._clock()
            stale = cached is None or now - cached.fetched_at >= self._ttl
            may_refresh = cached is None or now - cached.fetched_at >= self._min_refresh
            if stale or (kid not in cached.keys and may_refresh):  # type: ignore[union-attr]
                fetched = await self._fetch(url)
                if fetched is not None:
                    cached = _CachedSet(keys=fetched, fetched_at=now)
                    self._sets[url] = cached
            return cached.keys.get(kid) if cached is not None else None

    async def _fetch(self, url: str) -> dict[str | None, dict[str, Any]] | None:
        try:
            response = await self._http.get(url, timeout=self._timeout)
            response.raise_for_status()
            return index_keys(orjson.loads(response.content))
        except (httpx.HTTPError, orjson.JSONDecodeError, AttributeError) as error:
            log.warning("JWKS fetch failed", extra={"jwks_url": url, "error": type(error).__name__})
            return None
