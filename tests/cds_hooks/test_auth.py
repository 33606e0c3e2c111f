"""What a CDS client's JWT must satisfy: JwtAuthenticator, JwksCache and the replay memory."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import ValidationError
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from app.store.database import create_tables, make_engine
from app.store.replay import SeenToken, SqlReplayGuard, replay_engine
from cds_hooks.auth.clients import TrustedClient, load_trusted_clients, parse_trusted_clients
from cds_hooks.auth.identity import ClientIdentity, Unauthorized
from cds_hooks.auth.jwks import JwksCache, index_keys
from cds_hooks.auth.verifier import JwtAuthenticator, ReplayGuard
from tests.conftest import TEST_ISSUER, JwksServer
from tests.support.keys import SigningKey, client_claims, jwks
from tests.support.servers import serve_on_loopback

pytestmark = pytest.mark.anyio

BASE = "https://bedside.example.org"
DISCOVERY_URL = f"{BASE}/cds-services"
SERVICE_URL = f"{BASE}/cds-services/risk"
NOW = int(time.time())
LEEWAY = 5
MAX_LIFETIME = 3600
MIN_REFRESH = 30.0
ACCEPTED = "accepted"


class FakeClock:
    """A clock that moves only when a test says so."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


MakeAuthenticator = Callable[..., JwtAuthenticator]


@functools.cache
def key_for(algorithm: str) -> SigningKey:
    """One key per algorithm for the whole module (RSA keys are slow to generate)."""
    return SigningKey(algorithm)


def claims(**overrides: Any) -> dict[str, Any]:
    """A CDS client's claims for the service URL, issued at ``NOW``."""
    return {**client_claims(TEST_ISSUER, SERVICE_URL), "iat": NOW, "exp": NOW + 300, **overrides}


def without(values: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: value for key, value in values.items() if key != name}


def bearer(key: SigningKey, token_claims: dict[str, Any] | None = None, **headers: Any) -> str:
    return f"Bearer {key.sign(claims() if token_claims is None else token_claims, **headers)}"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value).encode())


def hs256_token(secret: bytes, header: dict[str, Any], token_claims: dict[str, Any]) -> str:
    """A token HMAC-signed by hand (PyJWT refuses to use a public key as an HMAC secret)."""
    signing_input = f"{b64url_json(header)}.{b64url_json(token_claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


async def outcome(
    authenticator: JwtAuthenticator, authorization: str | None, audience: str = SERVICE_URL
) -> str:
    """``ACCEPTED``, or the (log-only) reason of the refusal."""
    try:
        await authenticator.authenticate(authorization, audience)
    except Unauthorized as reason:
        return str(reason)
    return ACCEPTED


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    create_tables(engine)
    yield engine
    engine.dispose()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def jwks_clock() -> FakeClock:
    return FakeClock(1_000.0)


@pytest.fixture
def client(jwks_server: JwksServer) -> TrustedClient:
    return TrustedClient(iss=TEST_ISSUER, jwks_url=jwks_server.url)


@pytest.fixture
def make_authenticator(
    engine: Engine, http: httpx.AsyncClient, jwks_clock: FakeClock
) -> MakeAuthenticator:
    """Authenticators for given clients, with a fixed clock at ``NOW`` unless told otherwise."""

    def make(
        *clients: TrustedClient,
        replay_guard: ReplayGuard | None = None,
        clock: Callable[[], float] = lambda: NOW,
    ) -> JwtAuthenticator:
        # A generous fetch timeout: the key server is a thread of this busy test process.
        cache = JwksCache(http, ttl=3600, min_refresh=MIN_REFRESH, timeout=10, clock=jwks_clock)
        return JwtAuthenticator(
            {client.iss: client for client in clients},
            cache,
            replay_guard or SqlReplayGuard(engine),
            leeway=LEEWAY,
            max_lifetime=MAX_LIFETIME,
            clock=clock,
        )

    return make


@pytest.fixture
def authenticator(make_authenticator: MakeAuthenticator, client: TrustedClient) -> JwtAuthenticator:
    return make_authenticator(client)


