"""The demo's patients: a synthetic cohort (``app.training.synth``) and one discharge each."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from app.training.synth import CohortConfig, PlantedEffects, generate_cohort
from fhir_mappers.record import PatientRecord, records_from_ndjson

OVERRIDE_GROUP = ("age_band", "75+")
"""The subgroup whose cards the simulated clinicians override more often (planted)."""
OVERRIDE_RATE_GROUP = 0.6
OVERRIDE_RATE_BASE = 0.15


@dataclass(frozen=True)
class DemoStay:
    """One inpatient stay to discharge: the patient's record, the stay and its truth."""

    record: PatientRecord
    encounter: dict[str, Any]
    readmitted: bool
    attributes: dict[str, str]

    @property
    def patient_id(self) -> str:
        return str(self.record.patient["id"])  # type: ignore[index]

    @property
    def in_override_group(self) -> bool:
        attribute, value = OVERRIDE_GROUP
        return self.attributes.get(attribute) == value


def make_stays(folder: Path, patients: int, seed: int, today: date) -> list[DemoStay]:
    """Generate ``patients`` into ``folder``; each patient's last stay discharged in the period.

    The period ends yesterday, so the records look current; discharges come in time order.
    """
    effects = PlantedEffects(
        override_group=OVERRIDE_GROUP,
        override_rate_group=OVERRIDE_RATE_GROUP,
        override_rate_base=OVERRIDE_RATE_BASE,
    )
    config = CohortConfig(
        patients=patients,
        seed=seed,
        start=today - timedelta(days=180),
        end=today - timedelta(days=1),
        effects=effects,
    )
    generate_cohort(config, folder)
    records = {record.patient_key: record for record in records_from_ndjson(folder)}
    last: dict[str, dict[str, str]] = {}
    with (folder / "truth.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["in_period"] != "1":
                continue
            known = last.get(row["patient_id"])
            if known is None or row["discharge_time"] > known["discharge_time"]:
                last[row["patient_id"]] = row
    stays = []
    for row in sorted(last.values(), key=lambda row: row["discharge_time"]):
        record = records[f"Patient/{row['patient_id']}"]
        stays.append(
            DemoStay(
                record=record,
                encounter=record.by_key[f"Encounter/{row['encounter_id']}"],
                readmitted=row["readmitted"] == "1",
                attributes={key: row[key] for key in ("sex", "age_band", "race", "ethnicity")},
            )
        )
    return stays


def all_resources(stays: list[DemoStay]) -> list[dict[str, Any]]:
    """Every resource of the stays' patients (what the demo FHIR server holds)."""
    resources: list[dict[str, Any]] = []
    for stay in stays:
        record = stay.record
        resources.append(record.patient)  # type: ignore[arg-type]
        resources.extend(resource for group in record.resources.values() for resource in group)
    return resources
