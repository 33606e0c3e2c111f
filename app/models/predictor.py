"""Scoring one feature row: calibrated probability, risk band and SHAP drivers.

SHAP values come from LightGBM's exact TreeSHAP (``pred_contrib``) on the raw log-odds; Platt
calibration is monotone, so the drivers' order and direction hold for the calibrated risk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from app.models.package import ModelPackage, RiskBand
from fhir_mappers.row import FeatureRow
from fhir_mappers.spec import FeatureDefinition

DERIVED_UNITS = {"age_years": "years", "length_of_stay_days": "days"}


def display_unit(feature: FeatureDefinition) -> str | None:
    """The unit of the feature's value as shown to a clinician (a slope is per day)."""
    if feature.derived is not None:
        return DERIVED_UNITS.get(feature.derived)
    if feature.read in ("count", "presence", "concept"):
        return None
    if feature.aggregation == "days_since_last":
        return "days"
    if feature.aggregation == "slope":
        return f"{feature.unit}/day"
    return feature.unit


MAX_DRIVERS = 4
MIN_CONTRIBUTION = 0.02  # log-odds; smaller effects are not worth a clinician's attention


@dataclass(frozen=True)
class Driver:
    feature: str
    label: str
    value: float | None
    unit: str | None
    contribution: float  # log-odds

    @property
    def raises_risk(self) -> bool:
        return self.contribution > 0

    def text(self) -> str:
        """E.g. "Creatinine 2.1 mg/dL ↑ risk"."""
        arrow = "↑" if self.raises_risk else "↓"
        return f"{self.label} {format_value(self.value, self.unit)} {arrow} risk"


@dataclass(frozen=True)
class Prediction:
    probability: float
    raw_probability: float
    band: RiskBand
    contributions: dict[str, float]  # per feature, log-odds (raw model)
    values: dict[str, float | None]  # per feature, None when missing
    base_value: float  # log-odds before any feature
    drivers: tuple[Driver, ...]
    missing: tuple[str, ...]  # display names of inputs that were missing


def format_value(value: float | None, unit: str | None) -> str:
    if value is None or math.isnan(value):
        return "missing"
    text = f"{value:.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.3g}"
    return f"{text} {unit}" if unit else text


def sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def calibrate(raw_logit: float, calibration: dict[str, float]) -> float:
    """Platt scaling fitted on held-out data."""
    return sigmoid(calibration["slope"] * raw_logit + calibration["intercept"])


class Predictor:
    """Scores rows with one package; single rows run on one thread (no OpenMP start-up)."""

    def __init__(self, package: ModelPackage) -> None:
        self.package = package
        self.features: list[FeatureDefinition] = list(package.spec.features)
        self.names = [feature.name for feature in self.features]

    def predict(self, row: FeatureRow) -> Prediction:
        vector = np.array([[row.values[name] for name in self.names]], dtype=np.float64)
        for index, name in enumerate(self.names):
            if name in row.missing:
                vector[0, index] = np.nan
        contributions = self.package.booster.predict(vector, pred_contrib=True, num_threads=1)[0]
        raw_logit = float(contributions.sum())
        probability = calibrate(raw_logit, self.package.calibration)
        per_feature = {
            name: float(value) for name, value in zip(self.names, contributions[:-1], strict=True)
        }
        return Prediction(
            probability=probability,
            raw_probability=sigmoid(raw_logit),
            band=self.package.band_for(probability),
            contributions=per_feature,
            values={
                name: None if math.isnan(value) else float(value)
                for name, value in zip(self.names, vector[0], strict=True)
            },
            base_value=float(contributions[-1]),
            drivers=self._drivers(vector[0], per_feature),
            missing=tuple(
                feature.display_name for feature in self.features if feature.name in row.missing
            ),
        )

    def explanation_rows(self, prediction: Prediction) -> list[dict[str, object]]:
        """Every feature with its value and contribution, largest effect first."""
        rows = [
            {
                "feature": feature.name,
                "label": feature.display_name,
                "value": prediction.values[feature.name],
                "unit": display_unit(feature),
                "contribution": prediction.contributions[feature.name],
            }
            for feature in self.features
        ]
        return sorted(rows, key=lambda row: abs(row["contribution"]), reverse=True)  # type: ignore[arg-type]

    def _drivers(self, vector: np.ndarray, contributions: dict[str, float]) -> tuple[Driver, ...]:
        ranked = sorted(
            zip(self.features, vector, strict=True),
            key=lambda pair: abs(contributions[pair[0].name]),
            reverse=True,
        )
        drivers = []
        for feature, value in ranked[:MAX_DRIVERS]:
            contribution = contributions[feature.name]
            if abs(contribution) < MIN_CONTRIBUTION:
                break
            drivers.append(
                Driver(
                    feature=feature.name,
                    label=feature.display_name,
                    value=None if math.isnan(value) else float(value),
                    unit=display_unit(feature),
                    contribution=contribution,
                )
            )
        return tuple(drivers)
