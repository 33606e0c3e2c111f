"""The allow-list of trusted CDS clients (``BEDSIDE_CLIENTS_FILE``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Self
from urllib.parse import urlsplit

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, model_validator


def _http_url(value: str) -> str:
    """Kept verbatim (a jku must match it exactly), but it must be an absolute http(s) URL."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{value!r} is not an absolute http(s) URL")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]


class TrustedClient(BaseModel):
    """One trusted issuer: its keys come from ``jwks_url``, an inline ``jwks``, or both."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    iss: str = Field(min_length=1)
    jwks_url: HttpUrl | None = None
    jwks: dict[str, Any] | None = None
    tenant: str | None = None
    allowed_jku: tuple[HttpUrl, ...] = Field(
        default=(), description="jku header values trusted for this issuer."
    )

    @model_validator(mode="after")
    def _has_keys(self) -> Self:
        if not (self.jwks_url or self.jwks or self.allowed_jku):
            raise ValueError(f"client {self.iss!r} needs jwks_url, jwks or allowed_jku")
        if self.jwks is not None and not isinstance(self.jwks.get("keys"), list):
            raise ValueError(f"client {self.iss!r}: inline jwks must hold a 'keys' list")
        return self


_CLIENT_LIST = TypeAdapter(list[TrustedClient])


def parse_trusted_clients(raw: Any) -> dict[str, TrustedClient]:
    """Validate a decoded clients document (a list, or ``{"clients": [...]}``)."""
    if isinstance(raw, dict) and "clients" in raw:
        raw = raw["clients"]
    clients = _CLIENT_LIST.validate_python(raw or [])
    by_iss: dict[str, TrustedClient] = {}
    for client in clients:
        if client.iss in by_iss:
            raise ValueError(f"issuer {client.iss!r} is listed twice")
        by_iss[client.iss] = client
    return by_iss


def load_trusted_clients(path: Path) -> dict[str, TrustedClient]:
    """Read the clients file; JSON or YAML by extension (YAML is a superset, so either parses)."""
    text = path.read_text(encoding="utf-8")
    raw = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    return parse_trusted_clients(raw)
