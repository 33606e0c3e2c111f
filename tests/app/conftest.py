"""A model package trained once per test session on a small synthetic cohort."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.models.package import ModelPackage, load_package
from app.store.database import make_engine
from app.store.migrate import upgrade
from app.training.dataset import Dataset, load_dataset
from app.training.synth import CohortConfig, generate_cohort
from app.training.train import fit_and_package
from fhir_mappers.record import PatientRecord, records_from_ndjson
from fhir_mappers.spec import load_spec

SPEC_PATH = Path(__file__).resolve().parents[2] / "fhir_mappers" / "specs" / "readmission_30d.yaml"
COHORT_PATIENTS = 800
SEED = 11


@dataclass(frozen=True)
class TrainedModel:
    cohort: Path
    package_path: Path
    package: ModelPackage
    manifest: dict[str, Any]
    dataset: Dataset
    masks: dict[str, np.ndarray]
    truth: dict[str, dict[str, str]]  # truth.csv rows by "Encounter/<id>"


@pytest.fixture
def engine(database_url: str) -> Iterator[Any]:
    upgrade(database_url)
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    root = tmp_path_factory.mktemp("trained")
    cohort = root / "cohort"
    manifest = generate_cohort(CohortConfig(patients=COHORT_PATIENTS, seed=SEED), cohort)
    spec = load_spec(SPEC_PATH)
    dataset = load_dataset(cohort, spec, progress=False)
    package_path = root / "package"
    masks = fit_and_package(dataset, spec, package_path, source="test-cohort", seed=SEED)
    with (cohort / "truth.csv").open() as handle:
        truth = {f"Encounter/{row['encounter_id']}": row for row in csv.DictReader(handle)}
    return TrainedModel(
        cohort, package_path, load_package(package_path), manifest, dataset, masks, truth
    )


@pytest.fixture(scope="session")
def stays_by_risk(trained_model: TrainedModel) -> list[tuple[float, PatientRecord, dict]]:
    """In-period index stays of the trained model's cohort, lowest true risk first."""
    records = {r.patient_key: r for r in records_from_ndjson(trained_model.cohort)}
    stays = []
    for key, row in trained_model.truth.items():
        if row["in_period"] != "1":
            continue
        record = records[f"Patient/{row['patient_id']}"]
        encounter = record.by_key[key]
        stays.append((float(row["true_risk"]), record, encounter))
    stays.sort(key=lambda stay: stay[0])
    return stays
