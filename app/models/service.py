"""CDS services defined by model packages: prefetch → features → prediction → audit → card.

No card leaves without its prediction record committed to the audit store; when the store cannot
take it, the answer is ``{"cards": []}`` (the clinician is not blocked, the failure is logged,
counted and shown by ``/readyz``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import uuid4

import anyio

from app.audit.predictions import PredictionAudit, Timings, prediction_row
from app.models.card import risk_card
from app.models.package import ModelPackage
from app.models.predictor import Prediction, Predictor
from app.store.database import StoreUnavailable
from cds_hooks.errors import ProtocolError
from cds_hooks.models import HookResponse
from cds_hooks.registry import CdsService, HookCall, ServiceRegistry
from fhir_mappers.hook_features import features_for_hook, hook_record, unavailable_types
from fhir_mappers.index_time import encounter_in_context
from fhir_mappers.labels import is_inpatient
from fhir_mappers.mapper import InvalidPatient
from fhir_mappers.row import FeatureRow
from fhir_mappers.templates import ENCOUNTER_HOOKS, prefetch_templates, required_keys
from fhir_mappers.validation import part_error
from fhir_mappers.validation_memo import ValidationMemo


@dataclass(frozen=True)
class Scored:
    features: FeatureRow
    prediction: Prediction
    map_ms: float
    score_ms: float


class PackageService:
    """Serves one package on one hook."""

    def __init__(
        self,
        package: ModelPackage,
        hook: str,
        public_base: str,
        audit: PredictionAudit,
        memo: ValidationMemo | None = None,
    ) -> None:
        self.package = package
        self.hook = hook
        self.public_base = public_base
        self.audit = audit
        self.memo = memo
        self.predictor = Predictor(package)
        self.templates = prefetch_templates(package.spec, hook)

    def definition(self) -> CdsService:
        service = self.package.service
        return CdsService(
            id=f"{service['id_prefix']}-{self.hook}",
            hook=self.hook,
            title=service["title"],
            description=service["description"],
            handler=self.handle,
            prefetch=self.templates,
            required_prefetch=required_keys(self.hook),
        )

    async def handle(self, call: HookCall) -> HookResponse:
        started = time.perf_counter()
        # Mapping and scoring are CPU work: run them off the event loop so that other calls'
        # FHIR fetches keep moving.
        scored = await anyio.to_thread.run_sync(self._score, call)
        if scored is None:
            return HookResponse()
        prediction = scored.prediction
        shown = prediction.band.name != "low" or bool(self.package.service.get("card_for_low_risk"))
        card_uuid = uuid4()
        total_ms = (time.perf_counter() - started) * 1000
        row = prediction_row(
            call,
            self.package,
            scored.features,
            prediction,
            self.predictor.explanation_rows(prediction),
            card_uuid,
            shown,
            Timings(scored.map_ms, scored.score_ms, total_ms),
            self.audit.pseudonyms,
        )
        try:
            await self.audit.record(row)
        except StoreUnavailable:
            return HookResponse()
        if not shown:
            return HookResponse()
        return HookResponse(
            cards=[risk_card(self.package, prediction, self.public_base, card_uuid)]
        )

    def _score(self, call: HookCall) -> Scored | None:
        """None when this hook call gets no prediction (patient-view outside an inpatient stay)."""
        started = time.perf_counter()
        context = call.request.context
        try:
            record = hook_record(call.prefetch, context, self.memo)
        except InvalidPatient as error:
            raise ProtocolError.single(400, str(error), code="invalid") from None
        encounter = encounter_in_context(record, context.get("encounterId"))
        if self.hook == "patient-view" and not _ongoing_inpatient_stay(encounter):
            return None
        if self.hook in ENCOUNTER_HOOKS and encounter is None:
            raise ProtocolError.single(
                412,
                "the encounter in context is not in the prefetch or the FHIR server",
                code="not-found",
            )
        row = features_for_hook(
            self.package.spec,
            self.hook,
            record,
            context,
            datetime.now(UTC),
            unavailable=unavailable_types(call.prefetch, self.templates),
        )
        mapped = time.perf_counter()
        prediction = self.predictor.predict(row)
        scored_at = time.perf_counter()
        return Scored(row, prediction, (mapped - started) * 1000, (scored_at - mapped) * 1000)


def _ongoing_inpatient_stay(encounter: dict | None) -> bool:
    """patient-view only gets a card while an inpatient encounter in context is ongoing."""
    if encounter is None or not is_inpatient(encounter):
        return False
    return encounter.get("status") in ("in-progress", "arrived", "triaged", "onleave")


def registry_for(
    packages: list[ModelPackage],
    public_base: str,
    audit: PredictionAudit,
    memo: ValidationMemo | None = None,
) -> ServiceRegistry:
    """Every package on every hook it names; ``memo`` is shared by all of them."""
    registry = ServiceRegistry()
    for package in packages:
        for hook in package.service["hooks"]:
            service = PackageService(package, hook, public_base, audit, memo)
            registry.register(service.definition())
    return registry


def validation_memo(entries: int) -> ValidationMemo | None:
    """The memo of ``BEDSIDE_VALIDATION_MEMO_ENTRIES`` results (None: turned off)."""
    return ValidationMemo(entries, part_error) if entries > 0 else None
