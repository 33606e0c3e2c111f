"""``bedside train``: FHIR → features → LightGBM → calibration → evaluation → model package.

Patients are split (never a patient in two splits) into train 60%, early-stopping 10%,
calibration 10% and test 20%. Platt scaling is fitted on the calibration split; risk bands are
set on it by flag rate; every reported number comes from the test split, next to the LACE and
HOSPITAL baselines computed from the same FHIR data.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import yaml

from app.models import package as files
from app.training.dataset import SUBGROUPS, Dataset, load_dataset
from app.training.metrics import evaluate
from app.training.model_card import model_card, model_card_markdown
from app.training.reference import package_reference
from fairness.stats import logistic_fit
from fhir_mappers.baselines import HOSPITAL_HIGH_RISK, LACE_HIGH_RISK
from fhir_mappers.spec import FeatureSpec, load_spec

SPLITS = (("train", 0.6), ("early_stopping", 0.1), ("calibration", 0.1), ("test", 0.2))
LIGHTGBM_PARAMS = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbose": -1,
    "deterministic": True,
    "force_row_wise": True,
}
MIN_SUBGROUP = 30


def split_by_patient(dataset: Dataset, seed: int) -> dict[str, np.ndarray]:
    """Boolean masks per split; every stay of a patient lands in the same split."""
    patients = sorted(set(dataset.patient_ids))
    order = np.random.default_rng(seed).permutation(len(patients))
    cut_points = np.cumsum([share for _, share in SPLITS]) * len(patients)
    split_of: dict[str, str] = {}
    start = 0
    for (name, _), stop in zip(SPLITS, cut_points, strict=True):
        for position in order[start : round(stop)]:
            split_of[patients[position]] = name
        start = round(stop)
    labels = np.array([split_of[patient] for patient in dataset.patient_ids])
    return {name: labels == name for name, _ in SPLITS}


def fit_booster(train: Dataset, valid: Dataset, seed: int) -> lgb.Booster:
    params = {**LIGHTGBM_PARAMS, "seed": seed}
    train_set = lgb.Dataset(train.x, train.y, feature_name=train.feature_names)
    valid_set = lgb.Dataset(valid.x, valid.y, reference=train_set)
    return lgb.train(
        params,
        train_set,
        num_boost_round=2000,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(50, verbose=False)],
    )


def fit_platt(raw_logit: np.ndarray, y: np.ndarray) -> dict[str, float]:
    intercept, slope = logistic_fit(np.column_stack([np.ones(len(y)), raw_logit]), y)
    return {"method": "platt", "intercept": float(intercept), "slope": float(slope)}


def calibrated(booster: lgb.Booster, x: np.ndarray, platt: dict[str, float]) -> np.ndarray:
    raw = booster.predict(x, raw_score=True)
    return 1 / (1 + np.exp(-(platt["slope"] * raw + platt["intercept"])))


def risk_bands(
    p: np.ndarray,
    y: np.ndarray,
    high_flag_rate: float,
    moderate_flag_rate: float,
    target_sensitivity: float | None = None,
) -> dict[str, Any]:
    """Band thresholds on the calibration split.

    ``high`` flags ``high_flag_rate`` of the stays, or, with ``target_sensitivity``, the fewest
    stays that still catch that share of the readmissions; ``moderate`` flags
    ``moderate_flag_rate`` (never fewer than ``high``).
    """
    if target_sensitivity is None:
        high = float(np.quantile(p, 1 - high_flag_rate))
        chosen_by: dict[str, float] = {"high_flag_rate": high_flag_rate}
    else:
        high = threshold_for_sensitivity(p, y, target_sensitivity)
        chosen_by = {"target_sensitivity": target_sensitivity}
    moderate = min(float(np.quantile(p, 1 - moderate_flag_rate)), high)
    return {
        "chosen_by": {**chosen_by, "moderate_flag_rate": moderate_flag_rate},
        "bands": [
            {"name": "low", "lower": 0.0, "indicator": "info"},
            {"name": "moderate", "lower": moderate, "indicator": "info"},
            {"name": "high", "lower": high, "indicator": "warning"},
        ],
    }


def threshold_for_sensitivity(p: np.ndarray, y: np.ndarray, target: float) -> float:
    """The highest threshold whose sensitivity (``p >= t``) reaches ``target``."""
    order = np.argsort(-p, kind="stable")
    caught = np.cumsum(y[order]) / max(int(y.sum()), 1)
    position = int(np.searchsorted(caught, target))
    return float(p[order][min(position, len(p) - 1)])


def subgroup_results(test: Dataset, p: np.ndarray, thresholds: dict[str, float]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for attribute in SUBGROUPS:
        values = np.array(test.attributes[attribute])
        groups = {}
        for group in sorted(set(values)):
            mask = values == group
            if mask.sum() >= MIN_SUBGROUP:
                groups[group] = evaluate(test.y[mask], p[mask], thresholds)
            else:
                groups[group] = {"n": int(mask.sum()), "suppressed": True}
        results[attribute] = groups
    return results


def baseline_results(test: Dataset) -> dict[str, Any]:
    return {
        "LACE": evaluate(test.y, test.lace, {"high_risk": LACE_HIGH_RISK}),
        "HOSPITAL": evaluate(test.y, test.hospital, {"high_risk": HOSPITAL_HIGH_RISK}),
    }


def fingerprint(dataset: Dataset, source: str) -> dict[str, Any]:
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(dataset.x).tobytes())
    digest.update(dataset.y.tobytes())
    digest.update("\n".join(dataset.encounter_ids).encode())
    return {
        "sha256": digest.hexdigest(),
        "source": source,
        "patients": len(set(dataset.patient_ids)),
        "index_stays": len(dataset.y),
        "events": int(dataset.y.sum()),
        "first_index": min(dataset.index_times).isoformat(),
        "last_index": max(dataset.index_times).isoformat(),
        "skipped": dataset.skipped,
    }


def train_package(
    data_dir: Path,
    spec: FeatureSpec,
    out: Path,
    *,
    seed: int = 0,
    version: str = "1.0.0",
    high_flag_rate: float = 0.2,
    moderate_flag_rate: float = 0.5,
    target_sensitivity: float | None = None,
    progress: bool = True,
) -> Path:
    """Read the data, train, evaluate and write a package folder at ``out`` (replaced)."""
    dataset = load_dataset(data_dir, spec, progress=progress)
    fit_and_package(
        dataset,
        spec,
        out,
        source=data_dir.name,
        seed=seed,
        version=version,
        high_flag_rate=high_flag_rate,
        moderate_flag_rate=moderate_flag_rate,
        target_sensitivity=target_sensitivity,
    )
    return out


def fit_and_package(
    dataset: Dataset,
    spec: FeatureSpec,
    out: Path,
    *,
    source: str,
    seed: int = 0,
    version: str = "1.0.0",
    high_flag_rate: float = 0.2,
    moderate_flag_rate: float = 0.5,
    target_sensitivity: float | None = None,
) -> dict[str, np.ndarray]:
    """Train and evaluate on ``dataset``, write the package; returns the split masks."""
    if len(dataset.y) == 0 or dataset.y.sum() == 0:
        raise ValueError("no labelled index stays with events in the data")
    masks = split_by_patient(dataset, seed)
    parts = {name: dataset.subset(mask) for name, mask in masks.items()}
    booster = fit_booster(parts["train"], parts["early_stopping"], seed)
    calibration_part = parts["calibration"]
    platt = fit_platt(booster.predict(calibration_part.x, raw_score=True), calibration_part.y)
    bands = risk_bands(
        calibrated(booster, calibration_part.x, platt),
        calibration_part.y,
        high_flag_rate,
        moderate_flag_rate,
        target_sensitivity,
    )
    thresholds = {band["name"]: band["lower"] for band in bands["bands"] if band["lower"] > 0}
    test = parts["test"]
    p_test = calibrated(booster, test.x, platt)
    evaluation = {
        "split_sizes": {name: int(mask.sum()) for name, mask in masks.items()},
        "test": evaluate(test.y, p_test, thresholds),
        "subgroups": subgroup_results(test, p_test, thresholds),
        "baselines": baseline_results(test),
        "best_iteration": booster.best_iteration,
    }
    train_scores = calibrated(booster, parts["train"].x, platt)
    _write_package(
        out,
        spec=spec,
        version=version,
        booster=booster,
        platt=platt,
        bands=bands,
        reference=package_reference(dataset.feature_names, parts["train"].x, train_scores),
        fingerprint=fingerprint(dataset, source),
        evaluation=evaluation,
    )
    return masks


def _write_package(out: Path, *, spec: FeatureSpec, version: str, **parts: Any) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    name = spec.name
    trained_at = datetime.now(UTC).replace(microsecond=0).isoformat()
    card = model_card(name, version, trained_at, spec, parts["fingerprint"], parts["evaluation"])
    booster: lgb.Booster = parts["booster"]
    (out / files.BOOSTER).write_text(booster.model_to_string(num_iteration=booster.best_iteration))
    (out / files.SPEC).write_text(
        yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True), sort_keys=False)
    )
    for file_name, content in (
        (files.CALIBRATION, parts["platt"]),
        (files.THRESHOLDS, parts["bands"]),
        (files.REFERENCE, parts["reference"]),
        (files.FINGERPRINT, parts["fingerprint"]),
        (files.EVALUATION, parts["evaluation"]),
        (files.CARD_JSON, card),
        (files.SERVICE, _service(name)),
    ):
        (out / file_name).write_text(json.dumps(content, indent=1, default=float) + "\n")
    (out / files.CARD_MD).write_text(model_card_markdown(card))
    files.write_manifest(out, name, version)


def _service(name: str) -> dict[str, Any]:
    return {
        "id_prefix": name,
        "hooks": ["encounter-discharge", "patient-view"],
        "title": "30-day readmission risk",
        "description": (
            "Estimated risk of unplanned readmission within 30 days of discharge, with the "
            "factors behind it. At encounter-discharge, and at patient-view during an "
            "inpatient stay."
        ),
        "card_for_low_risk": True,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="Bulk Data NDJSON folder")
    parser.add_argument("--spec", type=Path, required=True, help="feature spec (YAML)")
    parser.add_argument("--out", type=Path, required=True, help="package folder to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument("--high-flag-rate", type=float, default=0.2)
    parser.add_argument("--moderate-flag-rate", type=float, default=0.5)
    parser.add_argument(
        "--target-sensitivity",
        type=float,
        help="set the high band to catch this share of readmissions instead of a flag rate",
    )


def run(args: argparse.Namespace) -> int:
    out = train_package(
        args.data,
        load_spec(args.spec),
        args.out,
        seed=args.seed,
        version=args.version,
        high_flag_rate=args.high_flag_rate,
        moderate_flag_rate=args.moderate_flag_rate,
        target_sensitivity=args.target_sensitivity,
    )
    evaluation = json.loads((out / files.EVALUATION).read_text())
    auroc = evaluation["test"]["auroc"]
    print(f"wrote {out}: test AUROC {auroc['value']:.3f} ({auroc['low']:.3f}–{auroc['high']:.3f})")
    return 0
