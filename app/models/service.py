"""CDS services defined by model packages: prefetch → features → prediction → risk card."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from uuid import uuid4

from app.models.card import risk_card
from app.models.package import ModelPackage
from app.models.predictor import Predictor
from app.store.explanations import SqlExplanationStore, explanation_record
from cds_hooks.errors import ProtocolError
from cds_hooks.models import HookResponse
from cds_hooks.registry import CdsService, HookCall, ServiceRegistry
from fhir_mappers.hook_features import features_for_hook
from fhir_mappers.index_time import encounter_in_context
from fhir_mappers.labels import is_inpatient
from fhir_mappers.mapper import InvalidPatient
from fhir_mappers.record import record_from_prefetch
from fhir_mappers.templates import prefetch_templates, required_keys

log = logging.getLogger(__name__)


class PackageService:
    """Serves one package on one hook."""

    def __init__(
        self,
        package: ModelPackage,
        hook: str,
        public_base: str,
        explanations: SqlExplanationStore | None = None,
    ) -> None:
        self.package = package
        self.hook = hook
        self.public_base = public_base
        self.explanations = explanations
        self.predictor = Predictor(package)

    def definition(self) -> CdsService:
        service = self.package.service
        return CdsService(
            id=f"{service['id_prefix']}-{self.hook}",
            hook=self.hook,
            title=service["title"],
            description=service["description"],
            handler=self.handle,
            prefetch=prefetch_templates(self.package.spec, self.hook),
            required_prefetch=required_keys(self.hook),
        )

    async def handle(self, call: HookCall) -> HookResponse:
        if self.hook == "patient-view" and not _during_inpatient_stay(call):
            return HookResponse()
        try:
            row = features_for_hook(
                self.package.spec,
                self.hook,
                call.request.context,
                call.prefetch,
                datetime.now(UTC),
            )
        except InvalidPatient as error:
            raise ProtocolError.single(400, str(error), code="invalid") from None
        prediction = self.predictor.predict(row)
        if prediction.band.name == "low" and not self.package.service.get("card_for_low_risk"):
            return HookResponse()
        card_uuid = uuid4()
        if self.explanations is not None:
            rows = self.predictor.explanation_rows(prediction)
            await self.explanations.save(
                explanation_record(card_uuid, self.package, prediction, rows)
            )
        card = risk_card(
            self.package,
            prediction,
            self.public_base,
            card_uuid,
            explanation_link=self.explanations is not None,
        )
        return HookResponse(cards=[card])


def _during_inpatient_stay(call: HookCall) -> bool:
    """patient-view only gets a card while an inpatient encounter in context is ongoing."""
    record = record_from_prefetch(call.prefetch)
    encounter = (
        encounter_in_context(record, call.request.context.get("encounterId")) if record else None
    )
    if encounter is None or not is_inpatient(encounter):
        return False
    return encounter.get("status") in ("in-progress", "arrived", "triaged", "onleave")


def registry_for(
    packages: list[ModelPackage],
    public_base: str,
    explanations: SqlExplanationStore | None = None,
) -> ServiceRegistry:
    registry = ServiceRegistry()
    for package in packages:
        for hook in package.service["hooks"]:
            service = PackageService(package, hook, public_base, explanations)
            registry.register(service.definition())
    return registry
