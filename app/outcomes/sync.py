"""``bedside outcomes sync``: outcome labels derived from FHIR Encounters, with the label code
training uses (:mod:`fhir_mappers.labels`), for the encounters Bedside has predictions for.

Sources: a Bulk Data NDJSON folder (``Patient`` and ``Encounter`` files), or a FHIR server
searched for Encounters since a date, then each of their patients read. Only labels that are
defined by ``--as-of`` (the moment up to which the data is complete) are stored: a stay neither
readmitted yet nor 30 days past its discharge gets none yet, and a later sync adds it.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.engine import Engine

from app.audit.pseudonym import Pseudonymizer
from app.audit.tables import PredictionRecord
from app.outcomes.store import Outcome, OutcomeReceipt, OutcomeStore
from fhir_mappers.fhir_client import FhirClient
from fhir_mappers.fhirtime import parse_fhir_datetime
from fhir_mappers.labels import (
    discharge_time,
    eligible_index_encounters,
    in_hospital_mortality,
    readmission_30d,
)
from fhir_mappers.record import (
    PatientRecord,
    entries_of,
    read_ndjson_folder,
    records_from_resources,
)

READMISSION_WINDOW = timedelta(days=30)
SYNC_TIMEOUT_SECONDS = 600.0


def derive_outcomes(records: Iterable[PatientRecord], as_of: datetime) -> Iterator[Outcome]:
    """30-day readmission and in-hospital mortality for every finished inpatient stay."""
    for record in records:
        patient = record.patient or {}
        # What had begun by ``as_of``: a later admission must not decide a label "as of" then.
        encounters = [e for e in record.of_type("Encounter") if _started_by(e, as_of)]
        for index in eligible_index_encounters(encounters, patient):
            discharged = discharge_time(index)
            if discharged is None or discharged > as_of or not index.get("id"):
                continue
            readmission = readmission_30d(index, encounters, patient, follow_up_until=as_of)
            if readmission.value is not None:
                observed = readmission.event_time or discharged + READMISSION_WINDOW
                yield Outcome(readmission.name, readmission.value, observed, index["id"])
            mortality = in_hospital_mortality(index, patient)
            if mortality.value is not None:
                observed = mortality.event_time or discharged
                yield Outcome(mortality.name, mortality.value, observed, index["id"])


def _started_by(encounter: dict[str, Any], as_of: datetime) -> bool:
    """False only for an encounter whose start is known to lie after ``as_of``."""
    period = encounter.get("period") or encounter.get("actualPeriod")
    start = parse_fhir_datetime(period.get("start")) if isinstance(period, dict) else None
    return start is None or start <= as_of


def predicted_encounter_keys(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(
            connection.execute(
                select(PredictionRecord.encounter_key)
                .where(PredictionRecord.encounter_key != None)  # noqa: E711
                .distinct()
            ).scalars()
        )


@dataclass(frozen=True)
class SyncResult:
    derived: int
    matched: int
    receipt: OutcomeReceipt


def sync_outcomes(
    records: Iterable[PatientRecord],
    as_of: datetime,
    store: OutcomeStore,
    source: str,
) -> SyncResult:
    """Store the derived outcomes of encounters that have a prediction on record."""
    wanted = predicted_encounter_keys(store.engine)
    derived = list(derive_outcomes(records, as_of))
    matched = [
        outcome
        for outcome in derived
        if store.pseudonyms.key_for("Encounter", outcome.encounter_id or "") in wanted
    ]
    return SyncResult(len(derived), len(matched), store.store_sync(matched, source))


def records_from_folder(folder: Path) -> list[PatientRecord]:
    return records_from_resources(read_ndjson_folder(folder, ("Patient", "Encounter")))


async def records_from_server(
    base_url: str, since: datetime, access_token: str | None, max_pages: int
) -> list[PatientRecord]:
    """Encounters dated since ``since`` and the Patients they belong to."""
    async with httpx.AsyncClient(timeout=30.0, follow_redirects=False) as http:
        client = FhirClient(
            http,
            base_url,
            access_token=access_token,
            deadline=asyncio.get_running_loop().time() + SYNC_TIMEOUT_SECONDS,
            max_pages=max_pages,
        )
        bundle = await client.get(f"Encounter?date=ge{since.date().isoformat()}&_count=200")
        encounters = [
            resource
            for _, resource in entries_of(bundle)
            if resource.get("resourceType") == "Encounter"
        ]
        subjects = sorted({patient for patient in map(_subject_patient_id, encounters) if patient})
        limit = asyncio.Semaphore(8)

        async def read(patient_id: str) -> dict[str, Any]:
            async with limit:
                return await client.get(f"Patient/{patient_id}")

        patients = await asyncio.gather(*(read(patient_id) for patient_id in subjects))
    items = [(None, resource) for resource in [*patients, *encounters]]
    return records_from_resources(items)


def _subject_patient_id(encounter: dict[str, Any]) -> str | None:
    """The Patient id of ``subject`` as ``Patient/123`` or an absolute URL ending so."""
    subject = encounter.get("subject")
    reference = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(reference, str):
        return None
    parts = reference.rstrip("/").split("/")
    return parts[-1] if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1] else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    sync = actions.add_parser("sync", help="derive outcome labels from FHIR data")
    source = sync.add_mutually_exclusive_group(required=True)
    source.add_argument("--ndjson", type=Path, help="a Bulk Data export folder")
    source.add_argument("--fhir-server", help="a FHIR server's base URL")
    sync.add_argument(
        "--since", help="with --fhir-server: encounters dated from (YYYY-MM-DD; default 90 days)"
    )
    sync.add_argument(
        "--token-file", type=Path, help="with --fhir-server: a file holding a bearer token"
    )
    sync.add_argument("--max-pages", type=int, default=1000)
    sync.add_argument(
        "--as-of", help="the data is complete up to this instant (ISO 8601; default: now)"
    )


def run(args: argparse.Namespace, engine: Engine, pseudonyms: Pseudonymizer, timeout: float) -> int:
    as_of = _instant(args.as_of) if args.as_of else datetime.now(UTC)
    if args.ndjson is not None:
        records = records_from_folder(args.ndjson)
        source = "sync:ndjson"
    else:
        since = _instant(args.since) if args.since else as_of - timedelta(days=90)
        token = args.token_file.read_text().strip() if args.token_file else None
        records = asyncio.run(records_from_server(args.fhir_server, since, token, args.max_pages))
        source = "sync:fhir-server"
    result = sync_outcomes(records, as_of, OutcomeStore(engine, pseudonyms, timeout), source)
    print(
        f"{result.derived} outcomes derived from {len(records)} patients; {result.matched} for "
        f"encounters with predictions: {result.receipt.stored} stored, "
        f"{result.receipt.duplicates} already on record"
    )
    return 0


def _instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
