"""A risk card a clinician can read in five seconds and answer with "no, because…"."""

from __future__ import annotations

from uuid import UUID, uuid4

from app.models.package import ModelPackage
from app.models.predictor import Prediction
from cds_hooks.models import Action, Card, Coding, DisplayedCoding, Link, Source, Suggestion

NON_ADHERENCE = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"
BEDSIDE_REASONS = "urn:bedside:override-reason"
OVERRIDE_REASONS = (
    DisplayedCoding(
        system=NON_ADHERENCE, code="cds-not-applicable", display="Does not apply to this patient"
    ),
    DisplayedCoding(
        system=BEDSIDE_REASONS, code="risk-overestimated", display="Risk overestimated"
    ),
    DisplayedCoding(system=BEDSIDE_REASONS, code="already-addressed", display="Already addressed"),
    DisplayedCoding(
        system=NON_ADHERENCE,
        code="cds-suboptimal-context",
        display="Not the right time or person",
    ),
)
TOPIC_SYSTEM = "urn:bedside:model"
DEFAULT_CAVEAT = "Decision support only; it does not replace clinical judgement."
BAND_MEANING = {
    "low": "lower than most discharged patients",
    "moderate": "above average; consider targeted follow-up",
    "high": "among the highest-risk discharges; follow-up within a week is advised",
}


def risk_card(
    package: ModelPackage,
    prediction: Prediction,
    public_base: str,
    card_uuid: UUID | None = None,
) -> Card:
    """The card for one prediction; ``card_uuid`` ties feedback and the explanation page to it."""
    card_uuid = card_uuid or uuid4()
    title = package.card.get("title", "Readmission risk")
    percent = round(prediction.probability * 100)
    band = prediction.band.name
    suggestion = _follow_up_suggestion() if band == "high" else None
    return Card(
        uuid=card_uuid,
        summary=f"{title}: {percent}% ({band})",
        indicator=prediction.band.indicator,  # type: ignore[arg-type]
        detail=_detail(package, prediction),
        source=Source(
            label=f"Bedside {package.name} v{package.version}",
            url=f"{public_base}/models/{package.name}/card",
            topic=Coding(
                system=BEDSIDE_REASONS.replace("override-reason", "topic"),
                code=package.name,
                display=title,
            ),
        ),
        suggestions=[suggestion] if suggestion else [],
        selection_behavior="at-most-one" if suggestion else None,
        override_reasons=list(OVERRIDE_REASONS),
        links=_links(package, public_base, card_uuid),
    )


def _links(package: ModelPackage, public_base: str, card_uuid: UUID) -> list[Link]:
    return [
        Link(
            label="Why this risk? (explanation)",
            url=f"{public_base}/explanations/{card_uuid}",
            type="absolute",
        ),
        Link(
            label="About this model (model card)",
            url=f"{public_base}/models/{package.name}/card",
            type="absolute",
        ),
    ]


def _detail(package: ModelPackage, prediction: Prediction) -> str:
    band = prediction.band.name
    lines = [
        f"**{round(prediction.probability * 100)}%** estimated risk of "
        f"{package.card.get('outcome', 'unplanned readmission within 30 days')}: "
        f"**{band}** — {BAND_MEANING.get(band, band)}.",
        "",
    ]
    if prediction.drivers:
        lines.append("**Main factors**")
        lines.extend(f"- {driver.text()}" for driver in prediction.drivers)
        lines.append("")
    if prediction.missing:
        shown = ", ".join(prediction.missing[:6])
        more = f" and {len(prediction.missing) - 6} more" if len(prediction.missing) > 6 else ""
        lines.append(f"**Not available:** {shown}{more}.")
        lines.append("")
    caveat = package.card.get("intended_use_short", DEFAULT_CAVEAT)
    lines.append(f"Model {package.name} v{package.version}. {caveat}")
    return "\n".join(lines)


def _follow_up_suggestion() -> Suggestion:
    return Suggestion(
        label="Order a follow-up call within 7 days",
        is_recommended=True,
        actions=[
            Action(
                type="create",
                description="Follow-up telephone call within 7 days of discharge",
                resource={
                    "resourceType": "ServiceRequest",
                    "status": "draft",
                    "intent": "proposal",
                    "code": {
                        "coding": [
                            {
                                "system": "http://snomed.info/sct",
                                "code": "185317003",
                                "display": "Telephone encounter",
                            }
                        ]
                    },
                },
            )
        ],
    )
