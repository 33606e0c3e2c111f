"""A deterministic audit store with planted effects, for tests, benchmarks and demos.

Predictions get cohort attributes in realistic proportions and a true risk; the predicted risk is
the true risk except for a planted miscalibration (risk × factor for one attribute value), and
each prediction's outcome is drawn from its true risk and sent to the outcome chain by card uuid.
With an :class:`Overriding`, clinicians answer shown cards with a planted override rate for one
attribute value, reasons from the card's list, comments, delays and some changed answers.
With a feature ``reference`` (a package's), each prediction's ``features`` are drawn from it, and
a :class:`Drift` shifts, scales or blanks one feature from a date.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Engine

from app.audit.ledger import locked_chain
from app.audit.tables import ModelVersionRecord
from app.models.card import OVERRIDE_REASONS
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
class Overriding:
    """Clinicians answer ``response_share`` of shown cards and override ``rate`` of the answered
    (``planted_rate`` where ``column`` is ``value``; no column: nowhere), after a log-normal delay;
    ``comment_share`` of answers carry a free-text comment and ``resend_share`` follow an earlier,
    opposite answer (the later one wins)."""

    rate: float = 0.2
    column: str | None = None
    value: str | None = None
    planted_rate: float = 0.6
    response_share: float = 0.85
    comment_share: float = 0.1
    resend_share: float = 0.05
    median_delay_hours: float = 2.0


@dataclass(frozen=True)
class Drift:
    """From ``start`` on, ``feature`` = value × ``factor`` + ``shift`` reference standard
    deviations, missing at ``missing_rate`` (None: the reference's)."""

    feature: str
    start: datetime
    shift: float = 0.0
    factor: float = 1.0
    missing_rate: float | None = None


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
    overriding: Overriding | None = None  # None: no feedback
    reference: dict[str, Any] | None = None  # feature name → reference; None: features "{}"
    drifts: tuple[Drift, ...] = ()


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


def draw_feedback(config: SeedConfig, cohort: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Whether, how, why and when clinicians answer each card (from its own random stream, so the
    cohort is the same with or without feedback)."""
    behaviour = config.overriding or Overriding()
    rng = np.random.default_rng([config.seed, 1])
    n = config.predictions
    rate = np.full(n, behaviour.rate)
    if behaviour.column is not None:
        rate[cohort[behaviour.column] == behaviour.value] = behaviour.planted_rate
    return {
        "responds": rng.random(n) < behaviour.response_share,
        "overridden": rng.random(n) < rate,
        "reason": rng.integers(0, len(OVERRIDE_REASONS), n),
        "comment": rng.random(n) < behaviour.comment_share,
        "resend": rng.random(n) < behaviour.resend_share,
        "delay_hours": rng.lognormal(np.log(behaviour.median_delay_hours), 1.0, n),
    }


def draw_features(config: SeedConfig, cohort: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Feature values (NaN: missing) from the reference: a bin by its training share, then
    uniformly within its edges (outer bins one standard deviation wide), with the reference
    missing rate; then the planted drifts. Own random stream, so the cohort is unchanged."""
    rng = np.random.default_rng([config.seed, 2])
    n = config.predictions
    drifts = {drift.feature: drift for drift in config.drifts}
    features = {}
    for name, reference in (config.reference or {}).items():
        edges, shares = reference["edges"], np.asarray(reference["proportions"], dtype=float)
        width = reference.get("std") or 1.0
        bins = rng.choice(len(shares), n, p=shares / shares.sum()) if len(shares) else None
        lower = np.array([edges[0] - width, *edges]) if edges else np.zeros(1)
        upper = np.array([*edges, edges[-1] + width]) if edges else np.ones(1)
        uniform, blank = rng.random(n), rng.random(n)
        values = np.full(n, np.nan)
        if bins is not None:
            values = lower[bins] + uniform * (upper[bins] - lower[bins])
        missing_rate = np.full(n, reference["missing_rate"])
        drift = drifts.get(name)
        if drift is not None:
            after = cohort["offset"] >= (drift.start - config.start).total_seconds()
            values[after] = values[after] * drift.factor + drift.shift * width
            if drift.missing_rate is not None:
                missing_rate[after] = drift.missing_rate
        values[blank < missing_rate] = np.nan
        features[name] = values
    return features


def _features_json(features: dict[str, np.ndarray], i: int) -> tuple[str, str]:
    """The ``features`` and ``missing`` JSON of prediction ``i``."""
    if not features:
        return "{}", "[]"
    values = {name: None if np.isnan(v[i]) else float(v[i]) for name, v in features.items()}
    return json.dumps(values), json.dumps([name for name, v in values.items() if v is None])


def _band(bands: tuple[tuple[str, float], ...], probability: float) -> str:
    return [name for name, lower in bands if probability >= lower][-1]


def _key(*parts: Any) -> str:
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()


def _package_hash(config: SeedConfig) -> str:
    """Like a real package's hash, it names the content that matters here: the reference."""
    reference = json.dumps(config.reference, sort_keys=True)
    return _key("package", config.model, config.model_version, reference)


def register_seed_package(engine: Engine, config: SeedConfig) -> None:
    """Record the seed's model version with its feature reference (as a served package's start
    does), so that its predictions are binned for the drift report."""
    now = datetime.now(UTC)
    reference = json.dumps({"features": config.reference or {}})
    table = ModelVersionRecord.__table__  # type: ignore[attr-defined]
    with engine.begin() as connection:
        known = connection.execute(
            select(table.c.id).where(table.c.package_hash == _package_hash(config))
        ).first()
        if known is None:
            connection.execute(
                table.insert().values(
                    model=config.model,
                    version=config.model_version,
                    package_hash=_package_hash(config),
                    trained_at="seed",
                    first_started_at=now,
                    last_started_at=now,
                    fingerprint="{}",
                    performance="{}",
                    reference=reference,
                )
            )


def _predictions(config: SeedConfig, cohort: dict[str, np.ndarray]) -> Iterator[dict[str, Any]]:
    package_hash = _package_hash(config)
    features = draw_features(config, cohort)
    for i in range(config.predictions):
        values, missing = _features_json(features, i)
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
            "features": values,
            "missing": missing,
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


def _feedback(
    prediction: dict[str, Any], answers: dict[str, np.ndarray], i: int, final: bool
) -> dict[str, Any]:
    overridden = bool(answers["overridden"][i]) == final
    hours = float(answers["delay_hours"][i]) * (1.0 if final else 0.5)
    answered = prediction["created_at"] + timedelta(hours=hours)
    reason = OVERRIDE_REASONS[int(answers["reason"][i])] if overridden else None
    comment = f"seed comment {i}: may name the patient" if answers["comment"][i] else None
    return {
        "dedupe_key": _key("feedback", prediction["card_uuid"], final),
        "service_id": prediction["service_id"],
        "card_uuid": prediction["card_uuid"],
        "outcome": "overridden" if overridden else "accepted",
        "override_system": reason.system if reason else None,
        "override_code": reason.code if reason else None,
        "override_display": reason.display if reason else None,
        "user_comment": comment if final else None,
        "accepted_suggestions": "[]",
        "outcome_timestamp": answered,
        "received_at": answered,
        "client_iss": prediction["client_iss"],
    }


def _answers(
    batch: list[dict[str, Any]], indices: range, answers: dict[str, np.ndarray]
) -> Iterator[dict[str, Any]]:
    for i, row in zip(indices, batch, strict=True):
        if row["card_shown"] and answers["responds"][i]:
            if answers["resend"][i]:
                yield _feedback(row, answers, i, final=False)
            yield _feedback(row, answers, i, final=True)


def seed_store(engine: Engine, config: SeedConfig, timeout_seconds: float = 30.0) -> int:
    """Append ``config.predictions`` predictions (their outcomes and, with ``overriding``, the
    clinicians' answers); the number written."""
    register_seed_package(engine, config)
    cohort = draw_cohort(config)
    answers = draw_feedback(config, cohort) if config.overriding else None
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
        if answers is not None:
            with locked_chain(engine, "feedback", timeout_seconds) as chain:
                for answer in _answers(batch, range(start, stop), answers):
                    chain.append(answer)
    return config.predictions
