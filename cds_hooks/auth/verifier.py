"""Verification of CDS client JWTs (CDS Hooks 2.0, "Trusting CDS Clients")."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

import jwt

from cds_hooks.auth.clients import TrustedClient
from cds_hooks.auth.identity import ClientIdentity, Unauthorized
from cds_hooks.auth.jwks import JwksCache, index_keys

log = logging.getLogger(__name__)

ALLOWED_ALGORITHMS = frozenset({"ES384", "RS384", "ES256", "RS256"})
REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "jti"]


class ReplayGuard(Protocol):
    """Remembers token ids until they expire; shared by every worker of a deployment."""

    async def first_use(self, iss: str, jti: str, expires_at: datetime) -> bool:
        """Record ``jti`` of ``iss``; False when it was seen before."""
        ...


class Authenticator(Protocol):
    async def authenticate(self, authorization: str | None, audience: str) -> ClientIdentity: ...


class JwtAuthenticator:
    """Verifies the bearer JWT of every call against the allow-listed clients."""

    def __init__(
        self,
        clients: dict[str, TrustedClient],
        jwks: JwksCache,
        replay_guard: ReplayGuard,
        *,
        leeway: float,
        max_lifetime: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clients = clients
        self._jwks = jwks
        self._replay_guard = replay_guard
        self._leeway = leeway
        self._max_lifetime = max_lifetime
        self._clock = clock

    async def authenticate(self, authorization: str | None, audience: str) -> ClientIdentity:
        """The caller's identity, or :class:`Unauthorized` (whose message is for logs only)."""
        token = _bearer_token(authorization)
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as error:
            raise Unauthorized(f"undecodable token: {type(error).__name__}") from None
        algorithm = header.get("alg")
        if algorithm not in ALLOWED_ALGORITHMS:
            raise Unauthorized(f"algorithm {algorithm!r} not allowed")
        if header.get("typ") not in (None, "JWT", "jwt"):
            raise Unauthorized("typ is not JWT")
        issuer = unverified.get("iss")
        client = self._clients.get(issuer) if isinstance(issuer, str) else None
        if client is None:
            raise Unauthorized("issuer not trusted")

        jwk = await self._signing_key(client, header)
        claims = self._verify(token, jwk, algorithm, client, audience)

        expires_at = datetime.fromtimestamp(claims["exp"], tz=UTC)
        if not await self._replay_guard.first_use(client.iss, str(claims["jti"]), expires_at):
            raise Unauthorized("jti replayed")
        return ClientIdentity(
            iss=client.iss, tenant=claims.get("tenant"), subject=claims.get("sub")
        )

    async def _signing_key(self, client: TrustedClient, header: dict[str, Any]) -> dict[str, Any]:
        kid = header.get("kid")
        jku = header.get("jku")
        if client.jwks is not None:
            key = index_keys(client.jwks).get(kid)
            if key is not None:
                return key
        for url in _key_urls(client, jku):
            key = await self._jwks.key(url, kid)
            if key is not None:
                return key
        raise Unauthorized("no key for kid")

    def _verify(
        self,
        token: str,
        jwk: dict[str, Any],
        algorithm: str,
        client: TrustedClient,
        audience: str,
    ) -> dict[str, Any]:
        if jwk.get("alg") not in (None, algorithm):
            raise Unauthorized("key is not for this algorithm")
        try:
            key = jwt.PyJWK(jwk, algorithm=algorithm).key
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=_audiences(audience),
                issuer=client.iss,
                leeway=self._leeway,
                options={"require": REQUIRED_CLAIMS, "verify_iat": True},
            )
        except (jwt.PyJWTError, ValueError, TypeError) as error:
            raise Unauthorized(f"token rejected: {type(error).__name__}") from None
        now = self._clock()
        if claims["exp"] - now > self._max_lifetime + self._leeway:
            raise Unauthorized("token lifetime too long")
        if client.tenant is not None and claims.get("tenant") != client.tenant:
            raise Unauthorized("tenant mismatch")
        return claims


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("no Authorization header")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("not a bearer token")
    return token.strip()


def _key_urls(client: TrustedClient, jku: object) -> Iterable[str]:
    """Where to look for keys: an allow-listed jku first, then the configured JWKS URL."""
    if isinstance(jku, str) and jku in client.allowed_jku:
        yield jku
    if client.jwks_url:
        yield client.jwks_url


def _audiences(audience: str) -> list[str]:
    """The URL called, with and without a trailing slash (proxies differ on it)."""
    bare = audience.rstrip("/")
    return [bare, bare + "/"]


class InsecureDevAuthenticator:
    """Accepts every call. For local trials only: the app warns loudly while it is on."""

    async def authenticate(self, authorization: str | None, audience: str) -> ClientIdentity:
        return ClientIdentity(iss="insecure-dev")
