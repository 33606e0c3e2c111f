"""Metrics of one group computed from its aggregated counts (never from rows)."""

from __future__ import annotations

import math

import numpy as np

from fairness import columns as C
from fairness.counts import GroupCounts
from fairness.stats import Z95, hanley_mcneil, logistic_fit, logit


def rates(group: GroupCounts) -> dict[str, tuple[int, int]]:
    """(numerator, denominator) of every proportion at the threshold."""
    return {
        C.FLAG_RATE: (group.flagged, group.n),
        C.TPR: (group.tp, group.events),
        C.FNR: (group.fn, group.events),
        C.SPECIFICITY: (group.tn, group.non_events),
        C.PPV: (group.tp, group.tp + group.fp),
        C.NPV: (group.tn, group.tn + group.fn),
    }


def observed_expected(group: GroupCounts) -> list[float] | None:
    """[O/E, low, high]: events over summed predicted risk, log-normal Poisson interval."""
    if group.events == 0 or group.sum_predicted_labelled <= 0:
        return None
    ratio = group.events / group.sum_predicted_labelled
    half = Z95 / math.sqrt(group.events)
    return [ratio, ratio * math.exp(-half), ratio * math.exp(half)]


def brier(group: GroupCounts) -> float | None:
    return group.sum_squared_error / group.labelled if group.labelled else None


def mean_predicted(group: GroupCounts) -> float | None:
    return group.sum_predicted / group.n if group.n else None


def auroc_from_histograms(positives: np.ndarray, negatives: np.ndarray) -> list[float] | None:
    """[AUROC, low, high] from risk histograms of events and non-events (ties within a bin
    count one half), Hanley–McNeil interval; None without both classes."""
    n_pos, n_neg = float(positives.sum()), float(negatives.sum())
    if n_pos == 0 or n_neg == 0:
        return None
    below = np.cumsum(negatives) - negatives
    auc = float((positives * (below + 0.5 * negatives)).sum() / (n_pos * n_neg))
    found = hanley_mcneil(auc, int(n_pos), int(n_neg))
    return [found["value"], found["low"], found["high"]]


def auprc_from_histograms(positives: np.ndarray, negatives: np.ndarray) -> list[float] | None:
    """[average precision, low, high] from risk histograms of events and non-events: precision
    at each bin's lower edge weighted by the recall it adds (scikit-learn's average precision
    with the risks of a bin tied), logit interval (Boyd et al. 2013); None without both
    classes."""
    n_pos = float(positives.sum())
    if n_pos == 0 or negatives.sum() == 0:
        return None
    tp, fp = np.cumsum(positives[::-1]), np.cumsum(negatives[::-1])
    occupied = (positives[::-1] + negatives[::-1]) > 0
    precision = tp[occupied] / (tp[occupied] + fp[occupied])
    recall_gain = positives[::-1][occupied] / n_pos
    value = float((precision * recall_gain).sum())
    if not 0 < value < 1:
        return [value, value, value]
    half = Z95 / math.sqrt(n_pos * value * (1 - value))
    centre = math.log(value / (1 - value))
    return [value, 1 / (1 + math.exp(-(centre - half))), 1 / (1 + math.exp(-(centre + half)))]


def calibration_slope(group: GroupCounts) -> float | None:
    """Slope of a binomial logistic fit of events on logit(mean risk) over the occupied bins."""
    counts = group.positives + group.negatives
    occupied = counts > 0
    if group.events == 0 or group.non_events == 0 or occupied.sum() < 2:
        return None
    size = counts[occupied]
    x = logit(group.bin_predicted[occupied] / size)
    design = np.column_stack([np.ones(len(x)), x])
    share = group.positives[occupied] / size
    return float(logistic_fit(design, share, weights=size)[1])
