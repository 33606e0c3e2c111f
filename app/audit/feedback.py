"""Clinician feedback on cards, stored idempotently (a re-sent entry is a duplicate, not a row)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from uuid import UUID

import anyio
import orjson
from sqlalchemy import Text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel

from app.store.timestamps import UtcDateTime
from cds_hooks.auth.identity import ClientIdentity
from cds_hooks.feedback import FeedbackReceipt
from cds_hooks.models import FeedbackEntry


class FeedbackRecord(SQLModel, table=True):
    __tablename__ = "feedback"

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(max_length=64, unique=True)
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


def feedback_row(
    service_id: str, entry: FeedbackEntry, client: ClientIdentity
) -> dict[str, object]:
    """The table row for one entry; its dedupe key covers everything the client said."""
    reason = entry.override_reason.reason if entry.override_reason else None
    comment = entry.override_reason.user_comment if entry.override_reason else None
    accepted = sorted(suggestion.id for suggestion in entry.accepted_suggestions)
    outcome_timestamp = entry.outcome_timestamp.astimezone(UTC)
    canonical = orjson.dumps(
        [
            service_id,
            str(entry.card),
            entry.outcome,
            accepted,
            reason.model_dump() if reason else None,
            comment,
            outcome_timestamp.isoformat(),
        ]
    )
    return {
        "dedupe_key": hashlib.sha256(canonical).hexdigest(),
        "service_id": service_id,
        "card_uuid": entry.card,
        "outcome": entry.outcome,
        "override_system": reason.system if reason else None,
        "override_code": reason.code if reason else None,
        "override_display": reason.display if reason else None,
        "user_comment": comment,
        "accepted_suggestions": orjson.dumps(accepted).decode(),
        "outcome_timestamp": outcome_timestamp,
        "received_at": datetime.now(UTC),
        "client_iss": client.iss,
    }


class SqlFeedbackStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        dialect = engine.dialect.name
        self._insert = postgresql_insert if dialect == "postgresql" else sqlite_insert

    async def store(
        self, service_id: str, entries: list[FeedbackEntry], client: ClientIdentity
    ) -> FeedbackReceipt:
        rows = [feedback_row(service_id, entry, client) for entry in entries]
        return await anyio.to_thread.run_sync(self._insert_rows, rows)

    def _insert_rows(self, rows: list[dict[str, object]]) -> FeedbackReceipt:
        stored = 0
        with self._engine.begin() as connection:
            for row in rows:
                statement = (
                    self._insert(FeedbackRecord)
                    .values(**row)
                    .on_conflict_do_nothing(index_elements=["dedupe_key"])
                    .returning(FeedbackRecord.id)
                )
                stored += len(connection.execute(statement).all())
        return FeedbackReceipt(stored=stored, duplicates=len(rows) - stored)
