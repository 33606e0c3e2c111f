"""The model versions a deployment has served, recorded at every start."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from app.audit.tables import ModelVersionRecord
from app.models.package import ModelPackage


def register_packages(engine: Engine, packages: list[ModelPackage]) -> None:
    """Record each package on its first start, and the time of every later start.

    Workers starting together may race to insert the same package: the loser updates instead.
    """
    now = datetime.now(UTC)
    for package in packages:
        try:
            with Session(engine) as session:
                session.add(
                    ModelVersionRecord(
                        model=package.name,
                        version=package.version,
                        package_hash=package.package_hash,
                        trained_at=str(package.card.get("date", "")),
                        first_started_at=now,
                        last_started_at=now,
                        fingerprint=orjson.dumps(package.fingerprint).decode(),
                        performance=orjson.dumps(package.card.get("performance", {})).decode(),
                        reference=orjson.dumps(package.reference).decode(),
                    )
                )
                session.commit()
        except IntegrityError:
            with engine.begin() as connection:
                connection.execute(
                    update(ModelVersionRecord)
                    .where(ModelVersionRecord.package_hash == package.package_hash)  # type: ignore[arg-type]
                    .values(last_started_at=now, reference=orjson.dumps(package.reference).decode())
                )


def model_versions(engine: Engine, model: str | None = None) -> list[ModelVersionRecord]:
    """Served versions, oldest first."""
    statement = select(ModelVersionRecord).order_by(ModelVersionRecord.first_started_at)
    if model:
        statement = statement.where(ModelVersionRecord.model == model)
    with Session(engine) as session:
        return list(session.exec(statement))
