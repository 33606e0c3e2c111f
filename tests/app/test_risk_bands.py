"""Risk bands chosen on the calibration split: by flag rate or by target sensitivity."""

from __future__ import annotations

import numpy as np
import pytest

from app.training.train import risk_bands, threshold_for_sensitivity


def test_flag_rate_sets_the_high_band_at_that_quantile() -> None:
    p = np.linspace(0.0, 0.99, 100)
    y = np.zeros(100)
    bands = {b["name"]: b["lower"] for b in risk_bands(p, y, 0.2, 0.5)["bands"]}
    assert (p >= bands["high"]).mean() == pytest.approx(0.2, abs=0.011)
    assert (p >= bands["moderate"]).mean() == pytest.approx(0.5, abs=0.011)


def test_target_sensitivity_picks_the_highest_threshold_that_reaches_it() -> None:
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    y = np.array([1, 0, 1, 0, 0, 1, 0, 1])
    # Ranked by risk, readmissions are caught at 0.9 (1/4), 0.7 (2/4), 0.4 (3/4), 0.2 (4/4).
    assert threshold_for_sensitivity(p, y, 0.5) == 0.7
    assert threshold_for_sensitivity(p, y, 0.75) == 0.4
    assert threshold_for_sensitivity(p, y, 1.0) == 0.2
    bands = risk_bands(p, y, 0.2, 0.5, target_sensitivity=0.75)
    assert bands["chosen_by"]["target_sensitivity"] == 0.75
    assert [b["lower"] for b in bands["bands"]] == [0.0, 0.4, 0.4]
