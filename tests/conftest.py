"""Shared fixtures: a database per test (SQLite, or PostgreSQL when configured), keys, servers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.factory import create_app
from app.settings import Settings
from cds_hooks.registry import ServiceRegistry
from tests.support.cds_client import CdsTestClient
from tests.support.fhir_server import FhirTestServer
from tests.support.keys import SigningKey
from tests.support.servers import free_port, serve_on_loopback
from tests.support.services import build_test_registry

TEST_ISSUER = "https://ehr.example.org/cds-client"
TEST_AUDIT_KEY = "test-audit-key-0123456789abcdef0123456789abcdef"


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a private schema in BEDSIDE_TEST_DATABASE_URL."""
    server_url = os.environ.get("BEDSIDE_TEST_DATABASE_URL")
    if not server_url:
        yield f"sqlite:///{tmp_path / 'bedside.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(server_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in server_url else "?"
    try:
        yield f"{server_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return SigningKey("ES384")


@dataclass
class JwksServer:
    """Publishes a mutable key set at ``/jwks`` and counts how often it was fetched."""

    keys: list[SigningKey] = field(default_factory=list)
    fetches: int = 0
    url: str = ""

    def app(self) -> Starlette:
        async def jwks(_request: Request) -> JSONResponse:
            self.fetches += 1
            return JSONResponse({"keys": [key.public_jwk for key in self.keys]})

        return Starlette(routes=[Route("/jwks", jwks)])


@pytest.fixture
def jwks_server(signing_key: SigningKey) -> Iterator[JwksServer]:
    server = JwksServer(keys=[signing_key])
    with serve_on_loopback(server.app()) as base_url:
        server.url = f"{base_url}/jwks"
        yield server


@pytest.fixture
def fhir_server() -> Iterator[FhirTestServer]:
    server = FhirTestServer()
    with serve_on_loopback(server.app(), shutdown_grace=0.2) as base_url:
        server.base_url = f"{base_url}/fhir"
        yield server


@pytest.fixture
def clients_file(tmp_path: Path, jwks_server: JwksServer) -> Path:
    path = tmp_path / "clients.yaml"
    path.write_text(f"- iss: {TEST_ISSUER}\n  jwks_url: {jwks_server.url}\n", encoding="utf-8")
    return path


@pytest.fixture
def make_settings(database_url: str, clients_file: Path) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "clients_file": clients_file,
            "public_url": "http://127.0.0.1:8000",
            "audit_hmac_key": TEST_AUDIT_KEY,
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def run_bedside(
    make_settings: Callable[..., Settings], signing_key: SigningKey
) -> Callable[..., Any]:
    """Start Bedside in uvicorn on loopback; yields a signing CDS client for it."""

    @contextmanager
    def run(
        registry: ServiceRegistry | None = None,
        packages: list[Any] | None = None,
        **overrides: Any,
    ) -> Iterator[CdsTestClient]:
        port = free_port()
        overrides.setdefault("public_url", f"http://127.0.0.1:{port}")
        settings = make_settings(**overrides)
        if packages is not None:
            app = create_app(settings, packages=packages)
        else:
            app = create_app(settings, registry or build_test_registry())
        with serve_on_loopback(app, port=port) as base_url:
            client = CdsTestClient(base_url, signing_key, TEST_ISSUER)
            try:
                yield client
            finally:
                client.close()

    return run


@pytest.fixture
def bedside(run_bedside: Callable[..., Any]) -> Iterator[CdsTestClient]:
    with run_bedside() as client:
        yield client
