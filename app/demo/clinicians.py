"""Simulated clinicians answering cards, with a planted behaviour the reports should reveal.

Cards of patients in :data:`app.demo.cohort.OVERRIDE_GROUP` are overridden at
``OVERRIDE_RATE_GROUP``, the others at ``OVERRIDE_RATE_BASE``; some cards get no answer (the
CDS Hooks spec: ignored cards are never reported), some overrides are plain dismissals.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from app.demo.cohort import OVERRIDE_RATE_BASE, OVERRIDE_RATE_GROUP, DemoStay

ANSWER_RATE = 0.85
REASON_RATE = 0.7
COMMENTS = ("seen in clinic last week", "family will call", "discussed with the team")


def response(card: dict[str, Any], stay: DemoStay, rng: random.Random) -> dict[str, Any] | None:
    """The clinician's feedback entry for ``card``, or None when the card is ignored."""
    if rng.random() >= ANSWER_RATE:
        return None
    rate = OVERRIDE_RATE_GROUP if stay.in_override_group else OVERRIDE_RATE_BASE
    entry: dict[str, Any] = {
        "card": card["uuid"],
        "outcomeTimestamp": datetime.now(UTC).isoformat(),
    }
    if rng.random() < rate:
        entry["outcome"] = "overridden"
        reasons = card.get("overrideReasons", [])
        if reasons and rng.random() < REASON_RATE:
            reason: dict[str, Any] = {"reason": rng.choice(reasons)}
            if rng.random() < 0.3:
                reason["userComment"] = rng.choice(COMMENTS)
            entry["overrideReason"] = reason
        return entry
    entry["outcome"] = "accepted"
    suggestions = [s for s in card.get("suggestions", []) if s.get("uuid")]
    if suggestions:
        entry["acceptedSuggestions"] = [{"id": suggestions[0]["uuid"]}]
    return entry
