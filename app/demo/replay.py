"""The simulated EHR day: discharges (with and without prefetch), feedback, then outcomes."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from app.demo import clinicians
from app.demo.client_keys import DemoClientKey
from app.demo.cohort import DemoStay

SERVICE = "readmission-30d-encounter-discharge"
CONCURRENCY = 4
WITHOUT_PREFETCH_EVERY = 4  # every 4th discharge leaves prefetch out: Bedside fetches it
OUTCOME_BATCH = 100
LABEL = "readmission_30d"


@dataclass
class ReplaySummary:
    """What the replay sent and what came back."""

    discharges: int = 0
    fetched_by_bedside: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    bands: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    group_answers: Counter[str] = field(default_factory=Counter)
    feedback_statuses: Counter[int] = field(default_factory=Counter)
    outcomes_sent: int = 0
    outcome_statuses: Counter[int] = field(default_factory=Counter)

    @property
    def complete(self) -> bool:
        """Every call, feedback and outcome batch answered 200."""
        return (
            all(
                set(statuses) <= {200}
                for statuses in (self.statuses, self.feedback_statuses, self.outcome_statuses)
            )
            and self.statuses[200] == self.discharges
        )


@dataclass(frozen=True)
class Ehr:
    """Where the EHR sends its calls and how it signs them."""

    bedside_url: str
    fhir_url: str
    fhir_token: str
    key: DemoClientKey
    ingest_token: str


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"resource": resource} for resource in resources],
    }


def discharge_request(stay: DemoStay, ehr: Ehr, with_prefetch: bool) -> dict[str, Any]:
    """The encounter-discharge call an EHR makes for ``stay``."""
    record = stay.record
    body: dict[str, Any] = {
        "hook": "encounter-discharge",
        "hookInstance": str(uuid.uuid4()),
        "context": {
            "userId": f"Practitioner/demo-{stay.patient_id[:2]}",
            "patientId": stay.patient_id,
            "encounterId": stay.encounter["id"],
        },
    }
    if with_prefetch:
        body["prefetch"] = {
            "patient": record.patient,
            "encounter": stay.encounter,
            "observations": _searchset(record.of_type("Observation")),
            "conditions": _searchset(record.of_type("Condition")),
            "encounters": _searchset(record.of_type("Encounter")),
            "medications": _searchset(record.of_type("MedicationRequest")),
        }
    else:
        body["fhirServer"] = f"{ehr.fhir_url}/fhir"
        body["fhirAuthorization"] = {
            "access_token": ehr.fhir_token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "bedside-demo",
            "patient": stay.patient_id,
        }
    return body


async def _signed_post(http: httpx.AsyncClient, ehr: Ehr, path: str, body: Any) -> httpx.Response:
    url = f"{ehr.bedside_url}{path}"
    headers = {"Authorization": f"Bearer {ehr.key.token(url)}"}
    return await http.post(url, json=body, headers=headers)


async def _discharge(
    http: httpx.AsyncClient,
    ehr: Ehr,
    index: int,
    stay: DemoStay,
    seed: int,
    summary: ReplaySummary,
) -> None:
    rng = random.Random(f"{seed}-{index}")  # each clinician's answer independent of timing
    with_prefetch = index % WITHOUT_PREFETCH_EVERY != WITHOUT_PREFETCH_EVERY - 1
    body = discharge_request(stay, ehr, with_prefetch)
    response = await _signed_post(http, ehr, f"/cds-services/{SERVICE}", body)
    summary.discharges += 1
    summary.fetched_by_bedside += not with_prefetch
    summary.statuses[response.status_code] += 1
    if response.status_code != 200:
        return
    for card in response.json()["cards"]:
        summary.bands[card["summary"].rsplit("(", 1)[-1].rstrip(")")] += 1
        entry = clinicians.response(card, stay, rng)
        answer = entry["outcome"] if entry else "unanswered"
        summary.answers[answer] += 1
        if stay.in_override_group:
            summary.group_answers[answer] += 1
        if entry is not None:
            answered = await _signed_post(
                http, ehr, f"/cds-services/{SERVICE}/feedback", {"feedback": [entry]}
            )
            summary.feedback_statuses[answered.status_code] += 1


async def _post_outcomes(
    http: httpx.AsyncClient, ehr: Ehr, stays: list[DemoStay], summary: ReplaySummary
) -> None:
    """Readmission labels, as a hospital system sends them later (ingest API token)."""
    observed = datetime.now(UTC).isoformat()
    entries = [
        {
            "encounter": f"Encounter/{stay.encounter['id']}",
            "label": LABEL,
            "value": 1 if stay.readmitted else 0,
            "observedAt": observed,
        }
        for stay in stays
    ]
    headers = {"Authorization": f"Bearer {ehr.ingest_token}"}
    for start in range(0, len(entries), OUTCOME_BATCH):
        batch = entries[start : start + OUTCOME_BATCH]
        response = await http.post(
            f"{ehr.bedside_url}/outcomes", json={"outcomes": batch}, headers=headers
        )
        summary.outcome_statuses[response.status_code] += 1
        summary.outcomes_sent += len(batch) if response.status_code == 200 else 0


async def replay(stays: list[DemoStay], ehr: Ehr, seed: int) -> ReplaySummary:
    """Discharge every stay (``CONCURRENCY`` at a time), answer the cards, then send outcomes."""
    summary = ReplaySummary()
    gate = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0)) as http:

        async def one(index: int, stay: DemoStay) -> None:
            async with gate:
                await _discharge(http, ehr, index, stay, seed, summary)

        await asyncio.gather(*(one(index, stay) for index, stay in enumerate(stays)))
        await _post_outcomes(http, ehr, stays, summary)
    return summary
