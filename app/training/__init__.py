"""Training: synthetic cohorts, datasets, LightGBM fitting, calibration and evaluation."""
