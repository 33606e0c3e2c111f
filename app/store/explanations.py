"""The explanation behind each card, so that the card's link can show it on any worker.

Holds no patient identifier: the card uuid, the model, the risk and each feature's value and
SHAP contribution. (The audit store's prediction record will absorb this table.)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import anyio
import orjson
from sqlalchemy import Text
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel

from app.store.timestamps import UtcDateTime


class ExplanationRecord(SQLModel, table=True):
    __tablename__ = "explanation"

    card_uuid: UUID = Field(primary_key=True)
    model: str = Field(max_length=128)
    version: str = Field(max_length=64)
    package_hash: str = Field(max_length=64)
    created_at: datetime = Field(sa_type=UtcDateTime)
    probability: float
    band: str = Field(max_length=32)
    base_value: float
    contributions: str = Field(sa_type=Text, description="JSON list, largest effect first")
    missing: str = Field(sa_type=Text, description="JSON list of missing input names")


class SqlExplanationStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def save(self, record: ExplanationRecord) -> None:
        await anyio.to_thread.run_sync(self._save, record)

    def _save(self, record: ExplanationRecord) -> None:
        with Session(self._engine) as session:
            session.add(record)
            session.commit()

    async def get(self, card_uuid: UUID) -> ExplanationRecord | None:
        return await anyio.to_thread.run_sync(self._get, card_uuid)

    def _get(self, card_uuid: UUID) -> ExplanationRecord | None:
        with Session(self._engine) as session:
            return session.get(ExplanationRecord, card_uuid)


def explanation_record(
    card_uuid: UUID,
    package: Any,
    prediction: Any,
    feature_rows: list[dict[str, Any]],
) -> ExplanationRecord:
    return ExplanationRecord(
        card_uuid=card_uuid,
        model=package.name,
        version=package.version,
        package_hash=package.package_hash,
        created_at=datetime.now(UTC),
        probability=prediction.probability,
        band=prediction.band.name,
        base_value=prediction.base_value,
        contributions=orjson.dumps(feature_rows).decode(),
        missing=orjson.dumps(list(prediction.missing)).decode(),
    )
