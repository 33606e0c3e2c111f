"""Units shown to clinicians follow what the value is (a slope is per day, a count has none)."""

from __future__ import annotations

from pathlib import Path

from app.models.predictor import Driver, display_unit
from fhir_mappers.spec import load_spec

SPEC = load_spec(Path(__file__).resolve().parents[2] / "fhir_mappers/specs/readmission_30d.yaml")
FEATURES = {feature.name: feature for feature in SPEC.features}


def test_display_units_by_kind_of_value() -> None:
    assert display_unit(FEATURES["creatinine_last"]) == "mg/dL"
    assert display_unit(FEATURES["creatinine_slope"]) == "mg/dL/day"
    assert display_unit(FEATURES["creatinine_results_30d"]) is None
    assert display_unit(FEATURES["smoking_current"]) is None
    assert display_unit(FEATURES["age_years"]) == "years"
    assert display_unit(FEATURES["charlson_index"]) is None


def test_driver_text_reads_like_a_clinician_would_say_it() -> None:
    driver = Driver("creatinine_last", "Creatinine", 2.1, "mg/dL", contribution=0.4)
    assert driver.text() == "Creatinine 2.1 mg/dL ↑ risk"
    lower = Driver("albumin_last", "Albumin", 4.2, "g/dL", contribution=-0.3)
    assert lower.text() == "Albumin 4.2 g/dL ↓ risk"
    assert Driver("egfr_last", "eGFR", None, "x", 0.2).text() == "eGFR missing ↑ risk"
