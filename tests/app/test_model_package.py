"""The trained package: it recovers what the generator planted, and refuses to load if altered."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from app.models.package import PackageIntegrityError, load_package
from app.models.predictor import Predictor
from app.training.train import calibrated
from fhir_mappers.row import FeatureRow
from tests.app.conftest import TrainedModel

# The first test pays for generating a cohort and training on it (a session fixture).
pytestmark = pytest.mark.timeout(600)


def test_package_loads_with_its_spec_bands_and_evaluation(trained_model: TrainedModel) -> None:
    package = trained_model.package
    assert package.name == "readmission-30d"
    assert package.booster.num_feature() == len(package.spec.features)
    assert [band.name for band in package.bands] == ["low", "moderate", "high"]
    assert 0 < package.bands[1].lower < package.bands[2].lower < 1
    assert package.evaluation["test"]["n"] == int(trained_model.masks["test"].sum())
    assert set(package.evaluation["baselines"]) == {"LACE", "HOSPITAL"}


@pytest.mark.parametrize("file_name", ["booster.txt", "thresholds.json", "feature_spec.yaml"])
def test_one_modified_byte_stops_the_package_from_loading(
    trained_model: TrainedModel, tmp_path: Path, file_name: str
) -> None:
    copy = tmp_path / "package"
    shutil.copytree(trained_model.package_path, copy)
    data = bytearray((copy / file_name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / file_name).write_bytes(bytes(data))
    with pytest.raises(PackageIntegrityError, match=file_name):
        load_package(copy)


def test_a_missing_or_extra_file_stops_the_package_from_loading(
    trained_model: TrainedModel, tmp_path: Path
) -> None:
    extra = tmp_path / "extra"
    shutil.copytree(trained_model.package_path, extra)
    (extra / "backdoor.txt").write_text("x")
    with pytest.raises(PackageIntegrityError):
        load_package(extra)
    missing = tmp_path / "missing"
    shutil.copytree(trained_model.package_path, missing)
    (missing / "calibration.json").unlink()
    with pytest.raises(PackageIntegrityError):
        load_package(missing)


def test_discrimination_is_within_003_of_the_oracle_on_the_test_split(
    trained_model: TrainedModel,
) -> None:
    test = trained_model.dataset.subset(trained_model.masks["test"])
    oracle = np.array([float(trained_model.truth[e]["true_risk"]) for e in test.encounter_ids])
    model_auroc = trained_model.package.evaluation["test"]["auroc"]["value"]
    oracle_auroc = roc_auc_score(test.y, oracle)
    assert model_auroc >= oracle_auroc - 0.03, (model_auroc, oracle_auroc)


def test_calibration_slope_on_the_test_split_is_between_09_and_11(
    trained_model: TrainedModel,
) -> None:
    calibration = trained_model.package.evaluation["test"]["calibration"]
    assert 0.9 <= calibration["slope"] <= 1.1, calibration
    assert 0.8 <= calibration["observed_expected"] <= 1.25, calibration


# The generator computes eGFR from creatinine (CKD-EPI), so the model may credit either.
SAME_SIGNAL = {"creatinine_last": {"creatinine_last", "egfr_last", "creatinine_slope"}}


def test_planted_drivers_rank_among_the_top_shap_features(trained_model: TrainedModel) -> None:
    test = trained_model.dataset.subset(trained_model.masks["test"])
    contributions = trained_model.package.booster.predict(test.x, pred_contrib=True)[:, :-1]
    importance = np.abs(contributions).mean(axis=0)
    ranked = [test.feature_names[i] for i in np.argsort(importance)[::-1]]
    planted = trained_model.manifest["risk_model"]["top_drivers"]
    top = set(ranked[:6])
    for driver in planted:
        assert SAME_SIGNAL.get(driver, {driver}) & top, (driver, ranked[:8])


def test_serving_predictor_gives_the_training_pipeline_probability(
    trained_model: TrainedModel,
) -> None:
    package = trained_model.package
    test = trained_model.dataset.subset(trained_model.masks["test"])
    expected = calibrated(package.booster, test.x[:50], package.calibration)
    predictor = Predictor(package)
    for vector, probability in zip(test.x[:50], expected, strict=True):
        values = dict(zip(test.feature_names, vector, strict=True))
        missing = frozenset(name for name, value in values.items() if np.isnan(value))
        row = FeatureRow(index_time=test.index_times[0], values=values, missing=missing)
        assert predictor.predict(row).probability == pytest.approx(probability, abs=1e-9)


def test_the_model_beats_the_clinical_baselines_it_is_compared_with(
    trained_model: TrainedModel,
) -> None:
    evaluation = trained_model.package.evaluation
    model = evaluation["test"]["auroc"]["value"]
    for name in ("LACE", "HOSPITAL"):
        baseline = evaluation["baselines"][name]["auroc"]
        assert 0.4 < baseline["value"] < model, (name, baseline, model)
