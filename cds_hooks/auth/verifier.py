"""Verification of CDS client JWTs (CDS Hooks 2.0, "Trusting CDS Clients")."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Protocol

import jwt
import orjson

from cds_hooks.auth.clients import TrustedClient
from cds_hooks.auth.identity import ClientIdentity, Unauthorized
from cds_hooks.auth.jwks import JwksCache, index_keys

ALLOWED_ALGORITHMS = frozenset({"ES384", "RS384", "ES256", "RS256"})
REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "jti"]


class ReplayGuard(Protocol):
    """Remembers token ids until they expire; shared by every worker of a deployment."""

    async def first_use(self, iss: str, jti: str, expires_at: datetime) -> bool:
        """Record ``jti`` of ``iss`` until ``expires_at``; False when it was seen before."""
        ...


class Authenticator(Protocol):
    async def authenticate(self, authorization: str | None, audience: str) -> ClientIdentity: ...


class JwtAuthenticator:
    """Verifies the bearer JWT of every call against the allow-listed clients.

    PyJWT checks the signature (refusing short RSA keys), ``iss`` and ``aud``; the time claims
    are checked here against ``clock`` so that every time rule (leeway, longest lifetime,
    replay memory) uses one clock.
    """

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
        header, unverified = _unverified_parts(token)
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in ALLOWED_ALGORITHMS:
            raise Unauthorized(f"algorithm {algorithm!r:.20} not allowed")
        if header.get("typ") not in (None, "JWT", "jwt"):
            raise Unauthorized("typ is not JWT")
        issuer = unverified.get("iss")
        client = self._clients.get(issuer) if isinstance(issuer, str) else None
        if client is None:
            raise Unauthorized("issuer not trusted")

        jwk = await self._signing_key(client, header)
        claims = self._verify(token, jwk, algorithm, client, audience)
        expires = self._check_times(claims)
        jti = _jti(claims)
        tenant = _optional_text(claims, "tenant")
        subject = _optional_text(claims, "sub")
        if client.tenant is not None and tenant != client.tenant:
            raise Unauthorized("tenant mismatch")

        # Remembered for as long as the token could still pass the expiry check.
        remember_until = datetime.fromtimestamp(expires + self._leeway, tz=UTC)
        if not await self._replay_guard.first_use(client.iss, jti, remember_until):
            raise Unauthorized("jti replayed")
        return ClientIdentity(iss=client.iss, tenant=tenant, subject=subject)

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
            key = _public_key(orjson.dumps(jwk, option=orjson.OPT_SORT_KEYS), algorithm)
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=_audiences(audience),
                issuer=client.iss,
                options={
                    "require": REQUIRED_CLAIMS,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "enforce_minimum_key_length": True,
                },
            )
        except (jwt.PyJWTError, ValueError, TypeError) as error:
            raise Unauthorized(f"token rejected: {type(error).__name__}") from None
        return claims

    def _check_times(self, claims: dict[str, Any]) -> float:
        """Check ``exp``, ``iat`` and ``nbf`` (with leeway) and the lifetime; returns ``exp``."""
        now = self._clock()
        expires = _numeric_date(claims, "exp")
        if expires <= now - self._leeway:
            raise Unauthorized("token expired")
        if expires > now + self._max_lifetime + self._leeway:
            raise Unauthorized("token lifetime too long")
        if _numeric_date(claims, "iat") > now + self._leeway:
            raise Unauthorized("iat in the future")
        if "nbf" in claims and _numeric_date(claims, "nbf") > now + self._leeway:
            raise Unauthorized("token not yet valid (nbf)")
        return expires


@lru_cache(maxsize=256)
def _public_key(jwk_json: bytes, algorithm: str) -> Any:
    """The key object of a JWK (building one from its JSON costs more than a lookup)."""
    return jwt.PyJWK(orjson.loads(jwk_json), algorithm=algorithm).key


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("no Authorization header")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("not a bearer token")
    return token.strip()


def _unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims before any check: only to pick the client and its key."""
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as error:
        raise Unauthorized(f"undecodable token: {type(error).__name__}") from None
    return header, claims


def _numeric_date(claims: dict[str, Any], name: str) -> float:
    """A JSON number of seconds (RFC 7519 NumericDate); strings, booleans and infinities fail."""
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Unauthorized(f"{name} is not a NumericDate")
    return float(value)


def _jti(claims: dict[str, Any]) -> str:
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise Unauthorized("jti is not a non-empty string")
    return jti


def _optional_text(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is not None and not isinstance(value, str):
        raise Unauthorized(f"{name} is not a string")
    return value


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