@pytest.fixture
def second_jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    with serve_on_loopback(server.app()) as base_url:
        server.url = f"{base_url}/jwks"
        yield server


@pytest.mark.parametrize("algorithm", ["ES384", "RS384", "ES256", "RS256"])
async def test_valid_token_is_accepted_and_identifies_the_client(
    algorithm: str, jwks_server: JwksServer, make_authenticator: MakeAuthenticator
) -> None:
    key = key_for(algorithm)
    jwks_server.keys = [key]
    client = TrustedClient(iss=TEST_ISSUER, jwks_url=jwks_server.url, tenant="north")
    token_claims = claims(tenant="north", sub="Practitioner/7", nbf=NOW)

    identity = await make_authenticator(client).authenticate(bearer(key, token_claims), SERVICE_URL)

    assert identity == ClientIdentity(iss=TEST_ISSUER, tenant="north", subject="Practitioner/7")


@pytest.mark.parametrize(
    ("exp_offset", "expected"),
    [(-2, ACCEPTED), (-LEEWAY, "token expired"), (-60, "token expired")],
)
async def test_expired_token_is_refused_beyond_the_leeway(
    exp_offset: int, expected: str, authenticator: JwtAuthenticator, signing_key: SigningKey
) -> None:
    token_claims = claims(iat=NOW - 120, exp=NOW + exp_offset)
    assert await outcome(authenticator, bearer(signing_key, token_claims)) == expected


@pytest.mark.parametrize(
    ("iat_offset", "expected"), [(1, ACCEPTED), (2, ACCEPTED), (60, "iat in the future")]
)
async def test_iat_slightly_in_the_future_is_accepted_but_far_future_refused(
    iat_offset: int, expected: str, authenticator: JwtAuthenticator, signing_key: SigningKey
) -> None:
    token_claims = claims(iat=NOW + iat_offset)
    assert await outcome(authenticator, bearer(signing_key, token_claims)) == expected


@pytest.mark.parametrize(
    ("nbf_offset", "expected"), [(-1, ACCEPTED), (60, "token not yet valid (nbf)")]
)
async def test_nbf_in_the_future_is_refused(
    nbf_offset: int, expected: str, authenticator: JwtAuthenticator, signing_key: SigningKey
) -> None:
    token_claims = claims(nbf=NOW + nbf_offset)
    assert await outcome(authenticator, bearer(signing_key, token_claims)) == expected


@pytest.mark.parametrize(
    ("lifetime", "expected"),
    [
        (MAX_LIFETIME, ACCEPTED),
        (MAX_LIFETIME + LEEWAY + 1, "token lifetime too long"),
        (365 * 24 * 3600, "token lifetime too long"),
    ],
)
async def test_exp_further_than_the_max_lifetime_is_refused(
    lifetime: int, expected: str, authenticator: JwtAuthenticator, signing_key: SigningKey
) -> None:
    token_claims = claims(exp=NOW + lifetime)
    assert await outcome(authenticator, bearer(signing_key, token_claims)) == expected


@pytest.mark.parametrize(
    ("token_aud", "called_url", "expected"),
    [
        (SERVICE_URL + "/", SERVICE_URL, ACCEPTED),
        (SERVICE_URL, SERVICE_URL + "/", ACCEPTED),
        ("https://other.example.org/cds-services/risk", SERVICE_URL, "InvalidAudienceError"),
        (DISCOVERY_URL, SERVICE_URL, "InvalidAudienceError"),
        (SERVICE_URL, SERVICE_URL + "/feedback", "InvalidAudienceError"),
    ],
)
async def test_aud_must_be_the_called_url_give_or_take_a_trailing_slash(
    token_aud: str,
    called_url: str,
    expected: str,
    authenticator: JwtAuthenticator,
    signing_key: SigningKey,
) -> None:
    authorization = bearer(signing_key, claims(aud=token_aud))
    assert expected in await outcome(authenticator, authorization, called_url)


async def test_unknown_issuer_is_refused_without_fetching_keys(
    authenticator: JwtAuthenticator, jwks_server: JwksServer, signing_key: SigningKey
) -> None:
    authorization = bearer(signing_key, claims(iss="https://intruder.example.org"))
    assert await outcome(authenticator, authorization) == "issuer not trusted"
    assert jwks_server.fetches == 0


