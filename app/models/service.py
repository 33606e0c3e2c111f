"""CDS services defined by model packages: prefetch → features → prediction → risk card."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import anyio

from app.models.card import risk_card
from app.models.package import ModelPackage
from app.models.predictor import Prediction, Predictor
from app.store.explanations import SqlExplanationStore, explanation_record
from cds_hooks.errors import ProtocolError
from cds_hooks.models import HookResponse
from cds_hooks.registry import CdsService, HookCall, ServiceRegistry
from fhir_mappers.hook_features import features_for_hook, hook_record, unavailable_types
from fhir_mappers.index_time import encounter_in_context
from fhir_mappers.labels import is_inpatient
from fhir_mappers.mapper import InvalidPatient
from fhir_mappers.templates import ENCOUNTER_HOOKS, prefetch_templates, required_keys


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
        # Mapping and scoring are CPU work: run them off the event loop so that other calls'
        # FHIR fetches keep moving.
        prediction = await anyio.to_thread.run_sync(self._predict, call)
        if prediction is None:
            return HookResponse()
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

    def _predict(self, call: HookCall) -> Prediction | None:
        """None when this hook call gets no card (patient-view outside an inpatient stay)."""
        context = call.request.context
        try:
            record = hook_record(call.prefetch, context)
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
        templates = prefetch_templates(self.package.spec, self.hook)
        row = features_for_hook(
            self.package.spec,
            self.hook,
            record,
            context,
            datetime.now(UTC),
            unavailable=unavailable_types(call.prefetch, templates),
        )
        return self.predictor.predict(row)


def _ongoing_inpatient_stay(encounter: dict | None) -> bool:
    """patient-view only gets a card while an inpatient encounter in context is ongoing."""
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
