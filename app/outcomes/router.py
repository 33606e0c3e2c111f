"""``POST /outcomes``: labels sent by a hospital system (token role ingest or admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.access.dependencies import require_roles
from app.access.tokens import Principal
from app.outcomes.store import Outcome, encounter_id_of
from cds_hooks.errors import ProtocolError, issue, operation_outcome, validation_issues
from cds_hooks.openapi import json_request_body
from cds_hooks.responses import JsonResponse
from cds_hooks.router import json_body

router = APIRouter(tags=["Outcomes"])
# A FHIR id is 1-64 of [A-Za-z0-9.-]; anything else refers to no encounter.
ENCOUNTER_REFERENCE = r"^(?:(?:https?://[^\s/]+(?:/[^\s/]+)*/)?Encounter/)?[A-Za-z0-9.\-]{1,64}$"
EARLIEST = datetime(1800, 1, 1).astimezone()
LATEST = datetime(2200, 1, 1).astimezone()


class OutcomeIn(BaseModel):
    """One outcome: for an encounter (``Encounter/123`` or ``123``) or a prediction (card uuid)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    encounter: str | None = Field(
        default=None,
        pattern=ENCOUNTER_REFERENCE,
        description="Encounter/<id>, a bare <id>, or an absolute URL ending in Encounter/<id>",
    )
    prediction: UUID | None = Field(default=None, description="the card uuid")
    label: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$", examples=["readmission_30d"])
    value: float = Field(allow_inf_nan=False)
    observed_at: AwareDatetime = Field(alias="observedAt")

    @model_validator(mode="after")
    def _refers_to_something(self) -> OutcomeIn:
        if self.encounter is None and self.prediction is None:
            raise ValueError("give an encounter or a prediction")
        if not EARLIEST <= self.observed_at <= LATEST:
            raise ValueError("observedAt must lie between 1800 and 2200")
        return self

    def outcome(self) -> Outcome:
        return Outcome(
            label=self.label,
            value=self.value,
            observed_at=self.observed_at,
            encounter_id=encounter_id_of(self.encounter) if self.encounter else None,
            card_uuid=self.prediction,
        )


BATCH_SCHEMA = {
    "type": "object",
    "required": ["outcomes"],
    "properties": {"outcomes": {"type": "array", "items": OutcomeIn.model_json_schema()}},
}


@router.post(
    "/outcomes",
    summary="Record outcomes (labels) for encounters or predictions",
    description="Each entry is validated on its own: valid ones are stored, invalid ones are "
    "reported as `outcomes[i]…` issues. A re-sent outcome is recognised as a duplicate.",
    responses={200: {"description": "an OperationOutcome saying what was stored"}},
    openapi_extra=json_request_body(BATCH_SCHEMA),
)
async def post_outcomes(
    request: Request,
    principal: Annotated[Principal, Depends(require_roles("ingest", "admin"))],
) -> JsonResponse:
    body = await json_body(request)
    entries = body.get("outcomes")
    if not isinstance(entries, list):
        raise ProtocolError.single(400, "the body must hold an 'outcomes' list")
    valid: list[Outcome] = []
    rejected: list[dict[str, Any]] = []
    for index, raw in enumerate(entries):
        try:
            valid.append(OutcomeIn.model_validate(raw).outcome())
        except ValidationError as error:
            rejected.extend(validation_issues(error, prefix=f"outcomes[{index}]"))
    if rejected and not valid:
        raise ProtocolError(400, rejected)
    receipt = await request.app.state.outcomes.store(valid, f"api:{principal.name}")
    summary = (
        f"stored {receipt.stored} of {len(entries)} outcomes ({receipt.duplicates} already on "
        f"record, {len(entries) - len(valid)} rejected)"
    )
    return JsonResponse(
        operation_outcome([issue(summary, code="informational", severity="information"), *rejected])
    )