async def test_unknown_kid_after_key_rotation_refetches_the_jwks(
    authenticator: JwtAuthenticator,
    jwks_server: JwksServer,
    jwks_clock: FakeClock,
    signing_key: SigningKey,
) -> None:
    assert await outcome(authenticator, bearer(signing_key)) == ACCEPTED
    rotated = SigningKey("ES384")
    jwks_server.keys = [rotated]
    jwks_clock.now += MIN_REFRESH + 1

    assert await outcome(authenticator, bearer(rotated)) == ACCEPTED
    assert jwks_server.fetches == 2
    assert await outcome(authenticator, bearer(signing_key)) == "no key for kid"


async def test_second_unknown_kid_within_min_refresh_does_not_refetch(
    authenticator: JwtAuthenticator,
    jwks_server: JwksServer,
    jwks_clock: FakeClock,
    signing_key: SigningKey,
) -> None:
    assert await outcome(authenticator, bearer(signing_key)) == ACCEPTED
    jwks_clock.now += MIN_REFRESH + 1
    first_unknown, second_unknown = SigningKey("ES384"), SigningKey("ES384")
    assert await outcome(authenticator, bearer(first_unknown)) == "no key for kid"
    assert jwks_server.fetches == 2

    jwks_server.keys.append(second_unknown)
    jwks_clock.now += MIN_REFRESH - 1
    assert await outcome(authenticator, bearer(second_unknown)) == "no key for kid"
    assert jwks_server.fetches == 2

    jwks_clock.now += 1
    assert await outcome(authenticator, bearer(second_unknown)) == ACCEPTED
    assert jwks_server.fetches == 3


async def test_replayed_jti_is_refused(
    authenticator: JwtAuthenticator, signing_key: SigningKey
) -> None:
    authorization = bearer(signing_key)
    assert await outcome(authenticator, authorization) == ACCEPTED
    assert await outcome(authenticator, authorization) == "jti replayed"


async def test_replayed_jti_is_refused_by_another_worker_sharing_the_database(
    database_url: str,
    make_authenticator: MakeAuthenticator,
    client: TrustedClient,
    signing_key: SigningKey,
) -> None:
    # Real time, not the module's NOW: a fresh guard purges what expired by the wall clock, and
    # this test may run minutes after the module was imported.
    other_engine = make_engine(database_url)
    try:
        first = make_authenticator(client, clock=time.time)
        second = make_authenticator(
            client, replay_guard=SqlReplayGuard(other_engine), clock=time.time
        )
        now = int(time.time())
        fresh = {"iat": now, "exp": now + 300}
        authorization = bearer(signing_key, claims(**fresh))
        assert await outcome(first, authorization) == ACCEPTED
        assert await outcome(second, authorization) == "jti replayed"
        assert await outcome(second, bearer(signing_key, claims(**fresh))) == ACCEPTED
    finally:
        other_engine.dispose()


async def test_jti_is_remembered_until_exp_plus_leeway(
    engine: Engine,
    make_authenticator: MakeAuthenticator,
    client: TrustedClient,
    signing_key: SigningKey,
) -> None:
    """A token just past ``exp`` still passes within the leeway: a purge must not forget it."""
    guard = SqlReplayGuard(engine, purge_every_seconds=0)
    authenticator = make_authenticator(client, replay_guard=guard, clock=time.time)
    now = int(time.time())
    authorization = bearer(signing_key, claims(iat=now - 60, exp=now - 2))

    assert await outcome(authenticator, authorization) == ACCEPTED
    assert await outcome(authenticator, authorization) == "jti replayed"


