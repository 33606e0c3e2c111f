"""A deterministic audit store with planted effects, for tests, benchmarks and demos.

Predictions get cohort attributes in realistic proportions and a true risk; the predicted risk is
the true risk except for a planted miscalibration (risk × factor for one attribute value), and
each prediction's outcome is drawn from its true risk and sent to the outcome chain by card uuid.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from app.audit.ledger import locked_chain
from app.reports.queries import DEFAULT_LABEL

SEXES = (("female", 0.52), ("male", 0.4797), ("other", 0.0003))
AGE_BANDS = (("18-44", 0.22), ("45-64", 0.33), ("65-74", 0.22), ("75+", 0.23))
AGE_LOGIT = {"18-44": -0.6, "45-64": -0.2, "65-74": 0.2, "75+": 0.5}
RACES = (
    ("White", 0.66),
    ("Black or African American", 0.14),
    ("Asian", 0.05),
    ("American Indian or Alaska Native", 0.01),
    ("Native Hawaiian or Other Pacific Islander", 0.005),
    ("unknown", 0.135),
)
ETHNICITIES = (("Hispanic or Latino", 0.15), ("Not Hispanic or Latino", 0.80), ("unknown", 0.05))
LANGUAGES = (("en", 0.85), ("es", 0.10), ("zh", 0.03), ("vi", 0.02))
BATCH = 5000


@dataclass(frozen=True)
class Miscalibration:
    """Predicted risk = true risk × ``factor`` where ``column`` is ``value``."""

    column: str
    value: str
    factor: float = 0.5


@dataclass(frozen=True)
class SeedConfig:
    predictions: int = 10_000
    seed: int = 0
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    days: int = 90
    model: str = "readmission-30d"
    model_version: str = "1.0.0"
    label: str = DEFAULT_LABEL
    bands: tuple[tuple[str, float], ...] = (("low", 0.0), ("moderate", 0.114), ("high", 0.237))
    miscalibration: Miscalibration | None = None
    outcome_share: float = 1.0  # predictions whose outcome is sent


def _draw(rng: np.random.Generator, choices: tuple[tuple[str, float], ...], n: int) -> np.ndarray:
    names = np.array([name for name, _ in choices], dtype=object)
    shares = np.array([share for _, share in choices])
    return names[rng.choice(len(names), n, p=shares / shares.sum())]


def draw_cohort(config: SeedConfig) -> dict[str, np.ndarray]:
    """Attributes, true and predicted risk, outcome and timing of every prediction."""
    rng = np.random.default_rng(config.seed)
    n = config.predictions
    cohort: dict[str, np.ndarray] = {
        "sex": _draw(rng, SEXES, n),
        "age_band": _draw(rng, AGE_BANDS, n),
        "race": _draw(rng, RACES, n),
        "ethnicity": _draw(rng, ETHNICITIES, n),
        "language": _draw(rng, LANGUAGES, n),
    }
    age = np.array([AGE_LOGIT[band] for band in cohort["age_band"]])
    true_risk = 1 / (1 + np.exp(-(-2.0 + age + rng.normal(0, 0.9, n))))
    predicted = true_risk.copy()
    planted = config.miscalibration
    if planted is not None:
        where = cohort[planted.column] == planted.value
        predicted[where] = np.clip(true_risk[where] * planted.factor, 0.0, 1.0)
    cohort["true_risk"] = true_risk
    cohort["probability"] = predicted
    cohort["event"] = (rng.random(n) < true_risk).astype(float)
    cohort["has_outcome"] = rng.random(n) < config.outcome_share
    cohort["offset"] = np.sort(rng.random(n)) * config.days * 86_400
    cohort["uuid"] = rng.integers(0, 2**63, (n, 2), dtype=np.int64)
    return cohort


def _band(bands: tuple[tuple[str, float], ...], probability: float) -> str:
    return [name for name, lower in bands if probability >= lower][-1]


def _key(*parts: Any) -> str:
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()


def _predictions(config: SeedConfig, cohort: dict[str, np.ndarray]) -> Iterator[dict[str, Any]]:
    package_hash = _key("package", config.model, config.model_version)
    for i in range(config.predictions):
        created = config.start + timedelta(seconds=float(cohort["offset"][i]))
        high, low = (int(part) for part in cohort["uuid"][i])
        probability = float(cohort["probability"][i])
        band = _band(config.bands, probability)
        yield {
            "created_at": created,
            "card_uuid": uuid.UUID(int=(high << 64) | low, version=4),
            "card_shown": band != "low",
            "service_id": f"{config.model}-encounter-discharge",
            "hook": "encounter-discharge",
            "hook_instance": _key("hook", config.seed, i)[:36],
            "client_iss": "https://ehr.example.org/cds-client",
            "model": config.model,
            "model_version": config.model_version,
            "package_hash": package_hash,
            "patient_key": _key("patient", config.seed, i),
            "encounter_key": _key("encounter", config.seed, i),
            "user_key": None,
            "index_time": created,
            "probability": probability,
            "raw_probability": probability,
            "band": band,
            "base_value": 0.0,
            "features": "{}",
            "missing": "[]",
            "provenance": "{}",
            "quality_notes": "[]",
            "contributions": "[]",
            "drivers": "[]",
            **{name: str(cohort[name][i]) for name in ("sex", "age_band", "race")},
            **{name: str(cohort[name][i]) for name in ("ethnicity", "language")},
            "map_ms": 1.0,
            "score_ms": 1.0,
            "total_ms": 2.0,
        }


def _outcome(config: SeedConfig, prediction: dict[str, Any], value: float) -> dict[str, Any]:
    observed = prediction["created_at"] + timedelta(days=30)
    return {
        "dedupe_key": _key("outcome", prediction["card_uuid"], config.label, value),
        "encounter_key": None,
        "card_uuid": prediction["card_uuid"],
        "label": config.label,
        "value": value,
        "observed_at": observed,
        "received_at": observed,
        "source": "seed",
    }


def seed_store(engine: Engine, config: SeedConfig, timeout_seconds: float = 30.0) -> int:
    """Append ``config.predictions`` predictions (and their outcomes); the number written."""
    cohort = draw_cohort(config)
    rows = _predictions(config, cohort)
    for start in range(0, config.predictions, BATCH):
        stop = min(start + BATCH, config.predictions)
        batch = [next(rows) for _ in range(start, stop)]
        with locked_chain(engine, "prediction", timeout_seconds) as chain:
            for row in batch:
                chain.append(row)
        with locked_chain(engine, "outcome", timeout_seconds) as chain:
            for i, row in zip(range(start, stop), batch, strict=True):
                if cohort["has_outcome"][i]:
                    chain.append(_outcome(config, row, float(cohort["event"][i])))
    return config.predictions
