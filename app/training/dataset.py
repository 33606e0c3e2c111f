"""Training examples from FHIR: one row per eligible inpatient discharge, with its label.

Features come from the serving mapper, labels from ``fhir_mappers.labels`` and the clinical
baselines from ``fhir_mappers.baselines`` — all on the same records, so there is no skew.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fhir_mappers.baselines import hospital_score, lace_index
from fhir_mappers.labels import discharge_time, eligible_index_encounters, readmission_30d
from fhir_mappers.mapper import InvalidPatient, map_patient
from fhir_mappers.record import PatientRecord, records_from_ndjson, typed_key
from fhir_mappers.spec import FeatureSpec

SUBGROUPS = ("sex", "age_band", "race", "ethnicity", "language")


@dataclass
class Dataset:
    """Aligned arrays: features ``x`` (NaN = missing), labels ``y`` and what reports group by."""

    feature_names: list[str]
    x: np.ndarray
    y: np.ndarray
    patient_ids: list[str]
    encounter_ids: list[str]
    index_times: list[datetime]
    attributes: dict[str, list[str]]
    lace: np.ndarray
    hospital: np.ndarray
    skipped: dict[str, int] = field(default_factory=dict)

    def subset(self, mask: np.ndarray) -> Dataset:
        chosen = np.flatnonzero(mask)
        return Dataset(
            feature_names=self.feature_names,
            x=self.x[chosen],
            y=self.y[chosen],
            patient_ids=[self.patient_ids[i] for i in chosen],
            encounter_ids=[self.encounter_ids[i] for i in chosen],
            index_times=[self.index_times[i] for i in chosen],
            attributes={
                key: [values[i] for i in chosen] for key, values in self.attributes.items()
            },
            lace=self.lace[chosen],
            hospital=self.hospital[chosen],
        )


def examples_from_records(
    records: list[PatientRecord], spec: FeatureSpec, progress: bool = True
) -> Dataset:
    names = spec.feature_names
    rows: list[list[float]] = []
    labels: list[int] = []
    patients: list[str] = []
    encounters: list[str] = []
    times: list[datetime] = []
    attributes: dict[str, list[str]] = {key: [] for key in SUBGROUPS}
    lace: list[int] = []
    hospital: list[int] = []
    skipped: dict[str, int] = {}
    for record in tqdm(records, desc="mapping patients", unit="patient", disable=not progress):
        patient = record.patient or {}
        stays = record.of_type("Encounter")
        for index in eligible_index_encounters(stays, patient):
            label = readmission_30d(index, stays, patient)
            when = discharge_time(index)
            if label.value is None or when is None:
                skipped[label.reason] = skipped.get(label.reason, 0) + 1
                continue
            try:
                row = map_patient(record, spec, when, index)
            except InvalidPatient:
                skipped["invalid_patient"] = skipped.get("invalid_patient", 0) + 1
                break
            rows.append([np.nan if name in row.missing else row.values[name] for name in names])
            labels.append(label.value)
            patients.append(record.patient_key or "")
            encounters.append(typed_key(index) or "")
            times.append(when)
            for key in SUBGROUPS:
                attributes[key].append(row.attributes.get(key, "unknown"))
            lace.append(lace_index(record, index, when).score)
            hospital.append(hospital_score(record, index, when).score)
    return Dataset(
        feature_names=names,
        x=np.array(rows, dtype=np.float64).reshape(len(rows), len(names)),
        y=np.array(labels, dtype=np.int64),
        patient_ids=patients,
        encounter_ids=encounters,
        index_times=times,
        attributes=attributes,
        lace=np.array(lace, dtype=np.float64),
        hospital=np.array(hospital, dtype=np.float64),
        skipped=skipped,
    )


def load_dataset(folder: Path, spec: FeatureSpec, progress: bool = True) -> Dataset:
    """Read a Bulk Data NDJSON folder and build the training examples."""
    records = records_from_ndjson(folder, spec.resource_types, spec.code_filters)
    return examples_from_records(records, spec, progress=progress)