async def test_replay_memory_forgets_expired_ids_but_keeps_issuers_apart(engine: Engine) -> None:
    guard = SqlReplayGuard(engine, purge_every_seconds=0)
    now = datetime.now(UTC)
    assert await guard.first_use(TEST_ISSUER, "old", now - timedelta(seconds=1))
    assert await guard.first_use(TEST_ISSUER, "same", now + timedelta(minutes=5))
    assert await guard.first_use("https://other.example.org", "same", now + timedelta(minutes=5))
    assert not await guard.first_use(TEST_ISSUER, "same", now + timedelta(minutes=5))

    with Session(engine) as session:
        remembered = session.exec(select(SeenToken)).all()
    assert len(remembered) == 2
    assert all(row.expires_at > now for row in remembered)


@pytest.mark.parametrize(
    ("token_claims", "expected"),
    [
        (without(claims(), "jti"), "MissingRequiredClaimError"),
        (claims(jti=""), "jti is not a non-empty string"),
        (claims(jti=123), "InvalidJTIError"),
        (without(claims(), "exp"), "MissingRequiredClaimError"),
        (without(claims(), "iat"), "MissingRequiredClaimError"),
        (claims(exp=str(NOW + 300)), "exp is not a NumericDate"),
        (claims(exp=float("inf")), "exp is not a NumericDate"),
        (claims(exp=True), "exp is not a NumericDate"),
        (claims(iat="yesterday"), "iat is not a NumericDate"),
        (claims(nbf=None), "nbf is not a NumericDate"),
        (claims(tenant=7), "tenant is not a string"),
        (claims(sub={"id": 7}), "InvalidSubjectError"),
    ],
    ids=lambda value: None if isinstance(value, dict) else value,
)
async def test_missing_or_malformed_claims_are_refused(
    token_claims: dict[str, Any],
    expected: str,
    authenticator: JwtAuthenticator,
    signing_key: SigningKey,
) -> None:
    assert expected in await outcome(authenticator, bearer(signing_key, token_claims))


@pytest.mark.parametrize("algorithm", ["none", "None", "NONE"])
async def test_alg_none_is_refused(
    algorithm: str, authenticator: JwtAuthenticator, signing_key: SigningKey
) -> None:
    header = {"alg": algorithm, "typ": "JWT", "kid": signing_key.kid}
    unsigned = f"{b64url_json(header)}.{b64url_json(claims())}."
    assert (
        await outcome(authenticator, f"Bearer {unsigned}") == f"algorithm {algorithm!r} not allowed"
    )


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ({"alg": ["ES384"]}, "algorithm ['ES384'] not allowed"),
        ({"alg": None}, "algorithm None not allowed"),
        ({"alg": "ES384", "kid": 7}, "undecodable token: InvalidTokenError"),
        ({"alg": "ES384", "typ": "at+jwt"}, "typ is not JWT"),
        ({"alg": "ES384", "crit": ["exp"]}, "undecodable token: InvalidTokenError"),
    ],
)
async def test_malformed_header_is_refused_not_crashed_on(
    header: dict[str, Any], expected: str, authenticator: JwtAuthenticator
) -> None:
    forged = f"{b64url_json(header)}.{b64url_json(claims())}.{b64url(b'signature')}"
    assert await outcome(authenticator, f"Bearer {forged}") == expected


@pytest.mark.parametrize("algorithm", ["ES384", "RS384"])
@pytest.mark.parametrize("secret_format", ["pem", "jwk"])
async def test_hs256_signed_with_the_public_key_is_refused(
    algorithm: str, secret_format: str, make_authenticator: MakeAuthenticator
) -> None:
    key = key_for(algorithm)
    authenticator = make_authenticator(TrustedClient(iss=TEST_ISSUER, jwks=jwks(key)))
    public_key = key.private_key.public_key()
    secret = (
        public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        if secret_format == "pem"
        else json.dumps(key.public_jwk).encode()
    )
    token = hs256_token(secret, {"alg": "HS256", "typ": "JWT", "kid": key.kid}, claims())
    assert await outcome(authenticator, f"Bearer {token}") == "algorithm 'HS256' not allowed"


