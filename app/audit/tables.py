"""The audit store's tables: predictions, feedback, outcomes and the access log, each a hash
chain (``sequence``, ``previous_hash``, ``record_hash``), and the head of each chain.

Patients, encounters, clinicians and source resources appear only as keyed HMACs
(:mod:`app.audit.pseudonym`); no names, addresses, raw identifiers or tokens are stored.
"""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

from sqlalchemy import Index, Text
from sqlmodel import Field, SQLModel

from app.store.timestamps import UtcDateTime

KEY_LENGTH = 64  # hex SHA-256 / HMAC-SHA-256


class Chained(SQLModel):
    """The link columns every chained table carries."""

    sequence: int = Field(unique=True, description="position in its chain, from 1")
    previous_hash: str = Field(max_length=KEY_LENGTH)
    record_hash: str = Field(max_length=KEY_LENGTH)


class ChainHead(SQLModel, table=True):
    """Where each chain ends (``head_*``) and, after a retention purge, where it now starts."""

    __tablename__ = "audit_chain"

    name: str = Field(primary_key=True, max_length=32)
    head_sequence: int
    head_hash: str = Field(max_length=KEY_LENGTH)
    base_sequence: int = Field(description="last purged record (0: nothing purged)")
    base_hash: str = Field(max_length=KEY_LENGTH)


class PredictionRecord(Chained, table=True):
    """One scored hook call, written before its card is returned (also when it yields none)."""

    __tablename__ = "prediction"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(sa_type=UtcDateTime, index=True)
    card_uuid: UUID = Field(unique=True)
    card_shown: bool = Field(description="false when the package suppresses the card")
    service_id: str = Field(max_length=128)
    hook: str = Field(max_length=64)
    hook_instance: str = Field(max_length=128)
    client_iss: str = Field(max_length=512)
    model: str = Field(max_length=128, index=True)
    model_version: str = Field(max_length=64)
    package_hash: str = Field(max_length=KEY_LENGTH)
    patient_key: str = Field(max_length=KEY_LENGTH, index=True)
    encounter_key: str | None = Field(default=None, max_length=KEY_LENGTH, index=True)
    user_key: str | None = Field(default=None, max_length=KEY_LENGTH)
    index_time: datetime = Field(sa_type=UtcDateTime)
    probability: float
    raw_probability: float
    band: str = Field(max_length=32)
    base_value: float
    features: str = Field(sa_type=Text, description="JSON: feature → value (null: missing)")
    missing: str = Field(sa_type=Text, description="JSON list of missing feature names")
    provenance: str = Field(sa_type=Text, description="JSON: feature → provenance")
    quality_notes: str = Field(sa_type=Text, description="JSON list of data-quality notes")
    contributions: str = Field(sa_type=Text, description="JSON list, largest effect first")
    drivers: str = Field(sa_type=Text, description="JSON list of the drivers on the card")
    sex: str = Field(max_length=64)
    age_band: str = Field(max_length=16)
    race: str = Field(max_length=128)
    ethnicity: str = Field(max_length=128)
    language: str = Field(max_length=64)
    map_ms: float
    score_ms: float
    total_ms: float


class FeedbackRecord(Chained, table=True):
    """One clinician response to a card; a re-sent entry is a duplicate, not a row."""

    __tablename__ = "feedback"

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(max_length=KEY_LENGTH, unique=True)
    service_id: str = Field(max_length=128, index=True)
    card_uuid: UUID = Field(index=True)
    outcome: str = Field(max_length=16)
    override_system: str | None = None
    override_code: str | None = None
    override_display: str | None = None
    user_comment: str | None = Field(default=None, sa_type=Text)
    accepted_suggestions: str = Field(default="[]", description="JSON list of suggestion ids")
    outcome_timestamp: datetime = Field(sa_type=UtcDateTime)
    received_at: datetime = Field(sa_type=UtcDateTime)
    client_iss: str = Field(max_length=512)


class OutcomeRecord(Chained, table=True):
    """What happened to the patient afterwards (a label), for an encounter or a prediction."""

    __tablename__ = "outcome"

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(max_length=KEY_LENGTH, unique=True)
    encounter_key: str | None = Field(default=None, max_length=KEY_LENGTH, index=True)
    card_uuid: UUID | None = Field(default=None, index=True)
    label: str = Field(max_length=64)
    value: float
    observed_at: datetime = Field(sa_type=UtcDateTime)
    received_at: datetime = Field(sa_type=UtcDateTime, index=True)
    source: str = Field(max_length=256, description="api:<token name> or sync:<where from>")


