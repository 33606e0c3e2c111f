"""Service settings, read from ``BEDSIDE_*`` environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

# Secrets may come from files named after the variable, lower case (``bedside_audit_hmac_key``),
# in this folder: Docker and Kubernetes mount secrets there. An environment variable wins.
DEFAULT_SECRETS_DIR = Path("/run/secrets")


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
    validation_memo_entries: int = Field(
        default=50000,
        ge=0,
        description="Validation results remembered by resource content (about 200 bytes "
        "each), so that resources an EHR sends again are not validated again; 0 turns it off.",
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
    report_min_cell: int = Field(
        default=10, ge=1, description="Reports show no number for a cell of fewer predictions."
    )
    report_min_events: int = Field(
        default=100, ge=1, description="Fewer events or non-events mark a group underpowered."
    )
    report_disparity_warning: tuple[float, float] = Field(
        default=(0.80, 1.25), description="Disparity ratios outside this band warn (JSON pair)."
    )
    report_disparity_critical: tuple[float, float] = Field(
        default=(0.67, 1.5), description="Disparity ratios outside this band are critical."
    )
    report_override_rate_alert: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="`bedside report` alerts when an override rate's 95% interval lies above.",
    )
    drift_psi_warn: float = Field(default=0.1, gt=0, description="PSI at or above: warn.")
    drift_psi_alert: float = Field(default=0.25, gt=0, description="PSI at or above: alert.")
    drift_missing_difference: float = Field(
        default=0.10, ge=0, le=1, description="Missing-rate change from the reference: alert."
    )
    drift_feature_share: float = Field(
        default=0.30, gt=0, le=1, description="Share of features alerting that raises drift."
    )

    rate_limit_per_minute: int = Field(
        default=60000,
        ge=0,
        description="Requests a minute each client may make (token bucket per worker): a CDS "
        "client by its verified iss, others by API token or address; 0 turns limiting off.",
    )
    rate_limit_burst: int | None = Field(
        default=None,
        gt=0,
        description="Requests a client may send at once before the per-minute rate applies "
        "(unset: the per-minute number).",
    )
    secrets_dir: Path | None = Field(
        default_factory=lambda: secrets_folder(),
        description="Folder of secret files named after the variables, lower case (e.g. "
        "bedside_audit_hmac_key): the environment variable BEDSIDE_SECRETS_DIR (it is read "
        "before the other settings, so only from the environment), else /run/secrets if present.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then environment variables, then secret files in the secrets folder."""
        folder = secrets_folder()
        secrets = SecretsSettingsSource(settings_cls, secrets_dir=folder)
        return init_settings, env_settings, dotenv_settings, secrets

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @model_validator(mode="after")
    def _coherent_report_thresholds(self) -> Settings:
        (warn_low, warn_high), (crit_low, crit_high) = (
            self.report_disparity_warning,
            self.report_disparity_critical,
        )
        if not (0 < crit_low <= warn_low < 1 < warn_high <= crit_high):
            raise ValueError(
                "disparity bands must hold 1, the critical band the warning band: "
                "0 < critical low <= warning low < 1 < warning high <= critical high"
            )
        if self.drift_psi_warn > self.drift_psi_alert:
            raise ValueError("BEDSIDE_DRIFT_PSI_WARN must not exceed BEDSIDE_DRIFT_PSI_ALERT")
        return self

    @property
    def public_base(self) -> str:
        """The public URL without a trailing slash."""
        return self.public_url.rstrip("/")


def secrets_folder() -> Path | None:
    """``BEDSIDE_SECRETS_DIR`` when set (it must be a folder), else /run/secrets when it exists."""
    configured = os.environ.get("BEDSIDE_SECRETS_DIR")
    if configured:
        if not Path(configured).is_dir():
            raise SettingsError(f"BEDSIDE_SECRETS_DIR {configured} is not a folder")
        return Path(configured)
    return DEFAULT_SECRETS_DIR if DEFAULT_SECRETS_DIR.is_dir() else None
