"""Outcome records, appended to the outcome chain; a re-sent outcome is a duplicate.

An outcome refers to an encounter (stored as its keyed HMAC, like the prediction's) or to a
prediction by its card uuid. A corrected value is a new record; reports use the latest received.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy import select
from sqlalchemy.engine import Engine

from app.audit.ledger import locked_chain
from app.audit.pseudonym import Pseudonymizer
from app.audit.tables import OutcomeRecord
from app.store.database import call_bound, run_bounded


@dataclass(frozen=True)
class Outcome:
    label: str
    value: float
    observed_at: datetime
    encounter_id: str | None = None
    card_uuid: UUID | None = None


@dataclass(frozen=True)
class OutcomeReceipt:
    stored: int
    duplicates: int


def encounter_id_of(reference: str) -> str:
    """``Encounter/123``, an absolute URL ending so, or a bare ``123`` → ``123``."""
    return reference.rsplit("/", 1)[-1]


def outcome_row(outcome: Outcome, source: str, pseudonyms: Pseudonymizer) -> dict[str, Any]:
    if not math.isfinite(outcome.value):
        raise ValueError("an outcome value must be a finite number")
    encounter_key = (
        pseudonyms.key_for("Encounter", outcome.encounter_id) if outcome.encounter_id else None
    )
    observed_at = outcome.observed_at.astimezone(UTC)
    canonical = orjson.dumps(
        [
            encounter_key,
            str(outcome.card_uuid) if outcome.card_uuid else None,
            outcome.label,
            float(outcome.value),
            observed_at.isoformat(),
        ]
    )
    return {
        "dedupe_key": hashlib.sha256(canonical).hexdigest(),
        "encounter_key": encounter_key,
        "card_uuid": outcome.card_uuid,
        "label": outcome.label,
        "value": float(outcome.value),
        "observed_at": observed_at,
        "received_at": datetime.now(UTC),
        "source": source[:256],
    }


class OutcomeStore:
    def __init__(self, engine: Engine, pseudonyms: Pseudonymizer, timeout_seconds: float) -> None:
        self.engine = engine
        self.pseudonyms = pseudonyms
        self.timeout = timeout_seconds

    async def store(self, outcomes: list[Outcome], source: str) -> OutcomeReceipt:
        return await run_bounded(call_bound(self.timeout), self.store_sync, outcomes, source)

    def store_sync(self, outcomes: list[Outcome], source: str) -> OutcomeReceipt:
        rows = [outcome_row(outcome, source, self.pseudonyms) for outcome in outcomes]
        stored = 0
        with locked_chain(self.engine, "outcome", self.timeout) as chain:
            keys = [row["dedupe_key"] for row in rows]
            seen = set(
                chain.connection.execute(
                    select(OutcomeRecord.dedupe_key).where(
                        OutcomeRecord.dedupe_key.in_(keys)  # type: ignore[attr-defined]
                    )
                ).scalars()
            )
            for row in rows:
                if row["dedupe_key"] not in seen:
                    seen.add(row["dedupe_key"])
                    chain.append(row)
                    stored += 1
        return OutcomeReceipt(stored=stored, duplicates=len(rows) - stored)
