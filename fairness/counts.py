"""Per-group aggregated counts (what a SQL GROUP BY returns), the only input of the metrics."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

BINS = 1000  # predicted-risk histogram bins, [i/BINS, (i+1)/BINS)
GroupKey = tuple[str, ...]


def _zeros() -> np.ndarray:
    return np.zeros(BINS)


@dataclass(eq=False)
class GroupCounts:
    """Counts for one group (its key: one value per grouping attribute).

    ``labelled``..``negatives`` cover the predictions with an outcome; ``positives`` and
    ``negatives`` are risk histograms of events and non-events, ``bin_predicted`` the sum of
    predicted risk of the labelled predictions in each bin.
    """

    key: GroupKey
    n: int = 0
    flagged: int = 0
    sum_predicted: float = 0.0
    labelled: int = 0
    events: int = 0
    tp: int = 0
    fp: int = 0
    sum_predicted_labelled: float = 0.0
    sum_squared_error: float = 0.0
    positives: np.ndarray = field(default_factory=_zeros)
    negatives: np.ndarray = field(default_factory=_zeros)
    bin_predicted: np.ndarray = field(default_factory=_zeros)

    @property
    def fn(self) -> int:
        return self.events - self.tp

    @property
    def tn(self) -> int:
        return self.labelled - self.events - self.fp

    @property
    def non_events(self) -> int:
        return self.labelled - self.events

    def add_cell(
        self, bin_: int, event: int | None, count: int, flagged: int, sum_p: float, sum_p2: float
    ) -> None:
        """Add one (bin, event) cell: event is None for predictions without an outcome."""
        self.n += count
        self.flagged += flagged
        self.sum_predicted += sum_p
        if event is None:
            return
        index = min(max(bin_, 0), BINS - 1)
        self.labelled += count
        self.sum_predicted_labelled += sum_p
        self.bin_predicted[index] += sum_p
        if event:
            self.events += count
            self.tp += flagged
            self.sum_squared_error += sum_p2 - 2 * sum_p + count
            self.positives[index] += count
        else:
            self.fp += flagged
            self.sum_squared_error += sum_p2
            self.negatives[index] += count

    def merge(self, other: GroupCounts) -> None:
        for name in ("n", "flagged", "labelled", "events", "tp", "fp"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.sum_predicted += other.sum_predicted
        self.sum_predicted_labelled += other.sum_predicted_labelled
        self.sum_squared_error += other.sum_squared_error
        self.positives = self.positives + other.positives
        self.negatives = self.negatives + other.negatives
        self.bin_predicted = self.bin_predicted + other.bin_predicted


Cell = tuple[GroupKey, int, int | None, int, int, float, float]
"""(group key, bin, event or None, count, flagged, sum of risk, sum of squared risk)."""


def from_cells(cells: Iterable[Cell]) -> list[GroupCounts]:
    """Group counts from (group, bin, event) cells, largest group first."""
    groups: dict[GroupKey, GroupCounts] = {}
    for key, bin_, event, count, flagged, sum_p, sum_p2 in cells:
        groups.setdefault(key, GroupCounts(key)).add_cell(
            bin_, event, count, flagged, sum_p, sum_p2
        )
    return sorted(groups.values(), key=lambda group: (-group.n, group.key))


def overall(groups: Iterable[GroupCounts], width: int) -> GroupCounts:
    """The whole population, keyed ``("all",) * width``."""
    total = GroupCounts(("all",) * width)
    for group in groups:
        total.merge(group)
    return total