async def test_tampered_payload_is_refused(
    authenticator: JwtAuthenticator, signing_key: SigningKey
) -> None:
    token = signing_key.sign(claims(sub="Practitioner/7"))
    header, payload, signature = token.split(".")
    changed = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    changed["sub"] = "Practitioner/1"
    tampered = f"{header}.{b64url_json(changed)}.{signature}"

    assert (
        await outcome(authenticator, f"Bearer {tampered}")
        == "token rejected: InvalidSignatureError"
    )
    identity = await authenticator.authenticate(f"Bearer {token}", SERVICE_URL)
    assert identity.subject == "Practitioner/7"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (None, "no Authorization header"),
        ("", "no Authorization header"),
        ("Basic dXNlcjpwYXNzd29yZA==", "not a bearer token"),
        ("Token {token}", "not a bearer token"),
        ("Bearer", "not a bearer token"),
        ("Bearer   ", "not a bearer token"),
        ("Bearer not-a-jwt", "undecodable token: DecodeError"),
        ("bearer {token}", ACCEPTED),
    ],
)
async def test_missing_header_and_non_bearer_schemes_are_refused(
    template: str | None, expected: str, authenticator: JwtAuthenticator, signing_key: SigningKey
) -> None:
    authorization = template and template.format(token=signing_key.sign(claims()))
    assert await outcome(authenticator, authorization) == expected


@pytest.mark.parametrize(
    ("tenant", "expected"),
    [("north", ACCEPTED), ("south", "tenant mismatch"), (None, "tenant mismatch")],
)
async def test_configured_tenant_must_match_the_token(
    tenant: str | None,
    expected: str,
    jwks_server: JwksServer,
    make_authenticator: MakeAuthenticator,
    signing_key: SigningKey,
) -> None:
    client = TrustedClient(iss=TEST_ISSUER, jwks_url=jwks_server.url, tenant="north")
    token_claims = claims() if tenant is None else claims(tenant=tenant)
    outcome_ = await outcome(make_authenticator(client), bearer(signing_key, token_claims))
    assert outcome_ == expected


async def test_jku_not_allow_listed_is_never_fetched(
    authenticator: JwtAuthenticator,
    jwks_server: JwksServer,
    second_jwks_server: JwksServer,
) -> None:
    outsider = SigningKey("ES384")
    second_jwks_server.keys = [outsider]

    authorization = bearer(outsider, jku=second_jwks_server.url)

    assert await outcome(authenticator, authorization) == "no key for kid"
    assert second_jwks_server.fetches == 0
    assert jwks_server.fetches == 1


async def test_allow_listed_jku_is_used(
    jwks_server: JwksServer,
    second_jwks_server: JwksServer,
    make_authenticator: MakeAuthenticator,
) -> None:
    rotated = SigningKey("ES384")
    second_jwks_server.keys = [rotated]
    client = TrustedClient(
        iss=TEST_ISSUER, jwks_url=jwks_server.url, allowed_jku=(second_jwks_server.url,)
    )

    authorization = bearer(rotated, jku=second_jwks_server.url)

    assert await outcome(make_authenticator(client), authorization) == ACCEPTED
    assert second_jwks_server.fetches == 1
    assert jwks_server.fetches == 0


@pytest.mark.parametrize("algorithm", ["ES384", "RS384"])
async def test_inline_jwks_from_the_clients_file_works_without_any_jwks_server(
    algorithm: str, tmp_path: Path, make_authenticator: MakeAuthenticator
) -> None:
    key = key_for(algorithm)
    clients_file = tmp_path / "clients.yaml"
    clients_file.write_text(yaml.safe_dump([{"iss": TEST_ISSUER, "jwks": jwks(key)}]))
    authenticator = make_authenticator(*load_trusted_clients(clients_file).values())

    assert await outcome(authenticator, bearer(key)) == ACCEPTED
    assert await outcome(authenticator, bearer(SigningKey("ES384"))) == "no key for kid"


