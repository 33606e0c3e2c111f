"""Per-client rate limiting: a token bucket per client, in the memory of each worker.

Who a client is:
- on the CDS endpoints, the verified CDS client (the JWT's ``iss``): the bucket is charged by
  :class:`RateLimitedAuthenticator` once the token has been verified, so nobody can spend
  another client's budget by writing its ``iss`` into a forged token;
- elsewhere, the API token presented (its hash), or the peer address when there is none;
- a request that ends in 401 is also charged to its peer address, and an address whose bucket
  is empty is refused before anything else: unauthenticated floods stay bounded.

Health, readiness and metrics are never limited. Each worker keeps its own buckets, so with N
workers a client may make up to N times the limit; behind a load balancer, rate-limit there too.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cds_hooks.auth.identity import ClientIdentity
from cds_hooks.auth.verifier import Authenticator
from cds_hooks.errors import issue, operation_outcome
from cds_hooks.responses import FhirJsonResponse

EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
CDS_PREFIX = "/cds-services"
MAX_CLIENTS = 10_000  # buckets kept; the least recently seen is forgotten (it was full anyway)


class RateLimited(Exception):
    """A client spent its budget; answered with 429 and ``Retry-After``."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited; retry after {retry_after:.1f} s")
        self.retry_after = retry_after


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets by client key: ``burst`` tokens, refilled at ``per_minute`` a minute."""

    def __init__(
        self,
        per_minute: int,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.rate = per_minute / 60.0
        self.capacity = float(burst or per_minute)
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str) -> None:
        """Spend one token of ``key``'s bucket, or raise :class:`RateLimited`."""
        bucket = self._refilled(key)
        if bucket.tokens < 1:
            raise RateLimited((1 - bucket.tokens) / self.rate)
        bucket.tokens -= 1

    def charge(self, key: str) -> None:
        """Spend one token whether or not one is left (the bucket may go down to zero)."""
        bucket = self._refilled(key)
        bucket.tokens = max(0.0, bucket.tokens - 1)

    def check(self, key: str) -> None:
        """Raise :class:`RateLimited` when ``key`` has no token left, without spending one."""
        if key not in self._buckets:
            return
        bucket = self._refilled(key)
        if bucket.tokens < 1:
            raise RateLimited((1 - bucket.tokens) / self.rate)

    def _refilled(self, key: str) -> _Bucket:
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.capacity, now)
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(self.capacity, bucket.tokens + elapsed * self.rate)
            bucket.updated = now
        return bucket


class RateLimitedAuthenticator:
    """Verifies with ``inner``, then charges the verified client's bucket."""

    def __init__(self, inner: Authenticator, limiter: RateLimiter) -> None:
        self.inner = inner
        self.limiter = limiter

    async def authenticate(self, authorization: str | None, audience: str) -> ClientIdentity:
        identity = await self.inner.authenticate(authorization, audience)
        self.limiter.take(f"cds:{identity.iss}")
        return identity


class RateLimitMiddleware:
    """Refuses requests of a client over its budget with 429 (see the module docstring)."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        peer = f"peer:{_peer_address(scope)}"
        status = 0
        response_started = False

        async def watch_status(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
            await send(message)

        try:
            self.limiter.check(peer)
            if not (path == CDS_PREFIX or path.startswith(CDS_PREFIX + "/")):
                token = _bearer_token(scope)
                self.limiter.take(f"token:{_digest(token)}" if token else peer)
            await self.app(scope, receive, watch_status)
        except RateLimited as limited:
            if response_started:
                raise
            await too_many_requests(limited.retry_after)(scope, receive, send)
            return
        if status == 401:
            self.limiter.charge(peer)


def too_many_requests(retry_after: float) -> FhirJsonResponse:
    seconds = max(1, math.ceil(retry_after))
    outcome = operation_outcome(
        [issue(f"too many requests; retry after {seconds} s", code="throttled")]
    )
    return FhirJsonResponse(outcome, status_code=429, headers={"Retry-After": str(seconds)})


def _peer_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _bearer_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
    return None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:32]
