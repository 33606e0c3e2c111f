"""Clinician feedback on cards: validated entries appended to the feedback chain.

A re-sent entry (same card, outcome, reason, comment, suggestions and time) is a duplicate, not
a row; a clinician who changes their mind sends a different entry, and both are kept. Feedback
for a card the store does not know is kept too (an orphan), with a warning.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.engine import Engine

from app.audit.ledger import locked_chain
from app.audit.tables import FeedbackRecord, PredictionRecord
from app.store.database import call_bound, run_bounded
from cds_hooks.auth.identity import ClientIdentity
from cds_hooks.feedback import FeedbackReceipt
from cds_hooks.models import FeedbackEntry

log = logging.getLogger(__name__)


def feedback_row(service_id: str, entry: FeedbackEntry, client: ClientIdentity) -> dict[str, Any]:
    """The record for one entry; its dedupe key covers everything the client said."""
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
    def __init__(self, engine: Engine, timeout_seconds: float) -> None:
        self._engine = engine
        self._timeout = timeout_seconds

    async def store(
        self, service_id: str, entries: list[FeedbackEntry], client: ClientIdentity
    ) -> FeedbackReceipt:
        rows = [feedback_row(service_id, entry, client) for entry in entries]
        return await run_bounded(call_bound(self._timeout), self._append, rows)

    def _append(self, rows: list[dict[str, Any]]) -> FeedbackReceipt:
        with locked_chain(self._engine, "feedback", self._timeout) as chain:
            keys = [row["dedupe_key"] for row in rows]
            seen = set(
                chain.connection.execute(
                    select(FeedbackRecord.dedupe_key).where(
                        FeedbackRecord.dedupe_key.in_(keys)  # type: ignore[attr-defined]
                    )
                ).scalars()
            )
            cards = {row["card_uuid"] for row in rows}
            known = set(
                chain.connection.execute(
                    select(PredictionRecord.card_uuid).where(
                        PredictionRecord.card_uuid.in_(cards)  # type: ignore[attr-defined]
                    )
                ).scalars()
            )
            stored = orphans = 0
            for row in rows:
                if row["dedupe_key"] in seen:
                    continue
                seen.add(row["dedupe_key"])
                chain.append(row)
                stored += 1
                if row["card_uuid"] not in known:
                    orphans += 1
                    log.warning("feedback for a card with no prediction on record; kept")
        return FeedbackReceipt(stored=stored, duplicates=len(rows) - stored, orphans=orphans)