@pytest.mark.parametrize(
    "entry",
    [
        {"iss": TEST_ISSUER, "jwks_url": "file:///etc/jwks.json"},
        {"iss": TEST_ISSUER, "jwks_url": "/jwks"},
        {"iss": TEST_ISSUER, "allowed_jku": ["keys.example.org/jwks"]},
        {"iss": TEST_ISSUER},
    ],
    ids=["file-url", "relative-url", "jku-without-scheme", "no-keys"],
)
def test_clients_file_refuses_clients_without_usable_key_sources(entry: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        parse_trusted_clients([entry])


async def test_jwk_whose_alg_differs_from_the_header_alg_is_refused(
    make_authenticator: MakeAuthenticator,
) -> None:
    key = key_for("RS256")
    published = {**key.public_jwk, "alg": "RS384"}
    authenticator = make_authenticator(TrustedClient(iss=TEST_ISSUER, jwks={"keys": [published]}))
    assert await outcome(authenticator, bearer(key)) == "key is not for this algorithm"


@pytest.mark.parametrize(
    ("jwk_has_alg", "expected"),
    [(True, "key is not for this algorithm"), (False, "token rejected: InvalidKeyError")],
)
async def test_ec_key_used_with_an_rs_algorithm_is_refused(
    jwk_has_alg: bool, expected: str, make_authenticator: MakeAuthenticator
) -> None:
    ec_key, rsa_key = key_for("ES384"), key_for("RS384")
    published = ec_key.public_jwk if jwk_has_alg else without(ec_key.public_jwk, "alg")
    authenticator = make_authenticator(TrustedClient(iss=TEST_ISSUER, jwks={"keys": [published]}))
    assert await outcome(authenticator, bearer(rsa_key, kid=ec_key.kid)) == expected


@pytest.mark.filterwarnings("ignore::jwt.InsecureKeyLengthWarning")
async def test_rsa_key_shorter_than_2048_bits_is_refused(
    make_authenticator: MakeAuthenticator,
) -> None:
    weak = SigningKey("RS384", private_key=rsa.generate_private_key(65537, 1024))
    authenticator = make_authenticator(TrustedClient(iss=TEST_ISSUER, jwks=jwks(weak)))
    assert await outcome(authenticator, bearer(weak)) == "token rejected: InvalidKeyError"


async def test_failed_jwks_fetch_is_not_retried_within_min_refresh(jwks_clock: FakeClock) -> None:
    requests: list[httpx.Request] = []

    def unavailable(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(503)

    async with httpx.AsyncClient(transport=httpx.MockTransport(unavailable)) as http:
        # A generous fetch timeout: the key server is a thread of this busy test process.
        cache = JwksCache(http, ttl=3600, min_refresh=MIN_REFRESH, timeout=10, clock=jwks_clock)
        for _ in range(3):
            assert await cache.key("https://keys.example.org/jwks", "kid") is None
        assert len(requests) == 1
        jwks_clock.now += MIN_REFRESH
        assert await cache.key("https://keys.example.org/jwks", "kid") is None
        assert len(requests) == 2


async def test_malformed_jwks_keeps_the_last_good_keys(
    jwks_clock: FakeClock, signing_key: SigningKey
) -> None:
    documents: list[Any] = [jwks(signing_key), {"keys": 5}]

    def serve(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=documents.pop(0))

    async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
        cache = JwksCache(http, ttl=60, min_refresh=MIN_REFRESH, clock=jwks_clock)
        assert await cache.key("https://keys.example.org/jwks", signing_key.kid) is not None
        jwks_clock.now += 61
        key = await cache.key("https://keys.example.org/jwks", signing_key.kid)
    assert documents == []
    assert key == signing_key.public_jwk


@pytest.mark.parametrize(
    "document",
    [{"keys": 5}, [], "keys", {"keys": [{"kid": ["a"], "kty": "EC"}, "junk"]}, {}],
    ids=["keys-not-a-list", "list", "string", "bad-entries", "empty"],
)
def test_index_keys_ignores_what_is_not_a_signing_key_set(document: Any) -> None:
    assert index_keys(document) == {}


def test_index_keys_keeps_signing_keys_by_kid(signing_key: SigningKey) -> None:
    encryption = {**SigningKey("ES384").public_jwk, "use": "enc"}
    indexed = index_keys({"keys": [encryption, signing_key.public_jwk]})
    assert indexed == {signing_key.kid: signing_key.public_jwk, None: signing_key.public_jwk}


async def test_an_sqlite_store_keeps_the_replay_memory_in_a_file_of_its_own(
    tmp_path: Path,
) -> None:
    """Two workers of one SQLite store share the memory in ``<store>.jwt-replay``, and it takes
    tokens while another writer holds the store's own write lock (a prediction being appended)."""
    url = f"sqlite:///{tmp_path / 'bedside.db'}"
    stores = [make_engine(url), make_engine(url)]
    create_tables(stores[0])
    memories = [replay_engine(store) for store in stores]
    holder = sqlite3.connect(tmp_path / "bedside.db", isolation_level=None)
    try:
        assert all(memory is not store for memory, store in zip(memories, stores, strict=True))
        assert (tmp_path / "bedside.db.jwt-replay").is_file()
        first, second = (SqlReplayGuard(memory, bound_seconds=2) for memory in memories)
        expires = datetime.now(UTC) + timedelta(minutes=5)
        holder.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        assert await first.first_use(TEST_ISSUER, "jti-1", expires)
        assert not await second.first_use(TEST_ISSUER, "jti-1", expires)
        assert await second.first_use(TEST_ISSUER, "jti-2", expires)
        assert time.monotonic() - started < 1.5, "the store's lock must not delay the memory"
        holder.execute("ROLLBACK")
        with Session(stores[0]) as session:
            assert session.exec(select(SeenToken)).all() == []
        with Session(memories[1]) as session:
            assert len(session.exec(select(SeenToken)).all()) == 2
    finally:
        holder.close()
        for engine in (*memories, *stores):
            engine.dispose()


def test_an_in_memory_store_keeps_the_replay_memory_itself() -> None:
    memory_store = make_engine("sqlite://")
    try:
        assert replay_engine(memory_store) is memory_store
    finally:
        memory_store.dispose()


async def test_postgresql_remembers_tokens_in_the_store_without_waiting_for_the_wal_flush(
    engine: Engine,
) -> None:
    """The memory is the store's own table, shared by every engine on the database, written
    through connections whose commits do not wait for the flush; the store's do."""
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's commit setting")
    memory = replay_engine(engine)
    try:
        assert memory is not engine and memory.url == engine.url
        expires = datetime.now(UTC) + timedelta(minutes=5)
        assert await SqlReplayGuard(memory).first_use(TEST_ISSUER, "jti-async", expires)
        assert not await SqlReplayGuard(engine).first_use(TEST_ISSUER, "jti-async", expires)
        with memory.connect() as connection:
            assert connection.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
    finally:
        memory.dispose()


async def test_the_postgresql_replay_memory_holds_at_most_two_connections_per_process(
    engine: Engine,
) -> None:
    """docs/deploy.md counts 22 connections per worker: the store's 20 and these 2. Forty
    concurrent calls are served through them (one writer thread inserts for all)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("a server database's connection count")
    memory = replay_engine(engine)
    opened: list[object] = []
    event.listen(memory, "connect", lambda connection, _record: opened.append(connection))
    try:
        assert memory.pool.size() + memory.pool._max_overflow == 2  # type: ignore[attr-defined]
        expires = datetime.now(UTC) + timedelta(minutes=5)
        guard = SqlReplayGuard(memory)
        answers = await asyncio.gather(
            *(guard.first_use(TEST_ISSUER, f"jti-pool-{i}", expires) for i in range(40))
        )
        assert answers == [True] * 40
        assert 1 <= len(opened) <= 2
    finally:
        memory.dispose()


def _open_replay_memory(url: str, start: Any) -> None:
    start.wait(timeout=30)
    store = make_engine(url)
    memory = replay_engine(store)
    with memory.connect() as connection:
        connection.exec_driver_sql("SELECT count(*) FROM seen_token").scalar()
    memory.dispose()
    store.dispose()


def test_workers_starting_together_all_open_a_new_replay_memory(tmp_path: Path) -> None:
    """Each worker creates the file as it starts; turning a new SQLite file to WAL needs it
    alone, so workers starting at the same moment must take turns, not fail to start."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    start = context.Barrier(4)  # passed together, once every worker has imported everything
    url = f"sqlite:///{tmp_path / 'bedside.db'}"
    workers = [context.Process(target=_open_replay_memory, args=(url, start)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
