"""Calibration by group: observed event rate against mean predicted risk in risk deciles, from
the groups' risk histograms, small cells suppressed."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from fairness import columns as C
from fairness.counts import BINS, GroupCounts
from fairness.suppression import Row, complement, hides, shown

DECILES = 10


def decile_edges(groups: Sequence[GroupCounts]) -> list[tuple[int, int]]:
    """[first, last) histogram bins of each risk decile of all labelled predictions together
    (a bin is never split, so a decile may hold more or less than a tenth)."""
    counts = sum((group.positives + group.negatives for group in groups), np.zeros(BINS))
    if counts.sum() == 0:
        return []
    cumulative = np.cumsum(counts)
    total = cumulative[-1]
    cuts = [
        int(np.searchsorted(cumulative, total * k / DECILES, side="left")) + 1
        for k in range(1, DECILES)
    ]
    bounds = sorted({0, *cuts, len(counts)})
    return [(a, b) for a, b in itertools.pairwise(bounds) if counts[a:b].sum() > 0]


def calibration_rows(
    groups: Sequence[GroupCounts],
    rows: Sequence[Row],
    attributes: Sequence[str],
    small: int,
) -> list[Row]:
    """One row per (group, decile): labelled predictions, mean predicted risk and observed event
    rate. A cell of fewer than ``small`` predictions, or whose events or non-events are 1 to
    ``small`` − 1, is suppressed, and so is a second cell of its group when one alone would be
    given back by the group's published totals; a group whose labelled count is not shown has
    every cell suppressed."""
    edges = decile_edges(groups)
    found: list[Row] = []
    for group, row in zip(groups, rows, strict=True):
        key = dict(zip(attributes, group.key, strict=True))
        counts = [int((group.positives + group.negatives)[a:b].sum()) for a, b in edges]
        events = [int(group.positives[a:b].sum()) for a, b in edges]
        predicted = [float(group.bin_predicted[a:b].sum()) for a, b in edges]
        hidden = {i for i, n in enumerate(counts) if n > 0 and hides(events[i], n, small)}
        hidden = complement(counts, hidden, small)
        hidden = complement(events, hidden, small)
        if not shown(row.get(C.LABELLED)):
            hidden = set(range(len(edges)))
        for i, n in enumerate(counts):
            cell: Row = {**key, C.RISK_DECILE: i}
            if i in hidden:
                cell |= dict.fromkeys((C.N, C.MEAN_PREDICTED, C.OBSERVED_RATE), C.SUPPRESSED)
            else:
                cell |= {
                    C.N: n,
                    C.MEAN_PREDICTED: predicted[i] / n if n else None,
                    C.OBSERVED_RATE: events[i] / n if n else None,
                }
            found.append(cell)
    return found


def calibration_columns() -> list[str]:
    return [C.RISK_DECILE, C.N, C.MEAN_PREDICTED, C.OBSERVED_RATE]
