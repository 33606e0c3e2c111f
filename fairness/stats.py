"""Closed-form 95% intervals and a logistic fit, shared by training evaluation and the reports."""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054


def wilson(successes: int, total: int) -> list[float] | None:
    """[proportion, low, high] with the Wilson 95% interval; None when total is 0."""
    if total == 0:
        return None
    p = successes / total
    denominator = 1 + Z95**2 / total
    centre = (p + Z95**2 / (2 * total)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / total + Z95**2 / (4 * total**2)) / denominator
    return [p, max(0.0, centre - half), min(1.0, centre + half)]


def hanley_mcneil(auc: float, positives: int, negatives: int) -> dict[str, float]:
    """AUROC with the Hanley–McNeil (1982) standard error's 95% interval."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = (
        auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)
    ) / (positives * negatives)
    se = math.sqrt(max(variance, 0.0))
    return {"value": auc, "low": max(0.0, auc - Z95 * se), "high": min(1.0, auc + Z95 * se)}


def katz_ratio(x1: int, n1: int, x2: int, n2: int) -> list[float] | None:
    """[ratio, low, high] of (x1/n1)/(x2/n2), Katz 95% interval on the log ratio; None if a
    proportion is 0."""
    if min(x1, x2) == 0 or min(n1, n2) == 0:
        return None
    ratio = (x1 / n1) / (x2 / n2)
    se = math.sqrt(1 / x1 - 1 / n1 + 1 / x2 - 1 / n2)
    return [ratio, ratio * math.exp(-Z95 * se), ratio * math.exp(Z95 * se)]


def logit(p: np.ndarray) -> np.ndarray:
    clipped = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(clipped / (1 - clipped))


def logistic_fit(
    x: np.ndarray,
    y: np.ndarray,
    offset: np.ndarray | None = None,
    iterations: int = 50,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Unpenalised (optionally weighted) logistic regression by Newton–Raphson; ``x`` includes
    the intercept column. With ``weights`` = cell sizes and ``y`` = event shares it fits binned
    binomial cells."""
    beta = np.zeros(x.shape[1])
    offset = np.zeros(len(y)) if offset is None else offset
    weights = np.ones(len(y)) if weights is None else weights
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-np.clip(x @ beta + offset, -35, 35)))
        gradient = x.T @ (weights * (y - p))
        hessian = (x * (weights * p * (1 - p))[:, None]).T @ x
        step = np.linalg.solve(hessian + 1e-9 * np.eye(x.shape[1]), gradient)
        beta += step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta


def cohen_kappa(table: np.ndarray) -> dict[str, float] | None:
    """Cohen's kappa of a k×k table (rows: rater one, columns: rater two) with the
    Fleiss–Cohen–Everitt (1969) large-sample standard error and its 95% interval; None when the
    table is empty or chance agreement is 1."""
    counts = np.asarray(table, dtype=float)
    n = counts.sum()
    if n == 0:
        return None
    p = counts / n
    rows, cols = p.sum(axis=1), p.sum(axis=0)
    observed, chance = float(np.trace(p)), float(rows @ cols)
    if chance >= 1:
        return None
    kappa = (observed - chance) / (1 - chance)
    diagonal = float((np.diag(p) * (1 - (rows + cols) * (1 - kappa)) ** 2).sum())
    off = p * (1 - np.eye(len(p)))
    spread = (1 - kappa) ** 2 * float((off * (cols[:, None] + rows[None, :]) ** 2).sum())
    variance = (diagonal + spread - (kappa - chance * (1 - kappa)) ** 2) / (n * (1 - chance) ** 2)
    se = math.sqrt(max(variance, 0.0))
    return {"value": kappa, "se": se, "low": kappa - Z95 * se, "high": kappa + Z95 * se}


def histogram_quantile(buckets: dict[int, int], q: float) -> float | None:
    """The ``q`` quantile of values counted in unit buckets [b, b + 1), interpolated linearly
    within its bucket; None when nothing is counted."""
    total = sum(buckets.values())
    if total == 0:
        return None
    target, below = q * total, 0
    for bucket in sorted(buckets):
        count = buckets[bucket]
        if below + count >= target:
            return bucket + (target - below) / count
        below += count
    return float(max(buckets) + 1)