class AccessRecord(Chained, table=True):
    """Who read which audit data or report, when, with which parameters (non-repudiation)."""

    __tablename__ = "access_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=UtcDateTime, index=True)
    actor: str = Field(max_length=128)
    role: str = Field(max_length=32)
    action: str = Field(max_length=128)
    parameters: str = Field(sa_type=Text, description="JSON of the query parameters")


class ApiToken(SQLModel, table=True):
    """A bearer token for the report and ingest APIs; only its SHA-256 is kept."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=128, unique=True)
    role: str = Field(max_length=32)
    token_hash: str = Field(max_length=KEY_LENGTH, unique=True)
    created_at: datetime = Field(sa_type=UtcDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class ModelVersionRecord(SQLModel, table=True):
    """Each model package ever served: when it first and last started, what it was trained on and
    how it performed, so that reports can say which version made which prediction and when it
    changed."""

    __tablename__ = "model_version"

    id: int | None = Field(default=None, primary_key=True)
    model: str = Field(max_length=128, index=True)
    version: str = Field(max_length=64)
    package_hash: str = Field(max_length=KEY_LENGTH, unique=True)
    trained_at: str = Field(max_length=64)
    first_started_at: datetime = Field(sa_type=UtcDateTime)
    last_started_at: datetime = Field(sa_type=UtcDateTime)
    fingerprint: str = Field(sa_type=Text, description="JSON: training data hash, counts, dates")
    performance: str = Field(sa_type=Text, description="JSON: the model card's test performance")
    reference: str | None = Field(
        default=None, sa_type=Text, description="JSON: the package's training reference (drift)"
    )


class ReportFact(SQLModel, table=True):
    """The report index's row of one prediction (:mod:`app.audit.report_index`): derived from
    the chains, not part of them, written in the same transaction; what the reports group and
    count, with the card's latest clinician response."""

    __tablename__ = "report_fact"
    __table_args__ = (Index("ix_report_fact_model_created", "model", "created_at"),)

    sequence: int = Field(primary_key=True, description="the prediction's sequence")
    created_at: datetime = Field(sa_type=UtcDateTime)
    model: str = Field(max_length=128)
    model_version: str = Field(max_length=64)
    package_hash: str = Field(max_length=KEY_LENGTH)
    card_uuid: UUID = Field(unique=True)
    encounter_key: str | None = Field(default=None, max_length=KEY_LENGTH, index=True)
    card_shown: bool
    band: str = Field(max_length=32)
    probability: float
    sex: str = Field(max_length=64)
    age_band: str = Field(max_length=16)
    race: str = Field(max_length=128)
    ethnicity: str = Field(max_length=128)
    language: str = Field(max_length=64)
    response: str | None = Field(default=None, max_length=16, description="latest answer")
    response_sequence: int | None = Field(default=None, description="its feedback sequence")
    override_system: str | None = None
    override_code: str | None = None
    override_display: str | None = None
    commented: bool = Field(default=False, description="the latest answer has a comment")
    first_response_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class ReportLabel(SQLModel, table=True):
    """The latest outcome value of a prediction per label: by its card and by its encounter (the
    card's wins in reports)."""

    __tablename__ = "report_label"

    label: str = Field(primary_key=True, max_length=64)
    sequence: int = Field(primary_key=True, description="the prediction's sequence")
    card_value: float | None = None
    encounter_value: float | None = None


class FeatureBinCount(SQLModel, table=True):
    """Predictions per (package, UTC day, feature, reference bin): the drift report's input,
    binned at write time with the package's training deciles (MISSING for a missing value)."""

    __tablename__ = "feature_bin_count"

    package_hash: str = Field(primary_key=True, max_length=KEY_LENGTH)
    day: date = Field(primary_key=True)
    feature: str = Field(primary_key=True, max_length=128)
    bin: int = Field(primary_key=True)
    count: int


CHAINS: dict[str, type[Chained]] = {
    "prediction": PredictionRecord,
    "feedback": FeedbackRecord,
    "outcome": OutcomeRecord,
    "access": AccessRecord,
}
