"""Service settings, read from ``BEDSIDE_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the running service can be told; safe defaults for a local trial."""

    model_config = SettingsConfigDict(env_prefix="BEDSIDE_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///./var/bedside.db",
        description="SQLAlchemy URL of the audit store: an embedded SQLite file by default, "
        "postgresql+psycopg://… in production.",
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Base URL that CDS clients call; the JWT `aud` must be this plus the path.",
    )
    clients_file: Path | None = Field(
        default=None, description="JSON or YAML list of trusted CDS clients."
    )
    insecure_dev_auth: bool = Field(
        default=False, description="Accept unsigned requests. Local trials only."
    )
    model_dir: Path | None = Field(default=None, description="Folder of model packages.")
    audit_hmac_key: SecretStr | None = Field(
        default=None,
        description="Key (at least 32 bytes) for the pseudonymous patient, encounter and "
        "resource keys of the audit store; required unless the store is a local SQLite file.",
    )
    audit_write_timeout_seconds: float = Field(
        default=2.0,
        gt=0,
        description="Longest wait for the audit store to take a write; a card whose prediction "
        "cannot be recorded in time is not returned.",
    )
    audit_retention_days: int | None = Field(
        default=None,
        gt=0,
        description="Predictions, feedback and outcomes older than this are deleted by "
        "`bedside audit purge` (unset: kept until purged with --before).",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated browser origins allowed to call the CDS endpoints.",
    )
    max_body_bytes: int = Field(
        default=10 * 1024 * 1024, gt=0, description="Larger request bodies get 413."
    )
    fhir_budget_seconds: float = Field(
        default=1.5,
        gt=0,
        description="Wall-clock budget for all FHIR fetches one hook call makes.",
    )
    fhir_max_pages: int = Field(
        default=20, gt=0, description="Most searchset pages followed per prefetch key."
    )
    jwt_leeway_seconds: int = Field(
        default=5, ge=0, description="Clock skew allowed on exp, iat and nbf."
    )
    jwt_max_lifetime_seconds: int = Field(
        default=3600, gt=0, description="Tokens whose exp lies further ahead are refused."
    )
    jwks_cache_seconds: int = Field(default=3600, gt=0, description="JWKS cache lifetime.")
    jwks_min_refresh_seconds: float = Field(
        default=30.0, ge=0, description="Least time between two JWKS refetches for one client."
    )
    log_level: str = Field(default="INFO", description="Python log level.")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @property
    def public_base(self) -> str:
        """The public URL without a trailing slash."""
        return self.public_url.rstrip("/")
