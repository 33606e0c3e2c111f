"""The prediction record: what the model saw and said for one hook call, pseudonymised.

:class:`PredictionAudit` appends it to the prediction chain; ``/readyz`` asks it whether the store
takes writes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import anyio
import orjson
from prometheus_client import Counter
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from app.audit.group_commit import chain_writer
from app.audit.ledger import probe_writable
from app.audit.pseudonym import Pseudonymizer
from app.audit.tables import PredictionRecord
from app.models.package import ModelPackage
from app.models.predictor import Prediction
from app.store.database import StoreUnavailable, call_bound, run_bounded
from cds_hooks.registry import HookCall
from fhir_mappers.row import FeatureRow

log = logging.getLogger(__name__)
RESOURCE_KEY_CHARS = 32  # 128 bits of HMAC per source-resource pseudonym
# Subgroup columns and their widths: free text (a race given as text) is cut to fit.
ATTRIBUTE_WIDTHS = {"sex": 64, "age_band": 16, "race": 128, "ethnicity": 128, "language": 64}


def _fit(value: str | None, name: str) -> str:
    text = (value or "unknown").replace("\x00", "")
    return text[: ATTRIBUTE_WIDTHS[name]] or "unknown"


@dataclass(frozen=True)
class Timings:
    map_ms: float
    score_ms: float
    total_ms: float


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def pseudonymous_reference(pseudonyms: Pseudonymizer, reference: str | None) -> str | None:
    """``Observation/abc`` → ``Observation/<HMAC>``: the type stays readable, the id does not."""
    if not reference:
        return reference
    resource_type, _, resource_id = reference.rpartition("/")
    kind = resource_type or "Resource"
    return f"{kind}/{pseudonyms.key_for(kind, resource_id)[:RESOURCE_KEY_CHARS]}"


def _optional_key(pseudonyms: Pseudonymizer, kind: str, value: object) -> str | None:
    return pseudonyms.key_for(kind, value) if isinstance(value, str) and value else None


def prediction_row(
    call: HookCall,
    package: ModelPackage,
    features: FeatureRow,
    prediction: Prediction,
    explanation: list[dict[str, Any]],
    card_uuid: UUID,
    card_shown: bool,
    timings: Timings,
    pseudonyms: Pseudonymizer,
) -> dict[str, Any]:
    """The prediction record's content; identifiers only as keyed HMACs."""
    context = call.request.context
    provenance = {
        name: {
            **item.to_dict(),
            "sources": [pseudonymous_reference(pseudonyms, ref) for ref in item.sources],
        }
        for name, item in features.provenance.items()
    }
    notes = [
        {**note.to_dict(), "resource": pseudonymous_reference(pseudonyms, note.resource)}
        for note in features.notes
    ]
    attributes = {name: _fit(features.attributes.get(name), name) for name in ATTRIBUTE_WIDTHS}
    return {
        "created_at": datetime.now(UTC),
        "card_uuid": card_uuid,
        "card_shown": card_shown,
        "service_id": call.service.id,
        "hook": call.request.hook,
        "hook_instance": str(call.request.hook_instance),
        "client_iss": call.client.iss,
        "model": package.name,
        "model_version": package.version,
        "package_hash": package.package_hash,
        "patient_key": pseudonyms.key_for("Patient", str(context["patientId"])),
        "encounter_key": _optional_key(pseudonyms, "Encounter", context.get("encounterId")),
        "user_key": _optional_key(pseudonyms, "User", context.get("userId")),
        "index_time": features.index_time.astimezone(UTC),
        "probability": float(prediction.probability),
        "raw_probability": float(prediction.raw_probability),
        "band": prediction.band.name,
        "base_value": float(prediction.base_value),
        "features": _json(prediction.values),
        "missing": _json(sorted(features.missing)),
        "provenance": _json(provenance),
        "quality_notes": _json(notes),
        "contributions": _json(explanation),
        "drivers": _json(
            [
                {"feature": d.feature, "text": d.text(), "contribution": d.contribution}
                for d in prediction.drivers
            ]
        ),
        **attributes,
        "map_ms": timings.map_ms,
        "score_ms": timings.score_ms,
        "total_ms": timings.total_ms,
    }


class PredictionAudit:
    """Durable, chained prediction records; failed writes are logged and counted."""

    def __init__(
        self,
        engine: Engine,
        pseudonyms: Pseudonymizer,
        timeout_seconds: float,
        failures: Counter | None = None,
    ) -> None:
        self.engine = engine
        self.pseudonyms = pseudonyms
        self.timeout = timeout_seconds
        self._failures = failures
        self._writer = chain_writer(engine, "prediction", timeout_seconds)

    async def record(self, row: dict[str, Any]) -> None:
        """Commit ``row`` to the chain; raises :class:`StoreUnavailable` when it cannot in time.

        Rows of concurrent calls are committed together (group commit). A write abandoned
        at the time limit may still commit afterwards: then a prediction is on record whose card
        was not returned, never the reverse.
        """
        try:
            await self._writer.write(row, call_bound(self.timeout))
        except StoreUnavailable as error:
            if self._failures is not None:
                self._failures.inc()
            # The cause is not logged: its SQL parameters are the record itself.
            log.error(
                "prediction could not be audited; no card is returned",
                extra={"error": str(error)},
            )
            raise

    async def writable(self, timeout_seconds: float) -> bool:
        """Whether the store can take the chain lock within ``timeout_seconds`` now."""
        return await anyio.to_thread.run_sync(
            probe_writable, self.engine, timeout_seconds, abandon_on_cancel=True
        )

    async def get(self, card_uuid: UUID) -> PredictionRecord | None:
        return await run_bounded(call_bound(self.timeout), self._get, card_uuid)

    def _get(self, card_uuid: UUID) -> PredictionRecord | None:
        with Session(self.engine) as session:
            statement = select(PredictionRecord).where(PredictionRecord.card_uuid == card_uuid)
            return session.exec(statement).first()
