"""Evaluation metrics with 95% intervals, as pure functions of labels and predicted risks."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from fairness.stats import hanley_mcneil, logistic_fit, logit, wilson


def auroc_hanley_mcneil(y: np.ndarray, score: np.ndarray) -> dict[str, float] | None:
    """AUROC with the Hanley–McNeil (1982) standard error; None without both classes."""
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    if positives == 0 or negatives == 0:
        return None
    return hanley_mcneil(float(roc_auc_score(y, score)), positives, negatives)


def auprc_bootstrap(
    y: np.ndarray, score: np.ndarray, resamples: int = 300, seed: int = 0
) -> dict[str, float] | None:
    """Average precision with a percentile bootstrap interval."""
    if y.sum() == 0 or y.sum() == len(y):
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        index = rng.integers(0, len(y), len(y))
        if 0 < y[index].sum() < len(index):
            values.append(average_precision_score(y[index], score[index]))
    low, high = np.percentile(values, [2.5, 97.5])
    value = float(average_precision_score(y, score))
    return {"value": value, "low": float(low), "high": float(high)}


def calibration(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Calibration-in-the-large (intercept with the logit as offset), slope, O/E and Brier."""
    log_odds = logit(p)
    ones = np.ones((len(y), 1))
    intercept = float(logistic_fit(ones, y, offset=log_odds)[0])
    slope = float(logistic_fit(np.column_stack([ones, log_odds]), y)[1])
    return {
        "intercept": intercept,
        "slope": slope,
        "observed_expected": float(y.sum() / p.sum()) if p.sum() > 0 else float("nan"),
        "brier": float(np.mean((p - y) ** 2)),
    }


def at_threshold(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    """Sensitivity, specificity, PPV, NPV and flag rate at ``p >= threshold`` (Wilson CIs)."""
    flagged = p >= threshold
    tp = int((flagged & (y == 1)).sum())
    fp = int((flagged & (y == 0)).sum())
    fn = int((~flagged & (y == 1)).sum())
    tn = int((~flagged & (y == 0)).sum())
    return {
        "threshold": threshold,
        "counts": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
        "sensitivity": wilson(tp, tp + fn),
        "specificity": wilson(tn, tn + fp),
        "ppv": wilson(tp, tp + fp),
        "npv": wilson(tn, tn + fn),
        "flag_rate": wilson(tp + fp, len(y)),
    }


def evaluate(y: np.ndarray, p: np.ndarray, thresholds: dict[str, float]) -> dict[str, Any]:
    """Everything the model card reports for one set of predictions."""
    both_classes = 0 < y.sum() < len(y)
    return {
        "n": len(y),
        "events": int(y.sum()),
        "auroc": auroc_hanley_mcneil(y, p),
        "auprc": auprc_bootstrap(y, p),
        "calibration": calibration(y, p) if both_classes else None,
        "thresholds": {name: at_threshold(y, p, value) for name, value in thresholds.items()},
    }
