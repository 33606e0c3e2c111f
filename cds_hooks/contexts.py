"""Per-hook context models (CDS Hooks 2.0 hook definitions)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

UserReference = Annotated[
    str,
    StringConstraints(
        pattern=r"^(Practitioner|PractitionerRole|Patient|RelatedPerson)/[A-Za-z0-9\-.]{1,64}$"
    ),
]
FhirId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9\-.]{1,64}$")]
OrderReference = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")]


def _is_bundle(value: dict[str, Any]) -> dict[str, Any]:
    if value.get("resourceType") != "Bundle":
        raise ValueError("must be a FHIR Bundle")
    return value


BUNDLE_SCHEMA = {
    "type": "object",
    "required": ["resourceType"],
    "properties": {"resourceType": {"const": "Bundle"}},
}
Bundle = Annotated[dict[str, Any], AfterValidator(_is_bundle), WithJsonSchema(BUNDLE_SCHEMA)]


class HookContext(BaseModel):
    """Fields every context may carry; unknown fields are kept for the handler."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class PatientViewContext(HookContext):
    user_id: UserReference = Field(alias="userId")
    patient_id: FhirId = Field(alias="patientId")
    encounter_id: FhirId | None = Field(default=None, alias="encounterId")


class EncounterContext(HookContext):
    """encounter-start and encounter-discharge share this shape."""

    user_id: UserReference = Field(alias="userId")
    patient_id: FhirId = Field(alias="patientId")
    encounter_id: FhirId = Field(alias="encounterId")


class OrderSelectContext(HookContext):
    user_id: UserReference = Field(alias="userId")
    patient_id: FhirId = Field(alias="patientId")
    encounter_id: FhirId | None = Field(default=None, alias="encounterId")
    selections: list[OrderReference] = Field(min_length=1)
    draft_orders: Bundle = Field(alias="draftOrders")


class OrderSignContext(HookContext):
    user_id: UserReference = Field(alias="userId")
    patient_id: FhirId = Field(alias="patientId")
    encounter_id: FhirId | None = Field(default=None, alias="encounterId")
    draft_orders: Bundle = Field(alias="draftOrders")


class AppointmentBookContext(HookContext):
    user_id: UserReference = Field(alias="userId")
    patient_id: FhirId = Field(alias="patientId")
    encounter_id: FhirId | None = Field(default=None, alias="encounterId")
    appointments: Bundle


CONTEXT_MODELS: dict[str, type[HookContext]] = {
    "patient-view": PatientViewContext,
    "encounter-start": EncounterContext,
    "encounter-discharge": EncounterContext,
    "order-select": OrderSelectContext,
    "order-sign": OrderSignContext,
    "appointment-book": AppointmentBookContext,
}


def validate_context(hook: str, context: dict[str, Any]) -> HookContext:
    """Validate a request's context against its hook's definition (lenient for other hooks)."""
    model = CONTEXT_MODELS.get(hook, HookContext)
    return model.model_validate(context)
