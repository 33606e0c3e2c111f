"""Reference distributions stored in a package, for drift monitoring against training data."""

from __future__ import annotations

from typing import Any

import numpy as np

BINS = 10


def numeric_reference(values: np.ndarray) -> dict[str, Any]:
    """Quantile bin edges, the share of training rows per bin, and the missing rate."""
    present = values[~np.isnan(values)]
    reference: dict[str, Any] = {"missing_rate": float(1 - len(present) / max(len(values), 1))}
    if len(present) == 0:
        return {**reference, "edges": [], "proportions": []}
    edges = np.unique(np.quantile(present, np.linspace(0, 1, BINS + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1)
    return {
        **reference,
        "edges": [float(edge) for edge in edges],
        "proportions": [float(count / len(present)) for count in counts],
        "mean": float(present.mean()),
        "std": float(present.std()),
    }


def package_reference(
    feature_names: list[str], x: np.ndarray, scores: np.ndarray
) -> dict[str, Any]:
    return {
        "bins": "deciles of the training split; values above an edge fall in the next bin",
        "features": {name: numeric_reference(x[:, i]) for i, name in enumerate(feature_names)},
        "score": numeric_reference(scores),
        "rows": len(x),
    }
