"""shap's TreeExplainer and LightGBM's pred_contrib must tell the same story (within 1e-6)."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import shap


def booster_with_missing_values() -> tuple[lgb.Booster, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2000, 6))
    x[rng.random(x.shape) < 0.15] = np.nan  # missing values take the trees' default branches
    logit = 1.5 * np.nan_to_num(x[:, 0]) - np.nan_to_num(x[:, 1]) + 0.5 * np.nan_to_num(x[:, 2])
    y = (rng.random(2000) < 1 / (1 + np.exp(-logit))).astype(int)
    params = {"objective": "binary", "num_leaves": 15, "verbose": -1, "seed": 1}
    return lgb.train(params, lgb.Dataset(x, y), num_boost_round=60), x[:300]


def test_tree_explainer_and_pred_contrib_agree_within_1e6() -> None:
    booster, x = booster_with_missing_values()
    contributions = booster.predict(x, pred_contrib=True, num_threads=1)
    explainer = shap.TreeExplainer(booster)
    shap_values = np.asarray(explainer.shap_values(x))
    if shap_values.ndim == 3:  # older shap versions return one array per class
        shap_values = shap_values[-1]
    np.testing.assert_allclose(shap_values, contributions[:, :-1], atol=1e-6)
    expected = np.ravel(explainer.expected_value)[-1]
    np.testing.assert_allclose(contributions[:, -1], expected, atol=1e-6)


def test_contributions_add_up_to_the_raw_score() -> None:
    booster, x = booster_with_missing_values()
    contributions = booster.predict(x, pred_contrib=True, num_threads=1)
    raw = booster.predict(x, raw_score=True)
    np.testing.assert_allclose(contributions.sum(axis=1), raw, atol=1e-9)
